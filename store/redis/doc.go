// Package redis is wafleet's fleet-mode storage on Redis (single node,
// Sentinel or Cluster, through go-redis's UniversalClient): the store.Store
// of devices, their one-time prekeys, their Signal state and the fleet-wide
// settings, with every device, prekey and Signal write fenced by the account's lease (Store, Fenced,
// Bound), the per-instance membership heartbeat and account leases with
// fencing tokens (Leases), a fleet-wide connect-rate limiter (Limiter), the
// persistence check run at start (CheckDurability), the hook a Cluster
// client needs to find a promoted replica (FollowFailovers, cluster.go) and
// the AOF rewrite that follows the sealing of records written in the clear
// (RewriteAOF, aof.go).
//
// An account's prekeys live in PREFIX:{ACCT}:prekeys (records by key ID)
// and PREFIX:{ACCT}:prekeys:pending (IDs not yet uploaded), and its Signal
// state (store.SignalStore: sessions, peer identities, sender keys) in the
// PREFIX:{ACCT}:signal hash (signal.go), all in the device's hash slot so
// that one script checks the lease and writes them (ApplySignal, with the
// one-time prekey it consumed, is one script, one round trip); settings
// live in the PREFIX:settings hash and are not fenced. Archived devices
// (archive.go) live in the account's slot too, so that archiving and
// restoring are fenced device writes of one script each. The account
// registry (registry.go) is one hash with a change counter, not fenced;
// every change is announced on a pub/sub channel (WatchAccounts).
//
// ViewKeys names the keys of the fleet-wide view (the published account
// views, the instance records, each instance's inbox of routed actions),
// which package fleet/view reads and writes itself.
//
// The outbox (outbox.go, store.Outbox) is the PREFIX:events stream of
// account events, with a consumer group per webhook endpoint, one
// deliverer per endpoint at a time (a lock renewed by Next), dead letters
// and the endpoints defined through the API, their secrets sealed.
//
// Package fleet (rendezvous hashing, rebalancing, the lease loop),
// fleet/view and package app import it; it imports store. Keys are listed in
// keys.go; every per-account key carries the account as its hash tag.
package redis
