// Package storetest holds the contract tests that every store.Backend
// implementation, with its store.LIDMap, must pass (Run): devices and their
// mapping, one-time prekeys, the archive, fleet-wide settings and the
// account registry; RunOutbox runs those of every store.Outbox, and
// BenchOutboxAppend benchmarks its Append. It also has helpers that make valid
// devices and prekeys for tests (NewDevice, PairedDevice, Pair, NewPreKeys),
// compare devices without printing secrets (Diff) and look for secret
// device and prekey bytes in what a store wrote at rest (DeviceSecretIn,
// PreKeySecretIn).
//
// Tests of store implementations import it (the bbolt store in package
// store and the Redis store in store/redis), and so do the tests of the
// actors and app for valid devices. Production code never does.
package storetest
