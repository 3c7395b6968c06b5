package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wafleet/wafleet/store"
)

// Errors of this package. Store errors use the sentinels of package store
// (store.ErrNotFound, store.ErrLeaseLost, ...); these are the others.
var (
	// ErrConfig: an option is invalid.
	ErrConfig = errors.New("redis: invalid configuration")
	// ErrProtocol: Redis answered something this package did not expect.
	ErrProtocol = errors.New("redis: unexpected reply")
	// ErrEpochChanged: Redis lost its data (the epoch marker vanished or
	// changed); leases are not acquired until the grace period has passed.
	ErrEpochChanged = errors.New("redis: Redis lost its data; waiting out the grace period")
	// ErrNotHeld: the lease is not held by this instance.
	ErrNotHeld = errors.New("redis: lease not held by this instance")
	// ErrClosed: the Leases or sink was used after Close.
	ErrClosed = errors.New("redis: closed")
)

// DefaultTimeout bounds every Redis call that has no earlier deadline.
const DefaultTimeout = 5 * time.Second

// Options configures New.
type Options struct {
	// Prefix starts every key. Default "wafleet". Tests use a unique one.
	Prefix string
	// Sealer seals the device secrets before they reach Redis and opens
	// them on load. Default nil: secrets in the clear.
	Sealer store.Sealer
	// Timeout bounds each call when the caller's context has no earlier
	// deadline. Default 5s.
	Timeout time.Duration
	// SplitWrites writes the device and the cross-account user mapping in
	// two steps (see Store). Default: true for a *ClusterClient, false
	// otherwise (then both are written by one atomic script).
	SplitWrites *bool
	// Logger receives the outcome of the AOF rewrites that follow the
	// sealing of records written in the clear. Default: discarded.
	Logger *slog.Logger
	// OutboxHistory is how many of the latest outbox entries the stream
	// keeps once every endpoint has them (outbox.go). Default
	// store.DefaultOutboxHistory.
	OutboxHistory int
	// OutboxLockTTL is how long an endpoint's queue stays with a
	// deliverer that stopped calling Next (outbox.go). Default
	// DefaultOutboxLockTTL.
	OutboxLockTTL time.Duration
	// Now is the clock of the idempotency keys' retention
	// (store.SendKeyTTL). Default time.Now.
	Now func() time.Time
}

// Store is store.Store on Redis. The account's device lives in one hash
// (PREFIX:{ACCT}:device) beside its lease and fencing counter, so every write
// is one Lua script that checks the lease first: a write whose lease is no
// longer the account's current one fails with store.ErrLeaseLost and
// changes nothing.
//
// Writes through the Store itself are administrative: they succeed only
// while no instance holds the account's lease. Connection actors write
// through Fenced (one lease) or Bound (whatever lease a *Leases holds).
//
// The LID <-> PN mapping is keyed by user and shared by accounts
// (PREFIX:map:pn:{USER}, PREFIX:map:lid:{USER}: a field per account plus the
// current answer). On a single node or Sentinel, the device and the mapping
// are written by one script, atomically (the store.Store contract in full).
// On a Cluster those keys live in other slots, so a write is split: the
// fenced device script records which users still need cleaning (fields
// xpn/xlid and a sync nonce), then the mapping hashes are updated by
// idempotent per-key scripts, then the marker is cleared. A failure after
// the first step leaves the device saved (Save returns nil) and the
// mapping lagging until the next Save, Delete or Load of that account, or
// Reconcile, finishes it.
//
// An account's one-time prekeys are written the same way, by fenced
// scripts on keys in the device's slot (prekeys.go); Delete drops them in
// the device's script. Settings are one fleet-wide hash, not fenced.
//
// Close marks the Store closed; it does not close the client, which the
// caller owns (it is shared with Leases, Limiter and the event sink).
type Store struct {
	c       goredis.UniversalClient
	k       keys
	sealer  store.Sealer
	timeout time.Duration
	split   bool
	aof     *aofRewriter
	closed  atomic.Bool

	outboxHistory int
	outboxLockTTL time.Duration
	now           func() time.Time // the clock of store.SendKeyTTL
	outbox        outboxState
}

var (
	_ store.Backend = (*Store)(nil)
	_ store.LIDMap  = (*Store)(nil)
)

