package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/wafleet/wafleet/store"
)

// archiveTests are the archive part of the contract (Run).
var archiveTests = []struct {
	name string
	fn   func(t *testing.T, s Store)
}{
	{"ArchiveMovesDevice", testArchiveMovesDevice},
	{"ArchiveAbsent", testArchiveAbsent},
	{"RestoreArchived", testRestoreArchived},
	{"RestoreRefusedOverPaired", testRestoreRefusedOverPaired},
	{"RestoreUnknown", testRestoreUnknown},
	{"PruneArchive", testPruneArchive},
}

// archivedAccount stores a paired device under id with 20 prekeys, 10 of
// them uploaded, archives it and returns the device, its keys and the entry.
func archivedAccount(t *testing.T, s Store, id string) (*store.Device, []store.PreKey, store.ArchiveEntry) {
	t.Helper()
	ctx := t.Context()
	d := PairedDevice(t, id, "15551234567", "123456789012345", 5)
	mustSave(t, s, d)
	keys := NewPreKeys(t, 1, 20)
	mustAdd(t, s, id, keys)
	if err := s.MarkPreKeysUploaded(ctx, id, 10); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	e, err := s.Archive(ctx, id, "failure 401")
	if err != nil {
		t.Fatalf("Archive(%s): %v", id, err)
	}
	if e.ID != id || e.JID != d.JID || e.Reason != "failure 401" || e.PreKeys != 20 {
		t.Fatalf("Archive(%s) = %+v; want id, JID %s, reason and 20 prekeys", id, e, d.JID)
	}
	if at, err := store.ParseArchiveKey(e.Key); err != nil || !at.Equal(e.ArchivedAt) {
		t.Fatalf("entry key %q = %v, %v; want the archive time %v", e.Key, at, err, e.ArchivedAt)
	}
	if e.ArchivedAt.Before(before.Add(-time.Second)) || e.ArchivedAt.After(time.Now().Add(time.Second)) {
		t.Fatalf("ArchivedAt = %v, not now", e.ArchivedAt)
	}
	return d, keys, e
}

func expectArchive(t *testing.T, s Store, want ...store.ArchiveEntry) {
	t.Helper()
	got, err := s.ListArchive(t.Context())
	if err != nil {
		t.Fatalf("ListArchive: %v", err)
	}
	eq := func(a, b store.ArchiveEntry) bool {
		return a.ID == b.ID && a.Key == b.Key && a.ArchivedAt.Equal(b.ArchivedAt) && a.Reason == b.Reason && a.JID == b.JID && a.PreKeys == b.PreKeys
	}
	if want == nil {
		want = []store.ArchiveEntry{}
	}
	if !slices.EqualFunc(got, want, eq) {
		t.Fatalf("ListArchive = %+v; want %+v", got, want)
	}
}

func testArchiveMovesDevice(t *testing.T, s Store) {
	ctx := t.Context()
	keep := PairedDevice(t, "kept", "15557654321", "543210987654321", 2)
	mustSave(t, s, keep)
	mustAdd(t, s, "kept", NewPreKeys(t, 1, 3))
	_, _, e := archivedAccount(t, s, "gone")

	if got, err := s.Load(ctx, "gone"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Load after Archive = %v, %v; want ErrNotFound", got, err)
	}
	expectCounts(t, s, "gone", store.PreKeyCounts{})
	expectNoPreKey(t, s, "gone", 15)
	expectNoPN(t, s, "15551234567")
	expectNoLID(t, s, "123456789012345")
	expectIDs(t, s, "kept")
	expectStored(t, s, keep)
	expectCounts(t, s, "kept", store.PreKeyCounts{Stored: 3, MaxID: 3})
	expectArchive(t, s, e)

	// The account pairs again with a fresh device and fresh prekey IDs.
	mustSave(t, s, NewDevice(t, "gone"))
	mustAdd(t, s, "gone", NewPreKeys(t, 1, 2))
	expectCounts(t, s, "gone", store.PreKeyCounts{Stored: 2, MaxID: 2})
	expectArchive(t, s, e)
}

func testArchiveAbsent(t *testing.T, s Store) {
	if e, err := s.Archive(t.Context(), "nobody", "failure 401"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Archive of an absent device = %+v, %v; want ErrNotFound", e, err)
	}
	expectArchive(t, s)
}

