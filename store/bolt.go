package store

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Buckets of the bbolt file. Keys and values are raw bytes.
var (
	bucketMeta     = []byte("meta")     // "schema" -> schema version
	bucketDevices  = []byte("devices")  // id -> encoded record (codec.go)
	bucketDevMap   = []byte("devmap")   // id -> pnUser NUL lidUser, for paired devices with both
	bucketPN2LID   = []byte("pn2lid")   // pnUser -> lidUser
	bucketLID2PN   = []byte("lid2pn")   // lidUser -> pnUser
	bucketPreKeys  = []byte("prekeys")  // id -> bucket of the account's one-time prekeys (bolt_prekeys.go)
	bucketSettings = []byte("settings") // setting name -> value
	// bucketSignal (bolt_signal.go): the accounts' Signal state
	// bucketAccounts (bolt_registry.go): the account registry

	keySchema = []byte("schema")
	// keyNoPlaintext in bucketMeta says that no secret is in the clear
	// anywhere in the file, free pages included: the file was created with
	// a Sealer or compacted by Reseal, and has not been opened without a
	// Sealer since (see Reseal).
	keyNoPlaintext = []byte("noplaintext")
)

// boltSchema is the layout version. The prekeys, settings, outbox,
// accounts and signal buckets were added to version 1 without a change: they are
// created when missing, and an older binary ignores them.
const boltSchema = 1

// BoltOptions configures OpenBolt.
type BoltOptions struct {
	// Timeout bounds the wait for the file lock when another process holds
	// the file open. Default 1s; OpenBolt then fails with ErrLocked.
	Timeout time.Duration
	// Sealer, when set, seals the secrets of every record written and opens
	// sealed records on load. Default nil: secrets are stored in the clear.
	Sealer Sealer
	// FileMode of a newly created file. Default 0600. A missing parent
	// directory is created with mode 0700.
	FileMode os.FileMode
	// OutboxHistory is how many of the latest outbox entries the log keeps
	// after every endpoint has delivered them, for event streams to resume
	// from (bolt_outbox.go). Entries a queue still holds are kept whatever
	// their age. Default DefaultOutboxHistory.
	OutboxHistory int
	// Now is the clock of the idempotency keys' retention (SendKeyTTL).
	// Default time.Now.
	Now func() time.Time
}

// BoltStore is the embedded Store: one bbolt file, every write in one
// fsync'd transaction, which concurrent ApplySignal, Append and ClaimSend
// calls share (bolt_commit.go).
type BoltStore struct {
	sealer Sealer
	path   string

	mu     sync.RWMutex // held shared by operations, exclusively by Reseal and Close
	closed bool
	db     *bolt.DB // replaced by Reseal's compaction

	outboxHistory int
	now           func() time.Time // the clock of SendKeyTTL
	inflight      boltInflight     // the outbox entries handed out by Next
	commit        groupCommit      // ApplySignal, Append, ClaimSend (bolt_commit.go)
}

var (
	_ Backend = (*BoltStore)(nil)
	_ LIDMap  = (*BoltStore)(nil)
)

// Path returns the file path of the database.
func (s *BoltStore) Path() string { return s.path }

// acquire takes the shared lock for one operation; the caller must call
// s.mu.RUnlock when err is nil.
func (s *BoltStore) acquire(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return fmt.Errorf("%w: %s", ErrClosed, op)
	}
	return nil
}

// Load implements Store.
func (s *BoltStore) Load(ctx context.Context, id string) (*Device, error) {
	d, _, err := s.LoadRecord(ctx, id)
	return d, err
}