// New returns a Store on c.
func New(c goredis.UniversalClient, o Options) (*Store, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: nil client", ErrConfig)
	}
	k, err := newKeys(o.Prefix)
	if err != nil {
		return nil, err
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	_, cluster := c.(*goredis.ClusterClient)
	split := cluster
	if o.SplitWrites != nil {
		split = *o.SplitWrites
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Store{
		c: c, k: k, sealer: o.Sealer, timeout: o.Timeout, split: split, aof: &aofRewriter{c: c, logger: o.Logger},
		outboxHistory: o.OutboxHistory, outboxLockTTL: o.OutboxLockTTL, now: o.Now,
	}, nil
}

// ready checks the context and the closed flag.
func (s *Store) ready(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redis: %s: %w", op, err)
	}
	if s.closed.Load() {
		return fmt.Errorf("redis: %s: %w", op, store.ErrClosed)
	}
	return nil
}

// begin checks the context and the closed flag and bounds ctx.
func (s *Store) begin(ctx context.Context, op string) (context.Context, context.CancelFunc, error) {
	if err := s.ready(ctx, op); err != nil {
		return nil, nil, err
	}
	ctx, cancel := withTimeout(ctx, s.timeout)
	return ctx, cancel, nil
}

// Load implements store.Store.
func (s *Store) Load(ctx context.Context, id string) (*store.Device, error) {
	d, _, err := s.LoadRecord(ctx, id)
	return d, err
}

// LoadRecord is Load that also says how the record is stored;
// info.Sealed false with a Sealer configured means its owner should save it
// again (through its fenced view) to seal the secrets.
func (s *Store) LoadRecord(ctx context.Context, id string) (*store.Device, store.RecordInfo, error) {
	ctx, cancel, err := s.begin(ctx, "load")
	if err != nil {
		return nil, store.RecordInfo{}, err
	}
	defer cancel()
	if store.ValidateID(id) != nil {
		return nil, store.RecordInfo{}, fmt.Errorf("redis: load %q: %w", id, store.ErrNotFound)
	}
	v, err := s.c.HMGet(ctx, s.k.device(id), "rec", "xpn", "xlid", "sync", "pn", "lid").Result()
	if err != nil {
		return nil, store.RecordInfo{}, fmt.Errorf("redis: load %q: %w", id, err)
	}
	f := make([]string, len(v))
	for i, e := range v {
		f[i], _ = e.(string)
	}
	if f[1] != "" || f[2] != "" {
		// A split write did not finish; finish it (best effort).
		_ = s.finishSplit(ctx, id, f[4], f[5], f[1], f[2], f[3])
	}
	if v[0] == nil {
		return nil, store.RecordInfo{}, fmt.Errorf("redis: load %q: %w", id, store.ErrNotFound)
	}
	rec := []byte(f[0])
	defer clear(rec)
	if len(rec) > store.MaxRecordLen {
		return nil, store.RecordInfo{}, fmt.Errorf("redis: load %q: %w: record is %d bytes", id, store.ErrCorrupt, len(rec))
	}
	d, info, err := store.Decode(rec, s.sealer)
	if err != nil {
		return nil, info, fmt.Errorf("redis: load %q: %w", id, err)
	}
	if d.ID != id {
		return nil, info, fmt.Errorf("redis: load %q: %w: record is stored under another id", id, store.ErrCorrupt)
	}
	return d, info, nil
}

// Save implements store.Store as an administrative write: it fails with
// store.ErrLeaseLost while any instance holds the account's lease.
func (s *Store) Save(ctx context.Context, d *store.Device) error {
	rec, err := s.encode(d)
	if err != nil {
		return err
	}
	defer clear(rec)
	return s.save(ctx, d, rec, Lease{})
}

// Delete implements store.Store as an administrative write (see Save). The
// device and its prekeys go in one script, in both write modes.
func (s *Store) Delete(ctx context.Context, id string) error {
	return s.delete(ctx, id, Lease{})
}

// encode validates d and encodes it for save, in one store.Encode: the
// three X25519 derivations that check its public halves run once per save.
// An invalid device's error does not name its id, which may be the invalid
// part.
func (s *Store) encode(d *store.Device) ([]byte, error) {
	rec, err := store.Encode(d, s.sealer)
	switch {
	case errors.Is(err, store.ErrInvalidDevice):
		return nil, fmt.Errorf("redis: save: %w", err)
	case err != nil:
		return nil, fmt.Errorf("redis: save %q: %w", d.ID, err)
	}
	return rec, nil
}

