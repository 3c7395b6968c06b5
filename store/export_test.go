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
