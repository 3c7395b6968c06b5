package crypto

import (
	"crypto/ed25519"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/waproto"
)

// smallOrderKeys are the Curve25519 public keys of small order, as published
// in libsodium's blacklist (has_small_order in
// src/libsodium/crypto_scalarmult/curve25519/scalarmult_curve25519.c, the
// list D. J. Bernstein gives at https://cr.yp.to/ecdh.html#validate): 0, 1,
// the two u-coordinates of order 8, p-1, p and p+1, where p = 2^255-19.
// libsodium ignores the top bit, so each also appears with bit 255 set.
var smallOrderKeys = func() []string {
	published := []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	}
	all := append([]string(nil), published...)
	for _, h := range published {
		b, _ := hex.DecodeString(h)
		b[31] |= 0x80
		all = append(all, hex.EncodeToString(b))
	}
	return all
}()

func smallOrderKey(t testing.TB, h string) []byte {
	t.Helper()
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != 32 {
		t.Fatalf("bad test key %q", h)
	}
	return b
}

// edwardsOf is the Edwards point Verify checks a signature against: y =
// (u-1)/(u+1) (0 when u = -1), the sign bit of x cleared. It is written
// here again, apart from Verify, so the test does not trust the code under
// test to find the point.
func edwardsOf(t testing.TB, pub []byte) (*edwards25519.Point, []byte) {
	t.Helper()
	var u, num, den, y field.Element
	if _, err := u.SetBytes(pub); err != nil {
		t.Fatal(err)
	}
	one := new(field.Element).One()
	num.Subtract(&u, one)
	den.Add(&u, one)
	y.Multiply(&num, den.Invert(&den))
	enc := y.Bytes()
	p, err := new(edwards25519.Point).SetBytes(enc)
	if err != nil {
		t.Fatalf("u=%x has no Edwards point: %v", pub, err)
	}
	return p, enc
}

func TestSmallOrderKeysAreOfSmallOrder(t *testing.T) {
	// Check the published list against the curve itself: eight times each
	// point is the identity.
	for _, h := range smallOrderKeys {
		p, _ := edwardsOf(t, smallOrderKey(t, h))
		if new(edwards25519.Point).MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) != 1 {
			t.Errorf("%s: 8·P is not the identity", h)
		}
	}
}

func TestCheckPublicKeyRejectsSmallOrder(t *testing.T) {
	kp, err := GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range smallOrderKeys {
		pub := smallOrderKey(t, h)
		if err := CheckPublicKey(pub); !errors.Is(err, ErrLowOrderKey) {
			t.Errorf("CheckPublicKey(%s) = %v, want ErrLowOrderKey", h, err)
		}
		if _, err := kp.DH(pub); !errors.Is(err, ErrLowOrderKey) {
			t.Errorf("DH(%s) = %v, want ErrLowOrderKey", h, err)
		}
	}
	if err := CheckPublicKey(make([]byte, 31)); !errors.Is(err, ErrKeyLength) {
		t.Errorf("CheckPublicKey(31 bytes) = %v, want ErrKeyLength", err)
	}
}

func TestCheckPublicKeyAcceptsOrdinaryKeys(t *testing.T) {
	base := make([]byte, 32)
	base[0] = 9 // the base point
	two := make([]byte, 32)
	two[0] = 2
	for _, pub := range [][]byte{base, two, WhatsAppRootKey[:]} {
		if err := CheckPublicKey(pub); err != nil {
			t.Errorf("CheckPublicKey(%x) = %v", pub, err)
		}
	}
	for range 200 {
		kp, err := GenerateKeyPair()
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckPublicKey(kp.Pub[:]); err != nil {
			t.Fatalf("CheckPublicKey(%x) = %v", kp.Pub, err)
		}
		p, _ := edwardsOf(t, kp.Pub[:])
		if new(edwards25519.Point).MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 1 {
			t.Fatalf("a generated key %x is of small order", kp.Pub)
		}
	}
}

// forgeSignature makes, with no private key, a signature (R, S = 0) of msg
// that Ed25519's verification equation [S]B = R + [k]A accepts under the
// small-order Edwards point A: R is a multiple of A (its negation is one
// too) equal to -[k]A, where k = SHA-512(R || A || msg) mod L. ok is false
// if no multiple fits this message; try another message then.
func forgeSignature(a *edwards25519.Point, aEnc, msg []byte) (sig []byte, ok bool) {
	r := edwards25519.NewIdentityPoint()
	for range 8 {
		var rEnc [32]byte
		copy(rEnc[:], r.Bytes())
		h := sha512.New()
		h.Write(rEnc[:])
		h.Write(aEnc)
		h.Write(msg)
		k, _ := edwards25519.NewScalar().SetUniformBytes(h.Sum(nil))
		kA := new(edwards25519.Point).ScalarMult(k, a)
		if new(edwards25519.Point).Negate(kA).Equal(r) == 1 {
			return append(rEnc[:], make([]byte, 32)...), true
		}
		r.Add(r, a)
	}
	return nil, false
}

