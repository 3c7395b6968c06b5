package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ClaimSend implements SendLog: "m:KEY" in the account's Signal bucket,
// pruned by pruneSendKeys, in a transaction shared with concurrent calls
// (groupCommit).
func (s *BoltStore) ClaimSend(ctx context.Context, id, key, msgID string) (string, bool, error) {
	if err := ValidateSendKey(key, msgID); err != nil {
		return "", false, fmt.Errorf("store: claim send of %q: %w", id, err)
	}
	if err := s.acquire(ctx, "claim send"); err != nil {
		return "", false, err
	}
	defer s.mu.RUnlock()
	if ValidateID(id) != nil {
		return "", false, fmt.Errorf("%w: claim send of %q: no such device", ErrNotFound, id)
	}
	now := s.now()
	var existing string
	var fresh bool
	err := s.commit.update(s.db, func(tx *bolt.Tx) error {
		existing, fresh = "", true // the function may run again (groupCommit)
		if tx.Bucket(bucketDevices).Get([]byte(id)) == nil {
			return fmt.Errorf("no such device: %w", ErrNotFound)
		}
		b, err := tx.Bucket(bucketSignal).CreateBucketIfNotExists([]byte(id))
		if err != nil {
			return err
		}
		k := []byte(SendKeyKey(key))
		if old, ok := LiveSendEntry(string(b.Get(k)), now); ok {
			existing, fresh = old, false
			return nil
		}
		if err := b.Put(k, []byte(SendEntry(now, msgID))); err != nil {
			return err
		}
		return pruneSendKeys(b, now)
	})
	if err != nil {
		return "", false, fmt.Errorf("store: claim send of %q: %w", id, err)
	}
	if fresh {
		return msgID, true, nil
	}
	return existing, false, nil
}

// SentWith implements SendLog.
func (s *BoltStore) SentWith(ctx context.Context, id, key string) (string, bool, error) {
	v, err := s.signalGet(ctx, id, SendKeyKey(key), "read send key")
	switch {
	case errors.Is(err, ErrNotFound):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("store: read send key of %q: %w", id, err)
	}
	msgID, ok := LiveSendEntry(string(v), s.now())
	return msgID, ok, nil
}

// pruneSendKeys deletes the expired entries among the next SendPruneBatch
// idempotency keys of the account's bucket b, from the one SendCursorKey
// names, and leaves the cursor at the first key not examined (none at the
// end: the next call starts again from the first key).
func pruneSendKeys(b *bolt.Bucket, now time.Time) error {
	prefix := []byte(SendKeyKey(""))
	from := b.Get([]byte(SendCursorKey))
	if from == nil {
		from = prefix
	}
	var expired [][]byte
	c := b.Cursor()
	k, v := c.Seek(from)
	for n := 0; n < SendPruneBatch && bytes.HasPrefix(k, prefix); n++ {
		if _, live := LiveSendEntry(string(v), now); !live {
			expired = append(expired, bytes.Clone(k))
		}
		k, v = c.Next()
	}
	var err error
	if bytes.HasPrefix(k, prefix) {
		err = b.Put([]byte(SendCursorKey), bytes.Clone(k))
	} else {
		err = b.Delete([]byte(SendCursorKey))
	}
	for _, k := range expired {
		if err != nil {
			break
		}
		err = b.Delete(k)
	}
	return err
}
