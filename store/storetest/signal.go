package storetest

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wafleet/wafleet/internal/testkit"
	"github.com/wafleet/wafleet/store"
)

// SignalFixture is one store under RunSignal.
type SignalFixture struct {
	// Store is a fresh, empty store whose clock of the idempotency keys'
	// retention (store.SendKeyTTL) is the now given to open.
	Store Store
	// SendKeys counts the idempotency keys, expired or not, that the
	// Signal state of account id holds.
	SendKeys func(t *testing.T, id string) int
	// Outbox is the outbox that Store's ApplySignal appends the events of
	// its changes to (store.SignalChanges.Events).
	Outbox store.Outbox
}

// RunSignal runs the Signal state part of the contract (store.SignalStore
// and store.SendLog), which every store.Backend passes beside Run's. open
// must return a fresh fixture for each call.
func RunSignal(t *testing.T, open func(t *testing.T, now func() time.Time) SignalFixture) {
	for _, tt := range signalTests {
		t.Run(tt.name, func(t *testing.T) {
			f := open(t, time.Now)
			t.Cleanup(func() { _ = f.Store.Close() })
			tt.fn(t, f.Store)
		})
	}
	t.Run("SignalEvents", func(t *testing.T) {
		f := open(t, time.Now)
		t.Cleanup(func() { _ = f.Store.Close() })
		testSignalEvents(t, f)
	})
	t.Run("SignalConcurrentAccounts", func(t *testing.T) {
		f := open(t, time.Now)
		t.Cleanup(func() { _ = f.Store.Close() })
		testSignalConcurrentAccounts(t, f)
	})
	t.Run("SendLogRetention", func(t *testing.T) {
		clock := testkit.NewClock(time.Unix(1_700_000_000, 0))
		f := open(t, clock.Now)
		t.Cleanup(func() { _ = f.Store.Close() })
		testSendLogRetention(t, f, clock)
	})
}

// signalTests are the Signal state part of the contract (RunSignal).
var signalTests = []struct {
	name string
	fn   func(t *testing.T, s Store)
}{
	{"SignalRoundTrip", testSignalRoundTrip},
	{"SignalTrustOnFirstUse", testSignalTrustOnFirstUse},
	{"SignalAllOrNothing", testSignalAllOrNothing},
	{"SignalInvalid", testSignalInvalid},
	{"SignalNeedsDevice", testSignalNeedsDevice},
	{"SignalDelete", testSignalDelete},
	{"SignalArchive", testSignalArchive},
	{"SendLogClaim", testSendLogClaim},
}

// Peer addresses of the tests: a phone number and a LID device of one
// contact are distinct peers.
const (
	PeerPN  = "15559876543.0:0"
	PeerLID = "987654321098765.1:0"
	Group   = "120363012345678901@g.us"
)

// SignalRecord returns n random bytes standing for a session or sender
// key record (the store keeps them opaque).
func SignalRecord(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func mustApply(t *testing.T, s Store, id string, c store.SignalChanges) store.SignalApplied {
	t.Helper()
	r, err := s.ApplySignal(t.Context(), id, c)
	if err != nil {
		t.Fatalf("ApplySignal(%s): %v", id, err)
	}
	return r
}

// ExpectSession fails unless the session of id with addr is want (nil:
// none).
func ExpectSession(t testing.TB, s store.SignalStore, id, addr string, want []byte) {
	t.Helper()
	got, err := s.Session(t.Context(), id, addr)
	if want == nil {
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Session(%s, %s) = %d bytes, %v; want ErrNotFound", id, addr, len(got), err)
		}
		return
	}
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Session(%s, %s) = %d bytes, %v; want the %d bytes written", id, addr, len(got), err, len(want))
	}
}

func expectSenderKey(t *testing.T, s Store, id, group, sender string, want []byte) {
	t.Helper()
	got, err := s.SenderKey(t.Context(), id, group, sender)
	if want == nil {
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("SenderKey(%s, %s, %s) = %d bytes, %v; want ErrNotFound", id, group, sender, len(got), err)
		}
		return
	}
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("SenderKey(%s, %s, %s) = %d bytes, %v; want the %d bytes written", id, group, sender, len(got), err, len(want))
	}
}