// LoadRecord is Load that also reports how the record was stored, e.g.
// whether it still has its secrets in the clear (see Reseal).
func (s *BoltStore) LoadRecord(ctx context.Context, id string) (*Device, RecordInfo, error) {
	if err := s.acquire(ctx, "load"); err != nil {
		return nil, RecordInfo{}, err
	}
	defer s.mu.RUnlock()
	var rec []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketDevices).Get([]byte(id))
		if len(v) > MaxRecordLen { // refuse before copying
			return fmt.Errorf("%w: record is %d bytes, longer than %d", ErrCorrupt, len(v), MaxRecordLen)
		}
		if v != nil {
			rec = bytes.Clone(v) // v lives only as long as the transaction
		}
		return nil
	})
	if err != nil {
		return nil, RecordInfo{}, fmt.Errorf("store: load %q: %w", id, err)
	}
	if rec == nil {
		return nil, RecordInfo{}, fmt.Errorf("%w: load %q", ErrNotFound, id)
	}
	defer clear(rec)
	d, info, err := Decode(rec, s.sealer)
	if err != nil {
		return nil, info, fmt.Errorf("store: load %q: %w", id, err)
	}
	if d.ID != id {
		return nil, info, fmt.Errorf("store: load %q: %w: record is stored under another id", id, ErrCorrupt)
	}
	return d, info, nil
}

// Save implements Store.
func (s *BoltStore) Save(ctx context.Context, d *Device) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("store: save: %w", err)
	}
	rec, err := encode(d, s.sealer)
	if err != nil {
		return fmt.Errorf("store: save %q: %w", d.ID, err)
	}
	defer clear(rec)
	pn, lid := d.PNUser(), d.LIDUser()
	if err := s.acquire(ctx, "save"); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	err = s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketDevices).Put([]byte(d.ID), rec); err != nil {
			return err
		}
		return setMapping(tx, d.ID, pn, lid)
	})
	if err != nil {
		return fmt.Errorf("store: save %q: %w", d.ID, err)
	}
	return nil
}

// Delete implements Store: the device, its mapping, its prekeys and its
// Signal state go in one transaction.
func (s *BoltStore) Delete(ctx context.Context, id string) error {
	if err := s.acquire(ctx, "delete"); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketDevices).Delete([]byte(id)); err != nil {
			return err
		}
		if err := deletePreKeys(tx, id); err != nil {
			return err
		}
		if err := deleteSignal(tx, id); err != nil {
			return err
		}
		return setMapping(tx, id, "", "")
	})
	if err != nil {
		return fmt.Errorf("store: delete %q: %w", id, err)
	}
	return nil
}

// setMapping records that device id now derives the mapping pn <-> lid
// (both empty: none) and repairs the entries its previous mapping had
// written: an old user another stored device still maps keeps that device's
// mapping, otherwise it is removed.
func setMapping(tx *bolt.Tx, id, pn, lid string) error {
	devmap := tx.Bucket(bucketDevMap)
	oldPN, oldLID := splitMapping(devmap.Get([]byte(id)))
	if pn != "" && lid != "" {
		if err := devmap.Put([]byte(id), []byte(pn+"\x00"+lid)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketPN2LID).Put([]byte(pn), []byte(lid)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketLID2PN).Put([]byte(lid), []byte(pn)); err != nil {
			return err
		}
	} else {
		pn, lid = "", ""
		if err := devmap.Delete([]byte(id)); err != nil {
			return err
		}
	}
	if oldPN != "" && oldPN != pn {
		if err := repairMapping(tx, bucketPN2LID, oldPN, 0); err != nil {
			return err
		}
	}
	if oldLID != "" && oldLID != lid {
		if err := repairMapping(tx, bucketLID2PN, oldLID, 1); err != nil {
			return err
		}
	}
	return nil
}

// repairMapping points key in bucket at the mapping of another stored
// device that has the same user (side 0: PN, side 1: LID), or deletes it.
func repairMapping(tx *bolt.Tx, bucket []byte, key string, side int) error {
	b := tx.Bucket(bucket)
	c := tx.Bucket(bucketDevMap).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		pn, lid := splitMapping(v)
		mine, other := pn, lid
		if side == 1 {
			mine, other = lid, pn
		}
		if mine == key {
			return b.Put([]byte(key), []byte(other))
		}
	}
	return b.Delete([]byte(key))
}

func splitMapping(v []byte) (pn, lid string) {
	if i := bytes.IndexByte(v, 0); i >= 0 {
		return string(v[:i]), string(v[i+1:])
	}
	return "", ""
}

