package redis

import (
	"errors"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/storetest"
)

func TestPreKeyKeysShareTheDeviceSlot(t *testing.T) {
	k, _ := newKeys("")
	for _, acct := range []string{"a", "acct-1", "x.y_z"} {
		want := slot(k.device(acct))
		for _, key := range []string{k.prekeys(acct), k.pending(acct), k.lease(acct), k.fence(acct)} {
			if slot(key) != want {
				t.Errorf("%s is in slot %d, the device in %d", key, slot(key), want)
			}
		}
		if k.accountOfDeviceKey(k.prekeys(acct)) != "" || k.accountOfDeviceKey(k.pending(acct)) != "" {
			t.Errorf("a prekey key of %s looks like a device key", acct)
		}
	}
}

// preKeyState is everything Redis holds for one account's prekeys.
func preKeyState(t *testing.T, s *Store, acct string) (map[string]string, []string) {
	t.Helper()
	h, err := s.c.HGetAll(t.Context(), s.k.prekeys(acct)).Result()
	if err != nil {
		t.Fatal(err)
	}
	z, err := s.c.ZRange(t.Context(), s.k.pending(acct), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	return h, z
}

// TestPreKeyFencing: prekey writes from an instance that lost the lease are
// refused with ErrLeaseLost and change nothing; reads and settings are
// not fenced.
func TestPreKeyFencing(t *testing.T) {
	testPreKeyFencing(t, sharedTarget)
}

func testPreKeyFencing(t *testing.T, tg target) {
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
			if err := asA.Save(ctx, storetest.NewDevice(t, "acct")); err != nil {
				t.Fatal(err)
			}
			keys := storetest.NewPreKeys(t, 1, 20)
			if err := asA.AddPreKeys(ctx, "acct", keys[:10]); err != nil {
				t.Fatalf("owner AddPreKeys: %v", err)
			}
			if err := s.Bound(a).MarkPreKeysUploaded(ctx, "acct", 3); err != nil {
				t.Fatalf("Bound MarkPreKeysUploaded with the lease: %v", err)
			}
			// Administrative writes while A holds the lease are refused.
			if err := s.AddPreKeys(ctx, "acct", keys[10:]); !errors.Is(err, store.ErrLeaseLost) {
				t.Fatalf("admin AddPreKeys under a lease = %v, want ErrLeaseLost", err)
			}
			if err := s.RemovePreKey(ctx, "acct", 1); !errors.Is(err, store.ErrLeaseLost) {
				t.Fatalf("admin RemovePreKey under a lease = %v, want ErrLeaseLost", err)
			}

			// A's lease expires in Redis and B takes the account.
			c.Del(ctx, s.k.lease("acct"))
			lb := mustAcquire(t, b, "acct")
			hash, zset := preKeyState(t, s, "acct")

			stale := map[string]error{
				"AddPreKeys":          asA.AddPreKeys(ctx, "acct", keys[10:]),
				"MarkPreKeysUploaded": asA.MarkPreKeysUploaded(ctx, "acct", 10),
				"RemovePreKey":        asA.RemovePreKey(ctx, "acct", 5),
				"Bound AddPreKeys":    s.Bound(a).AddPreKeys(ctx, "acct", keys[10:]),
				"Bound Mark":          s.Bound(a).MarkPreKeysUploaded(ctx, "acct", 10),
				"Bound Remove":        s.Bound(a).RemovePreKey(ctx, "acct", 5),
				"other account":       s.Fenced(lb).AddPreKeys(ctx, "other", keys[10:]),
			}
			for name, err := range stale {
				if !errors.Is(err, store.ErrLeaseLost) {
					t.Errorf("stale %s = %v, want ErrLeaseLost", name, err)
				}
			}
			h2, z2 := preKeyState(t, s, "acct")
			if len(h2) != len(hash) || len(z2) != len(zset) {
				t.Fatalf("stale writes changed the prekeys: %d/%d fields, %d/%d pending", len(h2), len(hash), len(z2), len(zset))
			}
			for f, v := range hash {
				if h2[f] != v {
					t.Fatalf("stale writes changed field %s", f)
				}
			}
			// Reads through the stale view still work, and so do settings.
			if got, err := asA.PreKey(ctx, "acct", 5); err != nil || got != keys[4] {
				t.Fatalf("stale view PreKey = %v, %v", got, err)
			}
			if err := asA.SaveSetting(ctx, "wa.version", "2.3000.1"); err != nil {
				t.Fatalf("SaveSetting through a stale view: %v", err)
			}
			if v, err := s.Bound(b).LoadSetting(ctx, "wa.version"); err != nil || v != "2.3000.1" {
				t.Fatalf("LoadSetting = %q, %v", v, err)
			}
			if err := s.SaveSetting(ctx, "wa.version", "2.3000.2"); err != nil {
				t.Fatalf("admin SaveSetting while leases are held: %v", err)
			}

			// The new owner writes.
			asB := s.Bound(b)
			if err := asB.AddPreKeys(ctx, "acct", keys[10:]); err != nil {
				t.Fatalf("new owner AddPreKeys: %v", err)
			}
			if err := asB.RemovePreKey(ctx, "acct", 20); err != nil {
				t.Fatal(err)
			}
			if n, err := asB.PreKeyCounts(ctx, "acct"); err != nil || n != (store.PreKeyCounts{Stored: 19, Uploaded: 3, MaxID: 20}) {
				t.Fatalf("PreKeyCounts = %+v, %v", n, err)
			}
			// A stale Delete takes nothing away either.
			if err := asA.Delete(ctx, "acct"); !errors.Is(err, store.ErrLeaseLost) {
				t.Fatalf("stale Delete = %v", err)
			}
			if n, _ := asB.PreKeyCounts(ctx, "acct"); n.Stored != 19 {
				t.Fatalf("stale Delete removed prekeys: %+v", n)
			}
			if err := asB.Delete(ctx, "acct"); err != nil {
				t.Fatal(err)
			}
			if n, err := c.Exists(ctx, s.k.prekeys("acct"), s.k.pending("acct")).Result(); err != nil || n != 0 {
				t.Fatalf("prekey keys after Delete: %d exist, %v", n, err)
			}
		})
	}
}