func expectIdentity(t *testing.T, s Store, id, addr string, want *[32]byte) {
	t.Helper()
	got, err := s.PeerIdentity(t.Context(), id, addr)
	if want == nil {
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("PeerIdentity(%s, %s) = %x, %v; want ErrNotFound", id, addr, got, err)
		}
		return
	}
	if err != nil || got != *want {
		t.Fatalf("PeerIdentity(%s, %s) = %x, %v; want %x", id, addr, got, err, *want)
	}
}

func identity(t *testing.T) [32]byte {
	var k [32]byte
	copy(k[:], SignalRecord(t, 32))
	return k
}

func testSignalRoundTrip(t *testing.T, s Store) {
	mustSave(t, s, NewDevice(t, "acct"))
	mustSave(t, s, NewDevice(t, "other"))
	pn, lid := SignalRecord(t, 1800), SignalRecord(t, 2100)
	big := SignalRecord(t, store.MaxSignalRecordLen)
	sk := SignalRecord(t, 300)
	idPN, idLID := identity(t), identity(t)
	r := mustApply(t, s, "acct", store.SignalChanges{
		Sessions:   []store.SessionChange{{Addr: PeerPN, Record: pn}, {Addr: PeerLID, Record: lid}, {Addr: "1.255:65535", Record: big}},
		Identities: []store.IdentityChange{{Addr: PeerPN, Key: idPN}, {Addr: PeerLID, Key: idLID}},
		SenderKeys: []store.SenderKeyChange{{Group: Group, Sender: PeerLID, Record: sk}},
	})
	if len(r.ChangedIdentities) != 0 {
		t.Fatalf("first identities reported as changed: %q", r.ChangedIdentities)
	}
	ExpectSession(t, s, "acct", PeerPN, pn)
	ExpectSession(t, s, "acct", PeerLID, lid)
	ExpectSession(t, s, "acct", "1.255:65535", big)
	ExpectSession(t, s, "acct", "15559876543.0:1", nil) // another device of the peer
	ExpectSession(t, s, "other", PeerPN, nil)           // another account
	expectIdentity(t, s, "acct", PeerPN, &idPN)
	expectIdentity(t, s, "acct", PeerLID, &idLID)
	expectIdentity(t, s, "other", PeerPN, nil)
	expectSenderKey(t, s, "acct", Group, PeerLID, sk)
	expectSenderKey(t, s, "acct", Group, PeerPN, nil)
	expectSenderKey(t, s, "acct", "120363000000000000@g.us", PeerLID, nil)

	// The next ratchet step replaces the session; nil records delete.
	pn2 := SignalRecord(t, 1900)
	mustApply(t, s, "acct", store.SignalChanges{
		Sessions:   []store.SessionChange{{Addr: PeerPN, Record: pn2}, {Addr: PeerLID}},
		SenderKeys: []store.SenderKeyChange{{Group: Group, Sender: PeerLID}},
	})
	ExpectSession(t, s, "acct", PeerPN, pn2)
	ExpectSession(t, s, "acct", PeerLID, nil)
	expectSenderKey(t, s, "acct", Group, PeerLID, nil)
	expectIdentity(t, s, "acct", PeerLID, &idLID) // identities stay
	// Deleting what is absent and an empty batch are no-ops.
	mustApply(t, s, "acct", store.SignalChanges{Sessions: []store.SessionChange{{Addr: PeerLID}}})
	mustApply(t, s, "acct", store.SignalChanges{})
	ExpectSession(t, s, "acct", PeerPN, pn2)
}

func testSignalTrustOnFirstUse(t *testing.T, s Store) {
	mustSave(t, s, NewDevice(t, "acct"))
	first, second := identity(t), identity(t)
	if r := mustApply(t, s, "acct", store.SignalChanges{Identities: []store.IdentityChange{{Addr: PeerPN, Key: first}}}); len(r.ChangedIdentities) != 0 {
		t.Fatalf("first use: changed %q, want none", r.ChangedIdentities)
	}
	if r := mustApply(t, s, "acct", store.SignalChanges{Identities: []store.IdentityChange{{Addr: PeerPN, Key: first}}}); len(r.ChangedIdentities) != 0 {
		t.Fatalf("same key again: changed %q, want none", r.ChangedIdentities)
	}
	// A new key is stored, reported, and not an error; the LID peer's
	// first key beside it is not a change.
	r := mustApply(t, s, "acct", store.SignalChanges{Identities: []store.IdentityChange{
		{Addr: PeerLID, Key: first}, {Addr: PeerPN, Key: second},
	}})
	if !slices.Equal(r.ChangedIdentities, []string{PeerPN}) {
		t.Fatalf("changed = %q, want [%s]", r.ChangedIdentities, PeerPN)
	}
	expectIdentity(t, s, "acct", PeerPN, &second)
	expectIdentity(t, s, "acct", PeerLID, &first)
}

