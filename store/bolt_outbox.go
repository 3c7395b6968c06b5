package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The outbox in the bbolt file:
//
//	outbox/SEQ                 the log: an encoded record (encodeOutboxRecord)
//	                           under its 8-byte big-endian sequence number
//	outbox_queues/ENDPOINT/    one bucket per open endpoint, the entries it
//	                           still has to deliver:
//	    SEQ                    an entry of the log (empty value)
//	    SEQ|N                  a redriven entry (16 bytes: the log's last
//	                           sequence when it was redriven, then a counter),
//	                           its value the entry itself (encodeQueued), so
//	                           that it outlives the log's trimming
//	outbox_dead/SEQ            dead letters (JSON, deadLetterRecord)
//	endpoints/NAME             endpoints defined through the API
//	                           (EncodeEndpoint; the secret sealed)
//	meta/outbox_trimmed        the highest sequence trimmed from the log
//
// Entry and dead letter ids are their sequence numbers in 20 decimal
// digits, so that they sort as they were appended.
var (
	bucketOutbox    = []byte("outbox")
	bucketQueues    = []byte("outbox_queues")
	bucketDead      = []byte("outbox_dead")
	bucketEndpoints = []byte("endpoints")
	keyTrimmed      = []byte("outbox_trimmed")
)

// DefaultOutboxHistory is how many of the latest entries the log keeps
// once every queue has delivered them (BoltOptions.OutboxHistory): an
// event stream resumes from any of them.
const DefaultOutboxHistory = 10000

// maxOutboxRead bounds the entries one After, Next or DeadLetters returns.
const maxOutboxRead = 10000

var _ Outbox = (*BoltStore)(nil)

// boltInflight remembers, in memory, the entries Next handed out and that
// are not acknowledged yet: endpoint -> entry id -> queue key. A new store
// object (a restart) starts with none, so every unacknowledged entry is
// due again.
type boltInflight struct {
	mu sync.Mutex // held across Next's read, so two calls never hand out one entry twice
	m  map[string]map[string][]byte
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func seqID(seq uint64) string { return fmt.Sprintf("%020d", seq) }

// parseSeqID parses an entry or dead letter id.
func parseSeqID(id string) (uint64, bool) {
	if id == "" || len(id) > 20 {
		return 0, false
	}
	seq, err := strconv.ParseUint(id, 10, 64)
	return seq, err == nil
}

// encodeOutboxRecord: version (1) = 1 | account, kind, instance: uvarint
// length + bytes each | time: varint Unix nanoseconds, 0 for the zero
// time | body: the rest. The body is kept as it is.
func encodeOutboxRecord(dst []byte, r OutboxRecord) []byte {
	dst = append(dst, 1)
	for _, s := range []string{r.Account, r.Kind, r.Instance} {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	var t int64
	if !r.Time.IsZero() {
		t = r.Time.UnixNano()
	}
	dst = binary.AppendVarint(dst, t)
	return append(dst, r.Body...)
}

func decodeOutboxRecord(b []byte) (OutboxRecord, error) {
	var r OutboxRecord
	if len(b) == 0 || b[0] != 1 {
		return r, fmt.Errorf("%w: outbox record of an unknown version", ErrCorrupt)
	}
	b = b[1:]
	var fields [3]string
	for i := range fields {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return r, fmt.Errorf("%w: truncated outbox record", ErrCorrupt)
		}
		fields[i] = string(b[k : k+int(n)])
		b = b[k+int(n):]
	}
	t, k := binary.Varint(b)
	if k <= 0 {
		return r, fmt.Errorf("%w: truncated outbox record", ErrCorrupt)
	}
	r.Account, r.Kind, r.Instance = fields[0], fields[1], fields[2]
	if t != 0 {
		r.Time = time.Unix(0, t).UTC()
	}
	r.Body = bytes.Clone(b[k:])
	return r, nil
}

// encodeQueued encodes a whole entry (a redriven one): uvarint length +
// id, then the record.
func encodeQueued(e OutboxEntry) []byte {
	b := binary.AppendUvarint(nil, uint64(len(e.ID)))
	b = append(b, e.ID...)
	return encodeOutboxRecord(b, e.OutboxRecord)
}

func decodeQueued(b []byte) (OutboxEntry, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return OutboxEntry{}, fmt.Errorf("%w: truncated queued entry", ErrCorrupt)
	}
	r, err := decodeOutboxRecord(b[k+int(n):])
	return OutboxEntry{ID: string(b[k : k+int(n)]), OutboxRecord: r}, err
}

