package connection

import (
	"testing"

	"github.com/wafleet/wafleet/signal"
)

func TestOwnSenderKeyRecord(t *testing.T) {
	key, err := signal.NewSenderKey()
	if err != nil {
		t.Fatal(err)
	}
	k := &ownSenderKey{key: key, holders: map[string]bool{"15551000001.0:0": true, "15551000001.0:1": true, "15550000001.0:0": true}}
	rec, err := k.marshal()
	if err != nil {
		t.Fatal(err)
	}
	var back ownSenderKey
	if err := back.unmarshal(rec); err != nil {
		t.Fatal(err)
	}
	if len(back.holders) != 3 || !back.holders["15551000001.0:1"] || !back.holders["15550000001.0:0"] {
		t.Errorf("holders %v", back.holders)
	}
	// The key survives: a message encrypted with the copy decrypts with
	// a peer's key built from the original's distribution.
	dist, err := key.Distribution()
	if err != nil {
		t.Fatal(err)
	}
	var peer signal.SenderKey
	peer.Process(dist)
	ct, err := back.key.Encrypt(signal.Pad([]byte("hello")))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := peer.Decrypt(ct); err != nil || string(mustUnpad(t, pt)) != "hello" {
		t.Fatalf("decrypt with the distributed key: %q, %v", pt, err)
	}

	// Every truncation, and trailing bytes, are refused, never a panic.
	for n := range rec {
		var k ownSenderKey
		if k.unmarshal(rec[:n]) == nil {
			t.Errorf("a record cut at %d of %d bytes was accepted", n, len(rec))
		}
	}
	var k2 ownSenderKey
	if k2.unmarshal(append(rec, 0)) == nil {
		t.Error("trailing bytes accepted")
	}
}

func mustUnpad(t *testing.T, b []byte) []byte {
	t.Helper()
	out, err := signal.Unpad(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