// forgeFor finds a message among build(0), build(1), … and a forged
// signature of it under pub's Edwards point, checked with crypto/ed25519:
// the check Verify made before it refused small-order keys.
func forgeFor(t testing.TB, pub []byte, build func(i int) []byte) (i int, sig []byte) {
	t.Helper()
	a, aEnc := edwardsOf(t, pub)
	for i := range 1000 {
		msg := build(i)
		if sig, ok := forgeSignature(a, aEnc, msg); ok {
			if !ed25519.Verify(aEnc, msg, sig) {
				t.Fatalf("forged signature under %x not accepted by ed25519.Verify", pub)
			}
			return i, sig
		}
	}
	t.Fatalf("no forgery found under %x", pub)
	return 0, nil
}

func TestVerifyRejectsForgeryUnderSmallOrderKey(t *testing.T) {
	for _, h := range smallOrderKeys {
		pub := smallOrderKey(t, h)
		msg := func(i int) []byte { return fmt.Appendf(nil, "transfer the account to mallory #%d", i) }
		i, sig := forgeFor(t, pub, msg)
		if Verify(pub, msg(i), sig) {
			t.Errorf("Verify accepted a forged signature under the small-order key %s", h)
		}
	}
}

func TestCertChainRejectsSmallOrderKeys(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	root, inter, static := newKey(t), newKey(t), newKey(t)
	window := func(c CertSpec) CertSpec {
		c.NotBefore, c.NotAfter = now.Add(-time.Hour), now.Add(time.Hour)
		return c
	}
	zero := make([]byte, 32)

	t.Run("root key", func(t *testing.T) {
		// A client pinning a root key of 32 zero bytes: anyone can forge
		// the intermediate's signature and certify any server key.
		details := func(serial int) []byte {
			b, err := proto.Marshal(&waproto.CertChain_NoiseCertificate_Details{
				Serial: proto.Uint32(uint32(serial)), IssuerSerial: proto.Uint32(0), Key: inter.Pub[:],
				NotBefore: proto.Uint64(uint64(now.Unix() - 3600)), NotAfter: proto.Uint64(uint64(now.Unix() + 3600)),
			})
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		serial, forged := forgeFor(t, zero, details)
		leaf, err := issueCert(inter, window(CertSpec{Serial: 1000, IssuerSerial: uint32(serial), Key: static.Pub[:]}))
		if err != nil {
			t.Fatal(err)
		}
		chain, err := proto.Marshal(&waproto.CertChain{
			Intermediate: &waproto.CertChain_NoiseCertificate{Details: details(serial), Signature: forged},
			Leaf:         leaf,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyCertChain(chain, zero, static.Pub[:], now); !errors.Is(err, ErrLowOrderKey) {
			t.Fatalf("chain forged under a root key of zeros: %v, want ErrLowOrderKey", err)
		}
	})
	t.Run("intermediate key", func(t *testing.T) {
		chain, err := IssueCertChain(root, inter, window(CertSpec{Serial: 1, Key: zero}), window(CertSpec{Serial: 2, IssuerSerial: 1, Key: static.Pub[:]}))
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyCertChain(chain, root.Pub[:], static.Pub[:], now); !errors.Is(err, ErrLowOrderKey) {
			t.Fatalf("intermediate key of zeros: %v, want ErrLowOrderKey", err)
		}
	})
}

func newKey(t testing.TB) *KeyPair {
	t.Helper()
	kp, err := GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func TestADVRejectsSmallOrderAccountKey(t *testing.T) {
	// A pair-success whose account signature is forged under an account
	// key of 32 zero bytes, with the right HMAC (whoever has the QR has the
	// ADV secret).
	identity := newKey(t)
	secret := make([]byte, 32)
	zero := make([]byte, 32)
	details := func(keyIndex int) []byte {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&waproto.ADVDeviceIdentity{
			RawID: proto.Uint32(7), Timestamp: proto.Uint64(1_800_000_000), KeyIndex: proto.Uint32(uint32(keyIndex)),
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	keyIndex, forged := forgeFor(t, zero, func(i int) []byte {
		return advAccountMessage(waproto.ADVEncryptionType_E2EE, details(i), identity.Pub[:])
	})
	sdi, err := proto.Marshal(&waproto.ADVSignedDeviceIdentity{
		Details: details(keyIndex), AccountSignatureKey: zero, AccountSignature: forged,
	})
	if err != nil {
		t.Fatal(err)
	}
	container, err := MakeADVContainer(sdi, secret, waproto.ADVEncryptionType_E2EE)
	if err != nil {
		t.Fatal(err)
	}
	_, err = VerifyADVPairing(container, secret, identity)
	if !errors.Is(err, ErrLowOrderKey) || !errors.Is(err, ErrADVSignatureMismatch) {
		t.Fatalf("pairing under a forged account signature: %v, want ErrLowOrderKey and ErrADVSignatureMismatch", err)
	}
}
