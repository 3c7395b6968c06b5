// Package storetest holds the contract tests that every store.Store
// implementation must pass (Run): devices and their mapping, one-time
// prekeys and fleet-wide settings. It also has helpers that make valid
// devices and prekeys for tests (NewDevice, PairedDevice, Pair, NewPreKeys),
// compare devices without printing secrets (Diff) and look for secret
// device and prekey bytes in what a store wrote at rest (DeviceSecretIn,
// PreKeySecretIn).
//
// Tests of store implementations import it: the bbolt store in package
// store and the Redis store in store/redis. Production code never does.
package storetest
