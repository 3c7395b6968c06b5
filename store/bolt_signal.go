package store

import (
	"bytes"
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Signal state in the bbolt file (see SignalStore):
//
//	signal/ACCT/             a bucket per account, created by its first ApplySignal
//	    "s:ADDR"             session record (EncodeSignal, sealed with a Sealer)
//	    "i:ADDR"             the peer's identity key, 32 bytes
//	    "k:GROUP SENDER"     sender key record (EncodeSignal)
//
// An archive entry keeps the account's bucket under its "signal" bucket,
// moved as it was (bolt_archive.go).
var bucketSignal = []byte("signal")

// Session implements SignalStore.
func (s *BoltStore) Session(ctx context.Context, id, addr string) ([]byte, error) {
	rec, err := s.signalRecord(ctx, id, SessionKey(addr), "load session")
	if err != nil {
		return nil, fmt.Errorf("store: load session %s of %q: %w", addr, id, err)
	}
	return rec, nil
}

// SenderKey implements SignalStore.
func (s *BoltStore) SenderKey(ctx context.Context, id, group, sender string) ([]byte, error) {
	rec, err := s.signalRecord(ctx, id, SenderKeyKey(group, sender), "load sender key")
	if err != nil {
		return nil, fmt.Errorf("store: load sender key of %s in %s of %q: %w", sender, group, id, err)
	}
	return rec, nil
}

// signalRecord reads and decodes the sealed-form record key of id.
func (s *BoltStore) signalRecord(ctx context.Context, id, key, op string) ([]byte, error) {
	v, err := s.signalGet(ctx, id, key, op)
	if err != nil {
		return nil, err
	}
	defer clear(v)
	rec, _, err := DecodeSignal(id, key, v, s.sealer)
	return rec, err
}

// signalGet copies the value of key in the Signal bucket of id out of the
// file (ErrNotFound when absent).
func (s *BoltStore) signalGet(ctx context.Context, id, key, op string) ([]byte, error) {
	if err := s.acquire(ctx, op); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSignal).Bucket([]byte(id))
		if b == nil {
			return nil
		}
		v := b.Get([]byte(key))
		if len(v) > MaxSignalStoredLen { // refuse before copying
			return fmt.Errorf("%w: stored value of %d bytes", ErrCorrupt, len(v))
		}
		if v != nil {
			out = bytes.Clone(v)
		}
		return nil
	})
	if err == nil && out == nil {
		err = ErrNotFound
	}
	return out, err
}

// PeerIdentity implements SignalStore.
func (s *BoltStore) PeerIdentity(ctx context.Context, id, addr string) ([32]byte, error) {
	var key [32]byte
	v, err := s.signalGet(ctx, id, IdentityKey(addr), "load identity")
	if err == nil && len(v) != len(key) {
		err = fmt.Errorf("%w: identity of %d bytes", ErrCorrupt, len(v))
	}
	if err != nil {
		return key, fmt.Errorf("store: load identity %s of %q: %w", addr, id, err)
	}
	copy(key[:], v)
	return key, nil
}

// signalWrite is one encoded change: value nil deletes key.
type signalWrite struct {
	key, value []byte
}

// encodeSignalChanges checks c and encodes its session and sender key
// writes (sealed with sealer), identities last as their raw keys.
func encodeSignalChanges(id string, c SignalChanges, sealer Sealer) (records, identities []signalWrite, err error) {
	if err := CheckSignalChanges(c); err != nil {
		return nil, nil, err
	}
	records = make([]signalWrite, 0, len(c.Sessions)+len(c.SenderKeys))
	add := func(key string, rec []byte) error {
		w := signalWrite{key: []byte(key)}
		if rec != nil {
			var err error
			if w.value, err = EncodeSignal(id, key, rec, sealer); err != nil {
				return err
			}
		}
		records = append(records, w)
		return nil
	}
	for _, sc := range c.Sessions {
		if err := add(SessionKey(sc.Addr), sc.Record); err != nil {
			return nil, nil, err
		}
	}
	for _, kc := range c.SenderKeys {
		if err := add(SenderKeyKey(kc.Group, kc.Sender), kc.Record); err != nil {
			return nil, nil, err
		}
	}
	identities = make([]signalWrite, 0, len(c.Identities))
	for _, ic := range c.Identities {
		identities = append(identities, signalWrite{key: []byte(IdentityKey(ic.Addr)), value: bytes.Clone(ic.Key[:])})
	}
	return records, identities, nil
}

