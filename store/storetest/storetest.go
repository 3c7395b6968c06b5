package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wafleet/wafleet/store"
)

// Store is what the contract tests exercise: a store.Backend and the
// store.LIDMap that reads back the mapping its Save keeps.
type Store interface {
	store.Backend
	store.LIDMap
}

// Run runs the contract every store.Backend (with its store.LIDMap) must
// satisfy. open must return a
// fresh, empty store for each call; Run closes it at the end of the sub-test
// (Close is idempotent, so open may also register its own cleanup).
func Run(t *testing.T, open func(t *testing.T) Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"Overwrite", testOverwrite},
		{"SaveCopies", testSaveCopies},
		{"LoadAbsent", testLoadAbsent},
		{"Delete", testDelete},
		{"IDsSorted", testIDsSorted},
		{"Mapping", testMapping},
		{"RepairRemovesOldMapping", testRepairRemovesOldMapping},
		{"SharedMapping", testSharedMapping},
		{"InvalidDevice", testInvalidDevice},
		{"FailedSaveKeepsPrevious", testFailedSaveKeepsPrevious},
		{"ConcurrentSaves", testConcurrentSaves},
		{"Closed", testClosed},
	}
	tests = append(tests, preKeyTests...)
	tests = append(tests, archiveTests...)
	tests = append(tests, registryTests...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { _ = s.Close() })
			tt.fn(t, s)
		})
	}
}

func mustSave(t *testing.T, s Store, d *store.Device) {
	t.Helper()
	if err := s.Save(t.Context(), d); err != nil {
		t.Fatalf("Save(%s): %v", d.ID, err)
	}
}

// expectStored fails unless s holds exactly want under want.ID.
func expectStored(t *testing.T, s Store, want *store.Device) {
	t.Helper()
	got, err := s.Load(t.Context(), want.ID)
	if err != nil {
		t.Fatalf("Load(%s): %v", want.ID, err)
	}
	if diff := Diff(want, got); diff != nil {
		t.Fatalf("Load(%s) differs from what was saved in %v", want.ID, diff)
	}
}

func expectMapping(t *testing.T, s Store, pn, lid string) {
	t.Helper()
	ctx := t.Context()
	if got, err := s.LIDForPN(ctx, pn); err != nil || got != lid {
		t.Errorf("LIDForPN(%s) = %q, %v; want %q", pn, got, err, lid)
	}
	if got, err := s.PNForLID(ctx, lid); err != nil || got != pn {
		t.Errorf("PNForLID(%s) = %q, %v; want %q", lid, got, err, pn)
	}
}

func expectNoPN(t *testing.T, s Store, pn string) {
	t.Helper()
	if got, err := s.LIDForPN(t.Context(), pn); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LIDForPN(%s) = %q, %v; want ErrNotFound", pn, got, err)
	}
}

func expectNoLID(t *testing.T, s Store, lid string) {
	t.Helper()
	if got, err := s.PNForLID(t.Context(), lid); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("PNForLID(%s) = %q, %v; want ErrNotFound", lid, got, err)
	}
}

func expectIDs(t *testing.T, s Store, want ...string) {
	t.Helper()
	got, err := s.IDs(t.Context())
	if err != nil {
		t.Fatalf("IDs: %v", err)
	}
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("IDs = %q, want %q", got, want)
	}
}

func testRoundTrip(t *testing.T, s Store) {
	maxed := PairedDevice(t, strings.Repeat("m", store.MaxIDLen), "9"+strings.Repeat("8", 19), "7"+strings.Repeat("6", 20), 65535)
	maxed.BusinessName = strings.Repeat("ß", store.MaxBusinessNameLen/2)
	maxed.Platform = strings.Repeat("p", store.MaxPlatformLen)
	maxed.Account = make([]byte, store.MaxAccountLen)
	maxed.SignedPreKey.ID = store.MaxSignedPreKeyID
	maxed.RegistrationID = 1<<32 - 1

	noLID := PairedDevice(t, "no-lid", "15550000001", "", 3)
	tests := []struct {
		name string
		d    *store.Device
	}{
		{"unpaired", NewDevice(t, "acct-unpaired")},
		{"paired", PairedDevice(t, "acct.paired_1", "15551234567", "123456789012345", 5)},
		{"paired without LID", noLID},
		{"field limits", maxed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustSave(t, s, tt.d)
			expectStored(t, s, tt.d)
		})
	}
	if _, err := s.LIDForPN(t.Context(), "15550000001"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a device without LID must not create a mapping; LIDForPN err = %v", err)
	}
}