func testSignalAllOrNothing(t *testing.T, s Store) {
	mustSave(t, s, NewDevice(t, "acct"))
	keys := NewPreKeys(t, 1, 3)
	mustAdd(t, s, "acct", keys)
	old, known := SignalRecord(t, 500), identity(t)
	mustApply(t, s, "acct", store.SignalChanges{
		Sessions:   []store.SessionChange{{Addr: PeerPN, Record: old}},
		Identities: []store.IdentityChange{{Addr: PeerPN, Key: known}},
	})
	// A batch with one bad record writes nothing of the others.
	bad := store.SignalChanges{
		Sessions:   []store.SessionChange{{Addr: PeerPN, Record: SignalRecord(t, 600)}, {Addr: PeerLID, Record: SignalRecord(t, 700)}},
		Identities: []store.IdentityChange{{Addr: PeerPN, Key: identity(t)}},
		SenderKeys: []store.SenderKeyChange{{Group: Group, Sender: PeerLID, Record: make([]byte, store.MaxSignalRecordLen+1)}},
		UsedPreKey: 2,
	}
	if _, err := s.ApplySignal(t.Context(), "acct", bad); !errors.Is(err, store.ErrInvalidSignal) {
		t.Fatalf("ApplySignal with an oversized record = %v, want ErrInvalidSignal", err)
	}
	ExpectSession(t, s, "acct", PeerPN, old)
	ExpectSession(t, s, "acct", PeerLID, nil)
	expectIdentity(t, s, "acct", PeerPN, &known)
	expectPreKey(t, s, "acct", keys[1])

	// The same batch made valid writes everything, the prekey included.
	bad.SenderKeys[0].Record = SignalRecord(t, 100)
	if r := mustApply(t, s, "acct", bad); !slices.Equal(r.ChangedIdentities, []string{PeerPN}) {
		t.Fatalf("changed = %q", r.ChangedIdentities)
	}
	ExpectSession(t, s, "acct", PeerPN, bad.Sessions[0].Record)
	ExpectSession(t, s, "acct", PeerLID, bad.Sessions[1].Record)
	expectSenderKey(t, s, "acct", Group, PeerLID, bad.SenderKeys[0].Record)
	expectNoPreKey(t, s, "acct", 2)
	expectCounts(t, s, "acct", store.PreKeyCounts{Stored: 2, MaxID: 3})
	// A prekey already consumed is not an error (a redelivered stanza).
	mustApply(t, s, "acct", store.SignalChanges{UsedPreKey: 2, Sessions: []store.SessionChange{{Addr: PeerPN, Record: old}}})
	ExpectSession(t, s, "acct", PeerPN, old)
}

