package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wafleet/wafleet/store"
)

// One-time prekeys live beside the device in its hash slot (keys.go): a hash
// of records by decimal key ID with the "max" counter, and a zset of the IDs
// not yet uploaded, so that PreKeysToUpload reads the first n in ID order
// and MarkPreKeysUploaded is one ZREMRANGEBYSCORE. Writes are Lua scripts
// fenced like device writes: through the Store they are administrative (no
// instance may hold the lease), through Fenced and Bound they need the
// account's current lease, else store.ErrLeaseLost and nothing changes.
// Private keys are sealed with the Store's Sealer before they leave the
// process.

// resealChunk bounds the records one reseal script replaces.
const resealChunk = 512

// AddPreKeys implements store.Store as an administrative write (see Save).
func (s *Store) AddPreKeys(ctx context.Context, id string, keys []store.PreKey) error {
	return s.addPreKeys(ctx, id, keys, Lease{})
}

// MarkPreKeysUploaded implements store.Store as an administrative write.
func (s *Store) MarkPreKeysUploaded(ctx context.Context, id string, upTo uint32) error {
	return s.markPreKeys(ctx, id, upTo, Lease{})
}

// RemovePreKey implements store.Store as an administrative write.
func (s *Store) RemovePreKey(ctx context.Context, id string, keyID uint32) error {
	return s.removePreKey(ctx, id, keyID, Lease{})
}

// preKeyWrite runs one fenced prekey script on account acct and returns its
// reply unless that says the lease was lost or held.
func (s *Store) preKeyWrite(ctx context.Context, op, acct string, l Lease, script *goredis.Script, args ...any) ([]string, error) {
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return nil, err
	}
	defer cancel()
	if l.Value != "" && l.Account != acct {
		return nil, fmt.Errorf("redis: %s %q with the lease of %q: %w", op, acct, l.Account, store.ErrLeaseLost)
	}
	keys := []string{s.k.device(acct), s.k.lease(acct), s.k.fence(acct), s.k.prekeys(acct), s.k.pending(acct)}
	argv := make([]any, 0, 2+len(args))
	argv = append(argv, string(l.Value), l.Token.String())
	argv = append(argv, args...)
	res, err := replyStrings(script.Run(ctx, s.c, keys, argv...))
	if err != nil {
		return nil, fmt.Errorf("redis: %s %q: %w", op, acct, err)
	}
	if len(res) == 0 {
		return nil, fmt.Errorf("redis: %s %q: %w: empty script reply", op, acct, ErrProtocol)
	}
	if res[0] == "lost" || res[0] == "held" {
		return nil, s.outcome(op, acct, res)
	}
	return res, nil
}

func (s *Store) addPreKeys(ctx context.Context, id string, keys []store.PreKey, l Lease) error {
	const op = "add prekeys"
	if err := store.CheckPreKeys(keys); err != nil {
		return fmt.Errorf("redis: %s %q: %w", op, id, err)
	}
	if store.ValidateID(id) != nil {
		if err := s.ready(ctx, op); err != nil {
			return err
		}
		return fmt.Errorf("redis: %s %q: no such device: %w", op, id, store.ErrNotFound)
	}
	if len(keys) == 0 {
		return s.ready(ctx, op)
	}
	sorted := slices.Clone(keys)
	defer clear(sorted)
	slices.SortFunc(sorted, func(a, b store.PreKey) int { return int(a.ID) - int(b.ID) })
	args := make([]any, 0, 2*len(sorted))
	recs := make([][]byte, 0, len(sorted))
	defer func() {
		for _, r := range recs {
			clear(r)
		}
	}()
	for i, k := range sorted {
		if i%32 == 0 && ctx.Err() != nil { // a stopped connection's batch ends early, writing nothing
			return fmt.Errorf("redis: %s %q: %w", op, id, ctx.Err())
		}
		rec, err := store.EncodePreKey(id, k, s.sealer)
		if err != nil {
			return fmt.Errorf("redis: %s %q: %w", op, id, err)
		}
		recs = append(recs, rec)
		args = append(args, strconv.FormatUint(uint64(k.ID), 10), rec)
	}
	res, err := s.preKeyWrite(ctx, op, id, l, preKeyAdd, args...)
	if err != nil {
		return err
	}
	switch res[0] {
	case "ok":
		return nil
	case "nodevice":
		return fmt.Errorf("redis: %s %q: no such device: %w", op, id, store.ErrNotFound)
	case "dup":
		if len(res) == 2 {
			if kid, err := strconv.ParseUint(res[1], 10, 32); err == nil {
				return fmt.Errorf("redis: %s %q: %w", op, id, &store.PreKeyError{ID: uint32(kid), Problem: "already stored"})
			}
		}
	}
	return fmt.Errorf("redis: %s %q: %w: script answered %q", op, id, ErrProtocol, res)
}

