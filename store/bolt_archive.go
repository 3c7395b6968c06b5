package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Archived devices in the bbolt file:
//
//	archive/ACCT/KEY/        one bucket per entry (KEY: ArchiveKey of its time)
//	    "info"               the ArchiveEntry as JSON (no secrets)
//	    "device"             the device record (codec.go), sealed like a live one
//	    prekeys/ACCT/        the account's prekey bucket, moved as it was
//	                         (bolt_prekeys.go), absent when it had none
//	    signal/ACCT/         the account's Signal state, moved as it was
//	                         (bolt_signal.go), absent when it had none
//
// The archive bucket is created by the first Archive; a file without it
// has an empty archive.
var (
	bucketArchive     = []byte("archive")
	keyArchiveInfo    = []byte("info")
	keyArchiveDevice  = []byte("device")
	bucketArchivePreK = []byte("prekeys")
	bucketArchiveSig  = []byte("signal")
)

// Archive implements Store.
func (s *BoltStore) Archive(ctx context.Context, id, reason string) (ArchiveEntry, error) {
	if err := s.acquire(ctx, "archive"); err != nil {
		return ArchiveEntry{}, err
	}
	defer s.mu.RUnlock()
	e := ArchiveEntry{ID: id, Reason: ArchiveReason(reason)}
	err := s.db.Update(func(tx *bolt.Tx) error {
		rec, d, err := s.liveRecord(tx, id)
		if err != nil {
			return err
		}
		if d == nil {
			return ErrNotFound
		}
		e.JID = d.JID
		root, err := tx.CreateBucketIfNotExists(bucketArchive)
		if err != nil {
			return err
		}
		acct, err := root.CreateBucketIfNotExists([]byte(id))
		if err != nil {
			return err
		}
		e.ArchivedAt = time.Now().UTC()
		for acct.Bucket([]byte(ArchiveKey(e.ArchivedAt))) != nil {
			e.ArchivedAt = e.ArchivedAt.Add(time.Nanosecond) // two archives within one clock tick
		}
		e.Key = ArchiveKey(e.ArchivedAt)
		entry, err := acct.CreateBucket([]byte(e.Key))
		if err != nil {
			return err
		}
		if e.PreKeys, err = s.movePreKeys(tx, id, tx.Bucket(bucketPreKeys), entry, true); err != nil {
			return err
		}
		if err := s.moveSignal(tx, id, tx.Bucket(bucketSignal), entry, true); err != nil {
			return err
		}
		info, err := json.Marshal(e)
		if err != nil {
			return err
		}
		if err := entry.Put(keyArchiveInfo, info); err != nil {
			return err
		}
		if err := entry.Put(keyArchiveDevice, rec); err != nil {
			return err
		}
		if err := tx.Bucket(bucketDevices).Delete([]byte(id)); err != nil {
			return err
		}
		return setMapping(tx, id, "", "")
	})
	if err != nil {
		return ArchiveEntry{}, fmt.Errorf("store: archive %q: %w", id, err)
	}
	return e, nil
}

// liveRecord returns the stored record of id, sealed when the store has a
// Sealer (a record in the clear is re-encoded), and the device it holds;
// both nil when there is none.
func (s *BoltStore) liveRecord(tx *bolt.Tx, id string) ([]byte, *Device, error) {
	v := tx.Bucket(bucketDevices).Get([]byte(id))
	if v == nil {
		return nil, nil, nil
	}
	return s.sealedRecord(id, v)
}

// sealedRecord decodes the record v of id and returns it sealed (re-encoded
// when it is in the clear and the store has a Sealer) with its device.
func (s *BoltStore) sealedRecord(id string, v []byte) ([]byte, *Device, error) {
	if len(v) > MaxRecordLen {
		return nil, nil, fmt.Errorf("%w: record is %d bytes, longer than %d", ErrCorrupt, len(v), MaxRecordLen)
	}
	d, info, err := Decode(v, s.sealer)
	if err != nil {
		return nil, nil, err
	}
	if d.ID != id {
		return nil, nil, fmt.Errorf("%w: record is stored under another id", ErrCorrupt)
	}
	if info.Sealed || s.sealer == nil {
		return bytes.Clone(v), d, nil
	}
	rec, err := encode(d, s.sealer)
	return rec, d, err
}

