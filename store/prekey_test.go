package store

import (
	"errors"
	"testing"
)

// TestNewPreKeyCheckedOnceButNotTrusted: a key NewPreKey made is valid;
// once either half is changed, or for the same halves in a PreKey built
// elsewhere (as from a decoded record), Validate derives the public half
// again and refuses a pair that does not match.
func TestNewPreKeyCheckedOnceButNotTrusted(t *testing.T) {
	k, err := NewPreKey(7)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckPreKeys([]PreKey{k}); err != nil {
		t.Fatalf("a generated key: %v", err)
	}
	other, err := NewPreKey(8)
	if err != nil {
		t.Fatal(err)
	}
	pubChanged, privChanged := k, k
	pubChanged.Pub = other.Pub
	privChanged.Priv = other.Priv
	rebuilt := PreKey{ID: 7, KeyPair: KeyPair{Priv: k.Priv, Pub: other.Pub}}
	for name, bad := range map[string]PreKey{"Pub changed": pubChanged, "Priv changed": privChanged, "built elsewhere": rebuilt} {
		if err := bad.Validate(); !errors.Is(err, ErrInvalidPreKey) {
			t.Errorf("%s: Validate = %v, want ErrInvalidPreKey", name, err)
		}
	}
	if err := (PreKey{ID: 7, KeyPair: k.KeyPair}).Validate(); err != nil {
		t.Errorf("the same pair built elsewhere: %v", err)
	}
	zeroID := k
	zeroID.ID = 0
	if err := zeroID.Validate(); !errors.Is(err, ErrInvalidPreKey) {
		t.Errorf("ID 0: Validate = %v, want ErrInvalidPreKey", err)
	}
}

// BenchmarkCheckPreKeys: a batch of 50 keys as AddPreKeys checks it, made by
// NewPreKey (no derivation) or read from outside (every public half
// derived again).
func BenchmarkCheckPreKeys(b *testing.B) {
	made := make([]PreKey, 50)
	outside := make([]PreKey, len(made))
	for i := range made {
		k, err := NewPreKey(uint32(i + 1))
		if err != nil {
			b.Fatal(err)
		}
		made[i], outside[i] = k, PreKey{ID: k.ID, KeyPair: k.KeyPair}
	}
	for _, c := range []struct {
		name string
		keys []PreKey
	}{{"made", made}, {"outside", outside}} {
		keys := c.keys
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if err := CheckPreKeys(keys); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