func (s *Store) markPreKeys(ctx context.Context, id string, upTo uint32, l Lease) error {
	const op = "mark prekeys uploaded"
	if store.ValidateID(id) != nil || upTo == 0 {
		return s.ready(ctx, op)
	}
	res, err := s.preKeyWrite(ctx, op, id, l, preKeyMark, strconv.FormatUint(uint64(upTo), 10))
	if err != nil {
		return err
	}
	return s.outcome(op, id, res)
}

func (s *Store) removePreKey(ctx context.Context, id string, keyID uint32, l Lease) error {
	const op = "remove prekey"
	if store.ValidateID(id) != nil || keyID == 0 || keyID > store.MaxPreKeyID {
		return s.ready(ctx, op) // never stored
	}
	res, err := s.preKeyWrite(ctx, op, id, l, preKeyRemove, strconv.FormatUint(uint64(keyID), 10))
	if err != nil {
		return err
	}
	return s.outcome(op, id, res)
}

// resealPreKeys seals, under lease l, every prekey record of id still in
// the clear (the device records' migration, see view.Load). Records
// changed meanwhile are left alone.
func (s *Store) resealPreKeys(ctx context.Context, id string, l Lease) error {
	const op = "reseal prekeys"
	if s.sealer == nil || store.ValidateID(id) != nil {
		return nil
	}
	rctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return err
	}
	all, err := s.c.HGetAll(rctx, s.k.prekeys(id)).Result()
	cancel()
	if err != nil {
		return fmt.Errorf("redis: %s %q: %w", op, id, err)
	}
	var args []any
	for field, rec := range all {
		if field == "max" {
			continue
		}
		kid, err := parseKeyID(field)
		if err != nil {
			return fmt.Errorf("redis: %s %q: %w", op, id, err)
		}
		k, info, err := s.decodePreKey(id, kid, rec)
		if err != nil {
			return fmt.Errorf("redis: %s %q: %w", op, id, err)
		}
		if info.Sealed {
			continue
		}
		sealed, err := store.EncodePreKey(id, k, s.sealer)
		if err != nil {
			return fmt.Errorf("redis: %s %q: %w", op, id, err)
		}
		args = append(args, field, rec, sealed)
	}
	for len(args) > 0 {
		n := min(len(args), 3*resealChunk)
		res, err := s.preKeyWrite(ctx, op, id, l, fencedReseal, args[:n]...)
		if err != nil {
			return err
		}
		if err := s.outcome(op, id, res); err != nil {
			return err
		}
		args = args[n:]
	}
	return nil
}

// parseKeyID parses a prekey field name.
func parseKeyID(field string) (uint32, error) {
	kid, err := strconv.ParseUint(field, 10, 32)
	if err != nil || kid == 0 || kid > store.MaxPreKeyID || strconv.FormatUint(kid, 10) != field {
		return 0, fmt.Errorf("%w: prekey field is not a key ID", store.ErrCorrupt)
	}
	return uint32(kid), nil
}

// decodePreKey decodes the record stored under key ID kid of account id.
func (s *Store) decodePreKey(id string, kid uint32, rec string) (store.PreKey, store.RecordInfo, error) {
	if len(rec) > store.MaxPreKeyRecordLen {
		return store.PreKey{}, store.RecordInfo{}, fmt.Errorf("prekey %d: %w: record is %d bytes", kid, store.ErrCorrupt, len(rec))
	}
	b := []byte(rec)
	defer clear(b)
	k, info, err := store.DecodePreKey(id, b, s.sealer)
	if err != nil {
		return store.PreKey{}, info, fmt.Errorf("prekey %d: %w", kid, err)
	}
	if k.ID != kid {
		return store.PreKey{}, info, fmt.Errorf("prekey %d: %w: record is stored under another ID", kid, store.ErrCorrupt)
	}
	return k, info, nil
}

