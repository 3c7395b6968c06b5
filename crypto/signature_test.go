package crypto

import (
	"bytes"
	"encoding/hex"
	"testing"
)

type sigVectors struct {
	Vectors []struct {
		Name       string `json:"name"`
		PrivateKey string `json:"private_key"`
		PublicKey  string `json:"public_key"`
		SignBit    int    `json:"edwards_pub_sign_bit"`
		RandomZ    string `json:"random_z"`
		Message    string `json:"message_hex"`
		Signature  string `json:"signature_hex"`
		Valid      bool   `json:"valid"`
	} `json:"vectors"`
}

func TestSignatureVectors(t *testing.T) {
	var vs sigVectors
	loadVector(t, "curve25519_signatures.json", &vs)
	if len(vs.Vectors) < 9 {
		t.Fatalf("only %d vectors", len(vs.Vectors))
	}
	for _, v := range vs.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			pub, msg, sig := unhex(t, v.PublicKey), unhex(t, v.Message), unhex(t, v.Signature)
			if got := Verify(pub, msg, sig); got != v.Valid {
				t.Fatalf("Verify = %v, want %v", got, v.Valid)
			}
			if v.PrivateKey == "" {
				return
			}
			kp := mustKey(t, v.PrivateKey)
			if !bytes.Equal(kp.Pub[:], pub) {
				t.Fatalf("public key %x, want %s", kp.Pub, v.PublicKey)
			}
			if v.RandomZ != "" {
				var z [64]byte
				copy(z[:], unhex(t, v.RandomZ))
				got := SignWithRandom(kp, msg, &z)
				if hex.EncodeToString(got[:]) != v.Signature {
					t.Fatalf("signature\n got %x\nwant %s", got, v.Signature)
				}
				if int(got[63]>>7) != v.SignBit {
					t.Fatalf("sign bit %d, want %d", got[63]>>7, v.SignBit)
				}
			}
			// A fresh random signature by the same key verifies too.
			fresh, err := Sign(kp, msg)
			if err != nil {
				t.Fatal(err)
			}
			if !Verify(pub, msg, fresh[:]) {
				t.Fatal("fresh signature does not verify")
			}
		})
	}
}

func TestSignedPrekeyNeedsDJBPrefix(t *testing.T) {
	var vs sigVectors
	loadVector(t, "curve25519_signatures.json", &vs)
	v := vs.Vectors[len(vs.Vectors)-1]
	msg := unhex(t, v.Message)
	if msg[0] != 0x05 || !Verify(unhex(t, v.PublicKey), msg, unhex(t, v.Signature)) {
		t.Fatal("signed prekey vector should verify over 05||pub")
	}
	if Verify(unhex(t, v.PublicKey), msg[1:], unhex(t, v.Signature)) {
		t.Fatal("signed prekey signature must not verify over the bare key")
	}
}

func TestVerifyRejects(t *testing.T) {
	kp, err := GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	other, err := GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("message")
	sig, err := Sign(kp, msg)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(b []byte, i int, mask byte) []byte {
		c := bytes.Clone(b)
		c[i] ^= mask
		return c
	}
	tests := []struct {
		name          string
		pub, msg, sig []byte
		want          bool
	}{
		{"valid", kp.Pub[:], msg, sig[:], true},
		{"other key", other.Pub[:], msg, sig[:], false},
		{"altered message", kp.Pub[:], []byte("messagf"), sig[:], false},
		{"altered R", kp.Pub[:], msg, flip(sig[:], 0, 1), false},
		{"altered S", kp.Pub[:], msg, flip(sig[:], 40, 1), false},
		{"flipped sign bit", kp.Pub[:], msg, flip(sig[:], 63, 0x80), false},
		{"short signature", kp.Pub[:], msg, sig[:63], false},
		{"long signature", kp.Pub[:], msg, append(sig[:], 0), false},
		{"short key", kp.Pub[:31], msg, sig[:], false},
		{"nil everything", nil, nil, nil, false},
		{"zero key", make([]byte, 32), msg, sig[:], false},
		{"u = -1 key", unhex(t, "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"), msg, sig[:], false},
		// Bit 7 of the public key's last byte is ignored (cleared) by verification.
		{"key top bit set", flip(kp.Pub[:], 31, 0x80), msg, sig[:], true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Verify(tt.pub, tt.msg, tt.sig); got != tt.want {
				t.Fatalf("Verify = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSignatureRoundTripMany(t *testing.T) {
	// Both Edwards sign bits occur among random keys; all must round-trip.
	seen := map[byte]bool{}
	for i := range 32 {
		kp, err := GenerateKeyPair()
		if err != nil {
			t.Fatal(err)
		}
		msg := []byte{byte(i), 1, 2, 3}
		sig, err := Sign(kp, msg)
		if err != nil {
			t.Fatal(err)
		}
		seen[sig[63]>>7] = true
		if !Verify(kp.Pub[:], msg, sig[:]) {
			t.Fatalf("key %d: signature does not verify", i)
		}
	}
	if !seen[0] || !seen[1] {
		t.Fatalf("expected both sign bits among 32 random keys, saw %v", seen)
	}
}
