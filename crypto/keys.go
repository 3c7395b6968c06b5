package crypto

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

// Sentinel errors of the package. Wrapped errors add context with %w.
var (
	ErrKeyLength = errors.New("crypto: key must be 32 bytes")
	// ErrLowOrderKey: a public key is a point of small order (CheckPublicKey).
	ErrLowOrderKey = errors.New("crypto: low-order public key")

	ErrNoiseState   = errors.New("crypto: noise handshake call out of order")
	ErrNoiseDecrypt = errors.New("crypto: noise decryption failed")
	ErrNoiseLength  = errors.New("crypto: noise handshake field has the wrong length")

	ErrCertMalformed           = errors.New("crypto: certificate chain malformed")
	ErrCertRootSignature       = errors.New("crypto: intermediate certificate not signed by the root key")
	ErrCertIntermediateIssuer  = errors.New("crypto: intermediate certificate issuer serial is not 0")
	ErrCertIntermediateKey     = errors.New("crypto: intermediate certificate key is not 32 bytes")
	ErrCertLeafSignature       = errors.New("crypto: leaf certificate not signed by the intermediate key")
	ErrCertExpired             = errors.New("crypto: certificate outside its validity window")
	ErrCertIntermediateExpired = &expiredError{"crypto: intermediate certificate outside its validity window"}
	ErrCertLeafIssuer          = errors.New("crypto: leaf certificate issuer serial is not the intermediate serial")
	ErrCertLeafKeyMismatch     = errors.New("crypto: leaf certificate key is not the server static key")
	ErrCertLeafExpired         = &expiredError{"crypto: leaf certificate outside its validity window"}

	ErrADVMalformed         = errors.New("crypto: ADV identity malformed")
	ErrADVHMACMismatch      = errors.New("crypto: ADV identity HMAC mismatch")
	ErrADVSignatureMismatch = errors.New("crypto: ADV signature mismatch")
)

// expiredError is the type of the two expiry sentinels: each is its own
// value and also matches ErrCertExpired under errors.Is.
type expiredError struct{ msg string }

func (e *expiredError) Error() string        { return e.msg }
func (e *expiredError) Is(target error) bool { return target == ErrCertExpired }

