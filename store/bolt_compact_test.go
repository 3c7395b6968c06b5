package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/storetest"
)

// The crash tests run this test binary again with these variables: it then
// reseals the store at crashPathEnv with testKey(1) and exits with
// crashExitCode at the compaction step crashStepEnv.
const (
	crashPathEnv  = "WAFLEET_STORE_TEST_CRASH_PATH"
	crashStepEnv  = "WAFLEET_STORE_TEST_CRASH_STEP"
	crashExitCode = 3
)

func TestMain(m *testing.M) {
	if path := os.Getenv(crashPathEnv); path != "" {
		os.Exit(resealUntilCrash(path, os.Getenv(crashStepEnv)))
	}
	os.Exit(m.Run())
}

// resealUntilCrash is the crashing process: its exit code is crashExitCode
// when it stopped at step, 0 when Reseal finished, 1 when it failed.
func resealUntilCrash(path, step string) int {
	store.SetCompactStep(func(s string) {
		if s == step {
			os.Exit(crashExitCode) // no deferred cleanup: as a crash
		}
	})
	sealer, err := store.NewAESSealer(testKey(1))
	if err != nil {
		return 1
	}
	s, err := store.OpenBolt(path, store.BoltOptions{Sealer: sealer})
	if err != nil {
		return 1
	}
	if _, err := s.Reseal(context.Background()); err != nil {
		return 1
	}
	return 0
}

// plainStore is a store written without a key: devices (saved twice, so
// that old versions of their records sit in free pages) and prekeys.
type plainStore struct {
	devices []*store.Device
	prekeys map[string][]store.PreKey
}

