package store_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/storetest"
)

func TestBoltSealedArchiveHasNoSecrets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devices.db")
	s := openBolt(t, path, store.BoltOptions{Sealer: mustSealer(t, testKey(1))})
	d := storetest.PairedDevice(t, "acct", "15551234567", "123456789012345", 5)
	keys := storetest.NewPreKeys(t, 1, 30)
	if err := s.Save(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	if err := s.AddPreKeys(t.Context(), "acct", keys); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Archive(t.Context(), "acct", "failure 401"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(file, d.NoiseKey.Pub[:]) || !bytes.Contains(file, keys[29].Pub[:]) {
		t.Fatal("public keys not found in the file: the search itself is broken")
	}
	if name, ok := storetest.DeviceSecretIn(file, d); ok {
		t.Errorf("%s of the archived device appears in the sealed database file", name)
	}
	if id, ok := storetest.PreKeySecretIn(file, keys); ok {
		t.Errorf("archived prekey %d appears in the clear in the sealed database file", id)
	}
}

// TestBoltResealSealsArchive: entries archived before store.encryption_key
// was set are sealed by Reseal like the live records, and still restore.
func TestBoltResealSealsArchive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devices.db")
	s := openBolt(t, path, store.BoltOptions{})
	d := storetest.PairedDevice(t, "acct", "15551234567", "123456789012345", 5)
	keys := storetest.NewPreKeys(t, 1, 5)
	if err := s.Save(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	if err := s.AddPreKeys(t.Context(), "acct", keys); err != nil {
		t.Fatal(err)
	}
	e, err := s.Archive(t.Context(), "acct", "failure 401")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := storetest.DeviceSecretIn(peekArchived(t, path, e), d); !ok {
		t.Fatal("the archive written without a key holds no secret in the clear: the search itself is broken")
	}

	s = openBolt(t, path, store.BoltOptions{Sealer: mustSealer(t, testKey(3))})
	if n, err := s.Reseal(t.Context()); err != nil || n != 1+len(keys) {
		t.Fatalf("Reseal = %d, %v; want the archived device and its %d prekeys", n, err, len(keys))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	raw := peekArchived(t, path, e)
	if name, ok := storetest.DeviceSecretIn(raw, d); ok {
		t.Errorf("%s still in the clear in the archive after Reseal", name)
	}
	if id, ok := storetest.PreKeySecretIn(raw, keys); ok {
		t.Errorf("archived prekey %d still in the clear after Reseal", id)
	}

	s = openBolt(t, path, store.BoltOptions{Sealer: mustSealer(t, testKey(3))})
	if _, err := s.RestoreArchived(t.Context(), "acct", e.Key); err != nil {
		t.Fatal(err)
	}
	got, info, err := s.LoadRecord(t.Context(), "acct")
	if err != nil || !info.Sealed || storetest.Diff(d, got) != nil {
		t.Fatalf("restored device = %+v, %v (diff %v); want the archived one, sealed", info, err, storetest.Diff(d, got))
	}
}

// peekArchived returns the values stored in an archive entry (the device
// record and every prekey record), concatenated.
func peekArchived(t *testing.T, path string, e store.ArchiveEntry) []byte {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var out []byte
	var walk func(b *bolt.Bucket)
	walk = func(b *bolt.Bucket) {
		_ = b.ForEach(func(k, v []byte) error {
			if v == nil {
				walk(b.Bucket(k))
			} else {
				out = append(out, v...)
			}
			return nil
		})
	}
	_ = db.View(func(tx *bolt.Tx) error {
		walk(tx.Bucket([]byte("archive")).Bucket([]byte(e.ID)).Bucket([]byte(e.Key)))
		return nil
	})
	if len(out) == 0 {
		t.Fatalf("archive entry %s of %s not found in the file", e.Key, e.ID)
	}
	return out
}
