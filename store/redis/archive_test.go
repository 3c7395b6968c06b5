package redis

import (
	"errors"
	"testing"
	"time"

	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/redis/redistest"
	"github.com/wafleet/wafleet/store/storetest"
)

// TestArchiveFenced: an archive or a restore is a device write like Save:
// a stale owner's and an administrative one under a lease are refused and
// move nothing.
func TestArchiveFenced(t *testing.T) {
	testArchiveFenced(t, sharedTarget)
}

func testArchiveFenced(t *testing.T, tg target) {
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
				t.Fatal(err)
			}
			if err := asA.AddPreKeys(ctx, "acct", storetest.NewPreKeys(t, 1, 5)); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Archive(ctx, "acct", "failure 401"); !errors.Is(err, store.ErrLeaseLost) {
				t.Fatalf("admin Archive under a lease = %v, want ErrLeaseLost", err)
			}
			e, err := asA.Archive(ctx, "acct", "failure 401")
			if err != nil {
				t.Fatalf("owner Archive: %v", err)
			}
			if err := asA.Save(ctx, storetest.NewDevice(t, "acct")); err != nil {
				t.Fatal(err)
			}

			c.Del(ctx, s.k.lease("acct")) // A's lease expires; B takes the account
			lb := mustAcquire(t, b, "acct")
			if _, err := asA.RestoreArchived(ctx, "acct", e.Key); !errors.Is(err, store.ErrLeaseLost) {
				t.Fatalf("stale RestoreArchived = %v, want ErrLeaseLost", err)
			}
			if _, err := asA.Archive(ctx, "acct", "again"); !errors.Is(err, store.ErrLeaseLost) {
				t.Fatalf("stale Archive = %v, want ErrLeaseLost", err)
			}
			if list, err := s.ListArchive(ctx); err != nil || len(list) != 1 || list[0].Key != e.Key {
				t.Fatalf("archive after refused writes = %+v, %v; want the one entry", list, err)
			}
			if _, err := s.Fenced(lb).RestoreArchived(ctx, "acct", e.Key); err != nil {
				t.Fatalf("new owner RestoreArchived: %v", err)
			}
			got, err := s.Load(ctx, "acct")
			if err != nil || storetest.Diff(d, got) != nil {
				t.Fatalf("restored device = %v (diff %v)", err, storetest.Diff(d, got))
			}
			if n, err := s.PreKeyCounts(ctx, "acct"); err != nil || n.Stored != 5 {
				t.Fatalf("restored prekeys = %+v, %v; want 5", n, err)
			}
		})
	}
}

func TestArchiveSealedInRedis(t *testing.T) {
	c, prefix := sharedClient(t)
	ctx := t.Context()
	sealer := testSealer(t, 9)
	// The device and its prekeys are written in the clear, before the key
	// was set; the archive seals them all the same.
	plain := newStore(t, c, prefix, false, nil)
	d := storetest.PairedDevice(t, "acct", "15551234567", "123456789012345", 5)
	if err := plain.Save(ctx, d); err != nil {
		t.Fatal(err)
	}
	keys := storetest.NewPreKeys(t, 1, 30)
	if err := plain.AddPreKeys(ctx, "acct", keys); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, c, prefix, false, sealer)
	e, err := s.Archive(ctx, "acct", "failure 401")
	if err != nil {
		t.Fatal(err)
	}
	var raw []byte
	keysInRedis, err := c.Keys(ctx, prefix+":*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keysInRedis {
		if typ := c.Type(ctx, k).Val(); typ == "hash" {
			for f, v := range c.HGetAll(ctx, k).Val() {
				raw = append(append(raw, f...), v...)
			}
		}
	}
	if !containsBytes(raw, d.NoiseKey.Pub[:]) || !containsBytes(raw, keys[3].Pub[:]) {
		t.Fatal("public keys not found in Redis: the search itself is broken")
	}
	for name, secret := range map[string][32]byte{"NoiseKey": d.NoiseKey.Priv, "IdentityKey": d.IdentityKey.Priv, "SignedPreKey": d.SignedPreKey.Priv, "AdvSecret": d.AdvSecret} {
		if containsBytes(raw, secret[:16]) || containsBytes(raw, secret[16:]) {
			t.Errorf("%s of the archived device is in Redis in the clear", name)
		}
	}
	if id, leaked := storetest.PreKeySecretIn(raw, keys); leaked {
		t.Errorf("archived prekey %d is in Redis in the clear", id)
	}
	if _, err := s.RestoreArchived(ctx, "acct", e.Key); err != nil {
		t.Fatal(err)
	}
	if got, info, err := s.LoadRecord(ctx, "acct"); err != nil || !info.Sealed || storetest.Diff(d, got) != nil {
		t.Fatalf("restored device = %+v, %v", info, err)
	}
	if k, err := s.PreKey(ctx, "acct", 30); err != nil || k != keys[29] {
		t.Fatalf("restored prekey = %v, %v", k, err)
	}
}

// TestArchivingRewritesTheAOF: a device and prekeys written in the clear
// and archived by a sealing store leave no secret in the AOF files.
func TestArchivingRewritesTheAOF(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{AOF: true})
	p := writePlainAccounts(t, srv, 1)
	eventually(t, "the secrets written in the clear never reached the AOF: the search is broken", func() bool {
		return p.leak(t, srv.Dir()) != ""
	})
	if _, err := p.sealed.Bound(p.leases).Archive(t.Context(), p.devices[0].ID, "failure 401"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "secrets archived from the clear are still in the AOF files", func() bool {
		return p.leak(t, srv.Dir()) == ""
	})
}