func testOverwrite(t *testing.T, s Store) {
	d := NewDevice(t, "acct")
	mustSave(t, s, d)
	paired := d.Clone()
	Pair(paired, "15551234567", "123456789012345", 7)
	mustSave(t, s, paired)
	expectStored(t, s, paired)
	expectIDs(t, s, "acct")
	expectMapping(t, s, "15551234567", "123456789012345")

	paired.BusinessName = "renamed"
	mustSave(t, s, paired)
	expectStored(t, s, paired)
}

func testSaveCopies(t *testing.T, s Store) {
	d := PairedDevice(t, "acct", "15551234567", "123456789012345", 2)
	want := d.Clone()
	mustSave(t, s, d)
	d.Account[0] ^= 0xff // the store must not alias the caller's slice
	d.BusinessName = "changed after save"
	expectStored(t, s, want)

	got, err := s.Load(t.Context(), "acct")
	if err != nil {
		t.Fatal(err)
	}
	got.Account[0] ^= 0xff // nor hand out its own
	expectStored(t, s, want)
}

func testLoadAbsent(t *testing.T, s Store) {
	for _, id := range []string{"absent", "", "not a valid id/"} {
		d, err := s.Load(t.Context(), id)
		if !errors.Is(err, store.ErrNotFound) || d != nil {
			t.Errorf("Load(%q) = %v, %v; want nil, ErrNotFound", id, d, err)
		}
	}
}

