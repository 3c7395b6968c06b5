package redis

import (
	"bytes"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/storetest"
)

// TestSignalContract runs the Signal part of the contract on a sealed
// store and on plain ones: administrative writes in the atomic mode,
// lease-bound ones in the split mode (the Signal script is the same in
// both modes; the archive and delete scripts differ).
func TestSignalContract(t *testing.T) {
	open := func(split bool, sealer store.Sealer, bound bool) func(*testing.T, func() time.Time) storetest.SignalFixture {
		return func(t *testing.T, now func() time.Time) storetest.SignalFixture {
			c, prefix := sharedClient(t)
			s, err := New(c, Options{Prefix: prefix, SplitWrites: boolp(split), Sealer: sealer, Now: now})
			if err != nil {
				t.Fatal(err)
			}
			f := storetest.SignalFixture{Store: s, Outbox: s, SendKeys: func(t *testing.T, id string) int {
				t.Helper()
				n := 0
				for f := range signalState(t, s, id) {
					if strings.HasPrefix(f, store.SendKeyKey("")) {
						n++
					}
				}
				return n
			}}
			if bound {
				m := newLeases(t, c, prefix, "inst-a", newClock(), 15*time.Second)
				f.Store = &autoLease{Backend: s.Bound(m), under: s, m: m}
			}
			return f
		}
	}
	t.Run("sealed", func(t *testing.T) { storetest.RunSignal(t, open(false, testSealer(t, 9), false)) })
	t.Run("atomic/admin", func(t *testing.T) { storetest.RunSignal(t, open(false, nil, false)) })
	t.Run("split/bound", func(t *testing.T) { storetest.RunSignal(t, open(true, nil, true)) })
}

func TestSignalKeyShareTheDeviceSlot(t *testing.T) {
	k, err := newKeys("wafleet")
	if err != nil {
		t.Fatal(err)
	}
	if slot(k.signal("acct")) != slot(k.device("acct")) {
		t.Fatal("the Signal hash is not in the device's slot")
	}
}

