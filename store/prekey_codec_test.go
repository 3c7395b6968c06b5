package store_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/storetest"
)

// fixedPreKey is a deterministic prekey for golden encodings; its ID has a
// byte of every position set.
func fixedPreKey(t testing.TB) store.PreKey {
	t.Helper()
	k := store.PreKey{ID: 0x0102ff}
	k.Priv = sha256.Sum256([]byte("one-time prekey"))
	priv, err := ecdh.X25519().NewPrivateKey(k.Priv[:])
	if err != nil {
		t.Fatal(err)
	}
	copy(k.Pub[:], priv.PublicKey().Bytes())
	return k
}

// TestEncodePreKeyGolden pins the version 1 prekey encoding, shared by
// every store: a change here needs a new version number.
func TestEncodePreKeyGolden(t *testing.T) {
	k := fixedPreKey(t)
	got, err := store.EncodePreKey("acct-1", k, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 76 {
		t.Fatalf("a record in the clear is %d bytes, want 76", len(got))
	}
	path := filepath.Join("testdata", "prekey_v1.hex")
	if *update {
		if err := os.WriteFile(path, []byte(hex.EncodeToString(got)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	want, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("encoding changed:\n got %x\nwant %x", got, want)
	}
	back, info, err := store.DecodePreKey("acct-1", want, nil)
	if err != nil || info.Sealed || info.Version != 1 || back != k {
		t.Fatalf("DecodePreKey(golden) = %v, %+v, %v", back, info, err)
	}
}

func TestPreKeyCodecRoundTrip(t *testing.T) {
	sealer := mustSealer(t, testKey(9))
	keys := append(storetest.NewPreKeys(t, 1, 3), storetest.NewPreKeys(t, store.MaxPreKeyID, 1)...)
	for _, s := range []store.Sealer{nil, sealer} {
		for _, k := range keys {
			rec, err := store.EncodePreKey("acct", k, s)
			if err != nil {
				t.Fatal(err)
			}
			if len(rec) > store.MaxPreKeyRecordLen {
				t.Fatalf("record of %d bytes exceeds MaxPreKeyRecordLen", len(rec))
			}
			if id, leaked := storetest.PreKeySecretIn(rec, []store.PreKey{k}); s != nil && leaked {
				t.Fatalf("sealed record of key %d holds its private key", id)
			}
			got, info, err := store.DecodePreKey("acct", rec, s)
			if err != nil || got != k || info.Sealed != (s != nil) {
				t.Fatalf("round trip of key %d (sealed %v) = %v, %+v, %v", k.ID, s != nil, got, info, err)
			}
			// A record in the clear decodes with a sealer too.
			if s == nil {
				if got, info, err := store.DecodePreKey("acct", rec, sealer); err != nil || got != k || info.Sealed {
					t.Fatalf("plain record with a sealer = %v, %+v, %v", got, info, err)
				}
			}
		}
	}
	k := keys[0]
	bad := k
	bad.Pub[0] ^= 1
	if _, err := store.EncodePreKey("acct", bad, nil); !errors.Is(err, store.ErrInvalidPreKey) {
		t.Fatalf("EncodePreKey(mismatched pair) = %v, want ErrInvalidPreKey", err)
	}
	if _, err := store.EncodePreKey("a/b", k, nil); !errors.Is(err, store.ErrInvalidDevice) {
		t.Fatalf("EncodePreKey(invalid account id) = %v, want ErrInvalidDevice", err)
	}
}

func TestDecodePreKeyCorrupt(t *testing.T) {
	good, err := store.EncodePreKey("acct-1", fixedPreKey(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	set := func(i int, v byte) []byte {
		b := bytes.Clone(good)
		b[i] = v
		return withCRC(b)
	}
	zeroID := bytes.Clone(good)
	copy(zeroID[5:8], []byte{0, 0, 0})
	tests := []struct {
		name string
		in   []byte
	}{
		{"nil", nil},
		{"magic only", []byte("WFP")},
		{"device record", func() []byte { b, _ := store.Encode(fixedDevice(t), nil); return b }()},
		{"wrong magic", set(2, 'D')},
		{"version 0", set(3, 0)},
		{"version 2", set(3, 2)},
		{"unknown flag", set(4, 2)},
		{"sealed flag on a key in the clear", set(4, 1)},
		{"id 0", withCRC(zeroID)},
		// A pair altered with a valid checksum is not caught on read: pairs
		// are checked once, when AddPreKeys writes them.
		{"checksum mismatch", append(bytes.Clone(good[:len(good)-1]), good[len(good)-1]^1)},
		{"trailing byte", withCRC(append(bytes.Clone(good[:len(good)-4]), 0, 0, 0, 0, 0))},
		{"too long", make([]byte, store.MaxPreKeyRecordLen+1)},
	}
	for i := range len(good) {
		tests = append(tests, struct {
			name string
			in   []byte
		}{"truncated", good[:i]})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, sealer := range []store.Sealer{nil, mustSealer(t, testKey(1))} {
				k, _, err := store.DecodePreKey("acct-1", tt.in, sealer)
				if !errors.Is(err, store.ErrCorrupt) || k != (store.PreKey{}) {
					t.Fatalf("DecodePreKey = %v, %v; want a zero key, ErrCorrupt", k, err)
				}
			}
		})
	}
}

func TestDecodePreKeySealed(t *testing.T) {
	sealer := mustSealer(t, testKey(4))
	keys := storetest.NewPreKeys(t, 1, 2)
	a1, err := store.EncodePreKey("aaaa", keys[0], sealer)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := store.EncodePreKey("aaaa", keys[1], sealer)
	if err != nil {
		t.Fatal(err)
	}
	// The sealed private key is bound to its account and its ID.
	if _, _, err := store.DecodePreKey("bbbb", a1, sealer); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("a sealed key decoded as another account's = %v, want ErrCorrupt", err)
	}
	if len(a1) != len(a2) {
		t.Fatalf("records differ in length: %d, %d", len(a1), len(a2))
	}
	spliced := bytes.Clone(a1)
	copy(spliced[40:], a2[40:len(a2)-4]) // key 1's ID and Pub, key 2's sealed Priv
	if _, _, err := store.DecodePreKey("aaaa", withCRC(spliced), sealer); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("DecodePreKey of a transplanted sealed key = %v, want ErrCorrupt", err)
	}
	if _, _, err := store.DecodePreKey("aaaa", a1, nil); !errors.Is(err, store.ErrNoSealer) {
		t.Fatalf("DecodePreKey without a sealer = %v, want ErrNoSealer", err)
	}
	if _, _, err := store.DecodePreKey("aaaa", a1, mustSealer(t, testKey(5))); !errors.Is(err, store.ErrWrongKey) {
		t.Fatalf("DecodePreKey with another key = %v, want ErrWrongKey", err)
	}
}

func TestPreKeyErrors(t *testing.T) {
	keys := storetest.NewPreKeys(t, 1, 2)
	keys[1].Pub = keys[0].Pub
	err := store.CheckPreKeys(keys)
	var pe *store.PreKeyError
	if !errors.As(err, &pe) || pe.ID != 2 || !errors.Is(err, store.ErrInvalidPreKey) || !errors.Is(err, store.ErrInvalidDevice) {
		t.Fatalf("CheckPreKeys = %v, want a *PreKeyError for key 2", err)
	}
	if !strings.Contains(err.Error(), "prekey 2") || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("error text %q does not name the key and the problem", err)
	}
	if err := store.CheckPreKeys(nil); err != nil {
		t.Fatalf("CheckPreKeys(nil) = %v", err)
	}
}