// movePreKeys moves the prekey bucket of id from the root from to the
// prekeys bucket of an archive entry (toEntry) or from an entry to the
// live root (toEntry false, entry is the live root then) and returns how
// many keys it held. Prekeys in the clear are sealed on the way when the
// store has a Sealer.
func (s *BoltStore) movePreKeys(tx *bolt.Tx, id string, from, to *bolt.Bucket, toEntry bool) (int, error) {
	p, err := openPreKeysIn(from, id, false)
	if err != nil || p.acct == nil {
		return 0, err
	}
	dst := to
	if toEntry {
		if dst, err = to.CreateBucket(bucketArchivePreK); err != nil {
			return 0, err
		}
	}
	if err := tx.MoveBucket([]byte(id), from, dst); err != nil {
		return 0, err
	}
	if s.sealer != nil {
		if _, err := s.resealPreKeys(dst); err != nil {
			return 0, err
		}
	}
	return p.counts.Stored, nil
}

// moveSignal moves the Signal bucket of id like movePreKeys moves its
// prekeys; records in the clear are sealed on the way when the store has
// a Sealer.
func (s *BoltStore) moveSignal(tx *bolt.Tx, id string, from, to *bolt.Bucket, toEntry bool) error {
	if from.Bucket([]byte(id)) == nil {
		return nil
	}
	dst := to
	if toEntry {
		var err error
		if dst, err = to.CreateBucket(bucketArchiveSig); err != nil {
			return err
		}
	}
	if err := tx.MoveBucket([]byte(id), from, dst); err != nil {
		return err
	}
	if s.sealer != nil {
		if _, err := s.resealSignal(dst); err != nil {
			return err
		}
	}
	return nil
}