func signalState(t *testing.T, s *Store, acct string) map[string]string {
	t.Helper()
	h, err := s.c.HGetAll(t.Context(), s.k.signal(acct)).Result()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestSignalFencing(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			c, prefix := sharedClient(t)
			ctx := t.Context()
			s := newStore(t, c, prefix, mode.split, nil)
			clk := newClock()
			a := newLeases(t, c, prefix, "inst-a", clk, 15*time.Second)
			b := newLeases(t, c, prefix, "inst-b", clk, 15*time.Second)

			la := mustAcquire(t, a, "acct")
			asA := s.Fenced(la)
			if err := asA.Save(ctx, storetest.NewDevice(t, "acct")); err != nil {
				t.Fatal(err)
			}
			if err := asA.AddPreKeys(ctx, "acct", storetest.NewPreKeys(t, 1, 5)); err != nil {
				t.Fatal(err)
			}
			sess := storetest.SignalRecord(t, 800)
			write := func(rec []byte, prekey uint32) store.SignalChanges {
				return store.SignalChanges{
					Sessions:   []store.SessionChange{{Addr: storetest.PeerPN, Record: rec}},
					Identities: []store.IdentityChange{{Addr: storetest.PeerPN, Key: [32]byte{byte(len(rec))}}},
					UsedPreKey: prekey,
				}
			}
			if _, err := s.Bound(a).ApplySignal(ctx, "acct", write(sess, 1)); err != nil {
				t.Fatalf("owner ApplySignal: %v", err)
			}
			if _, err := s.ApplySignal(ctx, "acct", write(sess, 2)); !errors.Is(err, store.ErrLeaseLost) {
				t.Fatalf("admin ApplySignal under a lease = %v, want ErrLeaseLost", err)
			}

			// A's lease expires in Redis and B takes the account.
			c.Del(ctx, s.k.lease("acct"))
			lb := mustAcquire(t, b, "acct")
			before, pk := signalState(t, s, "acct"), func() store.PreKeyCounts {
				n, err := s.PreKeyCounts(ctx, "acct")
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
			counts := pk()
			stale := storetest.SignalRecord(t, 900)
			for name, v := range map[string]store.Backend{"Fenced": asA, "Bound": s.Bound(a)} {
				if _, err := v.ApplySignal(ctx, "acct", write(stale, 2)); !errors.Is(err, store.ErrLeaseLost) {
					t.Errorf("stale %s ApplySignal = %v, want ErrLeaseLost", name, err)
				}
			}
			if _, err := s.Fenced(lb).ApplySignal(ctx, "other", write(stale, 0)); !errors.Is(err, store.ErrLeaseLost) {
				t.Errorf("ApplySignal of another account = %v, want ErrLeaseLost", err)
			}
			if after := signalState(t, s, "acct"); !maps.Equal(after, before) {
				t.Fatal("stale writes changed the Signal state")
			}
			if pk() != counts {
				t.Fatal("stale writes consumed a prekey")
			}
			// Reads through the stale view still work.
			storetest.ExpectSession(t, asA, "acct", storetest.PeerPN, sess)

			// The new owner continues the session (a failover) and writes.
			storetest.ExpectSession(t, s.Bound(b), "acct", storetest.PeerPN, sess)
			if _, err := s.Bound(b).ApplySignal(ctx, "acct", write(stale, 2)); err != nil {
				t.Fatalf("new owner ApplySignal: %v", err)
			}
			if n := pk(); n.Stored != counts.Stored-1 {
				t.Fatalf("prekeys after the new owner's apply: %+v", n)
			}
			// A stale Delete takes nothing away; the owner's takes the state.
			if err := asA.Delete(ctx, "acct"); !errors.Is(err, store.ErrLeaseLost) {
				t.Fatalf("stale Delete = %v", err)
			}
			storetest.ExpectSession(t, s, "acct", storetest.PeerPN, stale)
			if err := s.Bound(b).Delete(ctx, "acct"); err != nil {
				t.Fatal(err)
			}
			if n, err := c.Exists(ctx, s.k.signal("acct")).Result(); err != nil || n != 0 {
				t.Fatalf("Signal hash after Delete: %d, %v", n, err)
			}
		})
	}
}

