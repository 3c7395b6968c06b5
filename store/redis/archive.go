package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wafleet/wafleet/store"
)

// Archived devices (store.Store's Archive, ListArchive, RestoreArchived,
// PruneArchive). An entry lives in the account's slot, so the fenced
// device scripts (saveAtomic, saveDevice) move a device, its prekeys and
// its Signal state into an entry, or back, in one script:
//
//	PREFIX:{ACCT}:archive       zset: entry keys scored by archive time in µs
//	PREFIX:{ACCT}:archive:KEY   hash: rec, reason, jid, prekeys
//	PREFIX:{ACCT}:archive:KEY:prekeys[:pending], PREFIX:{ACCT}:archive:KEY:signal
//	                            the account's prekey and Signal keys, renamed
//
// Archive times are kept to the microsecond (the zset score is exact).

// Internal outcomes of the archive scripts; the callers retry on both.
var (
	errChanged     = errors.New("the live record changed meanwhile")
	errEntryExists = errors.New("an archive entry with that time exists")
)

func (k keys) archive(acct string) string { return k.p + ":{" + acct + "}:archive" }

func (k keys) archived(acct, key string) string { return k.p + ":{" + acct + "}:archive:" + key }

// archivePattern matches every archive index (for SCAN).
func (k keys) archivePattern() string { return k.p + ":{*}:archive" }

// accountOfArchiveKey returns the account of an archive index key, or ""
// when the key is not one.
func (k keys) accountOfArchiveKey(key string) string {
	rest, ok := strings.CutPrefix(key, k.p+":{")
	if !ok {
		return ""
	}
	acct, ok := strings.CutSuffix(rest, "}:archive")
	if !ok || strings.ContainsAny(acct, "{}") {
		return ""
	}
	return acct
}

// entryArgs are the archive part of a device script's keys and arguments.
type entryArgs struct {
	key    string    // entry key ("" for a save or delete)
	at     time.Time // archive time
	reason string
	jid    string
	expect []byte // the live record the caller read (nil: none)
}

func (a *entryArgs) keys(k keys, acct string) []string {
	key := a.key
	if key == "" {
		key = "-" // unused, but in the account's slot like the others
	}
	e := k.archived(acct, key)
	return []string{k.archive(acct), e, e + ":prekeys", e + ":prekeys:pending", e + ":signal"}
}

func (a *entryArgs) args() []any {
	return []any{a.key, a.at.UnixMicro(), a.reason, a.jid, a.expect}
}

// maxArchiveAttempts bounds the retries of an archive or restore whose live
// record changed meanwhile.
const maxArchiveAttempts = 16

// Archive implements store.Store as an administrative write (see Save).
func (s *Store) Archive(ctx context.Context, id, reason string) (store.ArchiveEntry, error) {
	return s.archiveDevice(ctx, id, reason, Lease{})
}

// RestoreArchived implements store.Store as an administrative write (see
// Save).
func (s *Store) RestoreArchived(ctx context.Context, id, key string) (store.ArchiveEntry, error) {
	return s.restore(ctx, id, key, Lease{})
}

