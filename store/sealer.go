package store

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
)

// Sealer encrypts the secret part of a record at rest (private keys and ADV
// secret). Open must fail with an error wrapping ErrWrongKey when the data
// was sealed under another key, and ErrCorrupt when it was altered; it must
// never return garbage. Implementations are safe for concurrent use.
type Sealer interface {
	Seal(plain []byte) ([]byte, error)
	Open(sealed []byte) ([]byte, error)
}

// Layout of an AESSealer blob:
//
//	version (1) | key check value (8) | nonce (12) | AES-256-GCM ciphertext+tag
//
// The version byte and key check value are the GCM additional data. The AES
// key and the key check value are derived from the configured key with HKDF
// (SHA-256) under distinct labels, so the check value says nothing about
// the encryption key beyond "same key or not".
const (
	sealVersion   = 1
	sealKCVLen    = 8
	sealNonceLen  = 12
	sealHeaderLen = 1 + sealKCVLen
	sealOverhead  = sealHeaderLen + sealNonceLen + 16

	sealLabelEnc = "wafleet store seal v1 encryption key"
	sealLabelKCV = "wafleet store seal v1 key check value"
)

// AESSealer is a Sealer with AES-256-GCM under a 32-byte key, with a key
// check value so that opening with the wrong key is ErrWrongKey.
type AESSealer struct {
	aead cipher.AEAD
	kcv  [sealKCVLen]byte
}

var _ Sealer = (*AESSealer)(nil)

// NewAESSealer returns a Sealer for a 32-byte key (for example 32 random
// bytes kept in a secret manager). The key is not retained.
func NewAESSealer(key []byte) (*AESSealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("store: sealer key must be 32 bytes, got %d", len(key))
	}
	encKey, err := hkdf.Key(sha256.New, key, nil, sealLabelEnc, 32)
	if err != nil {
		return nil, fmt.Errorf("store: derive sealer key: %w", err)
	}
	kcv, err := hkdf.Key(sha256.New, key, nil, sealLabelKCV, sealKCVLen)
	if err != nil {
		return nil, fmt.Errorf("store: derive key check value: %w", err)
	}
	block, err := aes.NewCipher(encKey)
	if err != nil {
		return nil, fmt.Errorf("store: sealer cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("store: sealer GCM: %w", err)
	}
	s := &AESSealer{aead: aead}
	copy(s.kcv[:], kcv)
	return s, nil
}

// Seal encrypts plain under a fresh random nonce.
func (s *AESSealer) Seal(plain []byte) ([]byte, error) {
	out := make([]byte, sealHeaderLen+sealNonceLen, sealOverhead+len(plain))
	out[0] = sealVersion
	copy(out[1:sealHeaderLen], s.kcv[:])
	nonce := out[sealHeaderLen : sealHeaderLen+sealNonceLen]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("store: seal nonce: %w", err)
	}
	return s.aead.Seal(out, nonce, plain, out[:sealHeaderLen]), nil
}

// Open checks the key check value (ErrWrongKey on mismatch) and decrypts
// (ErrCorrupt when the blob is malformed or fails authentication).
func (s *AESSealer) Open(sealed []byte) ([]byte, error) {
	if len(sealed) < sealOverhead {
		return nil, fmt.Errorf("%w: sealed data is %d bytes, shorter than the %d-byte minimum", ErrCorrupt, len(sealed), sealOverhead)
	}
	if sealed[0] != sealVersion {
		return nil, fmt.Errorf("%w: unknown sealed data version %d", ErrCorrupt, sealed[0])
	}
	if !hmac.Equal(sealed[1:sealHeaderLen], s.kcv[:]) {
		return nil, ErrWrongKey
	}
	nonce := sealed[sealHeaderLen : sealHeaderLen+sealNonceLen]
	plain, err := s.aead.Open(nil, nonce, sealed[sealHeaderLen+sealNonceLen:], sealed[:sealHeaderLen])
	if err != nil {
		return nil, fmt.Errorf("%w: sealed data fails authentication", ErrCorrupt)
	}
	return plain, nil
}
