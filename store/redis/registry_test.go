package redis

import (
	"strings"
	"testing"
	"time"

	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/storetest"
)

// TestRegistrySealsProxies: with a sealer, the proxy reaches Redis sealed;
// records written in the clear are sealed by the next seed.
func TestRegistrySealsProxies(t *testing.T) {
	c, prefix := sharedClient(t)
	ctx := t.Context()
	plain := newStore(t, c, prefix, false, nil)
	if _, err := plain.CreateAccount(ctx, store.AccountRecord{ID: "api", Proxy: storetest.TestProxy, Source: store.SourceAPI}); err != nil {
		t.Fatal(err)
	}
	raw := func() string {
		t.Helper()
		v, err := c.HGetAll(ctx, plain.k.registry()).Result()
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join([]string{v["api"], v["cfg"]}, " ")
	}
	if !strings.Contains(raw(), "pr0xy-s3cret") {
		t.Fatal("the check cannot see a proxy in the clear")
	}
	sealed := newStore(t, c, prefix, false, testSealer(t, 3))
	if changed, err := sealed.SeedAccounts(ctx, []store.AccountRecord{{ID: "cfg", Proxy: storetest.TestProxy}}); err != nil || !changed {
		t.Fatalf("SeedAccounts = %v, %v", changed, err)
	}
	if strings.Contains(raw(), "pr0xy-s3cret") {
		t.Fatalf("after a sealed seed Redis holds a proxy in the clear: %q", raw())
	}
	for _, id := range []string{"api", "cfg"} {
		if r, err := sealed.Account(ctx, id); err != nil || r.Proxy != storetest.TestProxy {
			t.Fatalf("Account(%s) = %+v, %v", id, r, err)
		}
	}
	if changed, err := sealed.SeedAccounts(ctx, []store.AccountRecord{{ID: "cfg", Proxy: storetest.TestProxy}}); err != nil || changed {
		t.Fatalf("second SeedAccounts = %v, %v; want no change", changed, err)
	}
}

// TestRegistryAnnouncesChanges: every change of the registry, made through
// another Store on another client, reaches a watcher and moves the counter.
func TestRegistryAnnouncesChanges(t *testing.T) {
	testRegistryAnnouncesChanges(t, sharedTarget)
}

func testRegistryAnnouncesChanges(t *testing.T, tg target) {
	c, prefix := tg.open(t)
	ctx := t.Context()
	watcher := newStore(t, c, prefix, false, nil)
	c2, _ := tg.open(t)
	writer := newStore(t, c2, prefix, false, nil)
	changes, err := watcher.WatchAccounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last, err := watcher.AccountsVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	expectChange := func(what string) {
		t.Helper()
		select {
		case <-changes:
		case <-time.After(30 * time.Second):
			t.Fatalf("no announcement after %s", what)
		}
		v, err := watcher.AccountsVersion(ctx)
		if err != nil || v <= last {
			t.Fatalf("counter after %s = %d, %v; was %d", what, v, err, last)
		}
		last = v
	}
	if _, err := writer.CreateAccount(ctx, store.AccountRecord{ID: "a", Source: store.SourceAPI}); err != nil {
		t.Fatal(err)
	}
	expectChange("create")
	if _, err := writer.UpdateAccount(ctx, store.AccountRecord{ID: "a", DeviceName: "x"}); err != nil {
		t.Fatal(err)
	}
	expectChange("update")
	if _, err := writer.SeedAccounts(ctx, []store.AccountRecord{{ID: "b"}}); err != nil {
		t.Fatal(err)
	}
	expectChange("seed")
	if err := writer.DeleteAccount(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	expectChange("delete")
	if _, err := writer.CreateAccount(ctx, store.AccountRecord{ID: "b", Source: store.SourceAPI}); err == nil {
		t.Fatal("create of a seeded id succeeded")
	}
	if v, _ := watcher.AccountsVersion(ctx); v != last {
		t.Fatalf("a refused create moved the counter from %d to %d", last, v)
	}
}
