package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
)

// Link-code pairing ("pair by phone number"), PROTOCOL.md section 10. The
// companion shows an 8-character code; the operator types it on the phone.
// Both sides wrap their ephemeral X25519 public key under a key derived from
// the code (PBKDF2-SHA256, AES-256-CTR), the companion sends its identity and
// a random secret in a key bundle sealed under a key derived from the two
// ephemerals (HKDF, AES-256-GCM), and both derive the ADV secret that keys
// the pair-success HMAC from the ephemeral and identity shared secrets.
//
// The code is a secret: it never appears in an error string.

// LinkCodeAlphabet is the protocol's base32 alphabet of link codes: digits
// and capitals without 0, I, O and U.
const LinkCodeAlphabet = "123456789ABCDEFGHJKLMNPQRSTVWXYZ"

const (
	// LinkCodeLen is the number of characters of a link code (5 random bytes).
	LinkCodeLen = 8
	// LinkCodeIterations is the PBKDF2 iteration count (2<<16).
	LinkCodeIterations = 131072
	// LinkCodeWrappedLen is the length of a wrapped ephemeral key:
	// salt (32) || iv (16) || AES-256-CTR ciphertext of the public key (32).
	LinkCodeWrappedLen = 32 + 16 + 32
	// LinkCodeBundleLen is the length of a sealed key bundle: HKDF salt (32)
	// || GCM nonce (12) || ciphertext of three 32-byte keys (96) || tag (16).
	LinkCodeBundleLen = 32 + 12 + 96 + 16

	linkCodeBundleInfo = "link_code_pairing_key_bundle_encryption_key"
	linkCodeADVInfo    = "adv_secret"
)

// Sentinel errors of link-code pairing.
var (
	ErrLinkCodeFormat  = errors.New("crypto: link code must be 8 characters of the link-code alphabet")
	ErrLinkCodeWrapped = errors.New("crypto: wrapped link-code key must be 80 bytes")
	ErrLinkCodeBundle  = errors.New("crypto: link-code key bundle does not decrypt")
	ErrLinkCodeKeys    = errors.New("crypto: link-code key bundle names other identity keys")
)

var linkCodeEncoding = base32.NewEncoding(LinkCodeAlphabet).WithPadding(base32.NoPadding)

// GenerateLinkCode returns a fresh link code: 5 bytes from crypto/rand in
// the protocol's base32 alphabet, 8 characters without the dash.
func GenerateLinkCode() (string, error) {
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("crypto: generate link code: %w", err)
	}
	return linkCodeEncoding.EncodeToString(b[:]), nil
}

// FormatLinkCode returns the code as shown to the operator: "ABCD-EFGH".
func FormatLinkCode(code string) string {
	if len(code) != LinkCodeLen {
		return code
	}
	return code[:4] + "-" + code[4:]
}

// NormalizeLinkCode accepts a code as an operator types it ("abcd-efgh",
// "ABCD EFGH", "ABCDEFGH") and returns its 8 characters in upper case, or
// ErrLinkCodeFormat.
func NormalizeLinkCode(typed string) (string, error) {
	code := strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(typed))
	if len(code) != LinkCodeLen {
		return "", ErrLinkCodeFormat
	}
	for i := 0; i < len(code); i++ {
		if strings.IndexByte(LinkCodeAlphabet, code[i]) < 0 {
			return "", ErrLinkCodeFormat
		}
	}
	return code, nil
}

// linkCodeKey is PBKDF2-HMAC-SHA256(code, salt, 131072 iterations, 32 bytes).
func linkCodeKey(code string, salt []byte) ([]byte, error) {
	key, err := pbkdf2.Key(sha256.New, code, salt, LinkCodeIterations, 32)
	if err != nil {
		return nil, fmt.Errorf("crypto: link-code key: %w", err)
	}
	return key, nil
}

func ctr(key, iv, in []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("crypto: link-code cipher: %w", err)
	}
	out := make([]byte, len(in))
	cipher.NewCTR(block, iv).XORKeyStream(out, in)
	return out, nil
}