// save writes rec, the record encode made of d, under l (none for an
// administrative write).
func (s *Store) save(ctx context.Context, d *store.Device, rec []byte, l Lease) error {
	if l.Value != "" && l.Account != d.ID {
		return fmt.Errorf("redis: save %q with the lease of %q: %w", d.ID, l.Account, store.ErrLeaseLost)
	}
	pn, lid := d.PNUser(), d.LIDUser()
	if pn == "" || lid == "" {
		pn, lid = "", ""
	}
	return s.write(ctx, "save", d.ID, rec, pn, lid, l, nil)
}

func (s *Store) delete(ctx context.Context, id string, l Lease) error {
	if store.ValidateID(id) != nil {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("redis: delete: %w", err)
		}
		if s.closed.Load() {
			return fmt.Errorf("redis: delete: %w", store.ErrClosed)
		}
		return nil // nothing can be stored under an invalid id
	}
	if l.Value != "" && l.Account != id {
		return fmt.Errorf("redis: delete %q with the lease of %q: %w", id, l.Account, store.ErrLeaseLost)
	}
	return s.write(ctx, "delete", id, nil, "", "", l, nil)
}

// write runs a fenced save, delete, archive or restore (arch names the
// archive entry of the last two; nil for the others).
func (s *Store) write(ctx context.Context, op, acct string, rec []byte, pn, lid string, l Lease, arch *entryArgs) error {
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return err
	}
	defer cancel()
	token := l.Token.String()
	if arch == nil {
		arch = &entryArgs{}
	}
	if s.split {
		return s.writeSplit(ctx, op, acct, rec, pn, lid, string(l.Value), token, arch)
	}
	for range 16 { // a concurrent writer of the same account changed the mapping users
		old, err := s.c.HMGet(ctx, s.k.device(acct), "pn", "lid").Result()
		if err != nil {
			return fmt.Errorf("redis: %s %q: %w", op, acct, err)
		}
		opn, _ := old[0].(string)
		olid, _ := old[1].(string)
		keys := []string{
			s.k.device(acct), s.k.lease(acct), s.k.fence(acct),
			s.k.pn(orDash(pn)), s.k.lid(orDash(lid)), s.k.pn(orDash(opn)), s.k.lid(orDash(olid)),
			s.k.prekeys(acct), s.k.pending(acct),
		}
		keys = append(keys, arch.keys(s.k, acct)...)
		keys = append(keys, s.k.signal(acct))
		args := append([]any{string(l.Value), token, op, rec, acct, pn, lid, opn, olid}, arch.args()...)
		res, err := replyStrings(saveAtomic.Run(ctx, s.c, keys, args...))
		if err != nil {
			return fmt.Errorf("redis: %s %q: %w", op, acct, err)
		}
		if res[0] == "retry" {
			continue
		}
		return s.outcome(op, acct, res)
	}
	return fmt.Errorf("redis: %s %q: %w: the mapping kept changing under concurrent writes", op, acct, ErrProtocol)
}

func orDash(u string) string {
	if u == "" {
		return "-"
	}
	return u
}

func (s *Store) outcome(op, acct string, res []string) error {
	switch res[0] {
	case "ok":
		return nil
	case "lost":
		return fmt.Errorf("redis: %s %q: %w", op, acct, store.ErrLeaseLost)
	case "held":
		return fmt.Errorf("redis: %s %q: the account is leased by an instance, write through its lease: %w", op, acct, store.ErrLeaseLost)
	case "changed":
		return fmt.Errorf("redis: %s %q: %w", op, acct, errChanged)
	case "exists":
		return fmt.Errorf("redis: %s %q: %w", op, acct, errEntryExists)
	case "noentry":
		return fmt.Errorf("redis: %s %q: no such archive entry: %w", op, acct, store.ErrNotFound)
	}
	return fmt.Errorf("redis: %s %q: %w: script answered %q", op, acct, ErrProtocol, res[0])
}

func (s *Store) writeSplit(ctx context.Context, op, acct string, rec []byte, pn, lid, value, token string, arch *entryArgs) error {
	syncID := nonce()
	keys := []string{s.k.device(acct), s.k.lease(acct), s.k.fence(acct), s.k.prekeys(acct), s.k.pending(acct)}
	keys = append(keys, arch.keys(s.k, acct)...)
	keys = append(keys, s.k.signal(acct))
	args := append([]any{value, token, op, rec, pn, lid, syncID}, arch.args()...)
	res, err := replyStrings(saveDevice.Run(ctx, s.c, keys, args...))
	if err != nil {
		return fmt.Errorf("redis: %s %q: %w", op, acct, err)
	}
	if err := s.outcome(op, acct, res); err != nil {
		return err
	}
	if len(res) != 3 {
		return fmt.Errorf("redis: %s %q: %w: script answered %d values", op, acct, ErrProtocol, len(res))
	}
	// The device is committed; a failure from here on leaves the mapping
	// to the next reconciliation, and the write has succeeded.
	_ = s.finishSplit(ctx, acct, pn, lid, res[1], res[2], syncID)
	return nil
}