func (s *Store) archiveDevice(ctx context.Context, id, reason string, l Lease) (store.ArchiveEntry, error) {
	if err := s.ready(ctx, "archive"); err != nil {
		return store.ArchiveEntry{}, err
	}
	if store.ValidateID(id) != nil {
		return store.ArchiveEntry{}, fmt.Errorf("redis: archive %q: %w", id, store.ErrNotFound)
	}
	if l.Value != "" && l.Account != id {
		return store.ArchiveEntry{}, fmt.Errorf("redis: archive %q with the lease of %q: %w", id, l.Account, store.ErrLeaseLost)
	}
	// Prekeys and Signal records still in the clear are sealed first: the
	// script moves them as they are.
	if err := s.resealPreKeys(ctx, id, l); err != nil {
		return store.ArchiveEntry{}, err
	}
	if err := s.resealSignal(ctx, id, l); err != nil {
		return store.ArchiveEntry{}, err
	}
	e := store.ArchiveEntry{ID: id, Reason: store.ArchiveReason(reason), ArchivedAt: time.Now().UTC().Truncate(time.Microsecond)}
	for range maxArchiveAttempts {
		cur, d, inClear, err := s.liveRecord(ctx, id)
		if err != nil {
			return store.ArchiveEntry{}, fmt.Errorf("redis: archive %q: %w", id, err)
		}
		if d == nil {
			return store.ArchiveEntry{}, fmt.Errorf("redis: archive %q: %w", id, store.ErrNotFound)
		}
		rec, err := s.sealed(d, cur)
		if err != nil {
			return store.ArchiveEntry{}, fmt.Errorf("redis: archive %q: %w", id, err)
		}
		e.JID, e.Key = d.JID, store.ArchiveKey(e.ArchivedAt)
		err = s.write(ctx, "archive", id, rec, "", "", l, &entryArgs{key: e.Key, at: e.ArchivedAt, reason: e.Reason, jid: e.JID, expect: cur})
		clear(rec)
		switch {
		case errors.Is(err, errEntryExists):
			e.ArchivedAt = e.ArchivedAt.Add(time.Microsecond)
		case errors.Is(err, errChanged):
		case err != nil:
			return store.ArchiveEntry{}, err
		default:
			s.afterSealing(inClear)
			if e.PreKeys, err = s.archivedPreKeys(ctx, id, e.Key); err != nil {
				return store.ArchiveEntry{}, fmt.Errorf("redis: archive %q: %w", id, err)
			}
			return e, nil
		}
	}
	return store.ArchiveEntry{}, fmt.Errorf("redis: archive %q: %w: the device kept changing", id, ErrProtocol)
}

// liveRecord reads the account's record and decodes it (nil, nil: none);
// the bool says it was stored in the clear.
func (s *Store) liveRecord(ctx context.Context, id string) ([]byte, *store.Device, bool, error) {
	ctx, cancel := withTimeout(ctx, s.timeout)
	defer cancel()
	rec, err := s.c.HGet(ctx, s.k.device(id), "rec").Bytes()
	if errors.Is(err, goredis.Nil) {
		return nil, nil, false, nil
	}
	if err != nil {
		return nil, nil, false, err
	}
	d, inClear, err := s.decode(id, rec)
	return rec, d, inClear, err
}

// decode decodes the record of id; inClear says its secrets were stored
// in the clear.
func (s *Store) decode(id string, rec []byte) (d *store.Device, inClear bool, err error) {
	if len(rec) > store.MaxRecordLen {
		return nil, false, fmt.Errorf("%w: record is %d bytes", store.ErrCorrupt, len(rec))
	}
	d, info, err := store.Decode(rec, s.sealer)
	if err != nil {
		return nil, false, err
	}
	if d.ID != id {
		return nil, false, fmt.Errorf("%w: record is stored under another id", store.ErrCorrupt)
	}
	return d, !info.Sealed, nil
}

// afterSealing asks for an AOF rewrite when a record stored in the clear
// was just written again sealed (see aofRewriter).
func (s *Store) afterSealing(wasInClear bool) {
	if wasInClear && s.sealer != nil {
		s.aof.request()
	}
}

// sealed returns the record of d as it must be stored: sealed with the
// store's Sealer (re-encoded when rec is in the clear), else rec itself.
func (s *Store) sealed(d *store.Device, rec []byte) ([]byte, error) {
	if s.sealer == nil {
		return slices.Clone(rec), nil
	}
	return store.Encode(d, s.sealer)
}

func (s *Store) archivedPreKeys(ctx context.Context, id, key string) (int, error) {
	ctx, cancel := withTimeout(ctx, s.timeout)
	defer cancel()
	n, err := s.c.HGet(ctx, s.k.archived(id, key), "prekeys").Int()
	if err != nil {
		return 0, fmt.Errorf("read the entry: %w", err)
	}
	return n, nil
}

