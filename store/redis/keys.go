package redis

import (
	"fmt"
	"strings"
)

// DefaultPrefix starts every key this package writes.
const DefaultPrefix = "wafleet"

// keys names the Redis keys under one prefix. Every per-account key carries
// the account id as its hash tag ({ACCT}) so that the device hash, the lease,
// the fencing counter and the prekeys of one account live in one Cluster
// slot and one Lua script may touch them all. The user mappings are keyed by
// user (a phone number or a LID), shared across accounts, each in its own
// slot; the settings hash is fleet-wide, in a slot of its own.
//
//	PREFIX:{ACCT}:device   hash: rec (codec bytes), fence, pn, lid, and while
//	                       a cross-slot mapping update is pending: xpn, xlid, sync
//	PREFIX:{ACCT}:lease    string "INSTANCE:FENCE.NONCE", PX ttl
//	PREFIX:{ACCT}:fence    counter of fencing tokens
//	PREFIX:{ACCT}:holder   instance that acquired the lease last; deleted
//	                       when it releases the lease
//	PREFIX:{ACCT}:prekeys  hash: KEYID (decimal) -> prekey record (store's
//	                       prekey codec), max -> largest key ID ever stored
//	PREFIX:{ACCT}:prekeys:pending
//	                       zset: KEYID of the keys not yet uploaded, scored by KEYID
//	PREFIX:{ACCT}:signal   hash: the account's Signal state, fields as
//	                       store.SessionKey, IdentityKey and SenderKeyKey
//	                       name them (signal.go)
//	PREFIX:{ACCT}:archive  zset: archive entry keys scored by archive time (µs)
//	PREFIX:{ACCT}:archive:KEY
//	                       hash: rec, reason, jid, prekeys (an archived device)
//	PREFIX:{ACCT}:archive:KEY:prekeys, PREFIX:{ACCT}:archive:KEY:prekeys:pending,
//	PREFIX:{ACCT}:archive:KEY:signal
//	                       the account's prekey and Signal keys, renamed into the entry
//	PREFIX:map:pn:{USER}   hash: ACCT -> lid user, "=" -> current lid user
//	PREFIX:map:lid:{USER}  hash: ACCT -> pn user, "=" -> current pn user
//	PREFIX:settings        hash: setting name -> value (fleet-wide)
//	PREFIX:{registry}:accounts
//	                       hash: account id -> registry record (store.EncodeAccount)
//	PREFIX:{registry}:version
//	                       counter of the registry's changes, published on
//	                       the pub/sub channel PREFIX:registry (registry.go)
//	PREFIX:epoch           random value; missing or changed = Redis lost data
//	PREFIX:members         zset: instance -> expiry (Redis server ms)
//	PREFIX:beats           hash: instance -> count of its heartbeats and
//	                       acquisitions (single node and Sentinel only)
//	PREFIX:ratelimit:NAME  hash: token bucket state
//	PREFIX:events          stream of account events: the outbox, one consumer
//	                       group per webhook endpoint (outbox.go)
//	{PREFIX:events}:trimmed
//	                       the newest entry trimmed from it
//	PREFIX:{outbox}:endpoints, PREFIX:{outbox}:dead, PREFIX:{outbox}:redrive:EP,
//	PREFIX:{outbox}:lock:EP
//	                       webhook endpoints, dead letters, redriven entries
//	                       and the deliverer of each endpoint (outbox.go)
//	PREFIX:{view}:accounts hash: ACCT -> "FENCE JSON", the account's view as
//	                       its owner published it (package fleet/view)
//	PREFIX:{view}:instances
//	                       hash: instance -> JSON of its lease count and TTL
//	PREFIX:inbox:{INSTANCE}
//	                       list: actions routed to that instance and the
//	                       replies to its own, expiring when unused
type keys struct{ p string }

func newKeys(prefix string) (keys, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if strings.ContainsAny(prefix, "{}*?[]\\ ") {
		return keys{}, fmt.Errorf("%w: prefix %q must not contain braces, glob characters or spaces", ErrConfig, prefix)
	}
	return keys{p: prefix}, nil
}

func (k keys) device(acct string) string  { return k.p + ":{" + acct + "}:device" }
func (k keys) lease(acct string) string   { return k.p + ":{" + acct + "}:lease" }
func (k keys) fence(acct string) string   { return k.p + ":{" + acct + "}:fence" }
func (k keys) holder(acct string) string  { return k.p + ":{" + acct + "}:holder" }
func (k keys) prekeys(acct string) string { return k.p + ":{" + acct + "}:prekeys" }
func (k keys) pending(acct string) string { return k.p + ":{" + acct + "}:prekeys:pending" }
func (k keys) signal(acct string) string  { return k.p + ":{" + acct + "}:signal" }
func (k keys) settings() string           { return k.p + ":settings" }
func (k keys) pn(user string) string      { return k.p + ":map:pn:{" + user + "}" }
func (k keys) lid(user string) string     { return k.p + ":map:lid:{" + user + "}" }
func (k keys) epoch() string              { return k.p + ":epoch" }
func (k keys) members() string            { return k.p + ":members" }
func (k keys) beats() string              { return k.p + ":beats" }
func (k keys) rate(name string) string    { return k.p + ":ratelimit:" + name }
func (k keys) events() string             { return k.p + ":events" }
func (k keys) registry() string           { return k.p + ":{registry}:accounts" }
func (k keys) registryVersion() string    { return k.p + ":{registry}:version" }
func (k keys) registryChannel() string    { return k.p + ":registry" }

// devicePattern matches every device hash (for SCAN).
func (k keys) devicePattern() string { return k.p + ":{*}:device" }

// accountOfDeviceKey returns the account of a device key, or "" when the key
// is not one.
func (k keys) accountOfDeviceKey(key string) string {
	rest, ok := strings.CutPrefix(key, k.p+":{")
	if !ok {
		return ""
	}
	acct, ok := strings.CutSuffix(rest, "}:device")
	if !ok || strings.ContainsAny(acct, "{}") {
		return ""
	}
	return acct
}

// slot returns the Redis Cluster hash slot of key: CRC16 (XMODEM) of the
// hash tag, or of the whole key without one, modulo 16384.
func slot(key string) uint16 {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % 16384
}

// ViewKeys name the keys of the fleet-wide view and of routed actions
// (package fleet/view) under a prefix, beside the members and lease keys
// it reads.
type ViewKeys struct{ k keys }

// NewViewKeys returns the keys under prefix (DefaultPrefix when empty).
func NewViewKeys(prefix string) (ViewKeys, error) {
	k, err := newKeys(prefix)
	return ViewKeys{k}, err
}

// Accounts is the hash of the published account views; Instances the
// hash of what each instance publishes about itself. They share a hash
// slot, so one script may write both.
func (v ViewKeys) Accounts() string  { return v.k.p + ":{view}:accounts" }
func (v ViewKeys) Instances() string { return v.k.p + ":{view}:instances" }

// Members is the membership zset (instance -> expiry, Redis server ms).
func (v ViewKeys) Members() string { return v.k.members() }

// Lease is the lease key of acct (its value names the holder:
// LeaseValue.Holder).
func (v ViewKeys) Lease(acct string) string { return v.k.lease(acct) }

// Inbox is the list of requests and replies routed to instance.
func (v ViewKeys) Inbox(instance string) string { return v.k.p + ":inbox:{" + instance + "}" }
