package store_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/storetest"
)

// fileHolds reports whether the file at path contains s anywhere, free
// pages included.
func fileHolds(t *testing.T, path, s string) bool {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(raw, []byte(s))
}

// TestBoltRegistrySealsProxies: with a key, a proxy (which may carry
// credentials) never reaches the file in the clear; a store written
// without one has its proxies sealed by Reseal; the registry survives
// reopening.
func TestBoltRegistrySealsProxies(t *testing.T) {
	const secret = "pr0xy-s3cret"
	dir := t.TempDir()
	sealedPath := filepath.Join(dir, "sealed.db")
	s := openBolt(t, sealedPath, store.BoltOptions{Sealer: mustSealer(t, testKey(1))})
	if _, err := s.CreateAccount(t.Context(), store.AccountRecord{ID: "a", Proxy: storetest.TestProxy, Source: store.SourceAPI}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SeedAccounts(t.Context(), []store.AccountRecord{{ID: "b", Proxy: storetest.TestProxy}}); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if fileHolds(t, sealedPath, secret) {
		t.Fatal("the sealed store's file holds a proxy's credentials in the clear")
	}

	plainPath := filepath.Join(dir, "plain.db")
	s = openBolt(t, plainPath, store.BoltOptions{})
	if _, err := s.CreateAccount(t.Context(), store.AccountRecord{ID: "a", Proxy: storetest.TestProxy, Source: store.SourceAPI}); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if !fileHolds(t, plainPath, secret) {
		t.Fatal("the check cannot see a proxy in the clear")
	}
	s = openBolt(t, plainPath, store.BoltOptions{Sealer: mustSealer(t, testKey(1))})
	n, err := s.Reseal(t.Context())
	if err != nil || n != 1 {
		t.Fatalf("Reseal = %d, %v; want 1 record sealed", n, err)
	}
	_ = s.Close()
	if fileHolds(t, plainPath, secret) {
		t.Fatal("after Reseal the file still holds a proxy in the clear")
	}
	s = openBolt(t, plainPath, store.BoltOptions{Sealer: mustSealer(t, testKey(1))})
	got, err := s.Account(t.Context(), "a")
	if err != nil || got.Proxy != storetest.TestProxy || got.Source != store.SourceAPI {
		t.Fatalf("Account after Reseal and reopen = %+v, %v", got, err)
	}
	_ = s.Close()
	s = openBolt(t, plainPath, store.BoltOptions{})
	if _, err := s.Account(t.Context(), "a"); err == nil {
		t.Fatal("a sealed proxy loads without a key")
	}
}
