// Package redis is wafleet's fleet-mode storage on Redis (single node,
// Sentinel or Cluster, through go-redis's UniversalClient): the store.Store
// of devices with every write fenced by the account's lease (Store, Fenced,
// Bound), the per-instance membership heartbeat and account leases with
// fencing tokens (Leases), a fleet-wide connect-rate limiter (Limiter), the
// events.Publisher that appends account events to a Redis stream
// (StreamSink), and the persistence check run at start (CheckDurability).
//
// Package fleet (rendezvous hashing, rebalancing, the lease loop) and
// cmd/manager import it; it imports store and events. Keys are listed in
// keys.go; every per-account key carries the account as its hash tag.
package redis