// lowOrderU are the u-coordinates, reduced mod p = 2^255-19, of the points
// of small order of Curve25519 and of its quadratic twist: 0 (order 2), 1
// (order 4, on the twist), p-1 (order 4) and the two of order 8. Under such a
// key a Diffie-Hellman result takes at most 8 values whatever the private
// key, and a signature can be forged without any private key.
var lowOrderU = [...][32]byte{
	{},
	{1},
	{0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
	{0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4, 0x6a,
		0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00},
	{0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef, 0x5b,
		0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f, 0x11, 0x57},
}

// CheckPublicKey checks a Curve25519 public key that came from outside:
// ErrKeyLength unless it is 32 bytes, ErrLowOrderKey if it is a point of
// small order in any of its encodings (the top bit set, or u+p written
// for u). DH and Verify run it on every key they are given; parsers call it
// to reject such a key where it enters (configuration, pairing, prekeys).
func CheckPublicKey(pub []byte) error {
	var u field.Element
	if _, err := u.SetBytes(pub); err != nil {
		return ErrKeyLength
	}
	if isLowOrder(&u) {
		return ErrLowOrderKey
	}
	return nil
}

// isLowOrder reports whether u is the u-coordinate of a point of small order.
// field.Element.SetBytes has already dropped the top bit and reduced mod p.
func isLowOrder(u *field.Element) bool {
	b := [32]byte(u.Bytes())
	for i := range lowOrderU {
		if b == lowOrderU[i] {
			return true
		}
	}
	return false
}

// KeyPair is an X25519 key pair. GenerateKeyPair and KeyPairFromPrivate
// derive Pub from Priv; a literal built from stored halves (a device's noise
// key) is as good, and costs nothing, provided Pub is Priv's public key:
// nothing here checks it (the store does when it writes a device). DH
// multiplies with Priv alone, one X25519 ladder per call. A KeyPair is safe
// for concurrent use.
type KeyPair struct {
	Pub, Priv [32]byte
}

// GenerateKeyPair returns a fresh key pair whose private key is clamped
// (low 3 bits of byte 0 cleared, bit 7 of byte 31 cleared, bit 6 set).
func GenerateKeyPair() (*KeyPair, error) {
	var priv [32]byte
	if _, err := rand.Read(priv[:]); err != nil {
		return nil, fmt.Errorf("crypto: generate key: %w", err)
	}
	priv[0] &= 248
	priv[31] &= 127
	priv[31] |= 64
	return KeyPairFromPrivate(priv[:])
}

// GeneratePair returns a fresh clamped private key and its public key as
// values, without GenerateKeyPair's allocation: for keys that are stored
// rather than used, such as one-time prekeys, of which a device makes
// hundreds at a time.
func GeneratePair() (priv, pub [32]byte, err error) {
	if _, err := rand.Read(priv[:]); err != nil {
		return priv, pub, fmt.Errorf("crypto: generate key: %w", err)
	}
	priv[0] &= 248
	priv[31] &= 127
	priv[31] |= 64
	return priv, PublicKey(&priv), nil
}

// PublicKey returns the X25519 public key of priv: the Montgomery u
// coordinate of [clamp(priv)]B. It multiplies the Edwards form of the base
// point with edwards25519's precomputed tables and maps the result to
// Montgomery form (u = (1+y)/(1-y)), which gives the same bytes as
// X25519(priv, 9) in about 40 % of the time of a Montgomery ladder.
func PublicKey(priv *[32]byte) [32]byte {
	s, err := edwards25519.NewScalar().SetBytesWithClamping(priv[:])
	if err != nil {
		panic("crypto: a 32-byte key was refused: " + err.Error()) // cannot happen: the length is fixed
	}
	var pub [32]byte
	copy(pub[:], new(edwards25519.Point).ScalarBaseMult(s).BytesMontgomery())
	return pub
}

// KeyPairFromPrivate derives the public key of a 32-byte X25519 private key
// (PublicKey). The private bytes are kept exactly as given (X25519 clamps
// internally; the signature scheme hashes the stored bytes).
func KeyPairFromPrivate(priv []byte) (*KeyPair, error) {
	if len(priv) != 32 {
		return nil, fmt.Errorf("crypto: private key: %w", ErrKeyLength)
	}
	kp := &KeyPair{}
	copy(kp.Priv[:], priv)
	kp.Pub = PublicKey(&kp.Priv)
	return kp, nil
}

// DH returns X25519(kp.Priv, peerPub). It fails on a peer key that is not
// 32 bytes (ErrKeyLength) or of small order (ErrLowOrderKey): those are the
// keys under which the result would be all zeros, or one of at most 8
// values whatever kp.Priv is.
func (kp *KeyPair) DH(peerPub []byte) ([32]byte, error) {
	var out [32]byte
	if err := CheckPublicKey(peerPub); err != nil {
		return out, fmt.Errorf("crypto: dh peer key: %w", err)
	}
	x25519(&out, &kp.Priv, (*[32]byte)(peerPub))
	return out, nil
}

// String shows the public key only, so %v, %+v and %s never print the
// private key.
func (kp KeyPair) String() string {
	return "KeyPair(pub=" + hex.EncodeToString(kp.Pub[:]) + ")"
}

// GoString keeps %#v from printing the private key.
func (kp KeyPair) GoString() string { return kp.String() }

// LogValue makes slog log the public key only.
func (kp KeyPair) LogValue() slog.Value {
	return slog.GroupValue(slog.String("pub", hex.EncodeToString(kp.Pub[:])))
}
