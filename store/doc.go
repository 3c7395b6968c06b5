// Package store defines the Device (everything a linked WhatsApp companion
// device must persist: its key material and, once paired, its JIDs, account
// record and the primary's identity key), the storage interfaces (store.go:
// Store, what an account's actors need: Devices by account id together with
// the LID <-> phone-number user mapping, each account's one-time Signal
// prekeys and the archive; Backend, the whole store a process opens, which
// adds listing, archive pruning, fleet-wide settings and Close; LIDMap, the
// small interface that reads the mapping back, as the reference client keeps
// its LID store apart), the versioned record encodings shared by every
// store (codec.go for devices, prekey_codec.go for prekeys, both with
// optional AES-256-GCM sealing of the private keys at rest), and the
// embedded Backend on a single bbolt file (OpenBolt, bolt_open.go: an
// existing file that is not a store is an error, never replaced by a new
// store).
//
// Sealing a store written without a key (BoltStore.Reseal) seals its
// records and then compacts the file into a fresh one renamed over it
// (bolt_compact.go): bbolt writes copy-on-write, so the old pages, with
// the secrets in the clear, would otherwise stay in the file. A meta key
// records that a file holds no plaintext, so that a clean file is not
// rewritten at every start.
//
// One-time prekeys are stored beside the device, never in the Device value
// (812 keys would weigh about 50 KB per account in memory): the connection
// actor counts them after login (PreKeyCounts), tops them up (AddPreKeys,
// PreKeysToUpload, MarkPreKeysUploaded); PreKey and RemovePreKey are for
// the Signal layer to come, which looks a key up when a peer starts a
// session with it and removes it once used. In the bbolt file they
// live in the "prekeys" bucket, one sub-bucket per account
// (bolt_prekeys.go); settings live in the "settings" bucket. Delete wipes
// an account's prekeys with its device.
//
// The Signal protocol state of each account (signal.go: SignalStore, which
// Backend includes and Store does not, so the actors' device-only fakes
// need none of it) is kept beside the device too: sessions and sender keys
// as the signal package's stored forms, opaque here (this package does not
// import signal) and sealed like private keys (EncodeSignal binds a sealed
// record to its account and key), the peers' identity keys in the clear
// (they are public), trusted on first use: ApplySignal reports a changed
// identity instead of refusing it. Peers are "USER.DOMAIN:DEVICE"
// (PeerAddress). ApplySignal writes a whole batch (a session, the
// identity, the one-time prekey consumed, and the stanza's message event
// for the outbox) in one transaction, for the receive path to call before
// it acknowledges the stanza. The bbolt store commits concurrent
// ApplySignal, Append and ClaimSend calls of many accounts in one
// transaction, one fsync for all (group commit, bolt_commit.go: no timer,
// a lone call commits at once). In the bbolt file the state lives in the
// "signal" bucket, one sub-bucket per account
// (bolt_signal.go); Delete drops it, Archive moves it into the entry and
// RestoreArchived puts it back, like the prekeys.
//
// The idempotency keys of sends (sendlog.go: SendLog, in Backend) live in
// the same per-account Signal state as "m:KEY" entries ("UNIX ID", not
// sealed: they hold no secret): ClaimSend records a key once, fenced like
// a device write, and a claim of a key recorded less than SendKeyTTL ago
// returns the first message's ID instead; SentWith reads a live key
// without claiming it (unfenced). They go with the Signal state
// on Delete and Archive. They are kept SendKeyTTL (24 h, the window in
// which a caller may retry; the stores' Now option is its clock): each
// fresh claim also deletes, in the same write, the expired entries among
// the next SendPruneBatch keys of the account, walked by a cursor kept in
// the same state ("p:m": a bbolt key, a Redis HSCAN cursor), so an account
// holds about the keys of its last 24 h and never loses a live one.
//
// A server-initiated wipe archives instead of deleting (archive.go):
// Archive moves the device, its prekeys and its Signal state into an
// archive entry keyed by account and time, sealed like live records;
// ListArchive describes the entries without secrets, RestoreArchived puts one back over an unpaired
// device (never over a paired one), PruneArchive drops entries past the
// retention. In the bbolt file they live in the "archive" bucket
// (bolt_archive.go).
//
// The outbox (outbox.go: Outbox) is the durable log of account events that
// webhooks deliver from and event streams resume from, with a queue per
// webhook endpoint, dead letters and the endpoints defined through the
// API (their secrets sealed like private keys). In the bbolt file it lives
// in the "outbox", "outbox_queues", "outbox_dead" and "endpoints" buckets
// (bolt_outbox.go): Append writes a batch to the log and every open queue
// in one transaction, Next remembers in memory what it handed out (after
// a restart every unacknowledged entry is due again), and the log keeps
// the entries a queue still holds plus the latest BoltOptions.OutboxHistory
// (default 10,000). The limits and the endpoint encoding shared with the
// Redis store are in outbox_codec.go.
//
// The account registry (registry.go, Registry) is the list of accounts
// a fleet runs: the YAML file's (SourceConfig, kept equal to the file by
// SeedAccounts) and those created through the API (SourceAPI). A record's
// proxy may carry credentials and is sealed like a device's secrets. In the
// bbolt file it lives in the "accounts" bucket (bolt_registry.go).
//
// The actors, the API, package app and webversion import it; the Redis
// store (store/redis) implements Store. It imports nothing else of this
// module: keys are plain byte arrays and JIDs are strings in their canonical
// form ("15551234567:5@s.whatsapp.net", "123456789012345:5@lid").
//
// Secrets never appear in errors or logs: Device, KeyPair, SignedPreKey and
// PreKey print and log without key bytes, and validation errors name the
// field or the prekey ID, not a value. Every Store must pass the contract
// tests in store/storetest, every Outbox those of storetest.RunOutbox.
package store
