// Command fleetload measures a cold start of a fleet: it runs `manager
// emulator` and `manager run` as separate processes, pairs N accounts once,
// restarts the manager, and reports the time until all N are connected again
// and the manager's resident memory per connected account.
//
//	go run ./cmd/fleetload --accounts 1000
//
// It is a benchmark, not a test: BENCHMARKS.md quotes its output.
package main
