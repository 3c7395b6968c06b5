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
// acks enforced, server pings); after the cold start, once the login bursts
// are acked, it reports the acks per
// second the emulator received over --window, the manager's CPU time per
// ack, and the emulator's ack, receipt and retry counters. Its messages
// decrypt; --garbage-share makes that share of them random bytes (the
// failure path).
//
//	go run ./cmd/fleetload --day-one --accounts 5000
//
// With --provision the accounts are not paired one by one (each pairing
// uploads 812 one-time prekeys): fleetload makes each device with the
// manager's own key generation, has the emulator record it as paired
// (`manager emulator --provisioning`, POST /provision, enabled for load runs
// only), completes it as a pairing would and saves it into the store with
// --prekeys one-time prekeys marked uploaded. Logins stay as strict as
// ever (full Noise handshake, recorded noise key, acks, pings), so cold
// starts of many thousands of accounts repeat in seconds
// (--cold-starts N measures N in a row). It works with --fleet too
// (provisioned into the fleet's Redis). Scale (issue 14):
//
//	go run ./cmd/fleetload --provision --accounts 19000 --day-one --push-rate 0.016667 --window 120s
//
// With --store-load it measures, with almost no sockets, how long a
// manager takes at start to load --accounts provisioned devices from a
// bbolt file and from Redis (fleet mode, one instance), and Redis's memory
// per account:
//
//	go run ./cmd/fleetload --store-load --accounts 100000 --prekeys 5
//
// fleetload raises its soft descriptor limit to the hard limit (the
// emulator and managers it starts inherit it) and refuses to start when the
// hard limit, or the ephemeral port range towards the emulator's one
// address, is too small for --accounts sockets in one process.
//
// With --simulate it runs --fleet coordinators of package fleet in this
// process, each on its own Redis client and real leases in a private
// redis-server, over --accounts that never connect (the Owner records who
// runs what): it waits until every account runs on its preferred member,
// measures the steady state over --window (Redis commands and CPU, round
// trips per instance, the lease tick, Redis memory per account, this
// process's CPU and memory), then lets one more instance join and then
// kills the first (its leases expire in Redis), timing each convergence,
// counting the accounts moved, and checking that no account was ever run
// by two instances at once or under a fencing token that did not grow.
//
//	go run ./cmd/fleetload --simulate --fleet 20 --accounts 1000000 --lease-ttl 120s --max-moves 500
//
// It is a benchmark, not a test: BENCHMARKS.md quotes its output.
package main
