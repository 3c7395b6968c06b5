// Package storetest holds the contract tests that every store.Store
// implementation must pass (Run), and helpers that make valid devices for
// tests (NewDevice, PairedDevice, Pair) and compare them without printing
// secrets (Diff).
//
// Tests of store implementations import it: the bbolt store in package
// store and the Redis store in store/redis. Production code never does.
package storetest