func (s *Store) restore(ctx context.Context, id, key string, l Lease) (store.ArchiveEntry, error) {
	if err := s.ready(ctx, "restore"); err != nil {
		return store.ArchiveEntry{}, err
	}
	at, err := store.ParseArchiveKey(key)
	if err != nil || store.ValidateID(id) != nil {
		return store.ArchiveEntry{}, fmt.Errorf("redis: restore %q: no archive entry %q: %w", id, key, store.ErrNotFound)
	}
	if l.Value != "" && l.Account != id {
		return store.ArchiveEntry{}, fmt.Errorf("redis: restore %q with the lease of %q: %w", id, l.Account, store.ErrLeaseLost)
	}
	for range maxArchiveAttempts {
		e, rec, err := s.entry(ctx, id, key, at)
		if err != nil {
			return store.ArchiveEntry{}, fmt.Errorf("redis: restore %q: %w", id, err)
		}
		d, inClear, err := s.decode(id, rec)
		if err != nil {
			return store.ArchiveEntry{}, fmt.Errorf("redis: restore %q: archive entry %s: %w", id, key, err)
		}
		cur, now, _, err := s.liveRecord(ctx, id)
		if err != nil {
			return store.ArchiveEntry{}, fmt.Errorf("redis: restore %q: current device: %w", id, err)
		}
		if now.Paired() {
			return store.ArchiveEntry{}, fmt.Errorf("redis: restore %q: %w (%s): unlink it first", id, store.ErrPaired, now.JID)
		}
		if rec, err = s.sealed(d, rec); err != nil {
			return store.ArchiveEntry{}, fmt.Errorf("redis: restore %q: %w", id, err)
		}
		pn, lid := d.PNUser(), d.LIDUser()
		if pn == "" || lid == "" {
			pn, lid = "", ""
		}
		err = s.write(ctx, "restore", id, rec, pn, lid, l, &entryArgs{key: key, at: at, expect: cur})
		clear(rec)
		if err == nil {
			s.afterSealing(inClear)
		}
		if !errors.Is(err, errChanged) {
			return e, err
		}
	}
	return store.ArchiveEntry{}, fmt.Errorf("redis: restore %q: %w: the device kept changing", id, ErrProtocol)
}

// entry reads one archive entry, or fails with store.ErrNotFound.
func (s *Store) entry(ctx context.Context, id, key string, at time.Time) (store.ArchiveEntry, []byte, error) {
	ctx, cancel := withTimeout(ctx, s.timeout)
	defer cancel()
	v, err := s.c.HMGet(ctx, s.k.archived(id, key), "rec", "reason", "jid", "prekeys").Result()
	if err != nil {
		return store.ArchiveEntry{}, nil, err
	}
	rec, ok := v[0].(string)
	if !ok {
		return store.ArchiveEntry{}, nil, fmt.Errorf("no archive entry %s: %w", key, store.ErrNotFound)
	}
	return describe(id, key, at, v[1:]), []byte(rec), nil
}

// describe builds an entry from its reason, jid and prekeys fields.
func describe(id, key string, at time.Time, f []any) store.ArchiveEntry {
	e := store.ArchiveEntry{ID: id, Key: key, ArchivedAt: at}
	e.Reason, _ = f[0].(string)
	e.JID, _ = f[1].(string)
	n, _ := f[2].(string)
	e.PreKeys, _ = strconv.Atoi(n)
	return e
}

