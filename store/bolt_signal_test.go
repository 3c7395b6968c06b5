package store_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/storetest"
)

// signalState is what writeSignal stored: records by account, for
// searching the raw file.
type signalState struct {
	records  [][]byte // sessions and sender keys (secrets)
	identity [32]byte // public
}

// writeSignal stores a device with Signal state under acct and under
// "gone", then archives "gone" (archived state must be sealed too).
func writeSignal(t *testing.T, s *store.BoltStore) signalState {
	t.Helper()
	var st signalState
	st.identity = [32]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32}
	for i, id := range []string{"acct", "gone"} {
		if err := s.Save(t.Context(), storetest.PairedDevice(t, id, fmt.Sprint(15551234560+i), fmt.Sprint(123456789012340+i), 5)); err != nil {
			t.Fatal(err)
		}
		sess, sk := storetest.SignalRecord(t, 3000), storetest.SignalRecord(t, 400)
		st.records = append(st.records, sess, sk)
		_, err := s.ApplySignal(t.Context(), id, store.SignalChanges{
			Sessions:   []store.SessionChange{{Addr: storetest.PeerPN, Record: sess}},
			Identities: []store.IdentityChange{{Addr: storetest.PeerPN, Key: st.identity}},
			SenderKeys: []store.SenderKeyChange{{Group: storetest.Group, Sender: storetest.PeerPN, Record: sk}},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Archive(t.Context(), "gone", "failure 401"); err != nil {
		t.Fatal(err)
	}
	return st
}

// leaked reports whether a 32-byte window of any record appears in raw.
func (st signalState) leaked(raw []byte) bool {
	for _, r := range st.records {
		for i := 0; i+32 <= len(r); i += 256 {
			if bytes.Contains(raw, r[i:i+32]) {
				return true
			}
		}
	}
	return false
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBoltSignalSealedAtRest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devices.db")
	sealer := mustSealer(t, testKey(1))
	s := openBolt(t, path, store.BoltOptions{Sealer: sealer})
	st := writeSignal(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	raw := readFile(t, path)
	if !bytes.Contains(raw, st.identity[:]) {
		t.Fatal("identity key not found in the file: the search itself is broken")
	}
	if st.leaked(raw) {
		t.Fatal("a session or sender key record appears in the sealed database file")
	}
	for _, tt := range []struct {
		name   string
		sealer store.Sealer
		want   error
	}{{"wrong key", mustSealer(t, testKey(2)), store.ErrWrongKey}, {"no key", nil, store.ErrNoSealer}} {
		s := openBolt(t, path, store.BoltOptions{Sealer: tt.sealer})
		if _, err := s.Session(t.Context(), "acct", storetest.PeerPN); !errors.Is(err, tt.want) {
			t.Errorf("%s: Session = %v, want %v", tt.name, err, tt.want)
		}
		if _, err := s.SenderKey(t.Context(), "acct", storetest.Group, storetest.PeerPN); !errors.Is(err, tt.want) {
			t.Errorf("%s: SenderKey = %v, want %v", tt.name, err, tt.want)
		}
		if k, err := s.PeerIdentity(t.Context(), "acct", storetest.PeerPN); err != nil || k != st.identity {
			t.Errorf("%s: PeerIdentity (public, not sealed) = %x, %v", tt.name, k, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// Reopened with the key (a restart), everything is there, the
	// archived state included.
	s = openBolt(t, path, store.BoltOptions{Sealer: sealer})
	storetest.ExpectSession(t, s, "acct", storetest.PeerPN, st.records[0])
	list, err := s.ListArchive(t.Context())
	if err != nil || len(list) != 1 {
		t.Fatalf("ListArchive = %v, %v", list, err)
	}
	if _, err := s.RestoreArchived(t.Context(), "gone", list[0].Key); err != nil {
		t.Fatal(err)
	}
	storetest.ExpectSession(t, s, "gone", storetest.PeerPN, st.records[2])
}

// TestBoltSignalTransplantRefused: a sealed session copied under another
// peer's key does not open.
func TestBoltSignalTransplantRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devices.db")
	s := openBolt(t, path, store.BoltOptions{Sealer: mustSealer(t, testKey(1))})
	writeSignal(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("signal")).Bucket([]byte("acct"))
		v := bytes.Clone(b.Get([]byte(store.SessionKey(storetest.PeerPN))))
		return b.Put([]byte(store.SessionKey(storetest.PeerLID)), v)
	})
	if cerr := db.Close(); err != nil || cerr != nil {
		t.Fatal(err, cerr)
	}
	s = openBolt(t, path, store.BoltOptions{Sealer: mustSealer(t, testKey(1))})
	if _, err := s.Session(t.Context(), "acct", storetest.PeerLID); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("transplanted session = %v, want ErrCorrupt", err)
	}
}

// TestBoltSignalResealed: Signal state written in the clear, live and
// archived, loads once a key is set, and Reseal seals it and compacts the
// file so that no record is left in it in the clear.
func TestBoltSignalResealed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devices.db")
	s := openBolt(t, path, store.BoltOptions{})
	st := writeSignal(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !st.leaked(readFile(t, path)) {
		t.Fatal("records not found in the plain file: the search itself is broken")
	}
	s = openBolt(t, path, store.BoltOptions{Sealer: mustSealer(t, testKey(3))})
	storetest.ExpectSession(t, s, "acct", storetest.PeerPN, st.records[0])
	// Two devices (one archived) and two records each.
	if n, err := s.Reseal(t.Context()); err != nil || n != 2+4 {
		t.Fatalf("Reseal = %d, %v; want 6", n, err)
	}
	storetest.ExpectSession(t, s, "acct", storetest.PeerPN, st.records[0])
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if st.leaked(readFile(t, path)) {
		t.Fatal("a Signal record is left in the clear in the file after Reseal")
	}
}

func TestBoltSignalCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devices.db")
	s := openBolt(t, path, store.BoltOptions{})
	writeSignal(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("signal")).Bucket([]byte("acct"))
		v := bytes.Clone(b.Get([]byte(store.SessionKey(storetest.PeerPN))))
		v[10] ^= 1
		if err := b.Put([]byte(store.SessionKey(storetest.PeerPN)), v); err != nil {
			return err
		}
		if err := b.Put([]byte(store.IdentityKey(storetest.PeerPN)), []byte("short")); err != nil {
			return err
		}
		return b.Put([]byte(store.SenderKeyKey(storetest.Group, storetest.PeerPN)), make([]byte, store.MaxSignalStoredLen+1))
	})
	if cerr := db.Close(); err != nil || cerr != nil {
		t.Fatal(err, cerr)
	}
	s = openBolt(t, path, store.BoltOptions{})
	if _, err := s.Session(t.Context(), "acct", storetest.PeerPN); !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("flipped session = %v, want ErrCorrupt", err)
	}
	if _, err := s.PeerIdentity(t.Context(), "acct", storetest.PeerPN); !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("short identity = %v, want ErrCorrupt", err)
	}
	if _, err := s.SenderKey(t.Context(), "acct", storetest.Group, storetest.PeerPN); !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("oversized sender key = %v, want ErrCorrupt", err)
	}
}