func testRestoreArchived(t *testing.T, s Store) {
	ctx := t.Context()
	d, keys, e := archivedAccount(t, s, "acct")
	fresh := NewDevice(t, "acct") // pairing again meanwhile
	mustSave(t, s, fresh)
	mustAdd(t, s, "acct", NewPreKeys(t, 1, 4))

	got, err := s.RestoreArchived(ctx, "acct", e.Key)
	if err != nil {
		t.Fatalf("RestoreArchived: %v", err)
	}
	if got.Key != e.Key || got.JID != d.JID {
		t.Errorf("RestoreArchived = %+v; want the entry %+v", got, e)
	}
	expectStored(t, s, d)
	expectMapping(t, s, "15551234567", "123456789012345")
	expectCounts(t, s, "acct", store.PreKeyCounts{Stored: 20, Uploaded: 10, MaxID: 20})
	expectToUpload(t, s, "acct", 50, keys[10:])
	for _, k := range []store.PreKey{keys[0], keys[9], keys[10], keys[19]} {
		expectPreKey(t, s, "acct", k)
	}
	expectArchive(t, s)
	if _, err := s.RestoreArchived(ctx, "acct", e.Key); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second RestoreArchived = %v; want ErrNotFound", err)
	}
}

func testRestoreRefusedOverPaired(t *testing.T, s Store) {
	ctx := t.Context()
	_, _, e := archivedAccount(t, s, "acct")
	now := PairedDevice(t, "acct", "15550001111", "100000000000001", 3)
	mustSave(t, s, now)
	keys := NewPreKeys(t, 1, 2)
	mustAdd(t, s, "acct", keys)

	if _, err := s.RestoreArchived(ctx, "acct", e.Key); !errors.Is(err, store.ErrPaired) {
		t.Fatalf("RestoreArchived over a paired device = %v; want ErrPaired", err)
	}
	expectStored(t, s, now)
	expectMapping(t, s, "15550001111", "100000000000001")
	expectNoPN(t, s, "15551234567")
	expectCounts(t, s, "acct", store.PreKeyCounts{Stored: 2, MaxID: 2})
	expectToUpload(t, s, "acct", 50, keys)
	expectArchive(t, s, e)
}

func testRestoreUnknown(t *testing.T, s Store) {
	ctx := t.Context()
	_, _, e := archivedAccount(t, s, "acct")
	for _, tt := range []struct{ id, key string }{
		{"acct", store.ArchiveKey(e.ArchivedAt.Add(time.Hour))},
		{"other", e.Key},
		{"acct", "not-a-key"},
		{"acct", ""},
	} {
		if _, err := s.RestoreArchived(ctx, tt.id, tt.key); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("RestoreArchived(%q, %q) = %v; want ErrNotFound", tt.id, tt.key, err)
		}
	}
	expectArchive(t, s, e)
	expectIDs(t, s)
}

func testPruneArchive(t *testing.T, s Store) {
	ctx := t.Context()
	_, _, first := archivedAccount(t, s, "acct")
	_, _, second := archivedAccount(t, s, "acct")
	_, _, other := archivedAccount(t, s, "other")
	if !first.ArchivedAt.Before(second.ArchivedAt) || first.Key == second.Key {
		t.Fatalf("two archives of one account: %+v then %+v; want distinct, in time order", first, second)
	}
	expectArchive(t, s, first, second, other)

	n, err := s.PruneArchive(ctx, second.ArchivedAt)
	if err != nil || n != 1 {
		t.Fatalf("PruneArchive(before the second) = %d, %v; want 1", n, err)
	}
	expectArchive(t, s, second, other)
	if n, err := s.PruneArchive(ctx, second.ArchivedAt); err != nil || n != 0 {
		t.Fatalf("PruneArchive again = %d, %v; want 0", n, err)
	}
	if _, err := s.RestoreArchived(ctx, "acct", first.Key); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RestoreArchived of a pruned entry = %v; want ErrNotFound", err)
	}
	if n, err := s.PruneArchive(ctx, time.Now().Add(time.Minute)); err != nil || n != 2 {
		t.Fatalf("PruneArchive(everything) = %d, %v; want 2", n, err)
	}
	expectArchive(t, s)
}
