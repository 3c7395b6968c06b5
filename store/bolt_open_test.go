package store_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/storetest"
)

// storeWithDevices writes a store of n paired devices at path and returns
// its bytes.
func storeWithDevices(t *testing.T, path string, n int) []byte {
	t.Helper()
	s := openBolt(t, path, store.BoltOptions{})
	for i := range n {
		d := storetest.PairedDevice(t, fmt.Sprintf("acct%d", i), fmt.Sprintf("155500000%02d", i), fmt.Sprintf("1000000000000%02d", i), 1)
		if err := s.Save(t.Context(), d); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// openRefused checks that OpenBolt refuses the file at path with an error
// wrapping want that names the file, without panicking or changing it.
func openRefused(t *testing.T, path string, want error) {
	t.Helper()
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s *store.BoltStore
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("OpenBolt panicked: %v", r)
			}
		}()
		s, err = store.OpenBolt(path, store.BoltOptions{Timeout: 100 * time.Millisecond})
	}()
	if err == nil {
		_ = s.Close()
		t.Fatal("OpenBolt accepted the file")
	}
	if !errors.Is(err, want) || !strings.Contains(err.Error(), path) {
		t.Fatalf("OpenBolt = %v; want an error wrapping %v that names the file", err, want)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("OpenBolt changed the file it refused")
	}
}

func TestBoltEmptyFileIsNotAStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devices.db")
	storeWithDevices(t, path, 5)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	openRefused(t, path, store.ErrNotAStore)
	if info, err := os.Stat(path); err != nil || info.Size() != 0 {
		t.Fatalf("the empty file is gone or was written: %v", err)
	}
}

func TestBoltMissingFileIsANewStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "devices.db")
	s := openBolt(t, path, store.BoltOptions{})
	if ids, err := s.IDs(t.Context()); err != nil || len(ids) != 0 {
		t.Fatalf("IDs of a new store = %v, %v", ids, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopened, it is an existing store, not a new one.
	s = openBolt(t, path, store.BoltOptions{})
	if ids, err := s.IDs(t.Context()); err != nil || len(ids) != 0 {
		t.Fatalf("IDs after reopening = %v, %v", ids, err)
	}
}

func TestBoltDirectoryIsNotAStore(t *testing.T) {
	path := t.TempDir()
	if _, err := store.OpenBolt(path, store.BoltOptions{}); !errors.Is(err, store.ErrNotAStore) || !strings.Contains(err.Error(), path) {
		t.Fatalf("OpenBolt of a directory = %v, want ErrNotAStore naming it", err)
	}
}

func TestBoltInvalidFilesAreErrors(t *testing.T) {
	const pageSize = 4096 // bbolt's page size on the test machines
	dir := t.TempDir()
	valid := storeWithDevices(t, filepath.Join(dir, "valid.db"), 5)
	if len(valid) < 5*pageSize {
		t.Fatalf("the valid store is %d bytes, too small for the cases below", len(valid))
	}
	garbage := make([]byte, len(valid))
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}
	// flipPage inverts the header of page n (id, flags, count, overflow).
	flipPage := func(n int) []byte {
		b := bytes.Clone(valid)
		for i := n * pageSize; i < n*pageSize+16; i++ {
			b[i] ^= 0xff
		}
		return b
	}
	otherApp := filepath.Join(dir, "other.db")
	db, err := bolt.Open(otherApp, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("their-data"))
		return err
	})
	if err != nil || db.Close() != nil {
		t.Fatalf("write another application's file: %v", err)
	}
	otherAppBytes, err := os.ReadFile(otherApp)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		data []byte
	}{
		{"one byte", []byte{0}},
		{"random bytes", garbage},
		{"text", bytes.Repeat([]byte("not a database\n"), 1000)},
		{"truncated to one page", valid[:pageSize]},
		{"both meta pages zeroed", append(make([]byte, 2*pageSize), valid[2*pageSize:]...)},
		{"page 2 header", flipPage(2)},
		{"page 3 header", flipPage(3)},
		{"another application's bbolt file", otherAppBytes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "devices.db")
			if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			openRefused(t, path, store.ErrNotAStore)
		})
	}
}

// TestBoltDamagedPagesNeverPanic damages the id or the type of each page in
// turn (what bbolt checks, with panics): OpenBolt opens the file or refuses
// it, never panics, and what it opens lists and loads its devices without
// panicking. (Damaged element counts and overflow lengths, which bbolt
// trusts, are out of reach: see OpenBolt.)
func TestBoltDamagedPagesNeverPanic(t *testing.T) {
	const pageSize = 4096
	valid := storeWithDevices(t, filepath.Join(t.TempDir(), "valid.db"), 5)
	refused := 0
	for page := range len(valid) / pageSize {
		for _, field := range []struct {
			name     string
			from, to int
		}{{"id", 0, 8}, {"flags", 8, 10}} {
			b := bytes.Clone(valid)
			for i := page*pageSize + field.from; i < page*pageSize+field.to; i++ {
				b[i] ^= 0xff
			}
			path := filepath.Join(t.TempDir(), "devices.db")
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Errorf("page %d %s: panic: %v", page, field.name, r)
					}
				}()
				s, err := store.OpenBolt(path, store.BoltOptions{Timeout: 100 * time.Millisecond})
				if err != nil {
					if !strings.Contains(err.Error(), path) {
						t.Errorf("page %d %s: error does not name the file: %v", page, field.name, err)
					}
					refused++
					return
				}
				defer s.Close()
				ids, err := s.IDs(t.Context())
				if err != nil {
					return
				}
				for _, id := range ids {
					_, _ = s.Load(t.Context(), id)
				}
			}()
		}
	}
	if refused == 0 {
		t.Fatal("no damaged page was refused: the test does not damage what it means to")
	}
}
