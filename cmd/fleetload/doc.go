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
// With --day-one the emulator behaves like the real server from the first
// login (stanzas pushed at --push-rate per account after a --push-burst,
// acks enforced, server pings); after the cold start it reports the acks per
// second the emulator received over --window, the manager's CPU time per
// ack, and the emulator's ack counters.
//
//	go run ./cmd/fleetload --day-one --accounts 5000
//
// It is a benchmark, not a test: BENCHMARKS.md quotes its output.
package main
