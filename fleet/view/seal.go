package view

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// A QR code crosses Redis sealed: the requester sends a one-time X25519
// public key, the owner answers with its own one-time public key, a nonce
// and the code sealed with AES-256-GCM under a key derived (HKDF-SHA256)
// from their shared secret and the request id. Only the two processes can
// open it; Redis, its AOF and its replicas see ciphertext.

const (
	pubLen   = 32
	nonceLen = 12
)

var errSealed = errors.New("sealed QR code does not open")

func newSealKey() (*ecdh.PrivateKey, error) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("view: one-time key: %w", err)
	}
	return k, nil
}

// aead derives the sealing key of request id from the shared secret.
func aead(shared []byte, id string) (cipher.AEAD, error) {
	key, err := hkdf.Key(sha256.New, shared, nil, "wafleet qr "+id, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal seals qr for the requester's public key peer.
func seal(peer []byte, id, qr string) ([]byte, error) {
	pub, err := ecdh.X25519().NewPublicKey(peer)
	if err != nil {
		return nil, fmt.Errorf("requester's key: %w", err)
	}
	mine, err := newSealKey()
	if err != nil {
		return nil, err
	}
	shared, err := mine.ECDH(pub)
	if err != nil {
		return nil, err
	}
	g, err := aead(shared, id)
	if err != nil {
		return nil, err
	}
	out := append([]byte{}, mine.PublicKey().Bytes()...)
	nonce := make([]byte, nonceLen)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out = append(out, nonce...)
	return g.Seal(out, nonce, []byte(qr), []byte(id)), nil
}

// open opens what seal sealed for key.
func open(key *ecdh.PrivateKey, id string, sealed []byte) (string, error) {
	if len(sealed) < pubLen+nonceLen {
		return "", errSealed
	}
	pub, err := ecdh.X25519().NewPublicKey(sealed[:pubLen])
	if err != nil {
		return "", errSealed
	}
	shared, err := key.ECDH(pub)
	if err != nil {
		return "", errSealed
	}
	g, err := aead(shared, id)
	if err != nil {
		return "", errSealed
	}
	plain, err := g.Open(nil, sealed[pubLen:pubLen+nonceLen], sealed[pubLen+nonceLen:], []byte(id))
	if err != nil {
		return "", errSealed
	}
	return string(plain), nil
}