func TestPreKeysSealedInRedis(t *testing.T) {
	c, prefix := sharedClient(t)
	ctx := t.Context()
	sealer := testSealer(t, 7)
	s := newStore(t, c, prefix, false, sealer)
	if err := s.Save(ctx, storetest.NewDevice(t, "acct")); err != nil {
		t.Fatal(err)
	}
	keys := storetest.NewPreKeys(t, 1, 812)
	if err := s.AddPreKeys(ctx, "acct", keys); err != nil {
		t.Fatal(err)
	}
	hash, _ := preKeyState(t, s, "acct")
	if len(hash) != 813 || hash["max"] != "812" {
		t.Fatalf("hash has %d fields, max %q; want 813 and 812", len(hash), hash["max"])
	}
	var raw []byte
	for f, v := range hash {
		raw = append(append(raw, f...), v...)
	}
	if !containsBytes(raw, keys[0].Pub[:]) {
		t.Fatal("public key not found in Redis: the search itself is broken")
	}
	if id, leaked := storetest.PreKeySecretIn(raw, keys); leaked {
		t.Fatalf("private key of prekey %d reached Redis in the clear", id)
	}
	other, _ := store.NewAESSealer(make([]byte, 32))
	for _, tt := range []struct {
		name string
		s    *Store
		want error
	}{{"wrong key", newStore(t, c, prefix, false, other), store.ErrWrongKey}, {"no key", newStore(t, c, prefix, false, nil), store.ErrNoSealer}} {
		if _, err := tt.s.PreKey(ctx, "acct", 1); !errors.Is(err, tt.want) {
			t.Errorf("%s: PreKey = %v, want %v", tt.name, err, tt.want)
		}
		if _, err := tt.s.PreKeysToUpload(ctx, "acct", 5); !errors.Is(err, tt.want) {
			t.Errorf("%s: PreKeysToUpload = %v, want %v", tt.name, err, tt.want)
		}
	}
	if got, err := s.PreKey(ctx, "acct", 812); err != nil || got != keys[811] {
		t.Fatalf("PreKey with the right key = %v, %v", got, err)
	}
}

// TestOwnerSealsPreKeysWrittenBeforeTheKey: prekeys stored in the clear
// still load once a key is configured, and are sealed together with the
// device the first time the owner loads it.
func TestOwnerSealsPreKeysWrittenBeforeTheKey(t *testing.T) {
	c, prefix := sharedClient(t)
	ctx := t.Context()
	plain := newStore(t, c, prefix, false, nil)
	if err := plain.Save(ctx, storetest.NewDevice(t, "acct")); err != nil {
		t.Fatal(err)
	}
	keys := storetest.NewPreKeys(t, 1, 600) // more than one reseal chunk
	if err := plain.AddPreKeys(ctx, "acct", keys); err != nil {
		t.Fatal(err)
	}
	if err := plain.MarkPreKeysUploaded(ctx, "acct", 100); err != nil {
		t.Fatal(err)
	}
	sealer := testSealer(t, 9)
	sealed := newStore(t, c, prefix, false, sealer)
	if got, err := sealed.PreKey(ctx, "acct", 7); err != nil || got != keys[6] {
		t.Fatalf("a key in the clear loaded with a Sealer = %v, %v", got, err)
	}
	leases := newLeases(t, c, prefix, "inst-a", newClock(), 15*time.Second)
	mustAcquire(t, leases, "acct")
	if _, err := sealed.Bound(leases).Load(ctx, "acct"); err != nil {
		t.Fatal(err)
	}
	hash, _ := preKeyState(t, sealed, "acct")
	for f, v := range hash {
		if f == "max" {
			continue
		}
		if id, leaked := storetest.PreKeySecretIn([]byte(v), keys); leaked || len(v) < 5 || v[4]&1 == 0 {
			t.Fatalf("prekey field %s (key %d) is still in the clear", f, id)
		}
	}
	got, err := sealed.PreKeysToUpload(ctx, "acct", 1000)
	if err != nil || len(got) != 500 || got[0] != keys[100] || got[499] != keys[599] {
		t.Fatalf("PreKeysToUpload after the migration = %d keys, %v", len(got), err)
	}
	if n, err := sealed.PreKeyCounts(ctx, "acct"); err != nil || n != (store.PreKeyCounts{Stored: 600, Uploaded: 100, MaxID: 600}) {
		t.Fatalf("PreKeyCounts after the migration = %+v, %v", n, err)
	}
}

