// Command fleetload measures a cold start of a fleet: it runs `manager
// emulator` and `manager run` as separate processes, pairs N accounts once,
// restarts the manager, and reports the time until all N are connected again
// and the manager's resident memory per connected account.
//
//	go run ./cmd/fleetload --accounts 1000
//
// With --fleet N it measures fleet mode instead: N instances share a private
// redis-server; it reports the Redis round trips per second of each instance
// in steady state and the failover time after a kill -9 of one instance.
//
//	go run ./cmd/fleetload --fleet 2 --accounts 1000
//
// It is a benchmark, not a test: BENCHMARKS.md quotes its output.
package main