// WrapLinkCodeKey wraps an ephemeral public key under the code with a fresh
// salt and IV: salt || iv || AES-256-CTR(PBKDF2(code, salt), iv, pub), 80
// bytes. Both the companion (companion_hello) and the phone (the
// notification's primary ephemeral) wrap this way.
func WrapLinkCodeKey(code string, pub [32]byte) ([]byte, error) {
	var saltIV [48]byte
	if _, err := rand.Read(saltIV[:]); err != nil {
		return nil, fmt.Errorf("crypto: link-code salt: %w", err)
	}
	return wrapLinkCodeKey(code, saltIV[:32], saltIV[32:], pub)
}

func wrapLinkCodeKey(code string, salt, iv []byte, pub [32]byte) ([]byte, error) {
	key, err := linkCodeKey(code, salt)
	if err != nil {
		return nil, err
	}
	ct, err := ctr(key, iv, pub[:])
	if err != nil {
		return nil, err
	}
	return concat(salt, iv, ct), nil
}

// UnwrapLinkCodeKey recovers the ephemeral public key wrapped under code.
// CTR has no integrity: a wrong code yields a wrong key, which surfaces later
// as a bundle or HMAC failure. A result of small order is ErrLowOrderKey.
func UnwrapLinkCodeKey(code string, wrapped []byte) ([32]byte, error) {
	var pub [32]byte
	if len(wrapped) != LinkCodeWrappedLen {
		return pub, ErrLinkCodeWrapped
	}
	key, err := linkCodeKey(code, wrapped[:32])
	if err != nil {
		return pub, err
	}
	pt, err := ctr(key, wrapped[32:48], wrapped[48:])
	if err != nil {
		return pub, err
	}
	copy(pub[:], pt)
	if err := CheckPublicKey(pub[:]); err != nil {
		return [32]byte{}, fmt.Errorf("crypto: unwrapped link-code key: %w", err)
	}
	return pub, nil
}

// linkCodeBundleKey is HKDF-SHA256(ikm = ephemeral shared secret, salt,
// info = "link_code_pairing_key_bundle_encryption_key", 32 bytes).
func linkCodeBundleKey(ephShared [32]byte, salt []byte) []byte {
	// hkdf.Key fails only for lengths beyond 255*32.
	key, _ := hkdf.Key(sha256.New, ephShared[:], salt, linkCodeBundleInfo, 32)
	return key
}

// LinkCodeADVSecret is the ADV secret of a link-code pairing:
// HKDF-SHA256(ikm = ephShared || identityShared || random, no salt,
// info = "adv_secret", 32 bytes).
func LinkCodeADVSecret(ephShared, identityShared, random [32]byte) [32]byte {
	key, _ := hkdf.Key(sha256.New, concat(ephShared[:], identityShared[:], random[:]), nil, linkCodeADVInfo, 32)
	return [32]byte(key)
}

func sealLinkCodeBundle(ephShared [32]byte, salt, nonce []byte, companionIdentity, primaryIdentity, random [32]byte) ([]byte, error) {
	block, err := aes.NewCipher(linkCodeBundleKey(ephShared, salt))
	if err != nil {
		return nil, fmt.Errorf("crypto: link-code bundle cipher: %w", err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("crypto: link-code bundle cipher: %w", err)
	}
	plain := concat(companionIdentity[:], primaryIdentity[:], random[:])
	return gcm.Seal(concat(salt, nonce), nonce, plain, nil), nil
}

// LinkCodeCompanion is the companion's side of a link-code pairing after the
// phone's notification: what it sends in companion_finish and the ADV secret
// it keeps for pair-success.
type LinkCodeCompanion struct {
	WrappedBundle []byte   // link_code_pairing_wrapped_key_bundle, 156 bytes
	ADVSecret     [32]byte // replaces the stored ADV secret
}

// LinkCodeCompanionFinish runs step 4 of PROTOCOL.md section 10 on the
// companion: unwrap the primary's ephemeral with the code, agree on the
// ephemeral and identity shared secrets, seal the key bundle (companion
// identity pub || primary identity pub || 32 random bytes) and derive the ADV
// secret. The phone's keys pass CheckPublicKey.
func LinkCodeCompanionFinish(code string, ephemeral, identity *KeyPair, wrappedPrimaryEphemeral, primaryIdentityPub []byte) (*LinkCodeCompanion, error) {
	var rnd [32 + 32 + 12]byte // bundle random, HKDF salt, GCM nonce
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("crypto: link-code bundle random: %w", err)
	}
	return linkCodeCompanionFinish(code, ephemeral, identity, wrappedPrimaryEphemeral, primaryIdentityPub,
		[32]byte(rnd[:32]), rnd[32:64], rnd[64:])
}