// TestPreKeyRoundTrips: the connection actor's calls each take one round
// trip, the 812-key first upload included.
func TestPreKeyRoundTrips(t *testing.T) {
	c, prefix := sharedClient(t)
	ctx := t.Context()
	s := newStore(t, c, prefix, false, nil)
	m := newLeases(t, c, prefix, "inst-a", newClock(), time.Minute)
	if r, err := m.Acquire(ctx, "acct", "warm"); err != nil || len(r.Acquired) != 2 {
		t.Fatal(r, err)
	}
	v := s.Bound(m)
	for _, id := range []string{"warm", "acct"} {
		if err := v.Save(ctx, storetest.NewDevice(t, id)); err != nil {
			t.Fatal(err)
		}
	}
	// Load the scripts once (EVALSHA falls back to EVAL the first time).
	if err := v.AddPreKeys(ctx, "warm", storetest.NewPreKeys(t, 1, 1)); err != nil {
		t.Fatal(err)
	}
	_, _ = v.PreKeysToUpload(ctx, "warm", 1)
	_, _ = v.PreKeyCounts(ctx, "warm")
	_ = v.MarkPreKeysUploaded(ctx, "warm", 1)
	_ = v.RemovePreKey(ctx, "warm", 1)

	keys := storetest.NewPreKeys(t, 1, 812)
	h := &counter{}
	c.AddHook(h)
	steps := []struct {
		name string
		fn   func() error
	}{
		{"PreKeyCounts", func() error { _, err := v.PreKeyCounts(ctx, "acct"); return err }},
		{"AddPreKeys(812)", func() error { return v.AddPreKeys(ctx, "acct", keys) }},
		{"PreKeysToUpload(812)", func() error { _, err := v.PreKeysToUpload(ctx, "acct", 812); return err }},
		{"MarkPreKeysUploaded", func() error { return v.MarkPreKeysUploaded(ctx, "acct", 812) }},
		{"PreKey", func() error { _, err := v.PreKey(ctx, "acct", 400); return err }},
		{"RemovePreKey", func() error { return v.RemovePreKey(ctx, "acct", 400) }},
		{"SaveSetting", func() error { return v.SaveSetting(ctx, "wa.version", "2.3000.5") }},
		{"LoadSetting", func() error { _, err := v.LoadSetting(ctx, "wa.version"); return err }},
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

func TestPreKeysCorruptInRedis(t *testing.T) {
	c, prefix := sharedClient(t)
	ctx := t.Context()
	s := newStore(t, c, prefix, false, nil)
	if err := s.Save(ctx, storetest.NewDevice(t, "acct")); err != nil {
		t.Fatal(err)
	}
	keys := storetest.NewPreKeys(t, 1, 3)
	if err := s.AddPreKeys(ctx, "acct", keys); err != nil {
		t.Fatal(err)
	}
	rec1, _ := c.HGet(ctx, s.k.prekeys("acct"), "1").Result()
	tests := []struct {
		name  string
		setup func()
		check func() error
	}{
		{"garbage record", func() { c.HSet(ctx, s.k.prekeys("acct"), "2", "garbage") }, func() error {
			_, err := s.PreKey(ctx, "acct", 2)
			return err
		}},
		{"record under another ID", func() { c.HSet(ctx, s.k.prekeys("acct"), "2", rec1) }, func() error {
			_, err := s.PreKeysToUpload(ctx, "acct", 5)
			return err
		}},
		{"pending ID without record", func() { c.ZAdd(ctx, s.k.pending("acct"), goredis.Z{Score: 0.5, Member: "999"}) }, func() error {
			_, err := s.PreKeysToUpload(ctx, "acct", 1)
			return err
		}},
		{"max below the stored keys", func() { c.HSet(ctx, s.k.prekeys("acct"), "max", "1") }, func() error {
			_, err := s.PreKeyCounts(ctx, "acct")
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.setup()
			if err := tt.check(); !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
		})
	}
}
