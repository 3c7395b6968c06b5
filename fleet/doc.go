// Package fleet splits the configured accounts among the live instances
// that share one Redis: rendezvous (highest random weight) hashing picks
// each account's preferred instance, and the Coordinator runs the lease
// loop of one instance — heartbeat and renewal of all its leases in one
// round trip per tick, stopping accounts whose lease is lost or about to
// expire, acquiring its preferred accounts and handing over, a few per
// tick, those another instance now prefers.
//
// cmd/manager wires it: the Coordinator's Owner starts and stops the
// supervisor's connection actors. It imports store/redis and events.
package fleet
