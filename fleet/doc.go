// Package fleet splits the configured accounts among the live instances
// that share one Redis: rendezvous (highest random weight) hashing picks
// each account's preferred instance, and the Coordinator runs the lease
// loop of one instance — heartbeat and renewal of all its leases in one
// round trip per tick (one more per 10,000 leases beyond the first 10,000,
// in parallel), closing the connections of accounts whose lease is
// lost or past its local deadline, acquiring its preferred accounts and
// handing over, a bounded number per tick, those another instance now
// prefers. Sockets registers every connection (and dial) by account and
// admits one only while the account's lease is usable. Both work on the
// Leases interface: store/redis.Leases keeps the table in Redis, and the
// unit tests run the Coordinator on one in memory.
//
// # Why two instances never connect one account at once
//
// Every instance keeps, for each lease, a local deadline on its monotonic
// clock: the time taken just BEFORE sending the last renewal that Redis
// confirmed, plus TTL minus Margin (store/redis.Lease.ValidUntil). A
// watchdog goroutine, on a timer of its own, closes the account's sockets
// when that deadline passes; it never waits for Redis or for an actor. Go's
// monotonic clock is CLOCK_MONOTONIC on Linux, which keeps counting while
// the process is stopped (SIGSTOP) or the machine is suspended in a VM
// pause; so after any pause the deadlines that passed meanwhile have
// passed: the watchdog closes those sockets as soon as it runs, and
// package app checks the lease before every frame it writes, so none is
// written meanwhile.
//
// In Redis the lease lives TTL after the renewal was processed, which is
// after it was sent: with Redis's clock and ours running at the same rate,
// the holder closes Margin before anyone else can acquire the account.
// Redis's clock may jump forward, though (an NTP step, a VM restored from
// a snapshot): every lease and heartbeat then vanishes at once while their
// holders still count on them. So an acquirer does not trust Redis's
// clock: the acquire script records the account's holder (deleted by a
// release) and returns the previous one with its beat count — a counter in
// Redis that every heartbeat and acquisition of that instance increments,
// and that no clock moves. A renewal counts only when the heartbeat sent
// with it, in the same tick and no earlier, succeeded, so the
// previous holder's deadline is at most TTL-Margin after the moment its
// count last changed. If this instance has watched that count unchanged
// since local time t, that moment is before t; otherwise it is before our
// acquisition was answered. The account connects only after that bound +
// TTL - Margin/2 (Lease.NotBefore): the previous holder's deadline has
// passed and half the margin is left for its watchdog to close the socket.
// A released lease (hand-over, shutdown) needs no guard, nor does one whose
// holder has been silent for a TTL (a crash: its leases expire after the
// TTL and are taken at once). A new instance has watched nobody, so it
// guards every lease it takes from an instance that did not release it.
//
// What remains: a process paused after it checked the lease and before it
// wrote the frame, for longer than the rest of the lease, writes that one
// frame on a connection the new holder may have replaced; and a process
// frozen (SIGSTOP) while it holds sockets keeps them open at the server,
// which replaces them when the new holder logs in. On resume the
// old holder closes them, and the actor takes the "replaced" that follows
// a lost lease for the hand-over it is (actors/connection, Deps.LeaseHeld):
// no alarm, no reconnect.
//
// # After an outage
//
// A tick that fails (Redis unreachable) leaves the instance's view of the
// members stale; once Redis answers again, the instance acquires nothing
// until its view has been fresh for Config.Warmup (1.5 ticks), so that
// every live instance has heartbeated and each takes its own share. An
// instance that comes back later gets its share handed over, MaxMoves a
// tick, once the membership settled. An account that came back to its
// previous owner after a hand-over stays there (sticky) only until the
// membership changes.
//
// # At scale
//
// A tick costs in proportion to the accounts this instance holds and
// backs up, not to all the fleet's accounts: the rendezvous assignment
// (one score per account and member) is computed again only when the
// members or the accounts change; a tick renews the held leases in one
// pipeline per 10,000 (store/redis.LeaseOptions.RenewBatch: each bounded by
// its own timeout, so that a slow Redis leaves some leases unrenewed for
// a tick rather than all of them), and every third tick it also reads the lease keys of the
// accounts for which this instance ranks second (and of those it handed
// over), so the fleet reads about one lease key per account every three
// ticks however many instances it has. Acquisitions go 1,000 to a round
// trip, and a tick stops taking more once half an interval has passed, so
// that the leases it took are renewed in time. cmd/fleetload --simulate
// runs many coordinators over a million accounts; BENCHMARKS.md has the
// figures and where one Redis stops.
//
// Package app wires it: the Coordinator's Owner sends the supervisor Own
// and Disown messages in batches (never waiting on an actor), and every
// connection dials through Sockets. It imports store/redis and events.
package fleet
