package store

import (
	"bytes"

	bolt "go.etcd.io/bbolt"
)

// SetCompactStep sets the hook called after each step of a compaction.
func SetCompactStep(f func(step string)) { compactStep = f }

// SendKeyCount counts the idempotency keys, expired or not, in the Signal
// bucket of account id.
func SendKeyCount(s *BoltStore, id string) (int, error) {
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSignal).Bucket([]byte(id))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		prefix := []byte(SendKeyKey(""))
		for k, _ := c.Seek(prefix); bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			n++
		}
		return nil
	})
	return n, err
}

// CommitState reports whether the group commit of s has a goroutine
// committing, and how many calls wait for the next transaction.
func CommitState(s *BoltStore) (running bool, pending int) {
	s.commit.mu.Lock()
	defer s.commit.mu.Unlock()
	return s.commit.running, len(s.commit.pending)
}

// HoldWriter starts a write transaction of s that holds bbolt's writer
// lock until release is called, and returns once it holds it.
func HoldWriter(s *BoltStore) (release func()) {
	held, done := make(chan struct{}), make(chan struct{})
	go func() {
		_ = s.db.Update(func(*bolt.Tx) error {
			close(held)
			<-done
			return nil
		})
	}()
	<-held
	return func() { close(done) }
}

// TxID returns the id of the last committed write transaction of s.
func TxID(s *BoltStore) uint64 {
	var id int
	_ = s.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil })
	return uint64(id)
}
