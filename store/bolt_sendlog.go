package store

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ClaimSend implements SendLog: "m:KEY" in the account's Signal bucket.
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
	now := time.Now()
	existing, fresh := "", true
	err := s.db.Update(func(tx *bolt.Tx) error {
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
		return b.Put(k, []byte(SendEntry(now, msgID)))
	})
	if err != nil {
		return "", false, fmt.Errorf("store: claim send of %q: %w", id, err)
	}
	if fresh {
		return msgID, true, nil
	}
	return existing, false, nil
}