// finishSplit brings the mapping hashes in line with a device's current
// users and removes it from the pending old ones, then clears the marker.
func (s *Store) finishSplit(ctx context.Context, acct, pn, lid, xpn, xlid, syncID string) error {
	var calls []*call
	if pn != "" && lid != "" {
		calls = append(calls,
			&call{script: mapSet, keys: []string{s.k.pn(pn)}, args: []any{acct, lid}},
			&call{script: mapSet, keys: []string{s.k.lid(lid)}, args: []any{acct, pn}})
	}
	for _, u := range strings.Fields(xpn) {
		calls = append(calls, &call{script: mapDel, keys: []string{s.k.pn(u)}, args: []any{acct}})
	}
	for _, u := range strings.Fields(xlid) {
		calls = append(calls, &call{script: mapDel, keys: []string{s.k.lid(u)}, args: []any{acct}})
	}
	if err := runCalls(ctx, s.c, calls, nil); err != nil {
		return err
	}
	for _, cl := range calls {
		if err := cl.cmd.Err(); err != nil {
			return err
		}
	}
	if syncID == "" {
		return nil
	}
	return syncDone.Run(ctx, s.c, []string{s.k.device(acct)}, syncID).Err()
}

// Reconcile finishes every pending split mapping update (Cluster mode) and
// returns how many accounts it repaired. Run it at start and now and then;
// on a single node there is never anything to do.
func (s *Store) Reconcile(ctx context.Context) (int, error) {
	ctx, cancel, err := s.begin(ctx, "reconcile")
	if err != nil {
		return 0, err
	}
	defer cancel()
	keys, err := s.scanDevices(ctx)
	if err != nil {
		return 0, fmt.Errorf("redis: reconcile: %w", err)
	}
	n := 0
	for _, key := range keys {
		acct := s.k.accountOfDeviceKey(key)
		v, err := s.c.HMGet(ctx, key, "pn", "lid", "xpn", "xlid", "sync").Result()
		if err != nil {
			return n, fmt.Errorf("redis: reconcile %q: %w", acct, err)
		}
		f := make([]string, len(v))
		for i, e := range v {
			f[i], _ = e.(string)
		}
		if f[2] == "" && f[3] == "" {
			continue
		}
		if err := s.finishSplit(ctx, acct, f[0], f[1], f[2], f[3], f[4]); err != nil {
			return n, fmt.Errorf("redis: reconcile %q: %w", acct, err)
		}
		n++
	}
	return n, nil
}

// scanDevices returns the keys of every device hash (on every master of a
// Cluster).
func (s *Store) scanDevices(ctx context.Context) ([]string, error) {
	var mu sync.Mutex
	var out []string
	scan := func(ctx context.Context, c goredis.Cmdable) error {
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, s.k.devicePattern(), 1000).Result()
			if err != nil {
				return err
			}
			mu.Lock()
			for _, k := range keys {
				if s.k.accountOfDeviceKey(k) != "" {
					out = append(out, k)
				}
			}
			mu.Unlock()
			if next == 0 {
				return nil
			}
			cursor = next
		}
	}
	if cc, ok := s.c.(*goredis.ClusterClient); ok {
		err := cc.ForEachMaster(ctx, func(ctx context.Context, m *goredis.Client) error { return scan(ctx, m) })
		return out, err
	}
	return out, scan(ctx, s.c)
}