// deadLetterRecord is a dead letter at rest.
type deadLetterRecord struct {
	Endpoint string    `json:"endpoint"`
	EntryID  string    `json:"entry_id"`
	Record   []byte    `json:"record"` // encodeOutboxRecord
	Attempts int       `json:"attempts"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
}

func (s *BoltStore) history() uint64 {
	if s.outboxHistory > 0 {
		return uint64(s.outboxHistory)
	}
	return DefaultOutboxHistory
}

// Append implements Outbox: the records go into the log and into every
// open queue in one transaction, which also trims the log (trimLog) and
// which concurrent Append and ApplySignal calls share (groupCommit).
func (s *BoltStore) Append(ctx context.Context, recs ...OutboxRecord) ([]string, error) {
	if err := ValidateOutboxRecords(recs); err != nil {
		return nil, fmt.Errorf("store: outbox append: %w", err)
	}
	if len(recs) == 0 {
		return nil, nil
	}
	if err := s.acquire(ctx, "outbox append"); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	var ids []string
	err := s.commit.update(s.db, func(tx *bolt.Tx) error {
		var err error
		ids, err = s.appendTx(tx, recs)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: outbox append: %w", err)
	}
	return ids, nil
}

// appendTx appends recs to the log and every open queue in tx, trims the
// log (trimLog) and returns the records' ids.
func (s *BoltStore) appendTx(tx *bolt.Tx, recs []OutboxRecord) ([]string, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	log := tx.Bucket(bucketOutbox)
	var queues []*bolt.Bucket
	err := tx.Bucket(bucketQueues).ForEachBucket(func(k []byte) error {
		queues = append(queues, tx.Bucket(bucketQueues).Bucket(k))
		return nil
	})
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(recs))
	for _, r := range recs {
		seq, err := log.NextSequence()
		if err != nil {
			return nil, err
		}
		k := seqKey(seq)
		// bbolt keeps the value until the commit: one buffer each.
		if err := log.Put(k, encodeOutboxRecord(nil, r)); err != nil {
			return nil, err
		}
		for _, q := range queues {
			if err := q.Put(k, nil); err != nil {
				return nil, err
			}
		}
		ids = append(ids, seqID(seq))
	}
	return ids, s.trimLog(tx)
}

// trimLog deletes the log's entries that are older than the history kept
// and that no queue holds, and records the highest one deleted.
func (s *BoltStore) trimLog(tx *bolt.Tx) error {
	log := tx.Bucket(bucketOutbox)
	last := log.Sequence()
	if last <= s.history() {
		return nil
	}
	bound := last - s.history() // entries up to bound may go
	err := tx.Bucket(bucketQueues).ForEachBucket(func(name []byte) error {
		c := tx.Bucket(bucketQueues).Bucket(name).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) == 8 { // the oldest entry of the log it needs
				if seq := binary.BigEndian.Uint64(k); seq <= bound {
					bound = seq - 1
				}
				break
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	c := log.Cursor()
	trimmed := uint64(0)
	for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= bound; k, _ = c.First() {
		trimmed = binary.BigEndian.Uint64(k)
		if err := c.Delete(); err != nil {
			return err
		}
	}
	if trimmed == 0 {
		return nil
	}
	return tx.Bucket(bucketMeta).Put(keyTrimmed, seqKey(trimmed))
}

// After implements Outbox.
func (s *BoltStore) After(ctx context.Context, id string, n int) ([]OutboxEntry, error) {
	from := uint64(0)
	if id != "" {
		seq, ok := parseSeqID(id)
		if !ok {
			return nil, fmt.Errorf("store: outbox after: %w: want up to 20 decimal digits", ErrInvalidOutboxID)
		}
		from = seq
	}
	n = min(n, maxOutboxRead)
	if err := s.acquire(ctx, "outbox after"); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	var out []OutboxEntry
	trimmed := false
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyTrimmed); id != "" && len(v) == 8 && from < binary.BigEndian.Uint64(v) {
			trimmed = true
		}
		c := tx.Bucket(bucketOutbox).Cursor()
		for k, v := c.Seek(seqKey(from + 1)); k != nil && len(out) < n; k, v = c.Next() {
			r, err := decodeOutboxRecord(v)
			if err != nil {
				return fmt.Errorf("entry %d: %w", binary.BigEndian.Uint64(k), err)
			}
			out = append(out, OutboxEntry{ID: seqID(binary.BigEndian.Uint64(k)), OutboxRecord: r})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: outbox after %s: %w", id, err)
	}
	if trimmed {
		return out, fmt.Errorf("store: outbox after %s: %w", id, ErrTrimmed)
	}
	return out, nil
}

// Last implements Outbox.
func (s *BoltStore) Last(ctx context.Context) (string, error) {
	if err := s.acquire(ctx, "outbox last"); err != nil {
		return "", err
	}
	defer s.mu.RUnlock()
	var last uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		last = tx.Bucket(bucketOutbox).Sequence()
		return nil
	})
	if err != nil || last == 0 {
		return "", err
	}
	return seqID(last), nil
}

// OpenEndpoint implements Outbox.
func (s *BoltStore) OpenEndpoint(ctx context.Context, endpoint string) error {
	if err := ValidateEndpointName(endpoint); err != nil {
		return fmt.Errorf("store: open endpoint: %w", err)
	}
	return s.update(ctx, "open endpoint "+strconv.Quote(endpoint), func(tx *bolt.Tx) error {
		_, err := tx.Bucket(bucketQueues).CreateBucketIfNotExists([]byte(endpoint))
		return err
	})
}

// CloseEndpoint implements Outbox.
func (s *BoltStore) CloseEndpoint(ctx context.Context, endpoint string) error {
	err := s.update(ctx, "close endpoint "+strconv.Quote(endpoint), func(tx *bolt.Tx) error {
		q := tx.Bucket(bucketQueues)
		if q.Bucket([]byte(endpoint)) != nil {
			if err := q.DeleteBucket([]byte(endpoint)); err != nil {
				return err
			}
		}
		return deleteDeadLetters(tx, endpoint)
	})
	if err == nil {
		s.inflight.mu.Lock()
		delete(s.inflight.m, endpoint)
		s.inflight.mu.Unlock()
	}
	return err
}

// Queues implements Outbox.
func (s *BoltStore) Queues(ctx context.Context) ([]string, error) {
	if err := s.acquire(ctx, "outbox queues"); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	var names []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketQueues).ForEachBucket(func(k []byte) error {
			names = append(names, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: outbox queues: %w", err)
	}
	return names, nil
}

func deleteDeadLetters(tx *bolt.Tx, endpoint string) error {
	b := tx.Bucket(bucketDead)
	var doomed [][]byte
	err := b.ForEach(func(k, v []byte) error {
		var d deadLetterRecord
		if json.Unmarshal(v, &d) == nil && d.Endpoint == endpoint {
			doomed = append(doomed, bytes.Clone(k))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range doomed { // no deletes while ForEach iterates
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// Next implements Outbox. In the embedded store the process is the only
// deliverer: entries handed out stay out until acknowledged, buried, or
// the store is opened again.
func (s *BoltStore) Next(ctx context.Context, endpoint, deliverer string, n int) ([]OutboxEntry, error) {
	n = min(n, maxOutboxRead)
	if err := s.acquire(ctx, "outbox next"); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	s.inflight.mu.Lock()
	defer s.inflight.mu.Unlock()
	out := s.inflight.m[endpoint]
	var got []OutboxEntry
	var keys [][]byte
	err := s.db.View(func(tx *bolt.Tx) error {
		q := tx.Bucket(bucketQueues).Bucket([]byte(endpoint))
		if q == nil {
			return fmt.Errorf("%w: the endpoint has no queue: open it first", ErrNotFound)
		}
		log := tx.Bucket(bucketOutbox)
		c := q.Cursor()
		for k, v := c.First(); k != nil && len(got) < n; k, v = c.Next() {
			var e OutboxEntry
			if len(k) == 8 {
				seq := binary.BigEndian.Uint64(k)
				e.ID = seqID(seq)
				if _, busy := out[e.ID]; busy {
					continue
				}
				rec := log.Get(k)
				if rec == nil {
					return fmt.Errorf("%w: queued entry %d is missing from the log", ErrCorrupt, seq)
				}
				r, err := decodeOutboxRecord(rec)
				if err != nil {
					return fmt.Errorf("entry %d: %w", seq, err)
				}
				e.OutboxRecord = r
			} else {
				var err error
				if e, err = decodeQueued(v); err != nil {
					return err
				}
				if _, busy := out[e.ID]; busy {
					continue
				}
			}
			got = append(got, e)
			keys = append(keys, bytes.Clone(k))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: outbox next of %q: %w", endpoint, err)
	}
	if len(got) > 0 {
		if out == nil {
			if s.inflight.m == nil {
				s.inflight.m = make(map[string]map[string][]byte)
			}
			out = make(map[string][]byte)
			s.inflight.m[endpoint] = out
		}
		for i, e := range got {
			out[e.ID] = keys[i]
		}
	}
	return got, nil
}

// Ack implements Outbox.
func (s *BoltStore) Ack(ctx context.Context, endpoint string, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	err := s.update(ctx, "outbox ack of "+strconv.Quote(endpoint), func(tx *bolt.Tx) error {
		return s.ackTx(tx, endpoint, ids)
	})
	if err == nil {
		s.forget(endpoint, ids)
	}
	return err
}

// ackTx removes ids from endpoint's queue (an absent queue or id is no
// error: acknowledged already).
func (s *BoltStore) ackTx(tx *bolt.Tx, endpoint string, ids []string) error {
	q := tx.Bucket(bucketQueues).Bucket([]byte(endpoint))
	if q == nil {
		return nil
	}
	s.inflight.mu.Lock()
	handed := s.inflight.m[endpoint]
	var keys [][]byte
	for _, id := range ids {
		if k, ok := handed[id]; ok {
			keys = append(keys, k)
		} else if seq, ok := parseSeqID(id); ok {
			keys = append(keys, seqKey(seq))
		}
	}
	s.inflight.mu.Unlock()
	for _, k := range keys {
		if err := q.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// forget drops acknowledged ids from the entries handed out.
func (s *BoltStore) forget(endpoint string, ids []string) {
	s.inflight.mu.Lock()
	defer s.inflight.mu.Unlock()
	for _, id := range ids {
		delete(s.inflight.m[endpoint], id)
	}
}

// Bury implements Outbox: the acknowledgement and the dead letter are one
// transaction.
func (s *BoltStore) Bury(ctx context.Context, d DeadLetter) error {
	if err := ValidateEndpointName(d.Endpoint); err != nil {
		return fmt.Errorf("store: outbox bury: %w", err)
	}
	if d.At.IsZero() {
		d.At = time.Now()
	}
	v, err := json.Marshal(deadLetterRecord{
		Endpoint: d.Endpoint, EntryID: d.Entry.ID, Record: encodeOutboxRecord(nil, d.Entry.OutboxRecord),
		Attempts: d.Attempts, Reason: CutDeadLetterReason(d.Reason), At: d.At.UTC(),
	})
	if err != nil {
		return fmt.Errorf("store: outbox bury: %w", err)
	}
	err = s.update(ctx, "outbox bury in "+strconv.Quote(d.Endpoint), func(tx *bolt.Tx) error {
		if err := s.ackTx(tx, d.Endpoint, []string{d.Entry.ID}); err != nil {
			return err
		}
		b := tx.Bucket(bucketDead)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		return b.Put(seqKey(seq), v)
	})
	if err == nil {
		s.forget(d.Endpoint, []string{d.Entry.ID})
	}
	return err
}

// DeadLetters implements Outbox.
func (s *BoltStore) DeadLetters(ctx context.Context, endpoint string, n int) ([]DeadLetter, error) {
	n = min(n, maxOutboxRead)
	if err := s.acquire(ctx, "outbox dead letters"); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	var out []DeadLetter
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketDead).Cursor()
		for k, v := c.First(); k != nil && len(out) < n; k, v = c.Next() {
			d, err := decodeDeadLetter(k, v)
			if err != nil {
				return err
			}
			if endpoint == "" || d.Endpoint == endpoint {
				out = append(out, d)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: outbox dead letters: %w", err)
	}
	return out, nil
}

func decodeDeadLetter(k, v []byte) (DeadLetter, error) {
	var d deadLetterRecord
	if err := json.Unmarshal(v, &d); err != nil {
		return DeadLetter{}, fmt.Errorf("%w: dead letter %d: %v", ErrCorrupt, binary.BigEndian.Uint64(k), err)
	}
	r, err := decodeOutboxRecord(d.Record)
	if err != nil {
		return DeadLetter{}, fmt.Errorf("dead letter %d: %w", binary.BigEndian.Uint64(k), err)
	}
	return DeadLetter{
		ID: seqID(binary.BigEndian.Uint64(k)), Endpoint: d.Endpoint,
		Entry:    OutboxEntry{ID: d.EntryID, OutboxRecord: r},
		Attempts: d.Attempts, Reason: d.Reason, At: d.At,
	}, nil
}

// Redrive implements Outbox: the entry goes back into its endpoint's
// queue with a key after every entry appended so far, carrying its own
// copy of the record (the log may have trimmed it).
func (s *BoltStore) Redrive(ctx context.Context, deadLetterID string) error {
	seq, ok := parseSeqID(deadLetterID)
	if !ok {
		return fmt.Errorf("%w: outbox redrive %q", ErrNotFound, deadLetterID)
	}
	return s.update(ctx, "outbox redrive "+strconv.Quote(deadLetterID), func(tx *bolt.Tx) error {
		dead := tx.Bucket(bucketDead)
		v := dead.Get(seqKey(seq))
		if v == nil {
			return ErrNotFound
		}
		d, err := decodeDeadLetter(seqKey(seq), v)
		if err != nil {
			return err
		}
		q := tx.Bucket(bucketQueues).Bucket([]byte(d.Endpoint))
		if q == nil {
			return fmt.Errorf("%w: endpoint %q has no queue", ErrNotFound, d.Endpoint)
		}
		n, err := q.NextSequence()
		if err != nil {
			return err
		}
		k := binary.BigEndian.AppendUint64(seqKey(tx.Bucket(bucketOutbox).Sequence()), n)
		if err := q.Put(k, encodeQueued(d.Entry)); err != nil {
			return err
		}
		return dead.Delete(seqKey(seq))
	})
}

// Endpoints implements Outbox.
func (s *BoltStore) Endpoints(ctx context.Context) ([]Endpoint, error) {
	if err := s.acquire(ctx, "list endpoints"); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	out := []Endpoint{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEndpoints).ForEach(func(k, v []byte) error {
			e, _, err := DecodeEndpoint(v, s.sealer)
			if err != nil {
				return err
			}
			out = append(out, e)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: list endpoints: %w", err)
	}
	return out, nil
}

// SaveEndpoint implements Outbox.
func (s *BoltStore) SaveEndpoint(ctx context.Context, e Endpoint) error {
	v, err := EncodeEndpoint(e, s.sealer)
	if err != nil {
		return fmt.Errorf("store: save endpoint: %w", err)
	}
	return s.update(ctx, "save endpoint "+strconv.Quote(e.Name), func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEndpoints).Put([]byte(e.Name), v)
	})
}

// DeleteEndpoint implements Outbox.
func (s *BoltStore) DeleteEndpoint(ctx context.Context, name string) error {
	return s.update(ctx, "delete endpoint "+strconv.Quote(name), func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEndpoints)
		if b.Get([]byte(name)) == nil {
			return ErrNotFound
		}
		return b.Delete([]byte(name))
	})
}

// resealEndpoints seals the endpoint secrets still in the clear (Reseal)
// and returns how many.
func (s *BoltStore) resealEndpoints(tx *bolt.Tx) (int, error) {
	b := tx.Bucket(bucketEndpoints)
	var updates [][2][]byte
	err := b.ForEach(func(k, v []byte) error {
		e, sealed, err := DecodeEndpoint(v, s.sealer)
		if err != nil {
			return err
		}
		if sealed {
			return nil
		}
		rec, err := EncodeEndpoint(e, s.sealer)
		if err != nil {
			return fmt.Errorf("endpoint %q: %w", k, err)
		}
		updates = append(updates, [2][]byte{bytes.Clone(k), rec})
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, u := range updates { // no Put while ForEach iterates
		if err := b.Put(u[0], u[1]); err != nil {
			return 0, err
		}
	}
	return len(updates), nil
}

// update runs fn in one write transaction under the shared lock; errors
// read "store: OP: …".
func (s *BoltStore) update(ctx context.Context, op string, fn func(tx *bolt.Tx) error) error {
	if err := s.acquire(ctx, op); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := s.db.Update(fn); err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	return nil
}