// ListArchive implements Backend.
func (s *BoltStore) ListArchive(ctx context.Context) ([]ArchiveEntry, error) {
	if err := s.acquire(ctx, "list archive"); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	out := []ArchiveEntry{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return forEachArchived(tx, func(e ArchiveEntry) error {
			out = append(out, e)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: list archive: %w", err)
	}
	return out, nil
}

// forEachArchived calls fn for every archive entry in key order. fn must
// not write.
func forEachArchived(tx *bolt.Tx, fn func(e ArchiveEntry) error) error {
	root := tx.Bucket(bucketArchive)
	if root == nil {
		return nil
	}
	return root.ForEachBucket(func(acct []byte) error {
		ab := root.Bucket(acct)
		return ab.ForEachBucket(func(key []byte) error {
			eb := ab.Bucket(key)
			e, err := archiveInfo(string(acct), string(key), eb)
			if err != nil {
				return err
			}
			return fn(e)
		})
	})
}

// archiveInfo reads the entry description of bucket eb.
func archiveInfo(id, key string, eb *bolt.Bucket) (ArchiveEntry, error) {
	var e ArchiveEntry
	if err := json.Unmarshal(eb.Get(keyArchiveInfo), &e); err != nil {
		return e, fmt.Errorf("%w: archive entry %s of %q: %w", ErrCorrupt, key, id, err)
	}
	e.ID, e.Key = id, key
	return e, nil
}

// RestoreArchived implements Store.
func (s *BoltStore) RestoreArchived(ctx context.Context, id, key string) (ArchiveEntry, error) {
	if _, err := ParseArchiveKey(key); err != nil {
		return ArchiveEntry{}, fmt.Errorf("store: restore %q: %w", id, err)
	}
	if err := s.acquire(ctx, "restore"); err != nil {
		return ArchiveEntry{}, err
	}
	defer s.mu.RUnlock()
	var e ArchiveEntry
	err := s.db.Update(func(tx *bolt.Tx) error {
		var acct, entry *bolt.Bucket
		if root := tx.Bucket(bucketArchive); root != nil {
			if acct = root.Bucket([]byte(id)); acct != nil {
				entry = acct.Bucket([]byte(key))
			}
		}
		if entry == nil {
			return fmt.Errorf("no archive entry %s: %w", key, ErrNotFound)
		}
		var err error
		if e, err = archiveInfo(id, key, entry); err != nil {
			return err
		}
		if _, cur, err := s.liveRecord(tx, id); err != nil {
			return fmt.Errorf("current device: %w", err)
		} else if cur.Paired() {
			return fmt.Errorf("%w (%s): unlink it first", ErrPaired, cur.JID)
		}
		rec, d, err := s.sealedRecord(id, entry.Get(keyArchiveDevice))
		if err != nil {
			return fmt.Errorf("archive entry %s: %w", key, err)
		}
		if err := deletePreKeys(tx, id); err != nil {
			return err
		}
		if pk := entry.Bucket(bucketArchivePreK); pk != nil {
			if _, err := s.movePreKeys(tx, id, pk, tx.Bucket(bucketPreKeys), false); err != nil {
				return err
			}
		}
		if err := deleteSignal(tx, id); err != nil {
			return err
		}
		if sig := entry.Bucket(bucketArchiveSig); sig != nil {
			if err := s.moveSignal(tx, id, sig, tx.Bucket(bucketSignal), false); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketDevices).Put([]byte(id), rec); err != nil {
			return err
		}
		if err := setMapping(tx, id, d.PNUser(), d.LIDUser()); err != nil {
			return err
		}
		return deleteArchived(tx, acct, id, key)
	})
	if err != nil {
		return ArchiveEntry{}, fmt.Errorf("store: restore %q: %w", id, err)
	}
	return e, nil
}

// deleteArchived drops entry key of account id (its bucket acct), and
// acct when it is left empty.
func deleteArchived(tx *bolt.Tx, acct *bolt.Bucket, id, key string) error {
	if err := acct.DeleteBucket([]byte(key)); err != nil {
		return err
	}
	if k, _ := acct.Cursor().First(); k == nil {
		return tx.Bucket(bucketArchive).DeleteBucket([]byte(id))
	}
	return nil
}

// PruneArchive implements Backend.
func (s *BoltStore) PruneArchive(ctx context.Context, before time.Time) (int, error) {
	if err := s.acquire(ctx, "prune archive"); err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		type old struct{ id, key string }
		var prune []old
		err := forEachArchived(tx, func(e ArchiveEntry) error {
			if e.ArchivedAt.Before(before) {
				prune = append(prune, old{e.ID, e.Key})
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, o := range prune { // no deletes while ForEach iterates
			if err := deleteArchived(tx, tx.Bucket(bucketArchive).Bucket([]byte(o.id)), o.id, o.key); err != nil {
				return err
			}
		}
		n = len(prune)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: prune archive: %w", err)
	}
	return n, nil
}

// resealArchive seals the archived devices, prekeys and Signal records
// still in the clear (Reseal) and returns how many records it changed.
func (s *BoltStore) resealArchive(tx *bolt.Tx) (int, error) {
	var entries []ArchiveEntry
	err := forEachArchived(tx, func(e ArchiveEntry) error {
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries { // no writes while ForEach iterates
		eb := tx.Bucket(bucketArchive).Bucket([]byte(e.ID)).Bucket([]byte(e.Key))
		v := eb.Get(keyArchiveDevice)
		rec, _, err := s.sealedRecord(e.ID, v)
		if err != nil {
			return n, fmt.Errorf("archive entry %s of %q: %w", e.Key, e.ID, err)
		}
		if !bytes.Equal(rec, v) {
			if err := eb.Put(keyArchiveDevice, rec); err != nil {
				return n, err
			}
			n++
		}
		if pk := eb.Bucket(bucketArchivePreK); pk != nil {
			m, err := s.resealPreKeys(pk)
			if err != nil {
				return n, fmt.Errorf("archive entry %s of %q: %w", e.Key, e.ID, err)
			}
			n += m
		}
		if sig := eb.Bucket(bucketArchiveSig); sig != nil {
			m, err := s.resealSignal(sig)
			if err != nil {
				return n, fmt.Errorf("archive entry %s of %q: %w", e.Key, e.ID, err)
			}
			n += m
		}
	}
	return n, nil
}