// IDs implements store.Backend: a SCAN of the device hashes (on every master
// of a Cluster), so it costs one round trip per 1000 keys of the database.
func (s *Store) IDs(ctx context.Context) ([]string, error) {
	ctx, cancel, err := s.begin(ctx, "list ids")
	if err != nil {
		return nil, err
	}
	defer cancel()
	keys, err := s.scanDevices(ctx)
	if err != nil {
		return nil, fmt.Errorf("redis: list ids: %w", err)
	}
	// Tombstones of split deletes have no record: leave them out.
	pipe := s.c.Pipeline()
	cmds := make([]*goredis.BoolCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.HExists(ctx, k, "rec")
	}
	if len(keys) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("redis: list ids: %w", err)
		}
	}
	ids := []string{}
	for i, k := range keys {
		if cmds[i].Val() {
			ids = append(ids, s.k.accountOfDeviceKey(k))
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// PNForLID implements store.LIDMap.
func (s *Store) PNForLID(ctx context.Context, lidUser string) (string, error) {
	return s.lookup(ctx, s.k.lid, lidUser, "pn for lid")
}

// LIDForPN implements store.LIDMap.
func (s *Store) LIDForPN(ctx context.Context, pnUser string) (string, error) {
	return s.lookup(ctx, s.k.pn, pnUser, "lid for pn")
}

func (s *Store) lookup(ctx context.Context, key func(string) string, user, op string) (string, error) {
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return "", err
	}
	defer cancel()
	if user == "" || strings.ContainsAny(user, "{}") {
		return "", fmt.Errorf("redis: %s %q: %w", op, user, store.ErrNotFound)
	}
	v, err := s.c.HGet(ctx, key(user), "=").Result()
	if errors.Is(err, goredis.Nil) {
		return "", fmt.Errorf("redis: %s %q: %w", op, user, store.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("redis: %s %q: %w", op, user, err)
	}
	return v, nil
}

// Close implements store.Backend. It is idempotent and leaves the client open.
func (s *Store) Close() error {
	s.closed.Store(true)
	return nil
}

// Fenced returns a store.Backend for the holder of lease l: Save and Delete
// of l.Account succeed only while l is the account's current lease (and no
// newer token has written the device); otherwise they fail with
// store.ErrLeaseLost and change nothing. Writes of other accounts fail the
// same way. Reads are not fenced; the mapping (store.LIDMap) is read from s
// itself. Closing the view does not close s.
func (s *Store) Fenced(l Lease) store.Backend {
	return &view{s: s, lease: func(string) (Lease, bool) { return l, l.Value != "" }}
}

// Bound returns a store.Backend that fences every write with the lease m
// currently holds for the device's account, or fails with
// store.ErrLeaseLost when m holds none. One Bound store can be shared by
// all the connection actors of an instance.
func (s *Store) Bound(m *Leases) store.Backend {
	return &view{s: s, lease: m.Get}
}

type view struct {
	s      *Store
	lease  func(acct string) (Lease, bool)
	closed atomic.Bool
}

func (v *view) check(op string) error {
	if v.closed.Load() {
		return fmt.Errorf("redis: %s: %w", op, store.ErrClosed)
	}
	return nil
}

// Load implements store.Store. A record written before the store had a
// Sealer is saved again here, sealed, under this instance's lease, and so
// are the account's prekey, session and sender key records still in the
// clear: the owner of an account migrates it the first time it loads it
// (best effort; a failed migration is retried at the next load as long as
// the device record is the one in the clear). A migration is followed by a
// rewrite of Redis's AOF in the background (aofRewriter), which drops the
// old values from it.
func (v *view) Load(ctx context.Context, id string) (*store.Device, error) {
	if err := v.check("load"); err != nil {
		return nil, err
	}
	d, info, err := v.s.LoadRecord(ctx, id)
	if err != nil {
		return nil, err
	}
	if v.s.sealer != nil && !info.Sealed {
		// The prekeys and the Signal state go first and the device only
		// once they are sealed:
		// the device record in the clear is what makes the next load try
		// again. A failure here leaves the migration to that next load.
		if l, ok := v.lease(id); ok && v.s.resealPreKeys(ctx, id, l) == nil && v.s.resealSignal(ctx, id, l) == nil && v.Save(ctx, d) == nil {
			v.s.aof.request()
		}
	}
	return d, nil
}

func (v *view) Save(ctx context.Context, d *store.Device) error {
	if err := v.check("save"); err != nil {
		return err
	}
	rec, err := v.s.encode(d)
	if err != nil {
		return err
	}
	defer clear(rec)
	l, ok := v.lease(d.ID)
	if !ok {
		return fmt.Errorf("redis: save %q: no lease held: %w", d.ID, store.ErrLeaseLost)
	}
	return v.s.save(ctx, d, rec, l)
}

func (v *view) Delete(ctx context.Context, id string) error {
	if err := v.check("delete"); err != nil {
		return err
	}
	l, ok := v.lease(id)
	if !ok {
		return fmt.Errorf("redis: delete %q: no lease held: %w", id, store.ErrLeaseLost)
	}
	return v.s.delete(ctx, id, l)
}

func (v *view) IDs(ctx context.Context) ([]string, error) {
	if err := v.check("list ids"); err != nil {
		return nil, err
	}
	return v.s.IDs(ctx)
}

func (v *view) Close() error {
	v.closed.Store(true)
	return nil
}
