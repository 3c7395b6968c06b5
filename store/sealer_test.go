package store_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/wafleet/wafleet/store"
)

func TestNewAESSealerKeySize(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		if s, err := store.NewAESSealer(make([]byte, n)); err == nil || s != nil {
			t.Errorf("NewAESSealer(%d-byte key) = %v, %v; want an error", n, s, err)
		}
	}
}

func TestAESSealer(t *testing.T) {
	plain := []byte("secret material that must round-trip")
	right := mustSealer(t, testKey(1))
	sealed, err := right.Seal(plain)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, plain[:8]) {
		t.Fatal("sealed output contains the plaintext")
	}
	again, err := right.Seal(plain)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(sealed, again) {
		t.Fatal("two seals of the same plaintext are identical: nonce reuse")
	}

	tamper := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 0x80
		return b
	}
	tests := []struct {
		name   string
		sealer store.Sealer
		in     []byte
		want   error // nil: must open to plain
	}{
		{"right key", right, sealed, nil},
		{"second seal", right, again, nil},
		{"wrong key", mustSealer(t, testKey(2)), sealed, store.ErrWrongKey},
		{"key differing in one bit", mustSealer(t, append(testKey(1)[:31], 0x00)), sealed, store.ErrWrongKey},
		{"empty", right, nil, store.ErrCorrupt},
		{"truncated", right, sealed[:len(sealed)-1], store.ErrCorrupt},
		{"too short for a tag", right, sealed[:20], store.ErrCorrupt},
		{"unknown version", right, tamper(0), store.ErrCorrupt},
		{"check value altered", right, tamper(1), store.ErrWrongKey},
		{"nonce altered", right, tamper(10), store.ErrCorrupt},
		{"ciphertext altered", right, tamper(len(sealed) - 20), store.ErrCorrupt},
		{"tag altered", right, tamper(len(sealed) - 1), store.ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.sealer.Open(tt.in)
			if tt.want == nil {
				if err != nil || !bytes.Equal(got, plain) {
					t.Fatalf("Open = %q, %v; want the plaintext", got, err)
				}
				return
			}
			if !errors.Is(err, tt.want) || got != nil {
				t.Fatalf("Open = %q, %v; want nil, %v", got, err, tt.want)
			}
		})
	}
}