func writePlainStore(t *testing.T, path string) plainStore {
	t.Helper()
	s := openBolt(t, path, store.BoltOptions{})
	p := plainStore{prekeys: map[string][]store.PreKey{}}
	for i := range 5 {
		id := fmt.Sprintf("acct%d", i)
		d := storetest.PairedDevice(t, id, fmt.Sprintf("155500000%02d", i), fmt.Sprintf("1000000000000%02d", i), 1)
		for range 2 {
			if err := s.Save(t.Context(), d); err != nil {
				t.Fatal(err)
			}
		}
		keys := storetest.NewPreKeys(t, 1, 120)
		if err := s.AddPreKeys(t.Context(), id, keys); err != nil {
			t.Fatal(err)
		}
		if err := s.MarkPreKeysUploaded(t.Context(), id, 60); err != nil {
			t.Fatal(err)
		}
		p.devices = append(p.devices, d)
		p.prekeys[id] = keys
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The search below finds secrets in the clear: without this the
	// tests could pass by searching badly.
	if p.leak(t, path) == "" {
		t.Fatal("no secret found in a store written without a key: the search is broken")
	}
	return p
}

// leak names a secret of p that appears in the raw bytes of the file at
// path, or is "".
func (p plainStore) leak(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range p.devices {
		if name, found := storetest.DeviceSecretIn(raw, d); found {
			return name + " of " + d.ID
		}
		if id, found := storetest.PreKeySecretIn(raw, p.prekeys[d.ID]); found {
			return fmt.Sprintf("prekey %d of %s", id, d.ID)
		}
	}
	return ""
}

// check opens the store at path with the key and checks that everything
// p wrote is there, sealed.
func (p plainStore) check(t *testing.T, path string) {
	t.Helper()
	s := openBolt(t, path, store.BoltOptions{Sealer: mustSealer(t, testKey(1))})
	for _, want := range p.devices {
		got, info, err := s.LoadRecord(t.Context(), want.ID)
		if err != nil || !info.Sealed || storetest.Diff(want, got) != nil {
			t.Fatalf("device %s: sealed %v, err %v, differs in %v", want.ID, info.Sealed, err, storetest.Diff(want, got))
		}
		keys := p.prekeys[want.ID]
		if c, err := s.PreKeyCounts(t.Context(), want.ID); err != nil || c != (store.PreKeyCounts{Stored: len(keys), Uploaded: 60, MaxID: uint32(len(keys))}) {
			t.Fatalf("prekey counts of %s = %+v, %v", want.ID, c, err)
		}
		for _, k := range []store.PreKey{keys[0], keys[len(keys)-1]} {
			if got, err := s.PreKey(t.Context(), want.ID, k.ID); err != nil || got != k {
				t.Fatalf("prekey %d of %s: %v", k.ID, want.ID, err)
			}
		}
	}
	if lid, err := s.LIDForPN(t.Context(), "15550000000"); err != nil || lid != "100000000000000" {
		t.Fatalf("mapping = %q, %v", lid, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// reseal opens the store at path with testKey(1), reseals it as the
// start-up does and closes it.
func reseal(t *testing.T, path string) int {
	t.Helper()
	s := openBolt(t, path, store.BoltOptions{Sealer: mustSealer(t, testKey(1))})
	n, err := s.Reseal(t.Context())
	if err != nil {
		t.Fatalf("Reseal: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestResealLeavesNoPlaintextInTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devices.db")
	p := writePlainStore(t, path)
	if n := reseal(t, path); n != 5+5*120 {
		t.Fatalf("Reseal sealed %d records, want %d", n, 5+5*120)
	}
	if leak := p.leak(t, path); leak != "" {
		t.Fatalf("%s, written before the key, remains in the file after Reseal", leak)
	}
	if _, err := os.Stat(path + ".compacting"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the compaction file is still there: %v", err)
	}
	p.check(t, path)
}

// TestResealCompactsAFileOnceWrittenInTheClear: records sealed by later
// saves (or by a Reseal before compaction existed) leave nothing to seal,
// yet their old versions sit in free pages until the file is compacted.
func TestResealCompactsAFileOnceWrittenInTheClear(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devices.db")
	p := writePlainStore(t, path)
	s := openBolt(t, path, store.BoltOptions{Sealer: mustSealer(t, testKey(1))})
	for _, d := range p.devices {
		if err := s.Save(t.Context(), d); err != nil {
			t.Fatal(err)
		}
		// Removing every prekey leaves only free pages holding them.
		for _, k := range p.prekeys[d.ID] {
			if err := s.RemovePreKey(t.Context(), d.ID, k.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if p.leak(t, path) == "" {
		t.Fatal("no old record left in free pages: the test does not test what it means to")
	}
	if n := reseal(t, path); n != 0 {
		t.Fatalf("Reseal sealed %d records, want 0", n)
	}
	if leak := p.leak(t, path); leak != "" {
		t.Fatalf("%s remains in free pages after Reseal", leak)
	}
}

func TestResealLeavesACleanFileInPlace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devices.db")
	s := openBolt(t, path, store.BoltOptions{Sealer: mustSealer(t, testKey(1))})
	if err := s.Save(t.Context(), storetest.NewDevice(t, "acct")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := reseal(t, path); n != 0 {
		t.Fatalf("Reseal of a store always sealed = %d, want 0", n)
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Fatal("Reseal replaced a file that never held a secret in the clear")
	}

	// Opened once without the key, it may hold plaintext again: the next
	// Reseal compacts.
	openBolt(t, path, store.BoltOptions{}).Close()
	reseal(t, path)
	if after2, err := os.Stat(path); err != nil || os.SameFile(after, after2) {
		t.Fatalf("Reseal after an open without the key kept the file: %v", err)
	}
}

// TestResealCrash stops a process resealing the store at each step of the
// compaction: the next start finds the old file or the new one, loses
// nothing and, once it has resealed, leaves no plaintext.
func TestResealCrash(t *testing.T) {
	for _, step := range []string{"written", "renamed"} {
		t.Run(step, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "devices.db")
			p := writePlainStore(t, path)
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), crashPathEnv+"="+path, crashStepEnv+"="+step)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != crashExitCode {
				t.Fatalf("the resealing process did not stop at %q: %v\n%s", step, err, out)
			}
			_, err = os.Stat(path + ".compacting")
			if leftover := err == nil; leftover != (step == "written") {
				t.Fatalf("compaction file left: %v after a crash at %q", leftover, step)
			}
			if leak := p.leak(t, path); step == "renamed" && leak != "" {
				t.Fatalf("the file renamed into place holds %s", leak)
			}
			n := reseal(t, path)
			if step == "renamed" && n != 0 {
				t.Fatalf("Reseal after the rename sealed %d records, want 0", n)
			}
			if _, err := os.Stat(path + ".compacting"); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the compaction file is still there after a restart: %v", err)
			}
			if leak := p.leak(t, path); leak != "" {
				t.Fatalf("%s remains after the restart's Reseal", leak)
			}
			p.check(t, path)
		})
	}
}

func TestOpenRemovesALeftoverCompactionFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devices.db")
	p := writePlainStore(t, path)
	if err := os.WriteFile(path+".compacting", bytes.Repeat([]byte("x"), 10000), 0o600); err != nil {
		t.Fatal(err)
	}
	openBolt(t, path, store.BoltOptions{}).Close()
	if _, err := os.Stat(path + ".compacting"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the leftover compaction file is still there: %v", err)
	}
	reseal(t, path)
	p.check(t, path)
}
