package store_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/storetest"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func mustSealer(t testing.TB, key []byte) store.Sealer {
	t.Helper()
	s, err := store.NewAESSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func openBolt(t testing.TB, path string, opts store.BoltOptions) *store.BoltStore {
	t.Helper()
	s, err := store.OpenBolt(path, opts)
	if err != nil {
		t.Fatalf("OpenBolt: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestBoltContract(t *testing.T) {
	tests := []struct {
		name string
		opts func(t *testing.T) store.BoltOptions
	}{
		{"plain", func(*testing.T) store.BoltOptions { return store.BoltOptions{} }},
		{"sealed", func(t *testing.T) store.BoltOptions { return store.BoltOptions{Sealer: mustSealer(t, testKey(7))} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			open := func(t *testing.T) storetest.Store {
				return openBolt(t, filepath.Join(t.TempDir(), "devices.db"), tt.opts(t))
			}
			storetest.Run(t, open)
			storetest.RunSignal(t, func(t *testing.T, now func() time.Time) storetest.SignalFixture {
				opts := tt.opts(t)
				opts.Now = now
				s := openBolt(t, filepath.Join(t.TempDir(), "devices.db"), opts)
				return storetest.SignalFixture{Store: s, Outbox: s, SendKeys: func(t *testing.T, id string) int {
					t.Helper()
					n, err := store.SendKeyCount(s, id)
					if err != nil {
						t.Fatal(err)
					}
					return n
				}}
			})
		})
	}
}

func TestBoltReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "dir", "devices.db") // parents are created
	paired := storetest.PairedDevice(t, "paired", "15551234567", "123456789012345", 5)
	unpaired := storetest.NewDevice(t, "unpaired")
	gone := storetest.PairedDevice(t, "gone", "15557654321", "543210987654321", 2)

	s, err := store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []*store.Device{paired, unpaired, gone} {
		if err := s.Save(t.Context(), d); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(t.Context(), "gone"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("database file mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}

	s = openBolt(t, path, store.BoltOptions{})
	for _, want := range []*store.Device{paired, unpaired} {
		got, err := s.Load(t.Context(), want.ID)
		if err != nil {
			t.Fatalf("Load(%s) after reopen: %v", want.ID, err)
		}
		if diff := storetest.Diff(want, got); diff != nil {
			t.Fatalf("Load(%s) after reopen differs in %v", want.ID, diff)
		}
	}
	if _, err := s.Load(t.Context(), "gone"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted device after reopen: %v, want ErrNotFound", err)
	}
	if lid, err := s.LIDForPN(t.Context(), "15551234567"); err != nil || lid != "123456789012345" {
		t.Fatalf("LIDForPN after reopen = %q, %v", lid, err)
	}
	if _, err := s.LIDForPN(t.Context(), "15557654321"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("mapping of deleted device after reopen: %v, want ErrNotFound", err)
	}
}

// poke writes raw bytes under key in bucket of the (closed) database file.
func poke(t *testing.T, path, bucket, key string, value []byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucket)).Put([]byte(key), value)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func peek(t *testing.T, path, bucket, key string) []byte {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v []byte
	_ = db.View(func(tx *bolt.Tx) error {
		v = bytes.Clone(tx.Bucket([]byte(bucket)).Get([]byte(key)))
		return nil
	})
	return v
}

func TestBoltCorruptRecord(t *testing.T) {
	d := storetest.PairedDevice(t, "acct", "15551234567", "123456789012345", 5)
	good, err := store.Encode(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := store.Encode(storetest.NewDevice(t, "other"), nil)
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x01
	version2 := bytes.Clone(good)
	version2[3] = 2
	tests := []struct {
		name  string
		value []byte
	}{
		{"garbage", []byte("not a record at all")},
		{"empty", []byte{}},
		{"truncated", good[:len(good)-10]},
		{"bit flipped", flipped},
		{"unknown version", version2},
		{"stored under another id", other},
		{"huge", make([]byte, store.MaxRecordLen+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "devices.db")
			s := openBolt(t, path, store.BoltOptions{})
			keep := storetest.NewDevice(t, "keep")
			if err := s.Save(t.Context(), keep); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			poke(t, path, "devices", "acct", tt.value)

			s = openBolt(t, path, store.BoltOptions{})
			got, err := s.Load(t.Context(), "acct")
			if !errors.Is(err, store.ErrCorrupt) || got != nil {
				t.Fatalf("Load of a corrupt record = %v, %v; want nil, ErrCorrupt", got, err)
			}
			if _, err := s.Load(t.Context(), "keep"); err != nil {
				t.Fatalf("a corrupt record must not affect others: %v", err)
			}
			// Overwriting a corrupt record with a valid one repairs it.
			if err := s.Save(t.Context(), d); err != nil {
				t.Fatal(err)
			}
			if got, err := s.Load(t.Context(), "acct"); err != nil || storetest.Diff(d, got) != nil {
				t.Fatalf("Load after repair: %v", err)
			}
		})
	}
}

func TestBoltSchemaMismatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devices.db")
	s := openBolt(t, path, store.BoltOptions{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	poke(t, path, "meta", "schema", []byte{99})
	if _, err := store.OpenBolt(path, store.BoltOptions{}); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("OpenBolt of an unknown schema = %v, want ErrCorrupt", err)
	}
}

func TestBoltLockedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devices.db")
	openBolt(t, path, store.BoltOptions{})
	// bbolt takes an flock on its own file description, so a second open
	// in this process contends like another process would.
	s2, err := store.OpenBolt(path, store.BoltOptions{Timeout: 50 * time.Millisecond})
	if !errors.Is(err, store.ErrLocked) {
		if s2 != nil {
			_ = s2.Close()
		}
		t.Fatalf("second OpenBolt = %v, want ErrLocked", err)
	}
}

func TestBoltSealedFileHasNoSecrets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devices.db")
	s := openBolt(t, path, store.BoltOptions{Sealer: mustSealer(t, testKey(1))})
	var devices []*store.Device
	for i, id := range []string{"a", "b", "c"} {
		d := storetest.PairedDevice(t, id, fmt.Sprintf("155500000%02d", i), fmt.Sprintf("1234567890123%02d", i), 5)
		devices = append(devices, d)
		if err := s.Save(t.Context(), d); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range devices {
		if !bytes.Contains(file, d.NoiseKey.Pub[:]) {
			t.Fatalf("public key of %s not found in the file: the search itself is broken", d.ID)
		}
		secrets := map[string][32]byte{
			"NoiseKey.Priv": d.NoiseKey.Priv, "IdentityKey.Priv": d.IdentityKey.Priv,
			"SignedPreKey.Priv": d.SignedPreKey.Priv, "AdvSecret": d.AdvSecret,
		}
		for name, secret := range secrets {
			// Any 16-byte window would be a leak, not just the whole key.
			for _, part := range [][]byte{secret[:16], secret[16:]} {
				if bytes.Contains(file, part) {
					t.Errorf("%s of %s appears in the sealed database file", name, d.ID)
				}
			}
		}
	}
}

func TestBoltWrongKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devices.db")
	d := storetest.PairedDevice(t, "acct", "15551234567", "123456789012345", 5)
	s := openBolt(t, path, store.BoltOptions{Sealer: mustSealer(t, testKey(1))})
	if err := s.Save(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
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
			got, err := s.Load(t.Context(), "acct")
			if !errors.Is(err, tt.want) || got != nil {
				t.Fatalf("Load = %v, %v; want nil, %v", got, err, tt.want)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
	s = openBolt(t, path, store.BoltOptions{Sealer: mustSealer(t, testKey(1))})
	if got, err := s.Load(t.Context(), "acct"); err != nil || storetest.Diff(d, got) != nil {
		t.Fatalf("Load with the right key: %v", err)
	}
}

func TestBoltUnsealedLoadsWithSealerAndReseals(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devices.db")
	a := storetest.PairedDevice(t, "a", "15551234567", "123456789012345", 5)
	b := storetest.NewDevice(t, "b")
	s := openBolt(t, path, store.BoltOptions{})
	for _, d := range []*store.Device{a, b} {
		if err := s.Save(t.Context(), d); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.Reseal(t.Context()); err != nil || n != 0 {
		t.Fatalf("Reseal without a sealer = %d, %v; want 0, nil", n, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openBolt(t, path, store.BoltOptions{Sealer: mustSealer(t, testKey(3))})
	for _, want := range []*store.Device{a, b} {
		got, info, err := s.LoadRecord(t.Context(), want.ID)
		if err != nil {
			t.Fatalf("LoadRecord(%s) of an unsealed record with a sealer: %v", want.ID, err)
		}
		if info.Sealed || info.Version != 1 {
			t.Fatalf("LoadRecord(%s) info = %+v, want unsealed version 1", want.ID, info)
		}
		if diff := storetest.Diff(want, got); diff != nil {
			t.Fatalf("LoadRecord(%s) differs in %v", want.ID, diff)
		}
	}
	if n, err := s.Reseal(t.Context()); err != nil || n != 2 {
		t.Fatalf("Reseal = %d, %v; want 2, nil", n, err)
	}
	if n, err := s.Reseal(t.Context()); err != nil || n != 0 {
		t.Fatalf("second Reseal = %d, %v; want 0, nil", n, err)
	}
	for _, want := range []*store.Device{a, b} {
		got, info, err := s.LoadRecord(t.Context(), want.ID)
		if err != nil || !info.Sealed || storetest.Diff(want, got) != nil {
			t.Fatalf("LoadRecord(%s) after Reseal = %+v, %v", want.ID, info, err)
		}
	}
	if lid, err := s.LIDForPN(t.Context(), "15551234567"); err != nil || lid != "123456789012345" {
		t.Fatalf("mapping after Reseal = %q, %v", lid, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if rec := peek(t, path, "devices", "a"); rec == nil || bytes.Contains(rec, a.NoiseKey.Priv[:]) {
		t.Fatal("resealed record is missing or still holds the private key")
	}
}

func TestBoltExtrasAfterClose(t *testing.T) {
	s := openBolt(t, filepath.Join(t.TempDir(), "devices.db"), store.BoltOptions{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reseal(t.Context()); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Reseal after Close = %v, want ErrClosed", err)
	}
	if _, _, err := s.LoadRecord(t.Context(), "x"); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("LoadRecord after Close = %v, want ErrClosed", err)
	}
}
