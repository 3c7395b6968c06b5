package store_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/storetest"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// fixedDevice is a deterministic paired device for golden encodings.
func fixedDevice(t testing.TB) *store.Device {
	t.Helper()
	pair := func(label string) store.KeyPair {
		var kp store.KeyPair
		kp.Priv = sha256.Sum256([]byte(label))
		priv, err := ecdh.X25519().NewPrivateKey(kp.Priv[:])
		if err != nil {
			t.Fatal(err)
		}
		copy(kp.Pub[:], priv.PublicKey().Bytes())
		return kp
	}
	d := &store.Device{
		ID:             "acct-1",
		NoiseKey:       pair("noise"),
		IdentityKey:    pair("identity"),
		SignedPreKey:   store.SignedPreKey{ID: 1, KeyPair: pair("prekey")},
		RegistrationID: 0x01020304,
		AdvSecret:      sha256.Sum256([]byte("adv")),
		JID:            "15551234567:5@s.whatsapp.net",
		LID:            "123456789012345:5@lid",
		BusinessName:   "Shop",
		Platform:       "android",
		Account:        []byte{0x0a, 0x03, 1, 2, 3},
		PairedAt:       time.Date(2025, 6, 1, 12, 30, 45, 123456789, time.UTC),
	}
	sig := sha256.Sum256([]byte("signature"))
	copy(d.SignedPreKey.Signature[:], sig[:])
	copy(d.SignedPreKey.Signature[32:], sig[:])
	d.MainDeviceIdentity = sha256.Sum256([]byte("main"))
	return d
}

// TestEncodeGolden pins the version 1 encoding: every store shares it, so a
// change here is a format change that needs a new version number.
func TestEncodeGolden(t *testing.T) {
	d := fixedDevice(t)
	got, err := store.Encode(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "device_v1.hex")
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
	back, info, err := store.Decode(want, nil)
	if err != nil || info.Sealed || info.Version != 1 {
		t.Fatalf("Decode(golden) = %+v, %v", info, err)
	}
	if diff := storetest.Diff(d, back); diff != nil {
		t.Fatalf("Decode(golden) differs in %v", diff)
	}
}

func TestCodecRoundTrip(t *testing.T) {
	sealer := mustSealer(t, testKey(9))
	tests := []struct {
		name   string
		d      *store.Device
		sealer store.Sealer
	}{
		{"unpaired plain", storetest.NewDevice(t, "a"), nil},
		{"unpaired sealed", storetest.NewDevice(t, "a"), sealer},
		{"paired plain", storetest.PairedDevice(t, "b", "15551234567", "123456789012345", 5), nil},
		{"paired sealed", storetest.PairedDevice(t, "b", "15551234567", "123456789012345", 5), sealer},
		{"paired before 1970", func() *store.Device {
			d := fixedDevice(t)
			d.PairedAt = time.Date(1969, 12, 31, 23, 59, 59, 999999999, time.UTC)
			return d
		}(), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, err := store.Encode(tt.d, tt.sealer)
			if err != nil {
				t.Fatal(err)
			}
			got, info, err := store.Decode(rec, tt.sealer)
			if err != nil {
				t.Fatal(err)
			}
			if info.Sealed != (tt.sealer != nil) {
				t.Fatalf("info.Sealed = %v", info.Sealed)
			}
			if diff := storetest.Diff(tt.d, got); diff != nil {
				t.Fatalf("round trip differs in %v", diff)
			}
			if got.PairedAt.Location() != time.UTC {
				t.Fatalf("PairedAt loads in %v, want UTC", got.PairedAt.Location())
			}
		})
	}
	if _, err := store.Encode(&store.Device{ID: "x"}, nil); !errors.Is(err, store.ErrInvalidDevice) {
		t.Fatalf("Encode(invalid) = %v, want ErrInvalidDevice", err)
	}
}

// withCRC replaces the trailing checksum so that a deliberate change is
// seen by the parser rather than by the checksum.
func withCRC(rec []byte) []byte {
	body := rec[:len(rec)-4]
	return binary.BigEndian.AppendUint32(bytes.Clone(body), crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)))
}

func TestDecodeCorrupt(t *testing.T) {
	good, err := store.Encode(fixedDevice(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	set := func(i int, v byte) []byte {
		b := bytes.Clone(good)
		b[i] = v
		return withCRC(b)
	}
	// Offsets in the fixed device's record (see codec.go).
	const (
		offFlags = 4
		offIDLen = 5
		offJID   = 6 + 6 + 32 + 32 + 4 + 32 + 64 + 4 // after ID "acct-1"
	)
	pubFlip := bytes.Clone(good)
	pubFlip[offIDLen+1+6] ^= 1 // first byte of NoiseKey.Pub
	tests := []struct {
		name string
		in   []byte
	}{
		{"nil", nil},
		{"magic only", []byte("WFD")},
		{"wrong magic", set(0, 'X')},
		{"version 0", set(3, 0)},
		{"version 2", set(3, 2)},
		{"unknown flag", set(offFlags, 0x80|good[offFlags])},
		{"paired-at flag cleared", set(offFlags, good[offFlags]&^2)},
		{"sealed flag set on plain secrets", set(offFlags, good[offFlags]|1)},
		{"id length past limit", set(offIDLen, 200)},
		{"id length past end", set(offIDLen, 60)},
		{"jid length past limit", set(offJID, 65)},
		{"trailing byte", withCRC(append(bytes.Clone(good[:len(good)-4]), 0, 0, 0, 0, 0))},
		{"checksum mismatch", append(bytes.Clone(good[:len(good)-1]), good[len(good)-1]^1)},
		{"public key byte changed", pubFlip},
		{"too long", make([]byte, store.MaxRecordLen+1)},
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
				d, _, err := store.Decode(tt.in, sealer)
				if !errors.Is(err, store.ErrCorrupt) || d != nil {
					t.Fatalf("Decode = %v, %v; want nil, ErrCorrupt", d, err)
				}
			}
		})
	}
}

