package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/wafleet/wafleet/store"
)

// NewPreKeys returns n valid one-time prekeys with IDs first, first+1, ...
// and fresh random key pairs.
func NewPreKeys(t testing.TB, first uint32, n int) []store.PreKey {
	t.Helper()
	keys := make([]store.PreKey, n)
	for i := range keys {
		keys[i] = store.PreKey{ID: first + uint32(i), KeyPair: newKeyPair(t)}
	}
	return keys
}

// PreKeySecretIn reports the ID of the first key whose private half (any
// 16-byte half of it) appears in raw, for tests that read what a store
// wrote at rest.
func PreKeySecretIn(raw []byte, keys []store.PreKey) (uint32, bool) {
	for _, k := range keys {
		if bytes.Contains(raw, k.Priv[:16]) || bytes.Contains(raw, k.Priv[16:]) {
			return k.ID, true
		}
	}
	return 0, false
}

// preKeyTests are the prekey and settings part of the contract (Run).
var preKeyTests = []struct {
	name string
	fn   func(t *testing.T, s Store)
}{
	{"PreKeysRoundTrip", testPreKeysRoundTrip},
	{"PreKeysOrder", testPreKeysOrder},
	{"PreKeysInvalid", testPreKeysInvalid},
	{"PreKeysNeedDevice", testPreKeysNeedDevice},
	{"PreKeysMaxIDNeverGoesBack", testPreKeysMaxIDNeverGoesBack},
	{"PreKeysRemove", testPreKeysRemove},
	{"PreKeysMarkIsPerKey", testPreKeysMarkIsPerKey},
	{"PreKeysDelete", testPreKeysDelete},
	{"PreKeysConcurrentAdds", testPreKeysConcurrentAdds},
	{"PreKeysCancelled", testPreKeysCancelled},
	{"PreKeysCancelledMidBatch", testPreKeysCancelledMidBatch},
	{"Settings", testSettings},
	{"SettingsInvalid", testSettingsInvalid},
}

func mustAdd(t *testing.T, s Store, id string, keys []store.PreKey) {
	t.Helper()
	if err := s.AddPreKeys(t.Context(), id, keys); err != nil {
		t.Fatalf("AddPreKeys(%s, %d keys): %v", id, len(keys), err)
	}
}

func expectCounts(t *testing.T, s Store, id string, want store.PreKeyCounts) {
	t.Helper()
	got, err := s.PreKeyCounts(t.Context(), id)
	if err != nil {
		t.Fatalf("PreKeyCounts(%s): %v", id, err)
	}
	if got != want {
		t.Fatalf("PreKeyCounts(%s) = %+v, want %+v", id, got, want)
	}
}