func testSignalInvalid(t *testing.T, s Store) {
	mustSave(t, s, NewDevice(t, "acct"))
	rec := SignalRecord(t, 10)
	sess := func(addr string, r []byte) store.SignalChanges {
		return store.SignalChanges{Sessions: []store.SessionChange{{Addr: addr, Record: r}}}
	}
	heavy := store.SignalChanges{}
	for i := range store.MaxSignalApplyLen/store.MaxSignalRecordLen + 1 {
		heavy.Sessions = append(heavy.Sessions, store.SessionChange{Addr: store.PeerAddress("1555", 0, uint16(i)), Record: make([]byte, store.MaxSignalRecordLen)})
	}
	many := store.SignalChanges{}
	for i := range store.MaxSignalChanges + 1 {
		many.Identities = append(many.Identities, store.IdentityChange{Addr: store.PeerAddress("1555", 0, uint16(i))})
	}
	for _, tt := range []struct {
		name string
		c    store.SignalChanges
	}{
		{"empty address", sess("", rec)},
		{"JID form", sess("15559876543:0@s.whatsapp.net", rec)},
		{"no domain", sess("15559876543:0", rec)},
		{"leading zero device", sess("15559876543.0:01", rec)},
		{"domain over 255", sess("15559876543.256:0", rec)},
		{"device over 65535", sess("15559876543.0:65536", rec)},
		{"letters in user", sess("1555a.0:0", rec)},
		{"user too long", sess(strings.Repeat("1", store.MaxPeerUserLen+1)+".0:0", rec)},
		{"empty record", sess(PeerPN, []byte{})},
		{"record too long", sess(PeerPN, make([]byte, store.MaxSignalRecordLen+1))},
		{"session twice", store.SignalChanges{Sessions: []store.SessionChange{{Addr: PeerPN, Record: rec}, {Addr: PeerPN}}}},
		{"identity twice", store.SignalChanges{Identities: []store.IdentityChange{{Addr: PeerPN}, {Addr: PeerPN}}}},
		{"bad identity address", store.SignalChanges{Identities: []store.IdentityChange{{Addr: "x"}}}},
		{"group with a space", store.SignalChanges{SenderKeys: []store.SenderKeyChange{{Group: "a b", Sender: PeerPN, Record: rec}}}},
		{"empty group", store.SignalChanges{SenderKeys: []store.SenderKeyChange{{Sender: PeerPN, Record: rec}}}},
		{"bad sender", store.SignalChanges{SenderKeys: []store.SenderKeyChange{{Group: Group, Sender: "me", Record: rec}}}},
		{"prekey ID too large", store.SignalChanges{UsedPreKey: store.MaxPreKeyID + 1}},
		{"too many changes", many},
		{"records too long together", heavy},
	} {
		if _, err := s.ApplySignal(t.Context(), "acct", tt.c); !errors.Is(err, store.ErrInvalidSignal) {
			t.Errorf("%s: ApplySignal = %v, want ErrInvalidSignal", tt.name, err)
		}
	}
	ExpectSession(t, s, "acct", PeerPN, nil)
}

func testSignalNeedsDevice(t *testing.T, s Store) {
	c := store.SignalChanges{Sessions: []store.SessionChange{{Addr: PeerPN, Record: SignalRecord(t, 10)}}}
	for _, id := range []string{"absent", "", strings.Repeat("x", store.MaxIDLen+1)} {
		if _, err := s.ApplySignal(t.Context(), id, c); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("ApplySignal(%q) without a device = %v, want ErrNotFound", id, err)
		}
		ExpectSession(t, s, id, PeerPN, nil)
	}
}

func testSignalDelete(t *testing.T, s Store) {
	for _, id := range []string{"acct", "keep"} {
		mustSave(t, s, NewDevice(t, id))
		mustApply(t, s, id, store.SignalChanges{
			Sessions:   []store.SessionChange{{Addr: PeerPN, Record: SignalRecord(t, 100)}},
			Identities: []store.IdentityChange{{Addr: PeerPN, Key: identity(t)}},
			SenderKeys: []store.SenderKeyChange{{Group: Group, Sender: PeerPN, Record: SignalRecord(t, 100)}},
		})
	}
	if err := s.Delete(t.Context(), "acct"); err != nil {
		t.Fatal(err)
	}
	mustSave(t, s, NewDevice(t, "acct")) // paired again: nothing of the old device
	ExpectSession(t, s, "acct", PeerPN, nil)
	expectIdentity(t, s, "acct", PeerPN, nil)
	expectSenderKey(t, s, "acct", Group, PeerPN, nil)
	if _, err := s.Session(t.Context(), "keep", PeerPN); err != nil {
		t.Fatalf("another account's session after Delete: %v", err)
	}
}

