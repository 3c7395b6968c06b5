package store_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/storetest"
)

// rawPreKeys returns the raw records of one account's bucket ("pending" or
// "uploaded") of the (closed) database file, by key.
func rawPreKeys(t *testing.T, path, acct, state string) map[string][]byte {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := map[string][]byte{}
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("prekeys")).Bucket([]byte(acct)).Bucket([]byte(state))
		return b.ForEach(func(k, v []byte) error {
			out[string(k)] = bytes.Clone(v)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// pokePreKey writes raw bytes under key in one account's prekey bucket
// ("" for the account bucket itself) of the (closed) database file.
func pokePreKey(t *testing.T, path, acct, bucket string, key, value []byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("prekeys")).Bucket([]byte(acct))
		if bucket != "" {
			b = b.Bucket([]byte(bucket))
		}
		return b.Put(key, value)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// addedPreKeys opens a store at path, saves device acct with keys 1..n of
// which 1..uploaded are marked uploaded, and closes it.
func addedPreKeys(t *testing.T, path string, sealer store.Sealer, n, uploaded int) []store.PreKey {
	t.Helper()
	s := openBolt(t, path, store.BoltOptions{Sealer: sealer})
	if err := s.Save(t.Context(), storetest.PairedDevice(t, "acct", "15551234567", "123456789012345", 5)); err != nil {
		t.Fatal(err)
	}
	keys := storetest.NewPreKeys(t, 1, n)
	if err := s.AddPreKeys(t.Context(), "acct", keys); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkPreKeysUploaded(t.Context(), "acct", uint32(uploaded)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return keys
}

func TestBoltPreKeyLayout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devices.db")
	keys := addedPreKeys(t, path, nil, 300, 100)
	pending, uploaded := rawPreKeys(t, path, "acct", "pending"), rawPreKeys(t, path, "acct", "uploaded")
	if len(pending) != 200 || len(uploaded) != 100 {
		t.Fatalf("buckets hold %d pending and %d uploaded records, want 200 and 100", len(pending), len(uploaded))
	}
	for _, k := range keys {
		key := []byte{byte(k.ID >> 16), byte(k.ID >> 8), byte(k.ID)}
		rec, ok := pending[string(key)]
		if !ok {
			rec, ok = uploaded[string(key)]
		}
		if !ok || (k.ID <= 100) != (uploaded[string(key)] != nil) {
			t.Fatalf("key %d is not where it belongs", k.ID)
		}
		want, err := store.EncodePreKey("acct", k, nil)
		if err != nil || !bytes.Equal(rec, want) {
			t.Fatalf("record of key %d is not its encoding: %v", k.ID, err)
		}
	}
	// The file holds the keys in the clear without a Sealer: the leak
	// search of TestBoltPreKeysSealedAtRest can find them.
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, found := storetest.PreKeySecretIn(file, keys[:1]); !found {
		t.Fatal("a private key in the clear is not found in the file: the leak search is broken")
	}
	// Reopened, everything is still there.
	s := openBolt(t, path, store.BoltOptions{})
	if c, err := s.PreKeyCounts(t.Context(), "acct"); err != nil || c != (store.PreKeyCounts{Stored: 300, Uploaded: 100, MaxID: 300}) {
		t.Fatalf("PreKeyCounts after reopen = %+v, %v", c, err)
	}
	if got, err := s.PreKeysToUpload(t.Context(), "acct", 1); err != nil || len(got) != 1 || got[0] != keys[100] {
		t.Fatalf("PreKeysToUpload after reopen = %v, %v", got, err)
	}
}

func TestBoltPreKeysSealedAtRest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devices.db")
	sealer := mustSealer(t, testKey(1))
	keys := addedPreKeys(t, path, sealer, 812, 400)
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(file, keys[0].Pub[:]) {
		t.Fatal("public key not found in the file: the search itself is broken")
	}
	if id, leaked := storetest.PreKeySecretIn(file, keys); leaked {
		t.Fatalf("private key of prekey %d appears in the sealed database file", id)
	}
	for _, state := range []string{"pending", "uploaded"} {
		for k, rec := range rawPreKeys(t, path, "acct", state) {
			if len(rec) < 5 || rec[4]&1 == 0 {
				t.Fatalf("record %x in %s is not flagged sealed", k, state)
			}
		}
	}

	tests := []struct {
		name   string
		sealer store.Sealer
		want   error
	}{
		{"wrong key", mustSealer(t, testKey(2)), store.ErrWrongKey},
		{"no key", nil, store.ErrNoSealer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openBolt(t, path, store.BoltOptions{Sealer: tt.sealer})
			if k, err := s.PreKey(t.Context(), "acct", 5); !errors.Is(err, tt.want) || k != (store.PreKey{}) {
				t.Fatalf("PreKey = %v, %v; want %v", k, err, tt.want)
			}
			if got, err := s.PreKeysToUpload(t.Context(), "acct", 10); !errors.Is(err, tt.want) || got != nil {
				t.Fatalf("PreKeysToUpload = %v, %v; want %v", got, err, tt.want)
			}
			// Counting needs no key.
			if c, err := s.PreKeyCounts(t.Context(), "acct"); err != nil || c.Stored != 812 {
				t.Fatalf("PreKeyCounts = %+v, %v", c, err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
	s := openBolt(t, path, store.BoltOptions{Sealer: sealer})
	if got, err := s.PreKeysToUpload(t.Context(), "acct", 812); err != nil || len(got) != 412 || got[0] != keys[400] {
		t.Fatalf("PreKeysToUpload with the right key = %d keys, %v", len(got), err)
	}
}

// TestBoltPreKeysResealed: prekeys written before the key was set load with
// it, and Reseal seals them together with the devices.
func TestBoltPreKeysResealed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devices.db")
	keys := addedPreKeys(t, path, nil, 20, 5)
	sealer := mustSealer(t, testKey(3))
	s := openBolt(t, path, store.BoltOptions{Sealer: sealer})
	for _, k := range []store.PreKey{keys[0], keys[19]} {
		if got, err := s.PreKey(t.Context(), "acct", k.ID); err != nil || got != k {
			t.Fatalf("PreKey(%d) written in the clear, loaded with a key = %v, %v", k.ID, got, err)
		}
	}
	// New keys are sealed at once, beside the old ones in the clear.
	more := storetest.NewPreKeys(t, 21, 5)
	if err := s.AddPreKeys(t.Context(), "acct", more); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Reseal(t.Context()); err != nil || n != 1+20 {
		t.Fatalf("Reseal = %d, %v; want 21 (the device and its 20 prekeys in the clear)", n, err)
	}
	if n, err := s.Reseal(t.Context()); err != nil || n != 0 {
		t.Fatalf("second Reseal = %d, %v; want 0", n, err)
	}
	all := append(keys, more...)
	got, err := s.PreKeysToUpload(t.Context(), "acct", 100)
	if err != nil || len(got) != 20 || got[0] != all[5] || got[19] != all[24] {
		t.Fatalf("PreKeysToUpload after Reseal = %d keys, %v", len(got), err)
	}
	if c, err := s.PreKeyCounts(t.Context(), "acct"); err != nil || c != (store.PreKeyCounts{Stored: 25, Uploaded: 5, MaxID: 25}) {
		t.Fatalf("PreKeyCounts after Reseal = %+v, %v", c, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Old plaintext may linger in free pages (see Reseal); the live
	// records must all be sealed.
	for _, state := range []string{"pending", "uploaded"} {
		for k, rec := range rawPreKeys(t, path, "acct", state) {
			if id, leaked := storetest.PreKeySecretIn(rec, all); leaked || rec[4]&1 == 0 {
				t.Fatalf("record %x (key %d) in %s is still in the clear", k, id, state)
			}
		}
	}
}

func TestBoltPreKeysCorrupt(t *testing.T) {
	good, err := store.EncodePreKey("acct", storetest.NewPreKeys(t, 7, 1)[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		bucket     string
		key, value []byte
		check      func(s *store.BoltStore) error
	}{
		{"garbage record", "pending", []byte{0, 0, 2}, []byte("not a record"), func(s *store.BoltStore) error {
			_, err := s.PreKey(t.Context(), "acct", 2)
			return err
		}},
		{"record under another ID", "pending", []byte{0, 0, 2}, good, func(s *store.BoltStore) error {
			_, err := s.PreKeysToUpload(t.Context(), "acct", 5)
			return err
		}},
		{"huge record", "uploaded", []byte{0, 0, 1}, make([]byte, store.MaxPreKeyRecordLen+1), func(s *store.BoltStore) error {
			_, err := s.PreKey(t.Context(), "acct", 1)
			return err
		}},
		{"key of 4 bytes", "pending", []byte{0, 0, 0, 0}, good, func(s *store.BoltStore) error {
			_, err := s.PreKeysToUpload(t.Context(), "acct", 5)
			return err
		}},
		{"counters truncated", "", []byte("meta"), []byte{1, 0, 0}, func(s *store.BoltStore) error {
			_, err := s.PreKeyCounts(t.Context(), "acct")
			return err
		}},
		{"counters of an unknown version", "", []byte("meta"), []byte{2, 0, 0, 0, 5, 0, 0, 0, 5, 0, 0, 0, 0}, func(s *store.BoltStore) error {
			_, err := s.PreKeyCounts(t.Context(), "acct")
			return err
		}},
		{"more uploaded than stored", "", []byte("meta"), []byte{1, 0, 0, 0, 5, 0, 0, 0, 2, 0, 0, 0, 3}, func(s *store.BoltStore) error {
			return s.AddPreKeys(t.Context(), "acct", storetest.NewPreKeys(t, 10, 1))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "devices.db")
			addedPreKeys(t, path, nil, 5, 1)
			pokePreKey(t, path, "acct", tt.bucket, tt.key, tt.value)
			s := openBolt(t, path, store.BoltOptions{})
			if err := tt.check(s); !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
			// Delete still wipes a corrupt account.
			if err := s.Delete(t.Context(), "acct"); err != nil {
				t.Fatal(err)
			}
			if c, err := s.PreKeyCounts(t.Context(), "acct"); err != nil || c != (store.PreKeyCounts{}) {
				t.Fatalf("PreKeyCounts after Delete = %+v, %v", c, err)
			}
		})
	}
}
