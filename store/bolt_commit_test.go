package store_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/storetest"
)

// Calls made while a transaction commits share the next one: with
// bbolt's writer held, one call waits in its transaction and the others
// queue; once released, the queued ones commit together in one
// transaction (one fsync), the one without a device fails alone and
// writes nothing, and the others, run again without it, report what their
// second run found (a fresh idempotency key claimed) and write once.
func TestBoltGroupCommitSharesTransactions(t *testing.T) {
	s := openBolt(t, filepath.Join(t.TempDir(), "devices.db"), store.BoltOptions{})
	const n = 10
	for i := range n {
		if err := s.Save(t.Context(), storetest.NewDevice(t, fmt.Sprintf("acct%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	apply := func(id string, i int) error {
		_, err := s.ApplySignal(context.Background(), id, store.SignalChanges{
			Sessions: []store.SessionChange{{Addr: storetest.PeerPN, Record: []byte{byte(i), 1}}},
			Events:   []store.OutboxRecord{{Account: id, Kind: "message", Body: []byte(strconv.Itoa(i))}},
		})
		return err
	}
	release := store.HoldWriter(s)
	before := store.TxID(s)
	errs := make([]error, n+1)
	var wg sync.WaitGroup
	wg.Go(func() { errs[0] = apply("acct0", 0) })
	waitFor(t, "the first call in its transaction", func() bool {
		running, pending := store.CommitState(s)
		return running && pending == 0
	})
	for i := 1; i < n; i++ {
		wg.Go(func() { errs[i] = apply(fmt.Sprintf("acct%d", i), i) })
	}
	var claimed string
	var fresh bool
	var claimErr error
	wg.Go(func() { claimed, fresh, claimErr = s.ClaimSend(context.Background(), "acct1", "key-1", "3EB0C1") })
	waitFor(t, "the other calls queued", func() bool {
		_, pending := store.CommitState(s)
		return pending == n
	})
	wg.Go(func() { errs[n] = apply("gone", n) }) // last in the group: the others run twice
	waitFor(t, "the failing call queued", func() bool {
		_, pending := store.CommitState(s)
		return pending == n+1
	})
	release()
	wg.Wait()
	if claimErr != nil || !fresh || claimed != "3EB0C1" {
		t.Fatalf("ClaimSend in the group = %q, %t, %v; want the key claimed fresh", claimed, fresh, claimErr)
	}
	if again, fresh, err := s.ClaimSend(t.Context(), "acct1", "key-1", "3EB0C2"); err != nil || fresh || again != "3EB0C1" {
		t.Fatalf("second ClaimSend = %q, %t, %v; want the first message's id", again, fresh, err)
	}
	for i, err := range errs[:n] {
		if err != nil {
			t.Fatalf("acct%d: %v", i, err)
		}
	}
	if !errors.Is(errs[n], store.ErrNotFound) {
		t.Fatalf("the call without a device: %v, want ErrNotFound", errs[n])
	}
	// The holder's transaction, the first call's, one for all the others
	// (the failed attempt rolled back); then the second ClaimSend's.
	if got := store.TxID(s) - before; got != 4 {
		t.Fatalf("%d transactions for %d calls, want 4 (held, first, the rest together, the last claim)", got, n+3)
	}
	for i := range n {
		storetest.ExpectSession(t, s, fmt.Sprintf("acct%d", i), storetest.PeerPN, []byte{byte(i), 1})
	}
	storetest.ExpectSession(t, s, "gone", storetest.PeerPN, nil)
	entries, err := s.After(t.Context(), "", 100)
	if err != nil || len(entries) != n {
		t.Fatalf("%d events in the outbox (%v), want %d: none of the failed call", len(entries), err, n)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// crashChildEnv names the file the crash test's child writes to.
const crashChildEnv = "WAFLEET_STORE_CRASH_CHILD"

const crashAccounts = 8

// A process killed (SIGKILL) while its accounts apply their Signal
// changes concurrently loses nothing it was told was written: for every
// account, the stored session is at least the last one ApplySignal
// returned for, and the outbox holds the event of every change whose
// state is stored, in order (never a state without its event).
func TestBoltCrashLosesNothingAcknowledged(t *testing.T) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(path) // never returns
	}
	path := filepath.Join(t.TempDir(), "devices.db")
	s, err := store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for a := range crashAccounts {
		if err := s.Save(t.Context(), storetest.NewDevice(t, fmt.Sprintf("acct%d", a))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestBoltCrashLosesNothingAcknowledged$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := make(map[string]int)
	sc := bufio.NewScanner(out)
	total := 0
	for total < 40*crashAccounts && sc.Scan() { // kill it in the middle of its writes
		id, n, ok := strings.Cut(sc.Text(), " ")
		i, err := strconv.Atoi(n)
		if !ok || err != nil {
			t.Fatalf("child wrote %q", sc.Text())
		}
		acked[id] = i
		total++
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if total < 40*crashAccounts {
		t.Fatalf("the child stopped after %d acknowledged writes", total)
	}

	s = openBolt(t, path, store.BoltOptions{})
	entries, err := s.After(t.Context(), "", 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	events := make(map[string][]string)
	for _, e := range entries {
		events[e.Account] = append(events[e.Account], string(e.Body))
	}
	for a := range crashAccounts {
		id := fmt.Sprintf("acct%d", a)
		rec, err := s.Session(t.Context(), id, storetest.PeerPN)
		if err != nil {
			t.Fatalf("%s: no session after the crash (acknowledged up to %d): %v", id, acked[id], err)
		}
		stored, err := strconv.Atoi(string(rec))
		if err != nil {
			t.Fatal(err)
		}
		if stored < acked[id] {
			t.Errorf("%s: session %d stored, but %d was acknowledged", id, stored, acked[id])
		}
		if len(events[id]) < stored+1 {
			t.Errorf("%s: session %d stored with only %d events", id, stored, len(events[id]))
		}
		for i, b := range events[id] {
			if b != strconv.Itoa(i) {
				t.Fatalf("%s: event %d is %q", id, i, b)
			}
		}
	}
}

// crashChild applies numbered changes for every account until it is
// killed, printing "ACCOUNT N" once change N of ACCOUNT is written.
func crashChild(path string) {
	s, err := store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for a := range crashAccounts {
		wg.Go(func() {
			id := fmt.Sprintf("acct%d", a)
			for i := 0; ; i++ {
				n := strconv.Itoa(i)
				_, err := s.ApplySignal(context.Background(), id, store.SignalChanges{
					Sessions: []store.SessionChange{{Addr: storetest.PeerPN, Record: []byte(n)}},
					Events:   []store.OutboxRecord{{Account: id, Kind: "message", Body: []byte(n)}},
				})
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Fprintln(w, id, n)
				_ = w.Flush()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	os.Exit(0)
}
