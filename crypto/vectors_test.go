package crypto

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// loadVector decodes ../testdata/protocol/vectors/<name> into v.
func loadVector(t testing.TB, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "protocol", "vectors", name))
	if err != nil {
		t.Fatalf("read vector: %v", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", name, err)
	}
}

// unhex decodes a hex string from a vector or fails the test.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// mustKey builds a key pair from a hex private key or fails the test.
func mustKey(t testing.TB, privHex string) *KeyPair {
	t.Helper()
	kp, err := KeyPairFromPrivate(unhex(t, privHex))
	if err != nil {
		t.Fatal(err)
	}
	return kp
}