// expectToUpload fails unless PreKeysToUpload(id, n) returns exactly want.
func expectToUpload(t *testing.T, s Store, id string, n int, want []store.PreKey) {
	t.Helper()
	got, err := s.PreKeysToUpload(t.Context(), id, n)
	if err != nil {
		t.Fatalf("PreKeysToUpload(%s, %d): %v", id, n, err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("PreKeysToUpload(%s, %d) = IDs %v, want IDs %v (or the key pairs differ)", id, n, preKeyIDs(got), preKeyIDs(want))
	}
}

func expectPreKey(t *testing.T, s Store, id string, want store.PreKey) {
	t.Helper()
	got, err := s.PreKey(t.Context(), id, want.ID)
	if err != nil {
		t.Fatalf("PreKey(%s, %d): %v", id, want.ID, err)
	}
	if got != want {
		t.Fatalf("PreKey(%s, %d) returned another key (%v)", id, want.ID, got)
	}
}

func expectNoPreKey(t *testing.T, s Store, id string, keyID uint32) {
	t.Helper()
	if got, err := s.PreKey(t.Context(), id, keyID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("PreKey(%s, %d) = %v, %v; want ErrNotFound", id, keyID, got, err)
	}
}

func preKeyIDs(keys []store.PreKey) []uint32 {
	ids := make([]uint32, len(keys))
	for i, k := range keys {
		ids[i] = k.ID
	}
	return ids
}

func shuffled(keys []store.PreKey) []store.PreKey {
	out := slices.Clone(keys)
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func testPreKeysRoundTrip(t *testing.T, s Store) {
	const id = "acct"
	mustSave(t, s, PairedDevice(t, id, "15551234567", "123456789012345", 5))
	expectCounts(t, s, id, store.PreKeyCounts{})
	expectToUpload(t, s, id, 50, []store.PreKey{})

	keys := NewPreKeys(t, 1, 812) // the first upload of a device
	mustAdd(t, s, id, shuffled(keys))
	expectCounts(t, s, id, store.PreKeyCounts{Stored: 812, MaxID: 812})
	expectToUpload(t, s, id, 812, keys)
	expectToUpload(t, s, id, 1000, keys)
	expectToUpload(t, s, id, 3, keys[:3])
	expectToUpload(t, s, id, 0, []store.PreKey{})
	expectToUpload(t, s, id, -1, []store.PreKey{})
	for _, i := range []int{0, 1, 400, 811} {
		expectPreKey(t, s, id, keys[i])
	}
	expectNoPreKey(t, s, id, 813)
	expectNoPreKey(t, s, id, 0)
	expectNoPreKey(t, s, id, store.MaxPreKeyID+1)
	expectNoPreKey(t, s, "absent", 1)

	if err := s.MarkPreKeysUploaded(t.Context(), id, 400); err != nil {
		t.Fatalf("MarkPreKeysUploaded: %v", err)
	}
	expectCounts(t, s, id, store.PreKeyCounts{Stored: 812, Uploaded: 400, MaxID: 812})
	expectToUpload(t, s, id, 5, keys[400:405])
	expectPreKey(t, s, id, keys[0]) // uploaded keys are still found by ID
	expectPreKey(t, s, id, keys[399])
	if err := s.MarkPreKeysUploaded(t.Context(), id, 400); err != nil { // idempotent
		t.Fatalf("MarkPreKeysUploaded again: %v", err)
	}
	expectCounts(t, s, id, store.PreKeyCounts{Stored: 812, Uploaded: 400, MaxID: 812})
	if err := s.MarkPreKeysUploaded(t.Context(), id, 1<<32-1); err != nil {
		t.Fatalf("MarkPreKeysUploaded(all): %v", err)
	}
	expectCounts(t, s, id, store.PreKeyCounts{Stored: 812, Uploaded: 812, MaxID: 812})
	expectToUpload(t, s, id, 50, []store.PreKey{})

	// A later top-up continues after MaxID.
	more := NewPreKeys(t, 813, 50)
	mustAdd(t, s, id, more)
	expectCounts(t, s, id, store.PreKeyCounts{Stored: 862, Uploaded: 812, MaxID: 862})
	expectToUpload(t, s, id, 50, more)

	// The largest ID travels in 3 bytes.
	top := NewPreKeys(t, store.MaxPreKeyID, 1)
	mustAdd(t, s, id, top)
	expectPreKey(t, s, id, top[0])
	expectCounts(t, s, id, store.PreKeyCounts{Stored: 863, Uploaded: 812, MaxID: store.MaxPreKeyID})

	// Another account is separate.
	mustSave(t, s, NewDevice(t, "other"))
	expectCounts(t, s, "other", store.PreKeyCounts{})
	expectNoPreKey(t, s, "other", 1)
	// The caller's slice is not aliased.
	mine := NewPreKeys(t, 1, 2)
	want := slices.Clone(mine)
	mustAdd(t, s, "other", mine)
	mine[0].Priv[0] ^= 0xff
	mine[1].ID = 99
	expectToUpload(t, s, "other", 10, want)
	got, err := s.PreKeysToUpload(t.Context(), "other", 10)
	if err != nil {
		t.Fatal(err)
	}
	got[0].Priv[0] ^= 0xff // nor hands out its own
	expectPreKey(t, s, "other", want[0])
	// String, Format and LogValue never print the private key.
	k := want[0]
	for _, text := range []string{k.String(), fmt.Sprint(k), fmt.Sprintf("%+v %#v %x %s", k, k, k, k), k.LogValue().String(), fmt.Sprint(got)} {
		if strings.Contains(text, fmt.Sprintf("%x", k.Priv[:8])) || strings.Contains(text, fmt.Sprint(k.Priv[:8])) || !strings.Contains(text, "PreKey(id=1") {
			t.Fatalf("PreKey prints as %q", text)
		}
	}
}

func testPreKeysOrder(t *testing.T, s Store) {
	const id = "acct"
	mustSave(t, s, NewDevice(t, id))
	// Batches arrive out of order, and IDs cross byte boundaries (255/256,
	// 65535/65536) so that byte-order and numeric order must agree.
	a := NewPreKeys(t, 65530, 10)
	b := NewPreKeys(t, 250, 10)
	c := NewPreKeys(t, 1, 3)
	for _, batch := range [][]store.PreKey{a, b, c} {
		mustAdd(t, s, id, shuffled(batch))
	}
	all := slices.Concat(c, b, a)
	expectToUpload(t, s, id, len(all), all)
	expectToUpload(t, s, id, 5, all[:5])
	expectCounts(t, s, id, store.PreKeyCounts{Stored: len(all), MaxID: 65539})
	// Marking up to an ID between stored ones.
	if err := s.MarkPreKeysUploaded(t.Context(), id, 255); err != nil {
		t.Fatal(err)
	}
	expectToUpload(t, s, id, 4, all[9:13]) // 256..259
	expectCounts(t, s, id, store.PreKeyCounts{Stored: len(all), Uploaded: 9, MaxID: 65539})
}

func testPreKeysInvalid(t *testing.T, s Store) {
	const id = "acct"
	mustSave(t, s, NewDevice(t, id))
	stored := NewPreKeys(t, 100, 3)
	mustAdd(t, s, id, stored)
	before := store.PreKeyCounts{Stored: 3, MaxID: 102}
	tests := []struct {
		name   string
		mutate func(keys []store.PreKey) []store.PreKey
	}{
		{"id 0", func(k []store.PreKey) []store.PreKey { k[1].ID = 0; return k }},
		{"id over 3 bytes", func(k []store.PreKey) []store.PreKey { k[1].ID = store.MaxPreKeyID + 1; return k }},
		{"public key not matching", func(k []store.PreKey) []store.PreKey { k[1].Pub[0] ^= 1; return k }},
		{"zero private key", func(k []store.PreKey) []store.PreKey { k[1].Priv = [32]byte{}; return k }},
		{"zero key pair", func(k []store.PreKey) []store.PreKey { k[1].KeyPair = store.KeyPair{}; return k }},
		{"another key's public half", func(k []store.PreKey) []store.PreKey { k[1].Pub = k[0].Pub; return k }},
		{"id twice in the batch", func(k []store.PreKey) []store.PreKey { k[2].ID = k[0].ID; return k }},
		{"id already stored", func(k []store.PreKey) []store.PreKey { return append(k, stored[1]) }},
		{"id already stored with another pair", func(k []store.PreKey) []store.PreKey { k[2].ID = 101; return k }},
		{"too many keys", func(k []store.PreKey) []store.PreKey {
			many := make([]store.PreKey, store.MaxPreKeysPerAdd+1)
			for i := range many {
				many[i] = store.PreKey{ID: uint32(i + 1000), KeyPair: k[0].KeyPair}
			}
			return many
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys := tt.mutate(NewPreKeys(t, 1, 3))
			err := s.AddPreKeys(t.Context(), id, keys)
			if !errors.Is(err, store.ErrInvalidPreKey) || !errors.Is(err, store.ErrInvalidDevice) {
				t.Fatalf("AddPreKeys = %v, want ErrInvalidPreKey (and ErrInvalidDevice)", err)
			}
			for _, k := range keys {
				if k.Priv != [32]byte{} && (strings.Contains(err.Error(), fmt.Sprintf("%x", k.Priv[:8])) || strings.Contains(err.Error(), fmt.Sprint(k.Priv[:8]))) {
					t.Fatalf("error text reveals a private key: %v", err)
				}
			}
			expectCounts(t, s, id, before)
			expectToUpload(t, s, id, 10, stored)
			expectNoPreKey(t, s, id, 1)
		})
	}
	// Keys that would be valid for a new account are refused for an
	// invalid account id the same way as an absent device.
	if err := s.AddPreKeys(t.Context(), "not/valid", NewPreKeys(t, 1, 1)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("AddPreKeys(invalid id) = %v, want ErrNotFound", err)
	}
	if err := s.AddPreKeys(t.Context(), id, nil); err != nil {
		t.Fatalf("AddPreKeys(no keys) = %v, want nil", err)
	}
	expectCounts(t, s, id, before)
}

func testPreKeysNeedDevice(t *testing.T, s Store) {
	if err := s.AddPreKeys(t.Context(), "absent", NewPreKeys(t, 1, 5)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("AddPreKeys without a device = %v, want ErrNotFound", err)
	}
	expectCounts(t, s, "absent", store.PreKeyCounts{})
	expectToUpload(t, s, "absent", 10, []store.PreKey{})
	// Writes that only take away are no-ops on an absent device.
	if err := s.MarkPreKeysUploaded(t.Context(), "absent", 10); err != nil {
		t.Fatalf("MarkPreKeysUploaded without a device = %v", err)
	}
	if err := s.RemovePreKey(t.Context(), "absent", 1); err != nil {
		t.Fatalf("RemovePreKey without a device = %v", err)
	}
	// Once the device exists the same keys land.
	mustSave(t, s, NewDevice(t, "absent"))
	mustAdd(t, s, "absent", NewPreKeys(t, 1, 5))
	expectCounts(t, s, "absent", store.PreKeyCounts{Stored: 5, MaxID: 5})
}

func testPreKeysMaxIDNeverGoesBack(t *testing.T, s Store) {
	const id = "acct"
	mustSave(t, s, NewDevice(t, id))
	keys := NewPreKeys(t, 1, 10)
	mustAdd(t, s, id, keys)
	if err := s.RemovePreKey(t.Context(), id, 10); err != nil { // the top key
		t.Fatal(err)
	}
	expectCounts(t, s, id, store.PreKeyCounts{Stored: 9, MaxID: 10})
	for _, k := range keys[:9] {
		if err := s.RemovePreKey(t.Context(), id, k.ID); err != nil {
			t.Fatal(err)
		}
	}
	expectCounts(t, s, id, store.PreKeyCounts{MaxID: 10})
	// A lower batch does not lower it either.
	mustAdd(t, s, id, NewPreKeys(t, 3, 2))
	expectCounts(t, s, id, store.PreKeyCounts{Stored: 2, MaxID: 10})
	// New keys continue after MaxID, so ID 10 is never handed out again.
	c, err := s.PreKeyCounts(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	next := NewPreKeys(t, c.MaxID+1, 5)
	mustAdd(t, s, id, next)
	expectCounts(t, s, id, store.PreKeyCounts{Stored: 7, MaxID: 15})
	expectNoPreKey(t, s, id, 10)
	// Saving the device again (e.g. after pairing) keeps its prekeys.
	d, err := s.Load(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	Pair(d, "15551234567", "123456789012345", 5)
	mustSave(t, s, d)
	expectCounts(t, s, id, store.PreKeyCounts{Stored: 7, MaxID: 15})
}

func testPreKeysRemove(t *testing.T, s Store) {
	const id = "acct"
	mustSave(t, s, NewDevice(t, id))
	keys := NewPreKeys(t, 1, 6)
	mustAdd(t, s, id, keys)
	if err := s.MarkPreKeysUploaded(t.Context(), id, 3); err != nil {
		t.Fatal(err)
	}
	for _, kid := range []uint32{2, 5} { // one uploaded, one pending
		if err := s.RemovePreKey(t.Context(), id, kid); err != nil {
			t.Fatalf("RemovePreKey(%d): %v", kid, err)
		}
		expectNoPreKey(t, s, id, kid)
	}
	expectCounts(t, s, id, store.PreKeyCounts{Stored: 4, Uploaded: 2, MaxID: 6})
	expectToUpload(t, s, id, 10, []store.PreKey{keys[3], keys[5]})
	for _, kid := range []uint32{2, 5, 7, 0, store.MaxPreKeyID, store.MaxPreKeyID + 1} { // absent: not an error
		if err := s.RemovePreKey(t.Context(), id, kid); err != nil {
			t.Fatalf("RemovePreKey(absent %d) = %v", kid, err)
		}
	}
	expectCounts(t, s, id, store.PreKeyCounts{Stored: 4, Uploaded: 2, MaxID: 6})
	expectPreKey(t, s, id, keys[0])
	expectPreKey(t, s, id, keys[5])
}

func testPreKeysMarkIsPerKey(t *testing.T, s Store) {
	// Marking is per key, not a watermark: keys added after a mark are
	// not uploaded, even with lower IDs.
	const id = "acct"
	mustSave(t, s, NewDevice(t, id))
	high := NewPreKeys(t, 11, 10)
	mustAdd(t, s, id, high)
	if err := s.MarkPreKeysUploaded(t.Context(), id, 20); err != nil {
		t.Fatal(err)
	}
	low := NewPreKeys(t, 1, 5)
	mustAdd(t, s, id, low)
	expectCounts(t, s, id, store.PreKeyCounts{Stored: 15, Uploaded: 10, MaxID: 20})
	expectToUpload(t, s, id, 10, low)
	if err := s.MarkPreKeysUploaded(t.Context(), id, 3); err != nil {
		t.Fatal(err)
	}
	expectToUpload(t, s, id, 10, low[3:])
	expectCounts(t, s, id, store.PreKeyCounts{Stored: 15, Uploaded: 13, MaxID: 20})
}

func testPreKeysDelete(t *testing.T, s Store) {
	ctx := t.Context()
	mustSave(t, s, NewDevice(t, "gone"))
	mustSave(t, s, NewDevice(t, "kept"))
	kept := NewPreKeys(t, 1, 20)
	mustAdd(t, s, "gone", NewPreKeys(t, 1, 20))
	mustAdd(t, s, "kept", kept)
	if err := s.MarkPreKeysUploaded(ctx, "gone", 10); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	// Everything goes, MaxID included: a device paired again is a new
	// identity that starts its prekey IDs afresh.
	expectCounts(t, s, "gone", store.PreKeyCounts{})
	expectToUpload(t, s, "gone", 50, []store.PreKey{})
	expectNoPreKey(t, s, "gone", 15)
	expectNoPreKey(t, s, "gone", 5)
	expectCounts(t, s, "kept", store.PreKeyCounts{Stored: 20, MaxID: 20})
	expectToUpload(t, s, "kept", 50, kept)

	mustSave(t, s, NewDevice(t, "gone"))
	expectCounts(t, s, "gone", store.PreKeyCounts{})
	fresh := NewPreKeys(t, 1, 3)
	mustAdd(t, s, "gone", fresh) // the old IDs are free again
	expectToUpload(t, s, "gone", 50, fresh)
	expectIDs(t, s, "gone", "kept")
}

func testPreKeysConcurrentAdds(t *testing.T, s Store) {
	const id, workers, perWorker = "acct", 8, 25
	mustSave(t, s, NewDevice(t, id))
	batches := make([][]store.PreKey, workers)
	for w := range batches {
		batches[w] = NewPreKeys(t, uint32(1+w*perWorker), perWorker)
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			if err := s.AddPreKeys(t.Context(), id, batches[w]); err != nil {
				errs <- fmt.Errorf("AddPreKeys(batch %d): %w", w, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	expectCounts(t, s, id, store.PreKeyCounts{Stored: workers * perWorker, MaxID: workers * perWorker})
	expectToUpload(t, s, id, workers*perWorker, slices.Concat(batches...))

	// The same batch twice at once: exactly one lands.
	dup := NewPreKeys(t, workers*perWorker+1, 10)
	results := make(chan error, 2)
	for range 2 {
		wg.Go(func() { results <- s.AddPreKeys(t.Context(), id, dup) })
	}
	wg.Wait()
	close(results)
	var ok, refused int
	for err := range results {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, store.ErrInvalidPreKey):
			refused++
		default:
			t.Errorf("AddPreKeys of a racing duplicate batch = %v", err)
		}
	}
	if ok != 1 || refused != 1 {
		t.Fatalf("racing duplicate batches: %d landed, %d refused; want 1 and 1", ok, refused)
	}
	expectCounts(t, s, id, store.PreKeyCounts{Stored: workers*perWorker + 10, MaxID: workers*perWorker + 10})
}

func testPreKeysCancelled(t *testing.T, s Store) {
	const id = "acct"
	mustSave(t, s, NewDevice(t, id))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.AddPreKeys(ctx, id, NewPreKeys(t, 1, 5)); !errors.Is(err, context.Canceled) {
		t.Fatalf("AddPreKeys with a cancelled context = %v, want context.Canceled", err)
	}
	if err := s.SaveSetting(ctx, "x", "y"); !errors.Is(err, context.Canceled) {
		t.Fatalf("SaveSetting with a cancelled context = %v, want context.Canceled", err)
	}
	expectCounts(t, s, id, store.PreKeyCounts{})
	if _, err := s.LoadSetting(t.Context(), "x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LoadSetting after a cancelled save = %v, want ErrNotFound", err)
	}
}

// endsWhileEncoding is a context that ends after its Err has been asked
// `after` times: it ends while a store is working through a batch.
type endsWhileEncoding struct {
	context.Context
	after int32
	asked atomic.Int32
}

func (c *endsWhileEncoding) Err() error {
	if c.asked.Add(1) > c.after {
		return context.Canceled
	}
	return nil
}

// A context that ends while a large batch is encoded (each key's public
// half is checked, an X25519 operation) stops the batch: it is refused and
// nothing is written.
func testPreKeysCancelledMidBatch(t *testing.T, s Store) {
	const id = "acct"
	mustSave(t, s, NewDevice(t, id))
	keys := NewPreKeys(t, 1, 400)
	ctx := &endsWhileEncoding{Context: t.Context(), after: 3}
	if err := s.AddPreKeys(ctx, id, keys); !errors.Is(err, context.Canceled) {
		t.Fatalf("AddPreKeys with a context that ended mid-batch = %v, want context.Canceled", err)
	}
	if n := ctx.asked.Load(); n > 20 {
		t.Errorf("the store asked the context %d times for 400 keys; want a check every few dozen keys", n)
	}
	expectCounts(t, s, id, store.PreKeyCounts{})
}

func testSettings(t *testing.T, s Store) {
	ctx := t.Context()
	const name = "whatsapp.web_version"
	if v, err := s.LoadSetting(ctx, name); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LoadSetting(absent) = %q, %v; want ErrNotFound", v, err)
	}
	for _, value := range []string{"2.3000.1017531287", "2.3000.1017999999", ""} {
		if err := s.SaveSetting(ctx, name, value); err != nil {
			t.Fatalf("SaveSetting(%q): %v", value, err)
		}
		if got, err := s.LoadSetting(ctx, name); err != nil || got != value {
			t.Fatalf("LoadSetting = %q, %v; want %q", got, err, value)
		}
	}
	longest := strings.Repeat("z", store.MaxSettingNameLen)
	big := strings.Repeat("\x00\xff", store.MaxSettingValueLen/2) // any bytes
	if err := s.SaveSetting(ctx, longest, big); err != nil {
		t.Fatalf("SaveSetting at the limits: %v", err)
	}
	if got, err := s.LoadSetting(ctx, longest); err != nil || got != big {
		t.Fatalf("LoadSetting at the limits = %d bytes, %v", len(got), err)
	}
	if err := s.SaveSetting(ctx, "a-b_c.9", "other"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.LoadSetting(ctx, name); err != nil || got != "" {
		t.Fatalf("settings interfere: LoadSetting = %q, %v", got, err)
	}
	// Settings are not device state: deleting devices leaves them.
	mustSave(t, s, NewDevice(t, "acct"))
	if err := s.Delete(ctx, "acct"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.LoadSetting(ctx, "a-b_c.9"); err != nil || got != "other" {
		t.Fatalf("LoadSetting after Delete = %q, %v", got, err)
	}
}

func testSettingsInvalid(t *testing.T, s Store) {
	ctx := t.Context()
	for _, name := range []string{"", "Upper", "a b", "a/b", "a:b", "{a}", "é", "a\x00", strings.Repeat("n", store.MaxSettingNameLen+1)} {
		if err := s.SaveSetting(ctx, name, "v"); !errors.Is(err, store.ErrInvalidSetting) {
			t.Errorf("SaveSetting(%q) = %v, want ErrInvalidSetting", name, err)
		}
		if _, err := s.LoadSetting(ctx, name); !errors.Is(err, store.ErrInvalidSetting) {
			t.Errorf("LoadSetting(%q) = %v, want ErrInvalidSetting", name, err)
		}
	}
	if err := s.SaveSetting(ctx, "big", strings.Repeat("v", store.MaxSettingValueLen+1)); !errors.Is(err, store.ErrInvalidSetting) {
		t.Errorf("SaveSetting(value too long) = %v, want ErrInvalidSetting", err)
	}
	if _, err := s.LoadSetting(ctx, "big"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a refused setting was written: LoadSetting = %v", err)
	}
}
