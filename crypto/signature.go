package crypto

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"fmt"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

// Signal-style "curve25519 signatures" (PROTOCOL.md section 4): Ed25519
// signatures made with an X25519 private key, the signer's Edwards sign bit
// carried in bit 7 of signature byte 63.

// Sign signs msg with kp's private key using 64 fresh random bytes.
func Sign(kp *KeyPair, msg []byte) ([64]byte, error) {
	var z [64]byte
	if _, err := rand.Read(z[:]); err != nil {
		return [64]byte{}, fmt.Errorf("crypto: sign: %w", err)
	}
	return SignWithRandom(kp, msg, &z), nil
}

// signPrefix is the first block hashed into the nonce: FE then 31 × FF.
var signPrefix = [32]byte{0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// SignWithRandom is Sign with the caller's 64 random bytes z; the same
// inputs always give the same signature (for test vectors).
func SignWithRandom(kp *KeyPair, msg []byte, z *[64]byte) [64]byte {
	// a = clamp(k) mod L; SetBytesWithClamping only fails on a wrong length.
	a, _ := edwards25519.NewScalar().SetBytesWithClamping(kp.Priv[:])
	var pubA [32]byte
	copy(pubA[:], new(edwards25519.Point).ScalarBaseMult(a).Bytes())
	signBit := pubA[31] & 0x80

	var digest [64]byte
	h := sha512.New()
	h.Write(signPrefix[:])
	h.Write(kp.Priv[:])
	h.Write(msg)
	h.Write(z[:])
	r, _ := edwards25519.NewScalar().SetUniformBytes(h.Sum(digest[:0]))

	var sig [64]byte
	copy(sig[:32], new(edwards25519.Point).ScalarBaseMult(r).Bytes())

	h.Reset()
	h.Write(sig[:32])
	h.Write(pubA[:])
	h.Write(msg)
	k, _ := edwards25519.NewScalar().SetUniformBytes(h.Sum(digest[:0]))

	copy(sig[32:], edwards25519.NewScalar().MultiplyAdd(k, a, r).Bytes())
	sig[63] |= signBit
	return sig
}

// one is the field element 1, shared read-only.
var one = new(field.Element).One()

// Verify reports whether sig is a valid signature of msg by the X25519
// public key pub. Wrong lengths and keys of small order (see
// CheckPublicKey) give false: under such a key a signature with S = 0 and R
// the identity or the key itself verifies for any message.
func Verify(pub, msg, sig []byte) bool {
	if len(sig) != 64 {
		return false
	}
	// SetBytes ignores the top bit of the key, as X25519 does.
	var uf, num, den, y field.Element
	if _, err := uf.SetBytes(pub); err != nil || isLowOrder(&uf) {
		return false
	}

	// Edwards y = (u - 1) / (u + 1); u = -1 would give y = 0 (Invert(0) =
	// 0), but it is of small order and refused above.
	num.Subtract(&uf, one)
	den.Add(&uf, one)
	den.Invert(&den)
	y.Multiply(&num, &den)

	var edPub [32]byte
	copy(edPub[:], y.Bytes())
	edPub[31] |= sig[63] & 0x80

	var s [64]byte
	copy(s[:], sig)
	s[63] &= 0x7f
	return ed25519.Verify(edPub[:], msg, s[:])
}