// ListArchive implements store.Backend: a SCAN of the archive indexes, then
// one pipeline of reads per account.
func (s *Store) ListArchive(ctx context.Context) ([]store.ArchiveEntry, error) {
	ctx, cancel, err := s.begin(ctx, "list archive")
	if err != nil {
		return nil, err
	}
	defer cancel()
	out := []store.ArchiveEntry{}
	err = s.forEachIndex(ctx, func(acct string, keys []string) error {
		pipe := s.c.Pipeline()
		cmds := make([]*goredis.SliceCmd, len(keys))
		for i, key := range keys {
			cmds[i] = pipe.HMGet(ctx, s.k.archived(acct, key), "reason", "jid", "prekeys")
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
		for i, key := range keys {
			at, err := store.ParseArchiveKey(key)
			if err != nil {
				return fmt.Errorf("%w: archive index of %q holds %q", store.ErrCorrupt, acct, key)
			}
			out = append(out, describe(acct, key, at, cmds[i].Val()))
		}
		return nil
	}, "-inf", "+inf")
	if err != nil {
		return nil, fmt.Errorf("redis: list archive: %w", err)
	}
	slices.SortFunc(out, func(a, b store.ArchiveEntry) int {
		if c := strings.Compare(a.ID, b.ID); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out, nil
}

// forEachIndex calls fn with every account that has archive entries scored
// within [min, max] and their keys.
func (s *Store) forEachIndex(ctx context.Context, fn func(acct string, keys []string) error, minScore, maxScore string) error {
	var mu sync.Mutex
	var idx []string
	scan := func(ctx context.Context, c goredis.Cmdable) error {
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, s.k.archivePattern(), 1000).Result()
			if err != nil {
				return err
			}
			mu.Lock()
			idx = append(idx, keys...)
			mu.Unlock()
			if next == 0 {
				return nil
			}
			cursor = next
		}
	}
	var err error
	if cc, ok := s.c.(*goredis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, m *goredis.Client) error { return scan(ctx, m) })
	} else {
		err = scan(ctx, s.c)
	}
	if err != nil {
		return err
	}
	slices.Sort(idx)
	for _, key := range slices.Compact(idx) {
		acct := s.k.accountOfArchiveKey(key)
		if acct == "" {
			continue
		}
		keys, err := s.c.ZRangeByScore(ctx, key, &goredis.ZRangeBy{Min: minScore, Max: maxScore}).Result()
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			if err := fn(acct, keys); err != nil {
				return err
			}
		}
	}
	return nil
}

// PruneArchive implements store.Backend.
func (s *Store) PruneArchive(ctx context.Context, before time.Time) (int, error) {
	ctx, cancel, err := s.begin(ctx, "prune archive")
	if err != nil {
		return 0, err
	}
	defer cancel()
	n := 0
	err = s.forEachIndex(ctx, func(acct string, keys []string) error {
		for _, key := range keys {
			at, err := store.ParseArchiveKey(key)
			if err == nil && !at.Before(before) {
				continue
			}
			e := s.k.archived(acct, key)
			removed, err := archiveDrop.Run(ctx, s.c, []string{s.k.archive(acct), e, e + ":prekeys", e + ":prekeys:pending", e + ":signal"}, key).Int()
			if err != nil {
				return fmt.Errorf("drop %s of %q: %w", key, acct, err)
			}
			n += removed
		}
		return nil
	}, "-inf", strconv.FormatInt(before.UnixMicro(), 10))
	if err != nil {
		return n, fmt.Errorf("redis: prune archive: %w", err)
	}
	return n, nil
}

func (v *view) Archive(ctx context.Context, id, reason string) (store.ArchiveEntry, error) {
	if err := v.check("archive"); err != nil {
		return store.ArchiveEntry{}, err
	}
	l, ok := v.lease(id)
	if !ok {
		return store.ArchiveEntry{}, fmt.Errorf("redis: archive %q: no lease held: %w", id, store.ErrLeaseLost)
	}
	return v.s.archiveDevice(ctx, id, reason, l)
}

func (v *view) RestoreArchived(ctx context.Context, id, key string) (store.ArchiveEntry, error) {
	if err := v.check("restore"); err != nil {
		return store.ArchiveEntry{}, err
	}
	l, ok := v.lease(id)
	if !ok {
		return store.ArchiveEntry{}, fmt.Errorf("redis: restore %q: no lease held: %w", id, store.ErrLeaseLost)
	}
	return v.s.restore(ctx, id, key, l)
}

func (v *view) ListArchive(ctx context.Context) ([]store.ArchiveEntry, error) {
	if err := v.check("list archive"); err != nil {
		return nil, err
	}
	return v.s.ListArchive(ctx)
}

func (v *view) PruneArchive(ctx context.Context, before time.Time) (int, error) {
	if err := v.check("prune archive"); err != nil {
		return 0, err
	}
	return v.s.PruneArchive(ctx, before)
}
