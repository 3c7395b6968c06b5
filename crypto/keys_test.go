package crypto

import (
	"bytes"
	"crypto/ecdh"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestGenerateKeyPairClamped(t *testing.T) {
	for range 16 {
		kp, err := GenerateKeyPair()
		if err != nil {
			t.Fatal(err)
		}
		if kp.Priv[0]&7 != 0 || kp.Priv[31]&0x80 != 0 || kp.Priv[31]&0x40 == 0 {
			t.Fatalf("private key not clamped: %02x..%02x", kp.Priv[0], kp.Priv[31])
		}
		again, err := KeyPairFromPrivate(kp.Priv[:])
		if err != nil {
			t.Fatal(err)
		}
		if again.Pub != kp.Pub {
			t.Fatal("public key not reproducible from the private key")
		}
	}
}

func TestKeyPairFromPrivateVector(t *testing.T) {
	var v noiseVector
	loadVector(t, "noise_handshake.json", &v)
	for _, k := range [][2]string{
		{v.ClientEphemeralPriv, v.ClientEphemeralPub},
		{v.ClientStaticPriv, v.ClientStaticPub},
		{v.ServerEphemeralPriv, v.ServerEphemeralPub},
		{v.ServerStaticPriv, v.ServerStaticPub},
		{v.TestRootPriv, v.TestRootPub},
		{v.IntermediatePriv, v.IntermediatePub},
	} {
		kp := mustKey(t, k[0])
		if hex.EncodeToString(kp.Pub[:]) != k[1] {
			t.Errorf("pub of %s… = %x, want %s", k[0][:4], kp.Pub, k[1])
		}
	}
	if _, err := KeyPairFromPrivate(make([]byte, 31)); !errors.Is(err, ErrKeyLength) {
		t.Fatalf("31-byte private key: err = %v, want ErrKeyLength", err)
	}
}

func TestDH(t *testing.T) {
	a, err := GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	ab, err := a.DH(b.Pub[:])
	if err != nil {
		t.Fatal(err)
	}
	ba, err := b.DH(a.Pub[:])
	if err != nil {
		t.Fatal(err)
	}
	if ab != ba {
		t.Fatal("DH not symmetric")
	}
	// A literal KeyPair (no cached parse) gives the same result.
	lit := &KeyPair{Pub: a.Pub, Priv: a.Priv}
	if got, err := lit.DH(b.Pub[:]); err != nil || got != ab {
		t.Fatalf("literal KeyPair DH = %x, %v", got, err)
	}

	tests := []struct {
		name string
		peer []byte
		want error
	}{
		{"short", b.Pub[:31], ErrKeyLength},
		{"long", append(b.Pub[:], 0), ErrKeyLength},
		{"nil", nil, ErrKeyLength},
		{"zero point", make([]byte, 32), ErrLowOrderKey},
		{"u = 1 (low order)", append([]byte{1}, make([]byte, 31)...), ErrLowOrderKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := a.DH(tt.peer); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestKeyPairNeverPrintsPrivate(t *testing.T) {
	kp, err := GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	privHex := hex.EncodeToString(kp.Priv[:])
	var logBuf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logBuf, nil))
	logger.Info("key", "kp", kp, "val", *kp)
	outputs := map[string]string{
		"%v ptr":  fmt.Sprintf("%v", kp),
		"%+v ptr": fmt.Sprintf("%+v", kp),
		"%#v ptr": fmt.Sprintf("%#v", kp),
		"%s ptr":  fmt.Sprintf("%s", kp),
		"%v val":  fmt.Sprintf("%v", *kp),
		"%+v val": fmt.Sprintf("%+v", *kp),
		"%#v val": fmt.Sprintf("%#v", *kp),
		"slog":    logBuf.String(),
	}
	for name, out := range outputs {
		if strings.Contains(out, privHex) || !strings.Contains(out, hex.EncodeToString(kp.Pub[:])) {
			t.Errorf("%s: %q leaks the private key or lacks the public key", name, out)
		}
	}
}

// TestPublicKey checks the fixed-base derivation against RFC 7748 section
// 6.1 and against crypto/ecdh's Montgomery ladder on random keys.
func TestPublicKey(t *testing.T) {
	for _, v := range []struct{ priv, pub string }{
		{"77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a", "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"},
		{"5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb", "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"},
	} {
		var priv [32]byte
		hex.Decode(priv[:], []byte(v.priv))
		if got := PublicKey(&priv); hex.EncodeToString(got[:]) != v.pub {
			t.Errorf("PublicKey(%s) = %x, want %s", v.priv, got, v.pub)
		}
	}
	for range 500 {
		priv, pub, err := GeneratePair()
		if err != nil {
			t.Fatal(err)
		}
		k, err := ecdh.X25519().NewPrivateKey(priv[:])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(k.PublicKey().Bytes(), pub[:]) {
			t.Fatalf("GeneratePair public key differs from crypto/ecdh's for %x", priv)
		}
		if priv[0]&7 != 0 || priv[31]&0xC0 != 0x40 {
			t.Fatalf("private key not clamped: %x", priv)
		}
	}
	// Unclamped bytes derive what X25519 derives (it clamps internally).
	var raw [32]byte
	for i := range raw {
		raw[i] = 0xFF
	}
	k, _ := ecdh.X25519().NewPrivateKey(raw[:])
	if got := PublicKey(&raw); !bytes.Equal(got[:], k.PublicKey().Bytes()) {
		t.Error("PublicKey of unclamped bytes differs from crypto/ecdh's")
	}
}
