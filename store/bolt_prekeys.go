package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// One-time prekeys in the bbolt file (see bucketPreKeys):
//
//	prekeys/ACCT/            a bucket per account, created by its first AddPreKeys
//	    "meta"               version 1 | MaxID u32 | stored u32 | uploaded u32
//	    pending/             u24 key ID (big-endian) -> prekey record (prekey_codec.go)
//	    uploaded/            the same, for keys marked uploaded
//
// Keeping the two states in two buckets makes PreKeysToUpload a cursor over
// the first n keys of pending, MarkPreKeysUploaded a cursor over the keys
// it moves, and the counters make PreKeyCounts a single Get.
var (
	keyPreKeyMeta       = []byte("meta")
	bucketPreKeyPending = []byte("pending")
	bucketPreKeyUpload  = []byte("uploaded")
)

const (
	preKeyMetaVersion = 1
	preKeyMetaLen     = 1 + 4 + 4 + 4
)

// decodePreKeyMeta reads an account's prekey counters (nil: none yet).
func decodePreKeyMeta(v []byte) (PreKeyCounts, error) {
	if v == nil {
		return PreKeyCounts{}, nil
	}
	if len(v) != preKeyMetaLen || v[0] != preKeyMetaVersion {
		return PreKeyCounts{}, fmt.Errorf("%w: prekey counters are not a version %d record of %d bytes", ErrCorrupt, preKeyMetaVersion, preKeyMetaLen)
	}
	c := PreKeyCounts{MaxID: binary.BigEndian.Uint32(v[1:])}
	stored, uploaded := binary.BigEndian.Uint32(v[5:]), binary.BigEndian.Uint32(v[9:])
	if c.MaxID > MaxPreKeyID || stored > c.MaxID || uploaded > stored {
		return PreKeyCounts{}, fmt.Errorf("%w: prekey counters out of range", ErrCorrupt)
	}
	c.Stored, c.Uploaded = int(stored), int(uploaded)
	return c, nil
}

func encodePreKeyMeta(c PreKeyCounts) []byte {
	b := make([]byte, 0, preKeyMetaLen)
	b = append(b, preKeyMetaVersion)
	b = binary.BigEndian.AppendUint32(b, c.MaxID)
	b = binary.BigEndian.AppendUint32(b, uint32(c.Stored))
	return binary.BigEndian.AppendUint32(b, uint32(c.Uploaded))
}

func preKeyKey(keyID uint32) []byte { return []byte{byte(keyID >> 16), byte(keyID >> 8), byte(keyID)} }

// preKeyBuckets are the buckets of one account's prekeys; acct is nil when
// the account has none.
type preKeyBuckets struct {
	acct, pending, uploaded *bolt.Bucket
	counts                  PreKeyCounts
}

// openPreKeys finds the prekey buckets of id; with create they are created
// when missing.
func openPreKeys(tx *bolt.Tx, id string, create bool) (preKeyBuckets, error) {
	return openPreKeysIn(tx.Bucket(bucketPreKeys), id, create)
}

// openPreKeysIn is openPreKeys under root, a bucket laid out like
// bucketPreKeys (the live one, or an archive entry's).
func openPreKeysIn(root *bolt.Bucket, id string, create bool) (preKeyBuckets, error) {
	var p preKeyBuckets
	if create {
		var err error
		if p.acct, err = root.CreateBucketIfNotExists([]byte(id)); err != nil {
			return p, err
		}
		if p.pending, err = p.acct.CreateBucketIfNotExists(bucketPreKeyPending); err != nil {
			return p, err
		}
		if p.uploaded, err = p.acct.CreateBucketIfNotExists(bucketPreKeyUpload); err != nil {
			return p, err
		}
	} else if p.acct = root.Bucket([]byte(id)); p.acct != nil {
		p.pending, p.uploaded = p.acct.Bucket(bucketPreKeyPending), p.acct.Bucket(bucketPreKeyUpload)
	}
	if p.acct == nil {
		return p, nil
	}
	if p.pending == nil || p.uploaded == nil {
		return p, fmt.Errorf("%w: prekey buckets missing", ErrCorrupt)
	}
	var err error
	p.counts, err = decodePreKeyMeta(p.acct.Get(keyPreKeyMeta))
	return p, err
}

func (p *preKeyBuckets) saveCounts() error {
	return p.acct.Put(keyPreKeyMeta, encodePreKeyMeta(p.counts))
}