// PreKeysToUpload implements store.Store: one script reads the first n
// pending IDs and their records.
func (s *Store) PreKeysToUpload(ctx context.Context, id string, n int) ([]store.PreKey, error) {
	const op = "prekeys to upload"
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return nil, err
	}
	defer cancel()
	if n <= 0 || store.ValidateID(id) != nil {
		return []store.PreKey{}, nil
	}
	n = min(n, store.MaxPreKeyID)
	res, err := replyStrings(preKeysPending.Run(ctx, s.c, []string{s.k.prekeys(id), s.k.pending(id)}, n))
	if err != nil {
		return nil, fmt.Errorf("redis: %s %q: %w", op, id, err)
	}
	if len(res)%2 != 0 || len(res)/2 > n {
		return nil, fmt.Errorf("redis: %s %q: %w: %d values", op, id, ErrProtocol, len(res))
	}
	out := make([]store.PreKey, 0, len(res)/2)
	for i := 0; i < len(res); i += 2 {
		kid, err := parseKeyID(res[i])
		if err != nil {
			return nil, fmt.Errorf("redis: %s %q: %w", op, id, err)
		}
		k, _, err := s.decodePreKey(id, kid, res[i+1])
		if err != nil {
			return nil, fmt.Errorf("redis: %s %q: %w", op, id, err)
		}
		out = append(out, k)
	}
	return out, nil
}

// PreKey implements store.Store.
func (s *Store) PreKey(ctx context.Context, id string, keyID uint32) (store.PreKey, error) {
	const op = "load prekey"
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return store.PreKey{}, err
	}
	defer cancel()
	if store.ValidateID(id) != nil || keyID == 0 || keyID > store.MaxPreKeyID {
		return store.PreKey{}, fmt.Errorf("redis: %s %d of %q: %w", op, keyID, id, store.ErrNotFound)
	}
	rec, err := s.c.HGet(ctx, s.k.prekeys(id), strconv.FormatUint(uint64(keyID), 10)).Result()
	if errors.Is(err, goredis.Nil) {
		return store.PreKey{}, fmt.Errorf("redis: %s %d of %q: %w", op, keyID, id, store.ErrNotFound)
	}
	if err != nil {
		return store.PreKey{}, fmt.Errorf("redis: %s %d of %q: %w", op, keyID, id, err)
	}
	k, _, err := s.decodePreKey(id, keyID, rec)
	if err != nil {
		return store.PreKey{}, fmt.Errorf("redis: %s of %q: %w", op, id, err)
	}
	return k, nil
}

// PreKeyCounts implements store.Store: one script reads the hash length,
// "max" and the pending count at one instant.
func (s *Store) PreKeyCounts(ctx context.Context, id string) (store.PreKeyCounts, error) {
	const op = "count prekeys"
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return store.PreKeyCounts{}, err
	}
	defer cancel()
	if store.ValidateID(id) != nil {
		return store.PreKeyCounts{}, nil
	}
	res, err := replyStrings(preKeyCounts.Run(ctx, s.c, []string{s.k.prekeys(id), s.k.pending(id)}))
	if err != nil {
		return store.PreKeyCounts{}, fmt.Errorf("redis: %s %q: %w", op, id, err)
	}
	var v [4]uint64
	if len(res) != len(v) {
		return store.PreKeyCounts{}, fmt.Errorf("redis: %s %q: %w: %d values", op, id, ErrProtocol, len(res))
	}
	for i, r := range res {
		if v[i], err = strconv.ParseUint(r, 10, 32); err != nil {
			return store.PreKeyCounts{}, fmt.Errorf("redis: %s %q: %w: prekey counts are not numbers", op, id, store.ErrCorrupt)
		}
	}
	hlen, hasMax, maxID, pending := v[0], v[1], v[2], v[3]
	if hasMax > 1 || hlen < hasMax || maxID > store.MaxPreKeyID || pending > hlen-hasMax || hlen-hasMax > maxID {
		return store.PreKeyCounts{}, fmt.Errorf("redis: %s %q: %w: prekey counts disagree", op, id, store.ErrCorrupt)
	}
	stored := int(hlen - hasMax)
	return store.PreKeyCounts{Stored: stored, Uploaded: stored - int(pending), MaxID: uint32(maxID)}, nil
}