func linkCodeCompanionFinish(code string, ephemeral, identity *KeyPair, wrappedPrimaryEphemeral, primaryIdentityPub []byte,
	random [32]byte, salt, nonce []byte) (*LinkCodeCompanion, error) {
	if err := CheckPublicKey(primaryIdentityPub); err != nil {
		return nil, fmt.Errorf("crypto: primary identity key: %w", err)
	}
	primaryEph, err := UnwrapLinkCodeKey(code, wrappedPrimaryEphemeral)
	if err != nil {
		return nil, err
	}
	ephShared, err := ephemeral.DH(primaryEph[:])
	if err != nil {
		return nil, fmt.Errorf("crypto: link-code ephemeral agreement: %w", err)
	}
	identityShared, err := identity.DH(primaryIdentityPub)
	if err != nil {
		return nil, fmt.Errorf("crypto: link-code identity agreement: %w", err)
	}
	bundle, err := sealLinkCodeBundle(ephShared, salt, nonce, identity.Pub, [32]byte(primaryIdentityPub), random)
	if err != nil {
		return nil, err
	}
	return &LinkCodeCompanion{WrappedBundle: bundle, ADVSecret: LinkCodeADVSecret(ephShared, identityShared, random)}, nil
}

// LinkCodePrimaryFinish is the phone's side of companion_finish (the
// emulator's): from its own ephemeral and identity key pairs, the
// companion's ephemeral public key (unwrapped from companion_hello), the
// sealed bundle and the companion identity key the IQ names, it opens the
// bundle, checks that it names both identity keys (in constant time) and
// returns the ADV secret the companion derived.
func LinkCodePrimaryFinish(ephemeral, identity *KeyPair, companionEphemeralPub, wrappedBundle, companionIdentityPub []byte) ([32]byte, error) {
	var secret [32]byte
	if len(wrappedBundle) != LinkCodeBundleLen {
		return secret, ErrLinkCodeBundle
	}
	if err := CheckPublicKey(companionIdentityPub); err != nil {
		return secret, fmt.Errorf("crypto: companion identity key: %w", err)
	}
	ephShared, err := ephemeral.DH(companionEphemeralPub)
	if err != nil {
		return secret, fmt.Errorf("crypto: link-code ephemeral agreement: %w", err)
	}
	block, err := aes.NewCipher(linkCodeBundleKey(ephShared, wrappedBundle[:32]))
	if err != nil {
		return secret, fmt.Errorf("crypto: link-code bundle cipher: %w", err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return secret, fmt.Errorf("crypto: link-code bundle cipher: %w", err)
	}
	plain, err := gcm.Open(nil, wrappedBundle[32:44], wrappedBundle[44:], nil)
	if err != nil {
		return secret, ErrLinkCodeBundle
	}
	if subtle.ConstantTimeCompare(plain[:32], companionIdentityPub) != 1 ||
		subtle.ConstantTimeCompare(plain[32:64], identity.Pub[:]) != 1 {
		return secret, ErrLinkCodeKeys
	}
	identityShared, err := identity.DH(companionIdentityPub)
	if err != nil {
		return secret, fmt.Errorf("crypto: link-code identity agreement: %w", err)
	}
	return LinkCodeADVSecret(ephShared, identityShared, [32]byte(plain[64:96])), nil
}