// FuzzDecodePreKey: arbitrary bytes never panic; whatever decodes is a
// valid key, and a record in the clear re-encodes to the same bytes (the
// encoding is canonical).
func FuzzDecodePreKey(f *testing.F) {
	k := fixedPreKey(f)
	plain, err := store.EncodePreKey("acct-1", k, nil)
	if err != nil {
		f.Fatal(err)
	}
	sealer := mustSealer(f, testKey(1))
	sealed, err := store.EncodePreKey("acct-1", k, sealer)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(plain)
	f.Add(sealed)
	f.Add(plain[:20])
	f.Add([]byte("WFP\x01\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		body := data
		if len(body) >= 4 {
			body = body[:len(body)-4]
		}
		for _, rec := range [][]byte{data, withCRC(append(bytes.Clone(body), 0, 0, 0, 0))} {
			for _, s := range []store.Sealer{nil, sealer} {
				got, info, err := store.DecodePreKey("acct-1", rec, s)
				if err != nil {
					if got != (store.PreKey{}) {
						t.Fatal("DecodePreKey returned a key with an error")
					}
					continue
				}
				// Pairs are checked when written, not read back (the
				// checksum and the seal keep them): only the ID is.
				if got.ID == 0 || got.ID > store.MaxPreKeyID {
					t.Fatalf("DecodePreKey returned key ID %d", got.ID)
				}
				if info.Sealed {
					continue // sealing is randomized
				}
				if got.Validate() != nil {
					continue // a forged pair decodes, but the encoder refuses to write one
				}
				again, err := store.EncodePreKey("acct-1", got, nil)
				if err != nil {
					t.Fatalf("re-encode: %v", err)
				}
				if !bytes.Equal(again, rec) {
					t.Fatalf("re-encoding differs:\n in %x\nout %x", rec, again)
				}
			}
		}
	})
}