func testSignalArchive(t *testing.T, s Store) {
	ctx := t.Context()
	mustSave(t, s, PairedDevice(t, "acct", "15551234567", "123456789012345", 5))
	sess, sk, id := SignalRecord(t, 1000), SignalRecord(t, 200), identity(t)
	mustApply(t, s, "acct", store.SignalChanges{
		Sessions:   []store.SessionChange{{Addr: PeerPN, Record: sess}},
		Identities: []store.IdentityChange{{Addr: PeerPN, Key: id}},
		SenderKeys: []store.SenderKeyChange{{Group: Group, Sender: PeerPN, Record: sk}},
	})
	e, err := s.Archive(ctx, "acct", "failure 401")
	if err != nil {
		t.Fatal(err)
	}
	ExpectSession(t, s, "acct", PeerPN, nil)
	expectIdentity(t, s, "acct", PeerPN, nil)
	expectSenderKey(t, s, "acct", Group, PeerPN, nil)
	// An unpaired device and its state are replaced by the restored ones.
	mustSave(t, s, NewDevice(t, "acct"))
	mustApply(t, s, "acct", store.SignalChanges{Sessions: []store.SessionChange{{Addr: PeerLID, Record: SignalRecord(t, 50)}}})
	if _, err := s.RestoreArchived(ctx, "acct", e.Key); err != nil {
		t.Fatal(err)
	}
	ExpectSession(t, s, "acct", PeerPN, sess)
	ExpectSession(t, s, "acct", PeerLID, nil)
	expectIdentity(t, s, "acct", PeerPN, &id)
	expectSenderKey(t, s, "acct", Group, PeerPN, sk)
	// A pruned entry takes its state with it.
	e, err = s.Archive(ctx, "acct", "failure 401")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.PruneArchive(ctx, e.ArchivedAt.Add(1)); err != nil || n != 1 {
		t.Fatalf("PruneArchive = %d, %v", n, err)
	}
	mustSave(t, s, NewDevice(t, "acct"))
	ExpectSession(t, s, "acct", PeerPN, nil)
}

// testSendLogClaim: a key is claimed once (store.SendLog); a second claim
// names the first message, and so does SentWith; keys are per account,
// bounded, need the device and go with Delete.
func testSendLogClaim(t *testing.T, s Store) {
	ctx := t.Context()
	claim := func(id, key, msgID, want string, wantFresh bool) {
		t.Helper()
		got, fresh, err := s.ClaimSend(ctx, id, key, msgID)
		if err != nil || got != want || fresh != wantFresh {
			t.Fatalf("ClaimSend(%q, %q, %q) = %q, %t, %v; want %q, %t", id, key, msgID, got, fresh, err, want, wantFresh)
		}
	}
	if _, _, err := s.ClaimSend(ctx, "acct", "k", "ID1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ClaimSend without a device = %v, want ErrNotFound", err)
	}
	for _, id := range []string{"acct", "other"} {
		mustSave(t, s, NewDevice(t, id))
	}
	rec := SignalRecord(t, 50)
	mustApply(t, s, "acct", store.SignalChanges{Sessions: []store.SessionChange{{Addr: PeerPN, Record: rec}}})
	sent := func(id, key, want string) {
		t.Helper()
		got, ok, err := s.SentWith(ctx, id, key)
		if err != nil || got != want || ok != (want != "") {
			t.Fatalf("SentWith(%q, %q) = %q, %t, %v; want %q", id, key, got, ok, err, want)
		}
	}
	sent("acct", "order-1", "")
	claim("acct", "order-1", "ID1", "ID1", true)
	sent("acct", "order-1", "ID1")
	sent("other", "order-1", "")
	claim("acct", "order-1", "ID2", "ID1", false)
	claim("acct", "order-2", "ID3", "ID3", true)
	claim("other", "order-1", "ID4", "ID4", true)
	ExpectSession(t, s, "acct", PeerPN, rec) // a session beside the keys still reads
	for _, bad := range [][2]string{{"", "ID"}, {strings.Repeat("k", store.MaxSendKeyLen+1), "ID"}, {"with space", "ID"}, {"k", ""}, {"k", "ID-1"}} {
		if _, _, err := s.ClaimSend(ctx, "acct", bad[0], bad[1]); !errors.Is(err, store.ErrInvalidSend) {
			t.Errorf("ClaimSend(%q, %q) = %v, want ErrInvalidSend", bad[0], bad[1], err)
		}
	}
	if err := s.Delete(ctx, "acct"); err != nil {
		t.Fatal(err)
	}
	mustSave(t, s, NewDevice(t, "acct"))
	claim("acct", "order-1", "ID5", "ID5", true)
}