func testDelete(t *testing.T, s Store) {
	ctx := t.Context()
	d := PairedDevice(t, "gone", "15551234567", "123456789012345", 5)
	keep := PairedDevice(t, "kept", "15557654321", "543210987654321", 2)
	mustSave(t, s, d)
	mustSave(t, s, keep)
	if err := s.Delete(ctx, "gone"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if got, err := s.Load(ctx, "gone"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Load after Delete = %v, %v; want ErrNotFound", got, err)
	}
	expectNoPN(t, s, "15551234567")
	expectNoLID(t, s, "123456789012345")
	expectIDs(t, s, "kept")
	expectStored(t, s, keep)
	expectMapping(t, s, "15557654321", "543210987654321")

	if err := s.Delete(ctx, "gone"); err != nil {
		t.Errorf("Delete of an absent id = %v, want nil", err)
	}
	if err := s.Delete(ctx, "never-existed"); err != nil {
		t.Errorf("Delete of an absent id = %v, want nil", err)
	}
	// A deleted id can be saved again.
	mustSave(t, s, d)
	expectStored(t, s, d)
	expectMapping(t, s, "15551234567", "123456789012345")
}

func testIDsSorted(t *testing.T, s Store) {
	expectIDs(t, s) // empty store: empty list, no error
	want := []string{"-x", ".dot", "0", "A", "Z_", "a", "a.b", "acct-10", "acct-2", "b", "z"}
	shuffled := slices.Clone(want)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for _, id := range shuffled {
		mustSave(t, s, NewDevice(t, id))
	}
	expectIDs(t, s, want...)
}

func testMapping(t *testing.T, s Store) {
	mustSave(t, s, PairedDevice(t, "a", "15551111111", "111111111111111", 3))
	mustSave(t, s, PairedDevice(t, "b", "15552222222", "222222222222222", 4))
	mustSave(t, s, NewDevice(t, "unpaired"))
	expectMapping(t, s, "15551111111", "111111111111111")
	expectMapping(t, s, "15552222222", "222222222222222")
	for _, user := range []string{"", "15553333333", "111111111111111", "15551111111:3@s.whatsapp.net"} {
		expectNoPN(t, s, user)
	}
	for _, user := range []string{"", "333333333333333", "15551111111", "111111111111111:3@lid"} {
		expectNoLID(t, s, user)
	}
}

func testRepairRemovesOldMapping(t *testing.T, s Store) {
	// The same account re-linked to another phone: the old mapping goes.
	d := PairedDevice(t, "acct", "15551111111", "111111111111111", 3)
	mustSave(t, s, d)
	Pair(d, "15552222222", "222222222222222", 4)
	mustSave(t, s, d)
	expectMapping(t, s, "15552222222", "222222222222222")
	expectNoPN(t, s, "15551111111")
	expectNoLID(t, s, "111111111111111")

	// Saving it unpaired removes its mapping too.
	fresh := NewDevice(t, "acct")
	mustSave(t, s, fresh)
	expectNoPN(t, s, "15552222222")
	expectNoLID(t, s, "222222222222222")
}

func testSharedMapping(t *testing.T, s Store) {
	// Two accounts linked to the same phone derive the same mapping;
	// deleting one must not take it from the other.
	mustSave(t, s, PairedDevice(t, "one", "15551234567", "123456789012345", 5))
	mustSave(t, s, PairedDevice(t, "two", "15551234567", "123456789012345", 6))
	if err := s.Delete(t.Context(), "one"); err != nil {
		t.Fatal(err)
	}
	expectMapping(t, s, "15551234567", "123456789012345")
	if err := s.Delete(t.Context(), "two"); err != nil {
		t.Fatal(err)
	}
	expectNoPN(t, s, "15551234567")
	expectNoLID(t, s, "123456789012345")
}

// invalidCases mutate a valid paired device into an invalid one.
var invalidCases = []struct {
	name   string
	mutate func(t testing.TB, d *store.Device)
}{
	{"empty id", func(_ testing.TB, d *store.Device) { d.ID = "" }},
	{"id with slash", func(_ testing.TB, d *store.Device) { d.ID = "a/b" }},
	{"id with space", func(_ testing.TB, d *store.Device) { d.ID = "a b" }},
	{"id with non-ASCII letter", func(_ testing.TB, d *store.Device) { d.ID = "café" }},
	{"id too long", func(_ testing.TB, d *store.Device) { d.ID = strings.Repeat("x", store.MaxIDLen+1) }},
	{"zero noise private key", func(_ testing.TB, d *store.Device) { d.NoiseKey.Priv = [32]byte{} }},
	{"noise public key not matching", func(_ testing.TB, d *store.Device) { d.NoiseKey.Pub[0] ^= 1 }},
	{"identity keys swapped halves", func(_ testing.TB, d *store.Device) { d.IdentityKey.Pub = d.NoiseKey.Pub }},
	{"zero identity public key", func(_ testing.TB, d *store.Device) { d.IdentityKey.Pub = [32]byte{} }},
	{"zero signed prekey", func(_ testing.TB, d *store.Device) { d.SignedPreKey.KeyPair = store.KeyPair{} }},
	{"signed prekey id 0", func(_ testing.TB, d *store.Device) { d.SignedPreKey.ID = 0 }},
	{"signed prekey id over 3 bytes", func(_ testing.TB, d *store.Device) { d.SignedPreKey.ID = 1 << 24 }},
	{"zero signature", func(_ testing.TB, d *store.Device) { d.SignedPreKey.Signature = [64]byte{} }},
	{"zero adv secret", func(_ testing.TB, d *store.Device) { d.AdvSecret = [32]byte{} }},
	{"jid without device", func(_ testing.TB, d *store.Device) { d.JID = "15551234567@s.whatsapp.net" }},
	{"jid device 0", func(_ testing.TB, d *store.Device) { d.JID = "15551234567:0@s.whatsapp.net" }},
	{"jid on lid server", func(_ testing.TB, d *store.Device) { d.JID = "15551234567:5@lid" }},
	{"jid with letters", func(_ testing.TB, d *store.Device) { d.JID = "1555abc:5@s.whatsapp.net" }},
	{"lid on pn server", func(_ testing.TB, d *store.Device) { d.LID = "123456789012345:5@s.whatsapp.net" }},
	{"lid device differs", func(_ testing.TB, d *store.Device) { d.LID = "123456789012345:6@lid" }},
	{"paired without account", func(_ testing.TB, d *store.Device) { d.Account = nil }},
	{"account too long", func(_ testing.TB, d *store.Device) { d.Account = make([]byte, store.MaxAccountLen+1) }},
	{"business name too long", func(_ testing.TB, d *store.Device) { d.BusinessName = strings.Repeat("b", store.MaxBusinessNameLen+1) }},
	{"platform too long", func(_ testing.TB, d *store.Device) { d.Platform = strings.Repeat("p", store.MaxPlatformLen+1) }},
	{"paired without main identity", func(_ testing.TB, d *store.Device) { d.MainDeviceIdentity = [32]byte{} }},
	{"paired without time", func(_ testing.TB, d *store.Device) { d.PairedAt = time.Time{} }},
	{"unpaired with lid", func(_ testing.TB, d *store.Device) { d.JID = "" }},
	{"unpaired with business name", func(_ testing.TB, d *store.Device) { d.JID, d.LID = "", "" }},
	{"unpaired with account only", func(t testing.TB, d *store.Device) {
		acct := d.Account
		*d = *NewDevice(t, d.ID)
		d.Account = acct
	}},
	{"unpaired with pairing time only", func(t testing.TB, d *store.Device) {
		at := d.PairedAt
		*d = *NewDevice(t, d.ID)
		d.PairedAt = at
	}},
}

func testInvalidDevice(t *testing.T, s Store) {
	for _, tt := range invalidCases {
		t.Run(tt.name, func(t *testing.T) {
			d := PairedDevice(t, "acct", "15551234567", "123456789012345", 5)
			tt.mutate(t, d)
			err := s.Save(t.Context(), d)
			if !errors.Is(err, store.ErrInvalidDevice) {
				t.Fatalf("Save = %v, want ErrInvalidDevice", err)
			}
			for _, secret := range [][32]byte{d.NoiseKey.Priv, d.IdentityKey.Priv, d.SignedPreKey.Priv, d.AdvSecret} {
				if secret != [32]byte{} && (strings.Contains(err.Error(), fmt.Sprintf("%x", secret)) || strings.Contains(err.Error(), fmt.Sprint(secret))) {
					t.Fatalf("error text reveals a secret: %v", err)
				}
			}
			expectIDs(t, s)
			expectNoPN(t, s, "15551234567")
		})
	}
	if err := s.Save(t.Context(), nil); !errors.Is(err, store.ErrInvalidDevice) {
		t.Errorf("Save(nil) = %v, want ErrInvalidDevice", err)
	}
}

func testFailedSaveKeepsPrevious(t *testing.T, s Store) {
	prev := PairedDevice(t, "acct", "15551234567", "123456789012345", 5)
	mustSave(t, s, prev)

	bad := PairedDevice(t, "acct", "15559999999", "999999999999999", 5)
	bad.AdvSecret = [32]byte{}
	if err := s.Save(t.Context(), bad); !errors.Is(err, store.ErrInvalidDevice) {
		t.Fatalf("Save(invalid) = %v, want ErrInvalidDevice", err)
	}
	expectStored(t, s, prev)
	expectMapping(t, s, "15551234567", "123456789012345")
	expectNoPN(t, s, "15559999999")

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	next := PairedDevice(t, "acct", "15558888888", "888888888888888", 5)
	if err := s.Save(ctx, next); !errors.Is(err, context.Canceled) {
		t.Fatalf("Save with a cancelled context = %v, want context.Canceled", err)
	}
	expectStored(t, s, prev)
	expectMapping(t, s, "15551234567", "123456789012345")
	expectNoPN(t, s, "15558888888")
}

func testConcurrentSaves(t *testing.T, s Store) {
	const workers, perWorker = 8, 4
	devices := make([][]*store.Device, workers)
	for w := range devices {
		for i := range perWorker {
			id := fmt.Sprintf("w%d-d%d", w, i)
			pn := fmt.Sprintf("1555%03d%04d", w, i)
			lid := fmt.Sprintf("9%05d%09d", w, i)
			devices[w] = append(devices[w], PairedDevice(t, id, pn, lid, i+1))
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker*2)
	for w := range workers {
		wg.Go(func() {
			for _, d := range devices[w] {
				if err := s.Save(t.Context(), d); err != nil {
					errs <- fmt.Errorf("Save(%s): %w", d.ID, err)
					continue
				}
				got, err := s.Load(t.Context(), d.ID)
				if err != nil {
					errs <- fmt.Errorf("Load(%s): %w", d.ID, err)
				} else if diff := Diff(d, got); diff != nil {
					errs <- fmt.Errorf("Load(%s) differs in %v", d.ID, diff)
				}
				if _, err := s.IDs(t.Context()); err != nil {
					errs <- fmt.Errorf("IDs: %w", err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var want []string
	for _, ds := range devices {
		for _, d := range ds {
			want = append(want, d.ID)
			expectStored(t, s, d)
			expectMapping(t, s, d.PNUser(), d.LIDUser())
		}
	}
	slices.Sort(want)
	expectIDs(t, s, want...)
}

func testClosed(t *testing.T, s Store) {
	d := PairedDevice(t, "acct", "15551234567", "123456789012345", 5)
	mustSave(t, s, d)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v, want nil", err)
	}
	ctx := t.Context()
	calls := map[string]error{}
	_, calls["Load"] = s.Load(ctx, "acct")
	calls["Save"] = s.Save(ctx, d)
	calls["Delete"] = s.Delete(ctx, "acct")
	_, calls["IDs"] = s.IDs(ctx)
	_, calls["PNForLID"] = s.PNForLID(ctx, "123456789012345")
	_, calls["LIDForPN"] = s.LIDForPN(ctx, "15551234567")
	calls["AddPreKeys"] = s.AddPreKeys(ctx, "acct", NewPreKeys(t, 1, 1))
	_, calls["PreKeysToUpload"] = s.PreKeysToUpload(ctx, "acct", 1)
	calls["MarkPreKeysUploaded"] = s.MarkPreKeysUploaded(ctx, "acct", 1)
	_, calls["PreKey"] = s.PreKey(ctx, "acct", 1)
	calls["RemovePreKey"] = s.RemovePreKey(ctx, "acct", 1)
	_, calls["PreKeyCounts"] = s.PreKeyCounts(ctx, "acct")
	_, calls["LoadSetting"] = s.LoadSetting(ctx, "name")
	calls["SaveSetting"] = s.SaveSetting(ctx, "name", "v")
	_, calls["Archive"] = s.Archive(ctx, "acct", "test")
	_, calls["ListArchive"] = s.ListArchive(ctx)
	_, calls["RestoreArchived"] = s.RestoreArchived(ctx, "acct", store.ArchiveKey(time.Now()))
	_, calls["PruneArchive"] = s.PruneArchive(ctx, time.Now())
	_, calls["CreateAccount"] = s.CreateAccount(ctx, store.AccountRecord{ID: "acct", Source: store.SourceAPI})
	_, calls["UpdateAccount"] = s.UpdateAccount(ctx, store.AccountRecord{ID: "acct", Source: store.SourceAPI})
	calls["DeleteAccount"] = s.DeleteAccount(ctx, "acct")
	_, calls["Account"] = s.Account(ctx, "acct")
	_, calls["Accounts"] = s.Accounts(ctx)
	_, calls["SeedAccounts"] = s.SeedAccounts(ctx, nil)
	for name, err := range calls {
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}
