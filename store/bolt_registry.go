package store

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucketAccounts holds the account registry: id -> record (EncodeAccount).
var bucketAccounts = []byte("accounts")

var _ Registry = (*BoltStore)(nil)

// CreateAccount implements Registry.
func (s *BoltStore) CreateAccount(ctx context.Context, r AccountRecord) (AccountRecord, error) {
	r.Created = time.Now().UTC()
	r.Updated = r.Created
	rec, err := EncodeAccount(r, s.sealer)
	if err != nil {
		return AccountRecord{}, fmt.Errorf("store: create account: %w", err)
	}
	if err := s.acquire(ctx, "create account"); err != nil {
		return AccountRecord{}, err
	}
	defer s.mu.RUnlock()
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAccounts)
		if b.Get([]byte(r.ID)) != nil {
			return ErrExists
		}
		return b.Put([]byte(r.ID), rec)
	})
	if err != nil {
		return AccountRecord{}, fmt.Errorf("store: create account %q: %w", r.ID, err)
	}
	return r, nil
}

// UpdateAccount implements Registry.
func (s *BoltStore) UpdateAccount(ctx context.Context, r AccountRecord) (AccountRecord, error) {
	if err := s.acquire(ctx, "update account"); err != nil {
		return AccountRecord{}, err
	}
	defer s.mu.RUnlock()
	var out AccountRecord
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAccounts)
		v := b.Get([]byte(r.ID))
		if v == nil {
			return ErrNotFound
		}
		old, _, err := DecodeAccount(r.ID, v, s.sealer)
		if err != nil {
			return err
		}
		out = old
		out.Proxy, out.DeviceName, out.Updated = r.Proxy, r.DeviceName, time.Now().UTC()
		rec, err := EncodeAccount(out, s.sealer)
		if err != nil {
			return err
		}
		return b.Put([]byte(r.ID), rec)
	})
	if err != nil {
		return AccountRecord{}, fmt.Errorf("store: update account %q: %w", r.ID, err)
	}
	return out, nil
}

// DeleteAccount implements Registry.
func (s *BoltStore) DeleteAccount(ctx context.Context, id string) error {
	if err := s.acquire(ctx, "delete account"); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAccounts)
		if b.Get([]byte(id)) == nil {
			return ErrNotFound
		}
		return b.Delete([]byte(id))
	})
	if err != nil {
		return fmt.Errorf("store: delete account %q: %w", id, err)
	}
	return nil
}

// Account implements Registry.
func (s *BoltStore) Account(ctx context.Context, id string) (AccountRecord, error) {
	if err := s.acquire(ctx, "load account"); err != nil {
		return AccountRecord{}, err
	}
	defer s.mu.RUnlock()
	var r AccountRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketAccounts).Get([]byte(id))
		if v == nil {
			return ErrNotFound
		}
		var err error
		r, _, err = DecodeAccount(id, v, s.sealer)
		return err
	})
	if err != nil {
		return AccountRecord{}, fmt.Errorf("store: load account %q: %w", id, err)
	}
	return r, nil
}

// Accounts implements Registry.
func (s *BoltStore) Accounts(ctx context.Context) ([]AccountRecord, error) {
	if err := s.acquire(ctx, "list accounts"); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	var out []AccountRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		cur, _, err := s.accounts(tx)
		if err != nil {
			return err
		}
		out = SortedAccounts(cur)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: list accounts: %w", err)
	}
	return out, nil
}

// SeedAccounts implements Registry, in one transaction.
func (s *BoltStore) SeedAccounts(ctx context.Context, recs []AccountRecord) (bool, error) {
	if err := s.acquire(ctx, "seed accounts"); err != nil {
		return false, err
	}
	defer s.mu.RUnlock()
	changed := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		cur, inClear, err := s.accounts(tx)
		if err != nil {
			return err
		}
		p, err := PlanSeed(cur, inClear, recs, time.Now().UTC())
		if err != nil || len(p.Put) == 0 && len(p.Delete) == 0 {
			return err
		}
		changed = true
		b := tx.Bucket(bucketAccounts)
		for _, r := range p.Put {
			rec, err := EncodeAccount(r, s.sealer)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(r.ID), rec); err != nil {
				return err
			}
		}
		for _, id := range p.Delete {
			if err := b.Delete([]byte(id)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("store: seed accounts: %w", err)
	}
	return changed, nil
}

// accounts decodes every record of the registry and says which hold a
// proxy in the clear although the store has a Sealer.
func (s *BoltStore) accounts(tx *bolt.Tx) (map[string]AccountRecord, map[string]bool, error) {
	cur := map[string]AccountRecord{}
	inClear := map[string]bool{}
	err := tx.Bucket(bucketAccounts).ForEach(func(k, v []byte) error {
		r, sealed, err := DecodeAccount(string(k), v, s.sealer)
		if err != nil {
			return err
		}
		cur[r.ID] = r
		if !sealed && s.sealer != nil {
			inClear[r.ID] = true
		}
		return nil
	})
	return cur, inClear, err
}

// resealAccounts seals, within tx, every account record whose proxy is in
// the clear, and returns how many.
func (s *BoltStore) resealAccounts(tx *bolt.Tx) (int, error) {
	cur, inClear, err := s.accounts(tx)
	if err != nil {
		return 0, err
	}
	b := tx.Bucket(bucketAccounts)
	for id := range inClear {
		rec, err := EncodeAccount(cur[id], s.sealer)
		if err != nil {
			return 0, err
		}
		if err := b.Put([]byte(id), rec); err != nil {
			return 0, err
		}
	}
	return len(inClear), nil
}