// testSendLogRetention: a key is remembered for store.SendKeyTTL, however
// many claims prune meanwhile, and forgotten after it; fresh claims prune
// the expired keys, so an account holds about the keys of the last
// SendKeyTTL.
func testSendLogRetention(t *testing.T, f SignalFixture, clock *testkit.Clock) {
	s, ctx := f.Store, t.Context()
	claim := func(key, msgID, want string, wantFresh bool) {
		t.Helper()
		got, fresh, err := s.ClaimSend(ctx, "acct", key, msgID)
		if err != nil || got != want || fresh != wantFresh {
			t.Fatalf("ClaimSend(%q, %q) = %q, %t, %v; want %q, %t", key, msgID, got, fresh, err, want, wantFresh)
		}
	}
	mustSave(t, s, NewDevice(t, "acct"))
	const n = 5 * store.SendPruneBatch
	for i := range n {
		claim(fmt.Sprintf("old-%d", i), fmt.Sprintf("OLD%d", i), fmt.Sprintf("OLD%d", i), true)
		clock.Advance(time.Second)
	}
	// A second before the first key expires, claims enough for several
	// pruning passes leave every old key live.
	clock.Advance(store.SendKeyTTL - n*time.Second - time.Second)
	for i := range 2 * n {
		claim(fmt.Sprintf("mid-%d", i), fmt.Sprintf("MID%d", i), fmt.Sprintf("MID%d", i), true)
	}
	claim("old-0", "AGAIN", "OLD0", false)
	if got, ok, err := s.SentWith(ctx, "acct", "old-0"); err != nil || !ok || got != "OLD0" {
		t.Fatalf("SentWith of a live key = %q, %t, %v", got, ok, err)
	}
	if got := f.SendKeys(t, "acct"); got != 3*n {
		t.Fatalf("%d keys inside the retention, want %d: a live key was pruned", got, 3*n)
	}
	// Past the retention of the old keys (not of the mid ones), a claim
	// of an old key is fresh, and further claims prune every other one.
	clock.Advance(time.Duration(n+1) * time.Second)
	if got, ok, err := s.SentWith(ctx, "acct", "old-1"); err != nil || ok {
		t.Fatalf("SentWith of an expired key = %q, %t, %v; want none", got, ok, err)
	}
	claim("old-1", "NEW1", "NEW1", true)
	for i := range 2 * n {
		claim(fmt.Sprintf("new-%d", i), fmt.Sprintf("NEW%d", i+n), fmt.Sprintf("NEW%d", i+n), true)
	}
	if got, want := f.SendKeys(t, "acct"), 1+2*n+2*n; got != want {
		t.Fatalf("%d keys after the old ones expired, want %d (the mid, new and reclaimed ones)", got, want)
	}
	claim("mid-0", "X", "MID0", false)
	claim("old-1", "X", "NEW1", false)
}

// signalEvent is the outbox record of message n of account id.
func signalEvent(id string, n int) store.OutboxRecord {
	return store.OutboxRecord{Account: id, Kind: "message", Instance: "inst-a",
		Time: outboxTime.Add(time.Duration(n) * time.Millisecond), Body: fmt.Appendf(nil, `{"n":%d}`, n)}
}

// outboxAfter returns the bodies of the entries of account id appended
// after entry last ("" : all).
func outboxAfter(t *testing.T, o store.Outbox, last, id string) []string {
	t.Helper()
	entries, err := o.After(t.Context(), last, 100000)
	if err != nil {
		t.Fatalf("After: %v", err)
	}
	var out []string
	for _, e := range entries {
		if e.Account == id {
			out = append(out, string(e.Body))
		}
	}
	return out
}