// LoadSetting implements store.Backend: a field of PREFIX:settings.
func (s *Store) LoadSetting(ctx context.Context, name string) (string, error) {
	if err := store.ValidateSettingName(name); err != nil {
		return "", fmt.Errorf("redis: load setting: %w", err)
	}
	ctx, cancel, err := s.begin(ctx, "load setting")
	if err != nil {
		return "", err
	}
	defer cancel()
	v, err := s.c.HGet(ctx, s.k.settings(), name).Result()
	if errors.Is(err, goredis.Nil) {
		return "", fmt.Errorf("redis: load setting %q: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("redis: load setting %q: %w", name, err)
	}
	if len(v) > store.MaxSettingValueLen {
		return "", fmt.Errorf("redis: load setting %q: %w: %d bytes, longer than %d", name, store.ErrCorrupt, len(v), store.MaxSettingValueLen)
	}
	return v, nil
}

// SaveSetting implements store.Backend. Settings are not fenced: any
// instance, with or without leases, may write them.
func (s *Store) SaveSetting(ctx context.Context, name, value string) error {
	if err := store.ValidateSetting(name, value); err != nil {
		return fmt.Errorf("redis: save setting: %w", err)
	}
	ctx, cancel, err := s.begin(ctx, "save setting")
	if err != nil {
		return err
	}
	defer cancel()
	if err := s.c.HSet(ctx, s.k.settings(), name, value).Err(); err != nil {
		return fmt.Errorf("redis: save setting %q: %w", name, err)
	}
	return nil
}

// The fenced view: writes need the account's lease, reads and settings do not.

func (v *view) AddPreKeys(ctx context.Context, id string, keys []store.PreKey) error {
	if err := v.check("add prekeys"); err != nil {
		return err
	}
	if store.ValidateID(id) != nil {
		return v.s.addPreKeys(ctx, id, keys, Lease{}) // no device, no lease: ErrNotFound
	}
	l, ok := v.lease(id)
	if !ok {
		return fmt.Errorf("redis: add prekeys %q: no lease held: %w", id, store.ErrLeaseLost)
	}
	return v.s.addPreKeys(ctx, id, keys, l)
}

func (v *view) MarkPreKeysUploaded(ctx context.Context, id string, upTo uint32) error {
	if err := v.check("mark prekeys uploaded"); err != nil {
		return err
	}
	l, ok := v.lease(id)
	if !ok {
		return fmt.Errorf("redis: mark prekeys uploaded %q: no lease held: %w", id, store.ErrLeaseLost)
	}
	return v.s.markPreKeys(ctx, id, upTo, l)
}

func (v *view) RemovePreKey(ctx context.Context, id string, keyID uint32) error {
	if err := v.check("remove prekey"); err != nil {
		return err
	}
	l, ok := v.lease(id)
	if !ok {
		return fmt.Errorf("redis: remove prekey %q: no lease held: %w", id, store.ErrLeaseLost)
	}
	return v.s.removePreKey(ctx, id, keyID, l)
}

func (v *view) PreKeysToUpload(ctx context.Context, id string, n int) ([]store.PreKey, error) {
	if err := v.check("prekeys to upload"); err != nil {
		return nil, err
	}
	return v.s.PreKeysToUpload(ctx, id, n)
}

func (v *view) PreKey(ctx context.Context, id string, keyID uint32) (store.PreKey, error) {
	if err := v.check("load prekey"); err != nil {
		return store.PreKey{}, err
	}
	return v.s.PreKey(ctx, id, keyID)
}

func (v *view) PreKeyCounts(ctx context.Context, id string) (store.PreKeyCounts, error) {
	if err := v.check("count prekeys"); err != nil {
		return store.PreKeyCounts{}, err
	}
	return v.s.PreKeyCounts(ctx, id)
}

func (v *view) LoadSetting(ctx context.Context, name string) (string, error) {
	if err := v.check("load setting"); err != nil {
		return "", err
	}
	return v.s.LoadSetting(ctx, name)
}

func (v *view) SaveSetting(ctx context.Context, name, value string) error {
	if err := v.check("save setting"); err != nil {
		return err
	}
	return v.s.SaveSetting(ctx, name, value)
}
