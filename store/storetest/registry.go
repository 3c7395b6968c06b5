package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wafleet/wafleet/store"
)

// registryTests are the account registry part of the contract (Run).
var registryTests = []struct {
	name string
	fn   func(t *testing.T, s Store)
}{
	{"RegistryCreate", testRegistryCreate},
	{"RegistryCreateExists", testRegistryCreateExists},
	{"RegistryInvalid", testRegistryInvalid},
	{"RegistryUpdate", testRegistryUpdate},
	{"RegistryDelete", testRegistryDelete},
	{"RegistryConcurrentCreates", testRegistryConcurrentCreates},
	{"RegistrySeed", testRegistrySeed},
}

// TestProxy is a proxy URL with credentials, for checks that it is never
// stored in the clear when sealing is on.
const TestProxy = "socks5://user:pr0xy-s3cret@127.0.0.1:1080"

func mustCreate(t *testing.T, s Store, r store.AccountRecord) store.AccountRecord {
	t.Helper()
	got, err := s.CreateAccount(t.Context(), r)
	if err != nil {
		t.Fatalf("CreateAccount(%s): %v", r, err)
	}
	return got
}

// expectAccounts checks the registry's list: ids, sources, proxies and
// device names in this order.
func expectAccounts(t *testing.T, s Store, want ...store.AccountRecord) {
	t.Helper()
	got, err := s.Accounts(t.Context())
	if err != nil {
		t.Fatalf("Accounts: %v", err)
	}
	describe := func(rs []store.AccountRecord) []string {
		out := []string{}
		for _, r := range rs {
			out = append(out, fmt.Sprintf("%s/%s/%s/%s/%s", r.ID, r.Source, r.Proxy, r.DeviceName, r.Phone))
		}
		return out
	}
	if g, w := describe(got), describe(want); !slices.Equal(g, w) {
		t.Fatalf("Accounts = %q, want %q", g, w)
	}
}

func testRegistryCreate(t *testing.T, s Store) {
	ctx := t.Context()
	before := time.Now().Add(-time.Second)
	b := mustCreate(t, s, store.AccountRecord{ID: "b", Proxy: TestProxy, DeviceName: "Caja 2", Source: store.SourceAPI})
	if b.Created.Before(before) || !b.Updated.Equal(b.Created) {
		t.Fatalf("created record has Created %v, Updated %v", b.Created, b.Updated)
	}
	mustCreate(t, s, store.AccountRecord{ID: "a", Phone: "+15551234567", Source: store.SourceConfig})
	expectAccounts(t, s,
		store.AccountRecord{ID: "a", Phone: "+15551234567", Source: store.SourceConfig},
		store.AccountRecord{ID: "b", Proxy: TestProxy, DeviceName: "Caja 2", Source: store.SourceAPI})
	got, err := s.Account(ctx, "b")
	if err != nil {
		t.Fatalf("Account: %v", err)
	}
	if got.Proxy != TestProxy || got.DeviceName != "Caja 2" || got.Source != store.SourceAPI || !got.Created.Equal(b.Created) || !got.Updated.Equal(b.Updated) {
		t.Fatalf("Account = %+v, want %+v", got, b)
	}
	if _, err := s.Account(ctx, "absent"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Account(absent) = %v, want ErrNotFound", err)
	}
	if strings.Contains(got.String(), "pr0xy-s3cret") {
		t.Fatalf("String shows the proxy: %s", got)
	}
}

func testRegistryCreateExists(t *testing.T, s Store) {
	mustCreate(t, s, store.AccountRecord{ID: "a", DeviceName: "first", Source: store.SourceAPI})
	_, err := s.CreateAccount(t.Context(), store.AccountRecord{ID: "a", DeviceName: "second", Source: store.SourceAPI})
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("second CreateAccount = %v, want ErrExists", err)
	}
	expectAccounts(t, s, store.AccountRecord{ID: "a", DeviceName: "first", Source: store.SourceAPI})
}

func testRegistryInvalid(t *testing.T, s Store) {
	ctx := t.Context()
	for _, r := range []store.AccountRecord{
		{ID: "", Source: store.SourceAPI},
		{ID: "a/b", Source: store.SourceAPI},
		{ID: "a", Source: "yaml"},
		{ID: "a", Source: store.SourceAPI, Proxy: "http://" + strings.Repeat("h", store.MaxProxyLen)},
		{ID: "a", Source: store.SourceAPI, DeviceName: strings.Repeat("n", store.MaxDeviceNameLen+1)},
	} {
		_, err := s.CreateAccount(ctx, r)
		if !errors.Is(err, store.ErrInvalidAccount) {
			t.Errorf("CreateAccount(%s) = %v, want ErrInvalidAccount", r, err)
		}
	}
	mustCreate(t, s, store.AccountRecord{ID: "a", Source: store.SourceAPI})
	if _, err := s.UpdateAccount(ctx, store.AccountRecord{ID: "a", Proxy: strings.Repeat("p", store.MaxProxyLen+1)}); !errors.Is(err, store.ErrInvalidAccount) {
		t.Errorf("UpdateAccount with a long proxy = %v, want ErrInvalidAccount", err)
	}
	if _, err := s.SeedAccounts(ctx, []store.AccountRecord{{ID: "x"}, {ID: "x"}}); !errors.Is(err, store.ErrInvalidAccount) {
		t.Errorf("SeedAccounts with an id twice = %v, want ErrInvalidAccount", err)
	}
	expectAccounts(t, s, store.AccountRecord{ID: "a", Source: store.SourceAPI})
}