// testSignalEvents: the events of a batch are appended with its state, in
// order; a batch refused as invalid appends none.
func testSignalEvents(t *testing.T, f SignalFixture) {
	s, o := f.Store, f.Outbox
	mustSave(t, s, NewDevice(t, "acct"))
	last, err := o.Last(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	rec := SignalRecord(t, 500)
	mustApply(t, s, "acct", store.SignalChanges{
		Sessions: []store.SessionChange{{Addr: PeerPN, Record: rec}},
		Events:   []store.OutboxRecord{signalEvent("acct", 1), signalEvent("acct", 2)},
	})
	ExpectSession(t, s, "acct", PeerPN, rec)
	if got := outboxAfter(t, o, last, "acct"); !slices.Equal(got, []string{`{"n":1}`, `{"n":2}`}) {
		t.Fatalf("outbox after ApplySignal with 2 events: %q", got)
	}
	last, _ = o.Last(t.Context())
	bad := []store.SignalChanges{
		{Sessions: []store.SessionChange{{Addr: PeerPN, Record: SignalRecord(t, 10)}}, Events: []store.OutboxRecord{{Kind: "message"}}},
		{Sessions: []store.SessionChange{{Addr: "x", Record: SignalRecord(t, 10)}}, Events: []store.OutboxRecord{signalEvent("acct", 3)}},
		{Events: make([]store.OutboxRecord, store.MaxSignalEvents+1)},
	}
	for i := range bad[2].Events {
		bad[2].Events[i] = signalEvent("acct", 4)
	}
	for i, c := range bad {
		if _, err := s.ApplySignal(t.Context(), "acct", c); !errors.Is(err, store.ErrInvalidSignal) {
			t.Errorf("invalid batch %d: ApplySignal = %v, want ErrInvalidSignal", i, err)
		}
	}
	ExpectSession(t, s, "acct", PeerPN, rec)
	if got := outboxAfter(t, o, last, "acct"); len(got) != 0 {
		t.Fatalf("invalid batches appended %q", got)
	}
	// Without a device the state is not written (the Redis store may have
	// appended the events first: never the state without them).
	if _, err := s.ApplySignal(t.Context(), "absent", store.SignalChanges{
		Sessions: []store.SessionChange{{Addr: PeerPN, Record: rec}}, Events: []store.OutboxRecord{signalEvent("absent", 5)},
	}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ApplySignal without a device = %v, want ErrNotFound", err)
	}
	ExpectSession(t, s, "absent", PeerPN, nil)
}

// testSignalConcurrentAccounts: accounts applying at the same time (the
// bbolt store's group commit shares transactions between them) each get
// all of their changes and events, in their order, and one that fails
// (no device) fails alone.
func testSignalConcurrentAccounts(t *testing.T, f SignalFixture) {
	s, o := f.Store, f.Outbox
	const accounts, each = 8, 20
	for a := range accounts {
		mustSave(t, s, NewDevice(t, fmt.Sprintf("acct%d", a)))
	}
	last, err := o.Last(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, accounts+1)
	finals := make([][]byte, accounts)
	done := make(chan struct{})
	go func() { // an account without a device, failing among the others
		defer close(done)
		for i := range each {
			_, err := s.ApplySignal(t.Context(), "gone", store.SignalChanges{
				Sessions: []store.SessionChange{{Addr: PeerPN, Record: SignalRecord(t, 100)}},
				Events:   []store.OutboxRecord{signalEvent("gone", i)},
			})
			if !errors.Is(err, store.ErrNotFound) {
				errs <- fmt.Errorf("ApplySignal without a device: %v, want ErrNotFound", err)
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for a := range accounts {
		wg.Go(func() {
			id := fmt.Sprintf("acct%d", a)
			for i := range each {
				rec := SignalRecord(t, 200+i)
				if _, err := s.ApplySignal(t.Context(), id, store.SignalChanges{
					Sessions: []store.SessionChange{{Addr: PeerPN, Record: rec}},
					Events:   []store.OutboxRecord{signalEvent(id, i)},
				}); err != nil {
					errs <- fmt.Errorf("ApplySignal(%s) %d: %w", id, i, err)
					return
				}
				finals[a] = rec
			}
		})
	}
	wg.Wait()
	<-done
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for a := range accounts {
		id := fmt.Sprintf("acct%d", a)
		ExpectSession(t, s, id, PeerPN, finals[a])
		got := outboxAfter(t, o, last, id)
		if len(got) != each {
			t.Fatalf("%s: %d events appended, want %d", id, len(got), each)
		}
		for i, b := range got {
			if b != fmt.Sprintf(`{"n":%d}`, i) {
				t.Fatalf("%s: event %d is %s: out of order", id, i, b)
			}
		}
	}
	ExpectSession(t, s, "gone", PeerPN, nil)
}