// IDs implements Backend.
func (s *BoltStore) IDs(ctx context.Context) ([]string, error) {
	if err := s.acquire(ctx, "list ids"); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	ids := []string{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDevices).ForEach(func(k, _ []byte) error {
			ids = append(ids, string(k)) // bbolt iterates keys in byte order
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: list ids: %w", err)
	}
	return ids, nil
}

// PNForLID implements LIDMap.
func (s *BoltStore) PNForLID(ctx context.Context, lidUser string) (string, error) {
	return s.lookup(ctx, bucketLID2PN, lidUser, "pn for lid")
}

// LIDForPN implements LIDMap.
func (s *BoltStore) LIDForPN(ctx context.Context, pnUser string) (string, error) {
	return s.lookup(ctx, bucketPN2LID, pnUser, "lid for pn")
}

func (s *BoltStore) lookup(ctx context.Context, bucket []byte, key, op string) (string, error) {
	if err := s.acquire(ctx, op); err != nil {
		return "", err
	}
	defer s.mu.RUnlock()
	var out string
	var found bool
	err := s.db.View(func(tx *bolt.Tx) error {
		if key == "" {
			return nil
		}
		if v := tx.Bucket(bucket).Get([]byte(key)); v != nil {
			out, found = string(v), true
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("store: %s %q: %w", op, key, err)
	}
	if !found {
		return "", fmt.Errorf("%w: %s %q", ErrNotFound, op, key)
	}
	return out, nil
}

// Reseal makes sure no secret is left in the clear in the file: it
// re-encodes, in one transaction, every record whose secrets are in the
// clear so that they are sealed with the configured Sealer (device,
// one-time prekey, session and sender key records alike, live or archived, the secrets of webhook
// endpoints and the proxies of the account registry: they are written
// sealed once a Sealer is set, the ones written before stay in the clear
// until Reseal), then, unless the file is known to hold no plaintext
// (keyNoPlaintext), compacts it into a fresh file that replaces the old
// one (compact), because bbolt writes copy-on-write and the old pages,
// still holding the plaintext,
// would stay in the file as free pages. It returns how many records it
// sealed. Without a Sealer it does nothing. Records that do not decode
// abort the whole migration. Reseal excludes every other operation while
// it runs: it is meant for start-up.
func (s *BoltStore) Reseal(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("store: reseal: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, fmt.Errorf("%w: reseal", ErrClosed)
	}
	if s.sealer == nil {
		return 0, nil
	}
	n, err := s.sealRecords()
	if err != nil {
		return 0, fmt.Errorf("store: reseal: %w", err)
	}
	var clean bool
	err = s.db.View(func(tx *bolt.Tx) error {
		clean = tx.Bucket(bucketMeta).Get(keyNoPlaintext) != nil
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("store: reseal: %w", err)
	}
	if n > 0 || !clean {
		if err := s.compact(); err != nil {
			return n, fmt.Errorf("store: reseal: compact %s: %w", s.path, err)
		}
	}
	return n, nil
}

// sealRecords seals, in one transaction, every record in the clear and
// returns how many.
func (s *BoltStore) sealRecords() (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDevices)
		type update struct{ k, v []byte }
		var updates []update
		err := b.ForEach(func(k, v []byte) error {
			d, info, err := Decode(v, s.sealer)
			if err != nil {
				return fmt.Errorf("decode %q: %w", k, err)
			}
			if info.Sealed {
				return nil
			}
			rec, err := Encode(d, s.sealer)
			if err != nil {
				return fmt.Errorf("encode %q: %w", k, err)
			}
			updates = append(updates, update{bytes.Clone(k), rec})
			return nil
		})
		if err != nil {
			return err
		}
		for _, u := range updates { // no Put while ForEach iterates
			if err := b.Put(u.k, u.v); err != nil {
				return err
			}
		}
		pk, err := s.resealPreKeys(tx.Bucket(bucketPreKeys))
		if err != nil {
			return err
		}
		sig, err := s.resealSignal(tx.Bucket(bucketSignal))
		if err != nil {
			return err
		}
		archived, err := s.resealArchive(tx)
		if err != nil {
			return err
		}
		endpoints, err := s.resealEndpoints(tx)
		if err != nil {
			return err
		}
		accounts, err := s.resealAccounts(tx)
		if err != nil {
			return err
		}
		n = len(updates) + pk + sig + archived + endpoints + accounts
		return nil
	})
	return n, err
}

// Close implements Backend. It waits for running operations to finish.
func (s *BoltStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}
