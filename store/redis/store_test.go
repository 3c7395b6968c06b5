package redis

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/storetest"
)

var modes = []struct {
	name  string
	split bool
}{{"atomic", false}, {"split", true}}

func newStore(t testing.TB, c goredis.UniversalClient, prefix string, split bool, sealer store.Sealer) *Store {
	t.Helper()
	s, err := New(c, Options{Prefix: prefix, SplitWrites: boolp(split), Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestContract(t *testing.T) {
	testContract(t, sharedTarget)
}

func testContract(t *testing.T, tg target) {
	for _, mode := range tg.modes() {
		t.Run(mode.name, func(t *testing.T) {
			t.Run("admin", func(t *testing.T) {
				storetest.Run(t, func(t *testing.T) storetest.Store {
					c, prefix := tg.open(t)
					return newStore(t, c, prefix, mode.split, nil)
				})
			})
			t.Run("bound", func(t *testing.T) {
				storetest.Run(t, func(t *testing.T) storetest.Store {
					c, prefix := tg.open(t)
					s := newStore(t, c, prefix, mode.split, nil)
					m := newLeases(t, c, prefix, "inst-a", newClock(), 15*time.Second)
					return &autoLease{Backend: s.Bound(m), under: s, m: m}
				})
			})
		})
	}
}

// autoLease acquires the account's lease before each write, so that the
// contract tests can drive a Bound store with arbitrary account ids. The
// mapping is read from the store under the view, which Close closes too.
type autoLease struct {
	store.Backend
	under *Store
	m     *Leases
}

func (a *autoLease) PNForLID(ctx context.Context, lidUser string) (string, error) {
	return a.under.PNForLID(ctx, lidUser)
}

func (a *autoLease) LIDForPN(ctx context.Context, pnUser string) (string, error) {
	return a.under.LIDForPN(ctx, pnUser)
}

func (a *autoLease) Close() error { return errors.Join(a.Backend.Close(), a.under.Close()) }

func (a *autoLease) take(ctx context.Context, id string) {
	if ctx.Err() == nil && store.ValidateID(id) == nil {
		_, _ = a.m.Acquire(ctx, id)
	}
}

func (a *autoLease) Save(ctx context.Context, d *store.Device) error {
	if d != nil {
		a.take(ctx, d.ID)
	}
	return a.Backend.Save(ctx, d)
}

func (a *autoLease) Delete(ctx context.Context, id string) error {
	a.take(ctx, id)
	return a.Backend.Delete(ctx, id)
}

func (a *autoLease) Archive(ctx context.Context, id, reason string) (store.ArchiveEntry, error) {
	a.take(ctx, id)
	return a.Backend.Archive(ctx, id, reason)
}

func (a *autoLease) RestoreArchived(ctx context.Context, id, key string) (store.ArchiveEntry, error) {
	a.take(ctx, id)
	return a.Backend.RestoreArchived(ctx, id, key)
}

func (a *autoLease) ApplySignal(ctx context.Context, id string, c store.SignalChanges) (store.SignalApplied, error) {
	a.take(ctx, id)
	return a.Backend.ApplySignal(ctx, id, c)
}

func (a *autoLease) ClaimSend(ctx context.Context, id, key, msgID string) (string, bool, error) {
	a.take(ctx, id)
	return a.Backend.ClaimSend(ctx, id, key, msgID)
}

func (a *autoLease) AddPreKeys(ctx context.Context, id string, keys []store.PreKey) error {
	a.take(ctx, id)
	return a.Backend.AddPreKeys(ctx, id, keys)
}

func (a *autoLease) MarkPreKeysUploaded(ctx context.Context, id string, upTo uint32) error {
	a.take(ctx, id)
	return a.Backend.MarkPreKeysUploaded(ctx, id, upTo)
}

func (a *autoLease) RemovePreKey(ctx context.Context, id string, keyID uint32) error {
	a.take(ctx, id)
	return a.Backend.RemovePreKey(ctx, id, keyID)
}

func TestSealedRoundTrip(t *testing.T) {
	c, prefix := sharedClient(t)
	sealer := testSealer(t, 7)
	s := newStore(t, c, prefix, false, sealer)
	d := storetest.PairedDevice(t, "acct", "15551234567", "123456789012345", 5)
	if err := s.Save(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	got, info, err := s.LoadRecord(t.Context(), "acct")
	if err != nil || !info.Sealed {
		t.Fatalf("LoadRecord = %v, sealed %v", err, info.Sealed)
	}
	if diff := storetest.Diff(d, got); diff != nil {
		t.Fatalf("differs in %v", diff)
	}
	raw, err := c.HGet(t.Context(), s.k.device("acct"), "rec").Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if containsBytes(raw, d.NoiseKey.Priv[:]) || containsBytes(raw, d.AdvSecret[:]) {
		t.Fatal("a secret reached Redis in the clear")
	}
	other, _ := store.NewAESSealer(make([]byte, 32))
	wrong := newStore(t, c, prefix, false, other)
	if _, err := wrong.Load(t.Context(), "acct"); !errors.Is(err, store.ErrWrongKey) {
		t.Fatalf("Load with another key = %v, want ErrWrongKey", err)
	}
	plain := newStore(t, c, prefix, false, nil)
	if _, err := plain.Load(t.Context(), "acct"); !errors.Is(err, store.ErrNoSealer) {
		t.Fatalf("Load without a key = %v, want ErrNoSealer", err)
	}
}

func containsBytes(haystack, needle []byte) bool {
	for i := 0; i+len(needle) <= len(haystack); i++ {
		if string(haystack[i:i+len(needle)]) == string(needle) {
			return true
		}
	}
	return false
}

func TestLoadRefusesCorruptRecords(t *testing.T) {
	c, prefix := sharedClient(t)
	s := newStore(t, c, prefix, false, nil)
	ctx := t.Context()
	d := storetest.NewDevice(t, "acct")
	if err := s.Save(ctx, d); err != nil {
		t.Fatal(err)
	}
	rec, _ := c.HGet(ctx, s.k.device("acct"), "rec").Bytes()
	moved := storetest.NewDevice(t, "other")
	recOther, _ := store.Encode(moved, nil)
	tests := []struct {
		name string
		rec  []byte
	}{
		{"flipped byte", append(append([]byte{}, rec[:20]...), append([]byte{rec[20] ^ 1}, rec[21:]...)...)},
		{"truncated", rec[:len(rec)-3]},
		{"another id's record", recOther},
		{"too long", make([]byte, store.MaxRecordLen+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.HSet(ctx, s.k.device("acct"), "rec", tt.rec)
			if _, err := s.Load(ctx, "acct"); !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("Load = %v, want ErrCorrupt", err)
			}
		})
	}
}

// TestFencing: a write from an instance that lost the lease is refused with
// ErrLeaseLost and changes nothing — neither the device nor the mapping.
func TestFencing(t *testing.T) {
	testFencing(t, sharedTarget)
}

func testFencing(t *testing.T, tg target) {
	for _, mode := range tg.modes() {
		t.Run(mode.name, func(t *testing.T) {
			c, prefix := tg.open(t)
			ctx := t.Context()
			s := newStore(t, c, prefix, mode.split, nil)
			clk := newClock()
			a := newLeases(t, c, prefix, "inst-a", clk, 15*time.Second)
			b := newLeases(t, c, prefix, "inst-b", clk, 15*time.Second)

			la := mustAcquire(t, a, "acct")
			asA := s.Fenced(la)
			d := storetest.PairedDevice(t, "acct", "15551111111", "111111111111111", 3)
			if err := asA.Save(ctx, d); err != nil {
				t.Fatalf("owner Save: %v", err)
			}
			// An administrative write while A holds the lease is refused.
			if err := s.Save(ctx, storetest.NewDevice(t, "acct")); !errors.Is(err, store.ErrLeaseLost) {
				t.Fatalf("admin Save under a lease = %v, want ErrLeaseLost", err)
			}
			// B may not take it while A holds it.
			if rb, err := b.Acquire(ctx, "acct"); err != nil || len(rb.Acquired) != 0 || rb.HeldBy["acct"] != "inst-a" {
				t.Fatalf("B acquire of a held lease = %+v, %v", rb, err)
			}

			// A's lease expires in Redis (as after a long pause of A) and B
			// takes the account.
			c.Del(ctx, s.k.lease("acct"))
			lb := mustAcquire(t, b, "acct")
			if lb.Token <= la.Token {
				t.Fatalf("B's token %d is not above A's %d", lb.Token, la.Token)
			}
			d2 := d.Clone()
			storetest.Pair(d2, "15552222222", "222222222222222", 4)
			if err := s.Fenced(lb).Save(ctx, d2); err != nil {
				t.Fatalf("new owner Save: %v", err)
			}

			// The stale owner's writes are refused and change nothing.
			stale := d.Clone()
			storetest.Pair(stale, "15553333333", "333333333333333", 6)
			if err := asA.Save(ctx, stale); !errors.Is(err, store.ErrLeaseLost) {
				t.Fatalf("stale Save = %v, want ErrLeaseLost", err)
			}
			if err := asA.Delete(ctx, "acct"); !errors.Is(err, store.ErrLeaseLost) {
				t.Fatalf("stale Delete = %v, want ErrLeaseLost", err)
			}
			got, err := s.Load(ctx, "acct")
			if err != nil {
				t.Fatal(err)
			}
			if diff := storetest.Diff(d2, got); diff != nil {
				t.Fatalf("device changed by a stale owner in %v", diff)
			}
			if _, err := s.LIDForPN(ctx, "15553333333"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("stale owner wrote a mapping: %v", err)
			}
			if lid, err := s.LIDForPN(ctx, "15552222222"); err != nil || lid != "222222222222222" {
				t.Fatalf("mapping = %q, %v", lid, err)
			}

			// A view only writes its own account.
			other := storetest.NewDevice(t, "other")
			if err := s.Fenced(lb).Save(ctx, other); !errors.Is(err, store.ErrLeaseLost) {
				t.Fatalf("Save of another account = %v, want ErrLeaseLost", err)
			}
			// A Bound store writes with whatever lease its manager holds.
			if err := s.Bound(a).Save(ctx, d); !errors.Is(err, store.ErrLeaseLost) {
				t.Fatalf("Bound Save without lease = %v, want ErrLeaseLost", err)
			}
			if err := s.Bound(b).Save(ctx, d2); err != nil {
				t.Fatalf("Bound Save with lease: %v", err)
			}
		})
	}
}

// TestFenceReseeded: after Redis lost the fencing counter (but kept the
// device, as with an older snapshot), a new lease's token is still above
// the token of the last write, so the last writer's token cannot be reused.
func TestFenceReseeded(t *testing.T) {
	c, prefix := sharedClient(t)
	ctx := t.Context()
	s := newStore(t, c, prefix, false, nil)
	m := newLeases(t, c, prefix, "inst-a", newClock(), 15*time.Second)
	c.Set(ctx, s.k.fence("acct"), 41, 0)
	r, err := m.Acquire(ctx, "acct")
	if err != nil || len(r.Acquired) != 1 {
		t.Fatal(r, err)
	}
	l := r.Acquired[0]
	if l.Token != 42 {
		t.Fatalf("token %d, want 42", l.Token)
	}
	if err := s.Fenced(l).Save(ctx, storetest.NewDevice(t, "acct")); err != nil {
		t.Fatal(err)
	}
	if err := m.Release(ctx, "acct"); err != nil {
		t.Fatal(err)
	}
	c.Del(ctx, s.k.fence("acct")) // the counter is lost, the device is not
	r, err = m.Acquire(ctx, "acct")
	if err != nil || len(r.Acquired) != 1 {
		t.Fatal(r, err)
	}
	if r.Acquired[0].Token != 43 {
		t.Fatalf("token after losing the counter = %d, want 43", r.Acquired[0].Token)
	}
	// A lease value from a lower token (forged into the key) cannot write
	// over a device written with a higher one.
	low := Lease{Account: "acct", Value: "inst-x:7.abc", Token: 7}
	c.Set(ctx, s.k.lease("acct"), string(low.Value), time.Minute)
	if err := s.Fenced(low).Save(ctx, storetest.NewDevice(t, "acct")); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("Save with a token below the device's = %v, want ErrLeaseLost", err)
	}
}

// TestSplitWriteRecovers: a split write interrupted after the device step
// leaves a marker that Load (or Reconcile) finishes.
func TestSplitWriteRecovers(t *testing.T) {
	testSplitWriteRecovers(t, sharedTarget)
}

func testSplitWriteRecovers(t *testing.T, tg target) {
	c, prefix := tg.open(t)
	ctx := t.Context()
	s := newStore(t, c, prefix, true, nil)
	d := storetest.PairedDevice(t, "acct", "15551111111", "111111111111111", 3)
	if err := s.Save(ctx, d); err != nil {
		t.Fatal(err)
	}
	// Simulate a crash after the device step of a re-pairing: run only
	// the first script.
	d2 := d.Clone()
	storetest.Pair(d2, "15552222222", "222222222222222", 4)
	rec, _ := store.Encode(d2, nil)
	keys := []string{s.k.device("acct"), s.k.lease("acct"), s.k.fence("acct"), s.k.prekeys("acct"), s.k.pending("acct")}
	keys = append(keys, (&entryArgs{}).keys(s.k, "acct")...)
	keys = append(keys, s.k.signal("acct"))
	if err := saveDevice.Run(ctx, c, keys, "", "0", "save", rec, "15552222222", "222222222222222", "sync1").Err(); err != nil {
		t.Fatal(err)
	}
	if lid, _ := s.LIDForPN(ctx, "15551111111"); lid != "111111111111111" {
		t.Fatalf("before reconciling the old mapping is still there; got %q", lid)
	}
	n, err := s.Reconcile(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Reconcile = %d, %v; want 1", n, err)
	}
	if _, err := s.LIDForPN(ctx, "15551111111"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("old mapping survived: %v", err)
	}
	if lid, err := s.LIDForPN(ctx, "15552222222"); err != nil || lid != "222222222222222" {
		t.Fatalf("new mapping = %q, %v", lid, err)
	}
	if n, err := s.Reconcile(ctx); err != nil || n != 0 {
		t.Fatalf("second Reconcile = %d, %v; want 0", n, err)
	}

	// The same for a delete, finished by a Load.
	if err := saveDevice.Run(ctx, c, keys, "", "0", "delete", "", "", "", "sync2").Err(); err != nil {
		t.Fatal(err)
	}
	if ids, err := s.IDs(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("IDs with a tombstone = %v, %v", ids, err)
	}
	if _, err := s.Load(ctx, "acct"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Load = %v", err)
	}
	if _, err := s.PNForLID(ctx, "222222222222222"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("mapping of a deleted device survived: %v", err)
	}
	if n, _ := c.Exists(ctx, s.k.device("acct")).Result(); n != 0 {
		t.Fatal("tombstone not removed")
	}
}

func TestOptionsValidation(t *testing.T) {
	c, _ := sharedClient(t)
	for _, p := range []string{"a{b", "x*", "a b"} {
		if _, err := New(c, Options{Prefix: p}); !errors.Is(err, ErrConfig) {
			t.Errorf("New(prefix %q) = %v, want ErrConfig", p, err)
		}
	}
	if _, err := New(nil, Options{}); !errors.Is(err, ErrConfig) {
		t.Errorf("New(nil) = %v", err)
	}
	for _, o := range []LeaseOptions{{}, {Instance: "a b"}, {Instance: "a", TTL: time.Second, Margin: time.Second}} {
		if _, err := NewLeases(c, o); !errors.Is(err, ErrConfig) {
			t.Errorf("NewLeases(%+v) = %v, want ErrConfig", o, err)
		}
	}
}

func TestSlot(t *testing.T) {
	// Reference values from the Redis Cluster specification (CLUSTER KEYSLOT).
	for key, want := range map[string]uint16{
		"123456789":         12739,
		"foo":               12182,
		"{user1000}.x":      slot("user1000"),
		"wafleet:{a}:lease": slot("a"),
	} {
		if got := slot(key); got != want {
			t.Errorf("slot(%q) = %d, want %d", key, got, want)
		}
	}
	c, _ := sharedClient(t)
	for _, key := range []string{"foo", "wafleet:{acct-1}:device", "x{}y"} {
		want, err := c.Do(t.Context(), "CLUSTER", "KEYSLOT", key).Int64()
		if err != nil {
			break // not a cluster-enabled server: the reference values above stand
		}
		if got := slot(key); int64(got) != want {
			t.Errorf("slot(%q) = %d, Redis says %d", key, got, want)
		}
	}
	_ = fmt.Sprint()
}

// TestOwnerSealsRecordsWrittenBeforeTheKey: a device saved without a
// Sealer is sealed the first time the account's owner loads it through
// its Bound store once a key is configured.
func TestOwnerSealsRecordsWrittenBeforeTheKey(t *testing.T) {
	c, prefix := sharedClient(t)
	ctx := t.Context()
	plain := newStore(t, c, prefix, false, nil)
	d := storetest.PairedDevice(t, "acct", "15553333333", "333333333333333", 2)
	if err := plain.Save(ctx, d); err != nil {
		t.Fatal(err)
	}
	sealer := testSealer(t, 9)
	sealed := newStore(t, c, prefix, false, sealer)
	leases := newLeases(t, c, prefix, "inst-a", newClock(), 15*time.Second)
	mustAcquire(t, leases, "acct")
	got, err := sealed.Bound(leases).Load(ctx, "acct")
	if err != nil {
		t.Fatal(err)
	}
	if diff := storetest.Diff(d, got); diff != nil {
		t.Fatalf("differs in %v", diff)
	}
	_, info, err := sealed.LoadRecord(ctx, "acct")
	if err != nil || !info.Sealed {
		t.Fatalf("after the owner's load: sealed %v, err %v", info.Sealed, err)
	}
	raw, err := c.HGet(ctx, sealed.k.device("acct"), "rec").Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if containsBytes(raw, d.NoiseKey.Priv[:]) || containsBytes(raw, d.AdvSecret[:]) {
		t.Fatal("a secret is still in the clear after the migration")
	}
}