// rawPreKey is a record copied out of a transaction, decoded after it.
type rawPreKey struct {
	keyID uint32
	rec   []byte
}

// cloneRecord copies a prekey record out of bbolt's memory, refusing
// oversized values before copying and keys that are not 3-byte IDs.
func cloneRecord(k, v []byte) (rawPreKey, error) {
	if len(k) != 3 {
		return rawPreKey{}, fmt.Errorf("%w: prekey key of %d bytes", ErrCorrupt, len(k))
	}
	if len(v) > MaxPreKeyRecordLen {
		return rawPreKey{}, fmt.Errorf("%w: prekey record is %d bytes, longer than %d", ErrCorrupt, len(v), MaxPreKeyRecordLen)
	}
	return rawPreKey{keyID: u24(k), rec: bytes.Clone(v)}, nil
}

// decodeRaw decodes records copied out of a transaction and wipes the copies.
func (s *BoltStore) decodeRaw(id string, raws []rawPreKey) ([]PreKey, error) {
	defer func() {
		for _, r := range raws {
			clear(r.rec)
		}
	}()
	out := make([]PreKey, 0, len(raws))
	for _, r := range raws {
		k, _, err := DecodePreKey(id, r.rec, s.sealer)
		if err != nil {
			return nil, fmt.Errorf("prekey %d: %w", r.keyID, err)
		}
		if k.ID != r.keyID {
			return nil, fmt.Errorf("prekey %d: %w: record is stored under another ID", r.keyID, ErrCorrupt)
		}
		out = append(out, k)
	}
	return out, nil
}

// AddPreKeys implements Store.
func (s *BoltStore) AddPreKeys(ctx context.Context, id string, keys []PreKey) error {
	if err := CheckPreKeys(keys); err != nil {
		return fmt.Errorf("store: add prekeys %q: %w", id, err)
	}
	if err := s.acquire(ctx, "add prekeys"); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if ValidateID(id) != nil {
		return fmt.Errorf("%w: add prekeys %q: no such device", ErrNotFound, id)
	}
	if len(keys) == 0 {
		return nil
	}
	sorted := slices.Clone(keys)
	defer clear(sorted)
	slices.SortFunc(sorted, func(a, b PreKey) int { return int(a.ID) - int(b.ID) })
	recs := make([][]byte, len(sorted))
	defer func() {
		for _, r := range recs {
			clear(r)
		}
	}()
	for i, k := range sorted { // seal before taking the write lock
		if i%32 == 0 && ctx.Err() != nil { // a stopped connection's batch ends early, writing nothing
			return fmt.Errorf("store: add prekeys %q: %w", id, ctx.Err())
		}
		var err error
		if recs[i], err = encodePreKey(id, k, s.sealer); err != nil {
			return fmt.Errorf("store: add prekeys %q: %w", id, err)
		}
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketDevices).Get([]byte(id)) == nil {
			return fmt.Errorf("no such device: %w", ErrNotFound)
		}
		p, err := openPreKeys(tx, id, true)
		if err != nil {
			return err
		}
		for _, k := range sorted {
			key := preKeyKey(k.ID)
			if p.pending.Get(key) != nil || p.uploaded.Get(key) != nil {
				return &PreKeyError{ID: k.ID, Problem: "already stored"}
			}
		}
		p.pending.FillPercent = 0.9 // IDs mostly arrive in ascending order
		for i, k := range sorted {
			if err := p.pending.Put(preKeyKey(k.ID), recs[i]); err != nil {
				return err
			}
		}
		p.counts.Stored += len(sorted)
		p.counts.MaxID = max(p.counts.MaxID, sorted[len(sorted)-1].ID)
		return p.saveCounts()
	})
	if err != nil {
		return fmt.Errorf("store: add prekeys %q: %w", id, err)
	}
	return nil
}