// ApplySignal implements SignalStore in one transaction, c.Events
// included, shared with the concurrent ApplySignal and Append calls of
// other accounts (groupCommit).
func (s *BoltStore) ApplySignal(ctx context.Context, id string, c SignalChanges) (SignalApplied, error) {
	var out SignalApplied
	records, identities, err := encodeSignalChanges(id, c, s.sealer)
	if err != nil {
		return out, fmt.Errorf("store: apply signal changes of %q: %w", id, err)
	}
	defer func() {
		for _, w := range records {
			clear(w.value)
		}
	}()
	if err := s.acquire(ctx, "apply signal changes"); err != nil {
		return out, err
	}
	defer s.mu.RUnlock()
	if ValidateID(id) != nil {
		return out, fmt.Errorf("%w: apply signal changes of %q: no such device", ErrNotFound, id)
	}
	if c.Empty() {
		return out, nil
	}
	err = s.commit.update(s.db, func(tx *bolt.Tx) error {
		out.ChangedIdentities = nil // the function may run again (groupCommit)
		if tx.Bucket(bucketDevices).Get([]byte(id)) == nil {
			return fmt.Errorf("no such device: %w", ErrNotFound)
		}
		if _, err := s.appendTx(tx, c.Events); err != nil {
			return err
		}
		if c.UsedPreKey != 0 {
			if err := removePreKeyTx(tx, id, c.UsedPreKey); err != nil {
				return err
			}
		}
		b, err := tx.Bucket(bucketSignal).CreateBucketIfNotExists([]byte(id))
		if err != nil {
			return err
		}
		for _, w := range identities {
			old := b.Get(w.key)
			if bytes.Equal(old, w.value) {
				continue
			}
			if old != nil {
				out.ChangedIdentities = append(out.ChangedIdentities, string(w.key[2:]))
			}
			if err := b.Put(w.key, w.value); err != nil {
				return err
			}
		}
		for _, w := range records {
			if w.value == nil {
				err = b.Delete(w.key)
			} else {
				err = b.Put(w.key, w.value)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return SignalApplied{}, fmt.Errorf("store: apply signal changes of %q: %w", id, err)
	}
	return out, nil
}

// deleteSignal drops the Signal state of id (Delete).
func deleteSignal(tx *bolt.Tx, id string) error {
	root := tx.Bucket(bucketSignal)
	if root.Bucket([]byte(id)) == nil {
		return nil
	}
	return root.DeleteBucket([]byte(id))
}

// resealSignal re-encodes, sealed, every session and sender key record in
// the clear under root, a bucket laid out like bucketSignal (the live one
// or an archive entry's), and returns how many (Reseal).
func (s *BoltStore) resealSignal(root *bolt.Bucket) (int, error) {
	var accts [][]byte
	err := root.ForEachBucket(func(k []byte) error {
		accts = append(accts, bytes.Clone(k))
		return nil
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, acct := range accts { // no writes while ForEachBucket iterates
		id := string(acct)
		b := root.Bucket(acct)
		var updates []signalWrite
		err := b.ForEach(func(k, v []byte) error {
			if !IsRecordKey(string(k)) {
				return nil
			}
			rec, info, err := DecodeSignal(id, string(k), v, s.sealer)
			if err != nil {
				return fmt.Errorf("signal record %s of %q: %w", k, id, err)
			}
			defer clear(rec)
			if info.Sealed {
				return nil
			}
			enc, err := EncodeSignal(id, string(k), rec, s.sealer)
			if err != nil {
				return err
			}
			updates = append(updates, signalWrite{bytes.Clone(k), enc})
			return nil
		})
		if err != nil {
			return n, err
		}
		for _, u := range updates { // no Put while ForEach iterates
			if err := b.Put(u.key, u.value); err != nil {
				return n, err
			}
		}
		n += len(updates)
	}
	return n, nil
}