func testRegistryUpdate(t *testing.T, s Store) {
	ctx := t.Context()
	a := mustCreate(t, s, store.AccountRecord{ID: "a", Proxy: TestProxy, DeviceName: "old", Source: store.SourceAPI})
	got, err := s.UpdateAccount(ctx, store.AccountRecord{ID: "a", DeviceName: "new", Source: store.SourceConfig})
	if err != nil {
		t.Fatalf("UpdateAccount: %v", err)
	}
	if got.Proxy != "" || got.DeviceName != "new" || got.Source != store.SourceAPI || !got.Created.Equal(a.Created) || got.Updated.Before(a.Updated) {
		t.Fatalf("UpdateAccount = %+v; created %+v", got, a)
	}
	expectAccounts(t, s, store.AccountRecord{ID: "a", DeviceName: "new", Source: store.SourceAPI})
	if _, err := s.UpdateAccount(ctx, store.AccountRecord{ID: "absent"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateAccount(absent) = %v, want ErrNotFound", err)
	}
	expectAccounts(t, s, store.AccountRecord{ID: "a", DeviceName: "new", Source: store.SourceAPI})
}

func testRegistryDelete(t *testing.T, s Store) {
	ctx := t.Context()
	d := NewDevice(t, "a")
	mustSave(t, s, d)
	mustCreate(t, s, store.AccountRecord{ID: "a", Source: store.SourceAPI})
	mustCreate(t, s, store.AccountRecord{ID: "b", Source: store.SourceAPI})
	if err := s.DeleteAccount(ctx, "a"); err != nil {
		t.Fatalf("DeleteAccount: %v", err)
	}
	if err := s.DeleteAccount(ctx, "a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second DeleteAccount = %v, want ErrNotFound", err)
	}
	expectAccounts(t, s, store.AccountRecord{ID: "b", Source: store.SourceAPI})
	expectStored(t, s, d) // the registry is not the devices
	mustCreate(t, s, store.AccountRecord{ID: "a", Source: store.SourceAPI})
}

// testRegistryConcurrentCreates: of concurrent creates of one id, exactly
// one succeeds and the others fail with ErrExists.
func testRegistryConcurrentCreates(t *testing.T, s Store) {
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.CreateAccount(t.Context(), store.AccountRecord{ID: "one", DeviceName: fmt.Sprint("creator-", i), Source: store.SourceAPI})
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("creators %d and %d both succeeded", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, store.ErrExists):
			t.Fatalf("creator %d: %v, want ErrExists", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no creator succeeded")
	}
	expectAccounts(t, s, store.AccountRecord{ID: "one", DeviceName: fmt.Sprint("creator-", winner), Source: store.SourceAPI})
}

func testRegistrySeed(t *testing.T, s Store) {
	ctx := t.Context()
	seed := func(want bool, recs ...store.AccountRecord) {
		t.Helper()
		changed, err := s.SeedAccounts(ctx, recs)
		if err != nil {
			t.Fatalf("SeedAccounts: %v", err)
		}
		if changed != want {
			t.Fatalf("SeedAccounts changed = %v, want %v", changed, want)
		}
	}
	cfg := func(id, proxy, name string) store.AccountRecord {
		return store.AccountRecord{ID: id, Proxy: proxy, DeviceName: name, Source: store.SourceConfig}
	}
	api := func(id string) store.AccountRecord { return store.AccountRecord{ID: id, Source: store.SourceAPI} }

	seed(true, store.AccountRecord{ID: "b"}, store.AccountRecord{ID: "a", Proxy: TestProxy}) // Source is set by the seed
	expectAccounts(t, s, cfg("a", TestProxy, ""), cfg("b", "", ""))
	a, err := s.Account(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	seed(false, cfg("a", TestProxy, ""), cfg("b", "", ""))
	if again, _ := s.Account(ctx, "a"); !again.Updated.Equal(a.Updated) {
		t.Fatalf("an unchanged seed rewrote a: Updated %v, then %v", a.Updated, again.Updated)
	}

	mustCreate(t, s, api("c"))
	mustCreate(t, s, api("d"))
	// b leaves the file, a changes, d moves into it: the API's c stays.
	seed(true, cfg("a", "", "Caja"), cfg("d", "", ""))
	expectAccounts(t, s, cfg("a", "", "Caja"), api("c"), cfg("d", "", ""))
	if got, _ := s.Account(ctx, "a"); !got.Created.Equal(a.Created) {
		t.Fatalf("a changed by a seed has Created %v, want %v", got.Created, a.Created)
	}
	seed(true)
	expectAccounts(t, s, api("c"))
}