// TestSignalFailover: a second instance with its own Store on the same
// Redis (and key) continues the sessions the first wrote.
func TestSignalFailover(t *testing.T) {
	c, prefix := sharedClient(t)
	ctx := t.Context()
	clk := newClock()
	first := newStore(t, c, prefix, false, testSealer(t, 4))
	a := newLeases(t, c, prefix, "inst-a", clk, 15*time.Second)
	mustAcquire(t, a, "acct")
	if err := first.Bound(a).Save(ctx, storetest.NewDevice(t, "acct")); err != nil {
		t.Fatal(err)
	}
	sess, id := storetest.SignalRecord(t, 2500), [32]byte{7}
	_, err := first.Bound(a).ApplySignal(ctx, "acct", store.SignalChanges{
		Sessions:   []store.SessionChange{{Addr: storetest.PeerLID, Record: sess}},
		Identities: []store.IdentityChange{{Addr: storetest.PeerLID, Key: id}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Close(ctx); err != nil { // the first instance goes away
		t.Fatal(err)
	}

	second := newStore(t, c, prefix, false, testSealer(t, 4))
	b := newLeases(t, c, prefix, "inst-b", clk, 15*time.Second)
	mustAcquire(t, b, "acct")
	v := second.Bound(b)
	storetest.ExpectSession(t, v, "acct", storetest.PeerLID, sess)
	if got, err := v.PeerIdentity(ctx, "acct", storetest.PeerLID); err != nil || got != id {
		t.Fatalf("PeerIdentity on the second instance = %x, %v", got, err)
	}
	if r, err := v.ApplySignal(ctx, "acct", store.SignalChanges{Identities: []store.IdentityChange{{Addr: storetest.PeerLID, Key: id}}}); err != nil || len(r.ChangedIdentities) != 0 {
		t.Fatalf("same identity on the second instance = %+v, %v", r, err)
	}
}

func TestSignalSealedInRedis(t *testing.T) {
	c, prefix := sharedClient(t)
	ctx := t.Context()
	s := newStore(t, c, prefix, false, testSealer(t, 7))
	if err := s.Save(ctx, storetest.PairedDevice(t, "acct", "15551234567", "123456789012345", 5)); err != nil {
		t.Fatal(err)
	}
	sess, sk, id := storetest.SignalRecord(t, 4000), storetest.SignalRecord(t, 300), [32]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	_, err := s.ApplySignal(ctx, "acct", store.SignalChanges{
		Sessions:   []store.SessionChange{{Addr: storetest.PeerPN, Record: sess}},
		Identities: []store.IdentityChange{{Addr: storetest.PeerPN, Key: id}},
		SenderKeys: []store.SenderKeyChange{{Group: storetest.Group, Sender: storetest.PeerPN, Record: sk}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var raw []byte
	for f, v := range signalState(t, s, "acct") {
		raw = append(append(raw, f...), v...)
	}
	if !bytes.Contains(raw, id[:]) {
		t.Fatal("identity key not found in Redis: the search itself is broken")
	}
	for _, r := range [][]byte{sess, sk} {
		for i := 0; i+32 <= len(r); i += 128 {
			if bytes.Contains(raw, r[i:i+32]) {
				t.Fatal("a session or sender key record reached Redis in the clear")
			}
		}
	}
	other, _ := store.NewAESSealer(make([]byte, 32))
	for name, tt := range map[string]struct {
		s    *Store
		want error
	}{"wrong key": {newStore(t, c, prefix, false, other), store.ErrWrongKey}, "no key": {newStore(t, c, prefix, false, nil), store.ErrNoSealer}} {
		if _, err := tt.s.Session(ctx, "acct", storetest.PeerPN); !errors.Is(err, tt.want) {
			t.Errorf("%s: Session = %v, want %v", name, err, tt.want)
		}
		if _, err := tt.s.SenderKey(ctx, "acct", storetest.Group, storetest.PeerPN); !errors.Is(err, tt.want) {
			t.Errorf("%s: SenderKey = %v, want %v", name, err, tt.want)
		}
	}
	// The archive entry keeps the state as it was: sealed.
	e, err := s.Archive(ctx, "acct", "failure 401")
	if err != nil {
		t.Fatal(err)
	}
	archived, err := c.HGetAll(ctx, s.k.archived("acct", e.Key)+":signal").Result()
	if err != nil || len(archived) != 3 {
		t.Fatalf("archived Signal hash = %d fields, %v", len(archived), err)
	}
	// A sealed record moved to another peer's field does not open.
	if err := c.HSet(ctx, s.k.signal("x"), store.SessionKey(storetest.PeerLID), archived[store.SessionKey(storetest.PeerPN)]).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session(ctx, "x", storetest.PeerLID); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("transplanted session = %v, want ErrCorrupt", err)
	}
}

// TestSignalApplyRoundTrip: ApplySignal is one round trip, reads are one.
func TestSignalApplyRoundTrip(t *testing.T) {
	c, prefix := sharedClient(t)
	ctx := t.Context()
	s := newStore(t, c, prefix, false, testSealer(t, 1))
	m := newLeases(t, c, prefix, "inst-a", newClock(), time.Minute)
	mustAcquire(t, m, "acct")
	v := s.Bound(m)
	if err := v.Save(ctx, storetest.NewDevice(t, "acct")); err != nil {
		t.Fatal(err)
	}
	if err := v.AddPreKeys(ctx, "acct", storetest.NewPreKeys(t, 1, 5)); err != nil {
		t.Fatal(err)
	}
	c2 := store.SignalChanges{Sessions: []store.SessionChange{{Addr: storetest.PeerPN, Record: storetest.SignalRecord(t, 2000)}}}
	if _, err := v.ApplySignal(ctx, "acct", c2); err != nil { // loads the script
		t.Fatal(err)
	}
	h := &counter{}
	c.AddHook(h)
	steps := []struct {
		name string
		fn   func() error
	}{
		{"ApplySignal", func() error {
			_, err := v.ApplySignal(ctx, "acct", store.SignalChanges{
				Sessions:   []store.SessionChange{{Addr: storetest.PeerPN, Record: storetest.SignalRecord(t, 2000)}},
				Identities: []store.IdentityChange{{Addr: storetest.PeerPN, Key: [32]byte{1}}},
				SenderKeys: []store.SenderKeyChange{{Group: storetest.Group, Sender: storetest.PeerPN, Record: storetest.SignalRecord(t, 200)}},
				UsedPreKey: 3,
			})
			return err
		}},
		{"Session", func() error { _, err := v.Session(ctx, "acct", storetest.PeerPN); return err }},
		{"PeerIdentity", func() error { _, err := v.PeerIdentity(ctx, "acct", storetest.PeerPN); return err }},
		{"SenderKey", func() error { _, err := v.SenderKey(ctx, "acct", storetest.Group, storetest.PeerPN); return err }},
	}
	for _, st := range steps {
		h.Reset()
		if err := st.fn(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if n := h.RoundTrips(); n != 1 {
			t.Errorf("%s took %d round trips, want 1", st.name, n)
		}
	}
}

// TestOwnerSealsSignalWrittenBeforeTheKey: Signal records stored in the
// clear load once a key is configured, and the owner seals them the first
// time it loads the device.
func TestOwnerSealsSignalWrittenBeforeTheKey(t *testing.T) {
	c, prefix := sharedClient(t)
	ctx := t.Context()
	plain := newStore(t, c, prefix, false, nil)
	if err := plain.Save(ctx, storetest.NewDevice(t, "acct")); err != nil {
		t.Fatal(err)
	}
	sess, sk := storetest.SignalRecord(t, 1500), storetest.SignalRecord(t, 200)
	_, err := plain.ApplySignal(ctx, "acct", store.SignalChanges{
		Sessions:   []store.SessionChange{{Addr: storetest.PeerPN, Record: sess}},
		Identities: []store.IdentityChange{{Addr: storetest.PeerPN, Key: [32]byte{3}}},
		SenderKeys: []store.SenderKeyChange{{Group: storetest.Group, Sender: storetest.PeerPN, Record: sk}},
	})
	if err != nil {
		t.Fatal(err)
	}
	sealed := newStore(t, c, prefix, false, testSealer(t, 9))
	storetest.ExpectSession(t, sealed, "acct", storetest.PeerPN, sess)
	leases := newLeases(t, c, prefix, "inst-a", newClock(), 15*time.Second)
	mustAcquire(t, leases, "acct")
	if _, err := sealed.Bound(leases).Load(ctx, "acct"); err != nil {
		t.Fatal(err)
	}
	for f, v := range signalState(t, sealed, "acct") {
		if f == store.IdentityKey(storetest.PeerPN) {
			continue
		}
		if len(v) < 5 || v[4]&1 == 0 || bytes.Contains([]byte(v), sess[:32]) || bytes.Contains([]byte(v), sk[:32]) {
			t.Fatalf("Signal field %s is still in the clear", f)
		}
	}
	storetest.ExpectSession(t, sealed, "acct", storetest.PeerPN, sess)
	if got, err := sealed.SenderKey(ctx, "acct", storetest.Group, storetest.PeerPN); err != nil || !bytes.Equal(got, sk) {
		t.Fatalf("SenderKey after the migration = %d bytes, %v", len(got), err)
	}
}