func TestDecodeSealedTransplant(t *testing.T) {
	// Sealed secrets of one device spliced into another's record (same
	// layout, valid checksum) must be refused, not loaded as its keys.
	sealer := mustSealer(t, testKey(4))
	a, err := store.Encode(storetest.NewDevice(t, "aaaa"), sealer)
	if err != nil {
		t.Fatal(err)
	}
	b, err := store.Encode(storetest.NewDevice(t, "bbbb"), sealer)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != len(b) {
		t.Fatalf("records differ in length: %d, %d", len(a), len(b))
	}
	const sealedLen = 1 + 8 + 12 + (1 + 4 + 128) + 16
	spliced := bytes.Clone(a)
	start := len(a) - 4 - sealedLen
	copy(spliced[start:], b[start:len(b)-4])
	_, _, err = store.Decode(withCRC(spliced), sealer)
	if !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("Decode of transplanted secrets = %v, want ErrCorrupt", err)
	}
}

func TestDecodeSealedWithoutOrWrongSealer(t *testing.T) {
	rec, err := store.Encode(fixedDevice(t), mustSealer(t, testKey(5)))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.Decode(rec, nil); !errors.Is(err, store.ErrNoSealer) {
		t.Fatalf("Decode without sealer = %v, want ErrNoSealer", err)
	}
	if _, _, err := store.Decode(rec, mustSealer(t, testKey(6))); !errors.Is(err, store.ErrWrongKey) {
		t.Fatalf("Decode with another key = %v, want ErrWrongKey", err)
	}
}

// FuzzDecode: arbitrary bytes never panic; whatever decodes is a valid
// device, and a record in the clear re-encodes to exactly the same bytes
// (the encoding is canonical).
func FuzzDecode(f *testing.F) {
	d := fixedDevice(f)
	plain, err := store.Encode(d, nil)
	if err != nil {
		f.Fatal(err)
	}
	sealer := mustSealer(f, testKey(1))
	sealed, err := store.Encode(d, sealer)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(plain)
	f.Add(sealed)
	f.Add(plain[:40])
	f.Add([]byte("WFD\x01\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// As given, and with a valid checksum appended so that mutations
		// reach the parser instead of stopping at the checksum.
		body := data
		if len(body) >= 4 {
			body = body[:len(body)-4]
		}
		for _, rec := range [][]byte{data, withCRC(append(bytes.Clone(body), 0, 0, 0, 0))} {
			for _, s := range []store.Sealer{nil, sealer} {
				got, info, err := store.Decode(rec, s)
				if err != nil {
					if got != nil {
						t.Fatal("Decode returned a device with an error")
					}
					continue
				}
				if err := got.Validate(); err != nil {
					// Decode trusts the public halves Encode checked; a
					// mutated one with a valid checksum loads, and nothing
					// else may be wrong. Encode refuses to write it again.
					var ve *store.ValidationError
					if !errors.As(err, &ve) || !strings.HasSuffix(ve.Field, ".Pub") || !strings.HasPrefix(ve.Problem, "does not match") {
						t.Fatalf("Decode returned an invalid device: %v", err)
					}
					if _, err := store.Encode(got, nil); err == nil {
						t.Fatal("Encode wrote a device whose public half does not match")
					}
					continue
				}
				if info.Sealed {
					continue // sealing is randomized
				}
				again, err := store.Encode(got, nil)
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

func TestDecodeTrustsWrittenPublicKeys(t *testing.T) {
	// Decode does not re-derive the public halves (Encode checked them when
	// the record was written): a record whose NoiseKey.Pub was edited with
	// the checksum recomputed loads, and is refused as soon as anyone tries
	// to write it again.
	good, err := store.Encode(fixedDevice(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	offIDLen := 5
	pubFlip := bytes.Clone(good)
	pubFlip[offIDLen+1+6] ^= 1 // first byte of NoiseKey.Pub
	d, _, err := store.Decode(withCRC(pubFlip), nil)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	var ve *store.ValidationError
	if err := d.Validate(); !errors.As(err, &ve) || ve.Field != "NoiseKey.Pub" {
		t.Fatalf("Validate = %v; want a NoiseKey.Pub mismatch", err)
	}
	if _, err := store.Encode(d, nil); !errors.As(err, &ve) || ve.Field != "NoiseKey.Pub" {
		t.Fatalf("Encode = %v; want a NoiseKey.Pub mismatch", err)
	}
}