// PreKeysToUpload implements Store: a cursor over the first n pending keys.
func (s *BoltStore) PreKeysToUpload(ctx context.Context, id string, n int) ([]PreKey, error) {
	if err := s.acquire(ctx, "prekeys to upload"); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	if n <= 0 {
		return []PreKey{}, nil
	}
	var raws []rawPreKey
	err := s.db.View(func(tx *bolt.Tx) error {
		p, err := openPreKeys(tx, id, false)
		if err != nil || p.acct == nil {
			return err
		}
		// The counters are only a hint for the capacity, and a bounded one.
		raws = make([]rawPreKey, 0, min(n, p.counts.Stored-p.counts.Uploaded, 1024))
		c := p.pending.Cursor()
		for k, v := c.First(); k != nil && len(raws) < n; k, v = c.Next() {
			r, err := cloneRecord(k, v)
			if err != nil {
				return err
			}
			raws = append(raws, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: prekeys to upload %q: %w", id, err)
	}
	out, err := s.decodeRaw(id, raws)
	if err != nil {
		return nil, fmt.Errorf("store: prekeys to upload %q: %w", id, err)
	}
	return out, nil
}

// MarkPreKeysUploaded implements Store: the pending keys up to upTo move
// to the uploaded bucket.
func (s *BoltStore) MarkPreKeysUploaded(ctx context.Context, id string, upTo uint32) error {
	if err := s.acquire(ctx, "mark prekeys uploaded"); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if upTo == 0 {
		return nil
	}
	limit := preKeyKey(min(upTo, MaxPreKeyID))
	var moving [][2][]byte
	defer func() {
		for _, kv := range moving { // bbolt keeps values it was given until the commit
			clear(kv[1])
		}
	}()
	err := s.db.Update(func(tx *bolt.Tx) error {
		moving = moving[:0]
		p, err := openPreKeys(tx, id, false)
		if err != nil || p.acct == nil {
			return err
		}
		c := p.pending.Cursor()
		for k, v := c.First(); k != nil && bytes.Compare(k, limit) <= 0; k, v = c.Next() {
			// Copies: values of a bucket being modified do not outlive
			// the modification.
			moving = append(moving, [2][]byte{bytes.Clone(k), bytes.Clone(v)})
		}
		if len(moving) == 0 {
			return nil
		}
		p.uploaded.FillPercent = 0.9 // moved in ascending order: full pages halve the file
		for _, kv := range moving {
			if err := p.uploaded.Put(kv[0], kv[1]); err != nil {
				return err
			}
			if err := p.pending.Delete(kv[0]); err != nil {
				return err
			}
		}
		p.counts.Uploaded += len(moving)
		if p.counts.Uploaded > p.counts.Stored {
			return fmt.Errorf("%w: prekey counters disagree with the stored keys", ErrCorrupt)
		}
		return p.saveCounts()
	})
	if err != nil {
		return fmt.Errorf("store: mark prekeys uploaded %q: %w", id, err)
	}
	return nil
}

// PreKey implements Store.
func (s *BoltStore) PreKey(ctx context.Context, id string, keyID uint32) (PreKey, error) {
	if err := s.acquire(ctx, "load prekey"); err != nil {
		return PreKey{}, err
	}
	defer s.mu.RUnlock()
	var raws []rawPreKey
	err := s.db.View(func(tx *bolt.Tx) error {
		p, err := openPreKeys(tx, id, false)
		if err != nil || p.acct == nil || keyID == 0 || keyID > MaxPreKeyID {
			return err
		}
		key := preKeyKey(keyID)
		v := p.pending.Get(key)
		if v == nil {
			v = p.uploaded.Get(key)
		}
		if v == nil {
			return nil
		}
		r, err := cloneRecord(key, v)
		raws = append(raws, r)
		return err
	})
	if err == nil && len(raws) == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return PreKey{}, fmt.Errorf("store: load prekey %d of %q: %w", keyID, id, err)
	}
	out, err := s.decodeRaw(id, raws)
	if err != nil {
		return PreKey{}, fmt.Errorf("store: load prekey of %q: %w", id, err)
	}
	return out[0], nil
}

// RemovePreKey implements Store.
func (s *BoltStore) RemovePreKey(ctx context.Context, id string, keyID uint32) error {
	if err := s.acquire(ctx, "remove prekey"); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if keyID == 0 || keyID > MaxPreKeyID {
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error { return removePreKeyTx(tx, id, keyID) })
	if err != nil {
		return fmt.Errorf("store: remove prekey %d of %q: %w", keyID, id, err)
	}
	return nil
}

// removePreKeyTx forgets prekey keyID of id in tx (absent: nothing to do),
// for RemovePreKey and ApplySignal.
func removePreKeyTx(tx *bolt.Tx, id string, keyID uint32) error {
	p, err := openPreKeys(tx, id, false)
	if err != nil || p.acct == nil {
		return err
	}
	key := preKeyKey(keyID)
	switch {
	case p.pending.Get(key) != nil:
		err = p.pending.Delete(key)
	case p.uploaded.Get(key) != nil:
		err = p.uploaded.Delete(key)
		p.counts.Uploaded--
	default:
		return nil
	}
	if err != nil {
		return err
	}
	p.counts.Stored--
	if p.counts.Stored < p.counts.Uploaded || p.counts.Uploaded < 0 {
		return fmt.Errorf("%w: prekey counters disagree with the stored keys", ErrCorrupt)
	}
	return p.saveCounts()
}

// PreKeyCounts implements Store: one Get of the account's counters.
func (s *BoltStore) PreKeyCounts(ctx context.Context, id string) (PreKeyCounts, error) {
	if err := s.acquire(ctx, "count prekeys"); err != nil {
		return PreKeyCounts{}, err
	}
	defer s.mu.RUnlock()
	var c PreKeyCounts
	err := s.db.View(func(tx *bolt.Tx) error {
		p, err := openPreKeys(tx, id, false)
		c = p.counts
		return err
	})
	if err != nil {
		return PreKeyCounts{}, fmt.Errorf("store: count prekeys %q: %w", id, err)
	}
	return c, nil
}

// deletePreKeys drops every prekey of id and its counters (Delete).
func deletePreKeys(tx *bolt.Tx, id string) error {
	root := tx.Bucket(bucketPreKeys)
	if root.Bucket([]byte(id)) == nil {
		return nil
	}
	return root.DeleteBucket([]byte(id))
}

// resealPreKeys re-encodes, sealed, every prekey record in the clear under
// root, a bucket laid out like bucketPreKeys (Reseal), and returns how many.
func (s *BoltStore) resealPreKeys(root *bolt.Bucket) (int, error) {
	var accts [][]byte
	err := root.ForEach(func(k, v []byte) error {
		if v != nil {
			return fmt.Errorf("%w: prekeys bucket holds a value", ErrCorrupt)
		}
		accts = append(accts, bytes.Clone(k))
		return nil
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, acct := range accts {
		id := string(acct)
		p, err := openPreKeysIn(root, id, false)
		if err != nil {
			return n, fmt.Errorf("prekeys of %q: %w", id, err)
		}
		for _, b := range []*bolt.Bucket{p.pending, p.uploaded} {
			type update struct{ k, v []byte }
			var updates []update
			err := b.ForEach(func(k, v []byte) error {
				r, err := cloneRecord(k, v)
				if err != nil {
					return err
				}
				defer clear(r.rec)
				key, info, err := DecodePreKey(id, r.rec, s.sealer)
				if err != nil {
					return fmt.Errorf("prekey %d of %q: %w", r.keyID, id, err)
				}
				if key.ID != r.keyID {
					return fmt.Errorf("prekey %d of %q: %w: record is stored under another ID", r.keyID, id, ErrCorrupt)
				}
				if info.Sealed {
					return nil
				}
				rec, err := encodePreKey(id, key, s.sealer)
				if err != nil {
					return err
				}
				updates = append(updates, update{bytes.Clone(k), rec})
				return nil
			})
			if err != nil {
				return n, err
			}
			for _, u := range updates { // no Put while ForEach iterates
				if err := b.Put(u.k, u.v); err != nil {
					return n, err
				}
			}
			n += len(updates)
		}
	}
	return n, nil
}

// LoadSetting implements Backend.
func (s *BoltStore) LoadSetting(ctx context.Context, name string) (string, error) {
	if err := ValidateSettingName(name); err != nil {
		return "", fmt.Errorf("store: load setting: %w", err)
	}
	if err := s.acquire(ctx, "load setting"); err != nil {
		return "", err
	}
	defer s.mu.RUnlock()
	var out string
	var found bool
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketSettings).Get([]byte(name))
		if len(v) > MaxSettingValueLen {
			return fmt.Errorf("%w: setting is %d bytes, longer than %d", ErrCorrupt, len(v), MaxSettingValueLen)
		}
		out, found = string(v), v != nil
		return nil
	})
	if err == nil && !found {
		err = ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("store: load setting %q: %w", name, err)
	}
	return out, nil
}

// SaveSetting implements Backend.
func (s *BoltStore) SaveSetting(ctx context.Context, name, value string) error {
	if err := ValidateSetting(name, value); err != nil {
		return fmt.Errorf("store: save setting: %w", err)
	}
	if err := s.acquire(ctx, "save setting"); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSettings).Put([]byte(name), []byte(value))
	})
	if err != nil {
		return fmt.Errorf("store: save setting %q: %w", name, err)
	}
	return nil
}
