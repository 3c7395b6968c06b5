package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wafleet/wafleet/store"
)

// fakeArchive holds entries like a store would and records confirmations.
type fakeArchive struct {
	mu        sync.Mutex
	entries   []store.ArchiveEntry
	paired    map[string]bool
	held      []string
	confirmed int
}

func (f *fakeArchive) List(context.Context) ([]store.ArchiveEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.entries), nil
}

func (f *fakeArchive) Restore(_ context.Context, id, key string) (store.ArchiveEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id == "ghost" {
		return store.ArchiveEntry{}, fmt.Errorf("app: %w", ErrUnknownAccount)
	}
	i := slices.IndexFunc(f.entries, func(e store.ArchiveEntry) bool { return e.ID == id && e.Key == key })
	if i < 0 {
		return store.ArchiveEntry{}, fmt.Errorf("store: restore %q: %w", id, store.ErrNotFound)
	}
	if f.paired[id] {
		return store.ArchiveEntry{}, fmt.Errorf("store: restore %q: %w", id, store.ErrPaired)
	}
	e := f.entries[i]
	f.entries = slices.Delete(f.entries, i, i+1)
	return e, nil
}

func (f *fakeArchive) HeldWipes() (bool, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.held) > 0, slices.Clone(f.held)
}

func (f *fakeArchive) ConfirmWipes(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.confirmed++
	held := f.held
	f.held = nil
	return held, nil
}

func newArchiveFixture(t *testing.T) (*fixture, *fakeArchive) {
	at := time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)
	arch := &fakeArchive{
		entries: []store.ArchiveEntry{
			{ID: "alice", Key: store.ArchiveKey(at), ArchivedAt: at, Reason: "failure 401 (logged out)", JID: "15550001:3@s.whatsapp.net", PreKeys: 812},
			{ID: "bob", Key: store.ArchiveKey(at.Add(time.Second)), ArchivedAt: at.Add(time.Second), Reason: "failure 401 (logged out)"},
		},
		paired: map[string]bool{"bob": true},
		held:   []string{"carol", "dave"},
	}
	return newFixture(t, func(c *Config) { c.Archive = arch }), arch
}

func TestArchiveList(t *testing.T) {
	f, arch := newArchiveFixture(t)
	resp, body := f.do(t, http.MethodGet, "/api/archive")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var list []map[string]any
	if err := json.Unmarshal(body, &list); err != nil || len(list) != 2 {
		t.Fatalf("body %s: %v", body, err)
	}
	if got, want := keys(list[0]), []string{"archived_at", "id", "jid", "key", "prekeys", "reason"}; !slices.Equal(got, want) {
		t.Fatalf("entry fields %v, want %v", got, want)
	}
	if list[0]["key"] != arch.entries[0].Key || list[0]["archived_at"] != "2026-11-30T03:00:00Z" || list[0]["prekeys"] != 812.0 {
		t.Fatalf("entry %v", list[0])
	}
}

func TestArchiveRestore(t *testing.T) {
	f, arch := newArchiveFixture(t)
	alice, bob := arch.entries[0].Key, arch.entries[1].Key

	resp, body := f.do(t, http.MethodPost, "/api/archive/alice/restore")
	wantError(t, resp, body, http.StatusBadRequest)
	resp, body = f.do(t, http.MethodPost, "/api/archive/alice/restore?key=20200101T000000.000000000Z")
	wantError(t, resp, body, http.StatusNotFound)
	if !strings.Contains(string(body), "no archive entry") {
		t.Errorf("404 body %s does not say what is missing", body)
	}
	resp, body = f.do(t, http.MethodPost, "/api/archive/bob/restore?key="+bob)
	wantError(t, resp, body, http.StatusConflict)
	if !strings.Contains(string(body), "paired device") {
		t.Errorf("409 body %s does not say why", body)
	}
	resp, body = f.do(t, http.MethodPost, "/api/archive/ghost/restore?key="+alice)
	wantError(t, resp, body, http.StatusNotFound)
	resp, body = f.do(t, http.MethodPost, "/api/archive/a%20b/restore?key="+alice)
	wantError(t, resp, body, http.StatusBadRequest)
	resp, body = f.do(t, http.MethodGet, "/api/archive/alice/restore?key="+alice)
	wantError(t, resp, body, http.StatusMethodNotAllowed)

	// The JSON body names the entry as well as the query does.
	req, err := http.NewRequest(http.MethodPost, f.http.URL+"/api/archive/alice/restore", strings.NewReader(`{"key":"`+alice+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var got store.ArchiveEntry
	if err := json.NewDecoder(res.Body).Decode(&got); err != nil || res.StatusCode != http.StatusOK || got.Key != alice {
		t.Fatalf("restore by body: status %d, %+v, %v", res.StatusCode, got, err)
	}
	if list, _ := arch.List(context.Background()); len(list) != 1 {
		t.Fatalf("archive after restore %+v; want bob's entry only", list)
	}
}

func TestHeldWipesAndConfirm(t *testing.T) {
	f, arch := newArchiveFixture(t)
	resp, body := f.do(t, http.MethodGet, "/api/wipes")
	if resp.StatusCode != http.StatusOK || string(body) != `{"paused":true,"held":["carol","dave"]}`+"\n" {
		t.Fatalf("GET /api/wipes: %d %s", resp.StatusCode, body)
	}
	// Like every action, a confirmation from another site's page is refused.
	rec := call(f.srv, http.MethodPost, "/api/wipes/confirm", "127.0.0.1:8080", "Origin", "http://evil.example")
	wantRecorded(t, rec, http.StatusForbidden, "cross-site confirm")
	if rec := call(f.srv, http.MethodPost, "/api/wipes/confirm", "evil.example"); rec.Code != http.StatusForbidden {
		t.Fatalf("confirm with a foreign Host: status %d", rec.Code)
	}
	if arch.confirmed != 0 {
		t.Fatal("a refused request confirmed the wipes")
	}
	resp, body = f.do(t, http.MethodPost, "/api/wipes/confirm")
	if resp.StatusCode != http.StatusOK || string(body) != `{"confirmed":["carol","dave"]}`+"\n" {
		t.Fatalf("POST /api/wipes/confirm: %d %s", resp.StatusCode, body)
	}
	resp, body = f.do(t, http.MethodGet, "/api/wipes")
	if string(body) != `{"paused":false,"held":[]}`+"\n" {
		t.Fatalf("GET /api/wipes after confirm: %d %s", resp.StatusCode, body)
	}
}

func TestArchiveRoutesWithoutArchive(t *testing.T) {
	f := newFixture(t, nil)
	for _, r := range []struct{ method, path string }{
		{http.MethodGet, "/api/archive"},
		{http.MethodPost, "/api/archive/alice/restore?key=x"},
		{http.MethodGet, "/api/wipes"},
		{http.MethodPost, "/api/wipes/confirm"},
	} {
		rec := call(f.srv, r.method, r.path, "127.0.0.1:8080")
		wantRecorded(t, rec, http.StatusServiceUnavailable, r.method+" "+r.path)
	}
}
