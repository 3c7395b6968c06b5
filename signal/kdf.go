package signal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
)

// The KDF labels. Each was checked against go.mau.fi/libsignal and
// WhiskeySockets/libsignal-node, which agree.
const (
	infoText        = "WhisperText"        // X3DH master secret → root key, chain key
	infoRatchet     = "WhisperRatchet"     // root KDF of every DH ratchet step
	infoMessageKeys = "WhisperMessageKeys" // message key seed → cipher key, MAC key, IV
	infoGroup       = "WhisperGroup"       // sender-key message seed → IV, cipher key
)

// The chain step's two HMAC inputs (libsignal's message and chain key seeds).
const (
	seedMessage = 0x01
	seedChain   = 0x02
)

// hkdfInto fills out with HKDF-SHA256(secret, salt, info). A nil salt is
// HKDF's default, 32 zero bytes, which libsignal-node passes explicitly.
func hkdfInto(out, secret, salt []byte, info string) {
	k, err := hkdf.Key(sha256.New, secret, salt, info, len(out))
	if err != nil {
		panic("signal: hkdf of " + info + ": " + err.Error()) // cannot happen: lengths are ≤ 255 × 32
	}
	copy(out, k)
}

// rootStep is the root KDF of a DH ratchet step: HKDF(dh, salt = root key,
// "WhisperRatchet") → the next root key and a new chain key.
func rootStep(root, dh *[32]byte) (nextRoot, chain [32]byte) {
	var out [64]byte
	hkdfInto(out[:], dh[:], root[:], infoRatchet)
	copy(nextRoot[:], out[:32])
	copy(chain[:], out[32:])
	return nextRoot, chain
}

// chainStep advances a symmetric chain: the message key seed is
// HMAC-SHA256(ck, 0x01), the next chain key HMAC-SHA256(ck, 0x02). Sessions
// and sender keys step their chains the same way.
func chainStep(ck *[32]byte) (seed, next [32]byte) {
	return chainHMAC(ck, seedMessage), chainHMAC(ck, seedChain)
}

// chainHMAC is HMAC-SHA256 (RFC 2104) of the one byte b under a 32-byte key,
// written out over sha256.Sum256 so that a chain step allocates nothing: a
// receiver may step a chain MaxSkip times for one message.
func chainHMAC(key *[32]byte, b byte) [32]byte {
	const ipad, opad = 0x36, 0x5c
	var buf [sha256.BlockSize + sha256.Size]byte
	for i := range sha256.BlockSize {
		buf[i] = ipad
	}
	for i, k := range key {
		buf[i] ^= k
	}
	buf[sha256.BlockSize] = b
	inner := sha256.Sum256(buf[:sha256.BlockSize+1])
	for i := range sha256.BlockSize {
		buf[i] ^= ipad ^ opad
	}
	copy(buf[sha256.BlockSize:], inner[:])
	return sha256.Sum256(buf[:])
}

// messageKeys are the keys of one 1:1 message.
type messageKeys struct {
	cipher [32]byte // AES-256-CBC key
	mac    [32]byte // HMAC-SHA256 key of the message MAC
	iv     [16]byte
}

// deriveMessageKeys expands a message key seed: HKDF(seed, no salt,
// "WhisperMessageKeys") → 80 bytes, cipher key 32 || MAC key 32 || IV 16.
func deriveMessageKeys(seed *[32]byte) messageKeys {
	var out [80]byte
	hkdfInto(out[:], seed[:], nil, infoMessageKeys)
	var k messageKeys
	copy(k.cipher[:], out[:32])
	copy(k.mac[:], out[32:64])
	copy(k.iv[:], out[64:])
	return k
}

// senderMessageKeys expands a sender-key message seed: HKDF(seed, no salt,
// "WhisperGroup") → 48 bytes, IV 16 || cipher key 32 (the IV first, unlike
// deriveMessageKeys).
func senderMessageKeys(seed *[32]byte) (iv [16]byte, key [32]byte) {
	var out [48]byte
	hkdfInto(out[:], seed[:], nil, infoGroup)
	copy(iv[:], out[:16])
	copy(key[:], out[16:])
	return iv, key
}

// cbcEncrypt returns AES-256-CBC(key, iv, plaintext || PKCS#7 padding).
func cbcEncrypt(key *[32]byte, iv *[16]byte, plaintext []byte) []byte {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic("signal: aes: " + err.Error()) // cannot happen: the key is 32 bytes
	}
	n := aes.BlockSize - len(plaintext)%aes.BlockSize
	out := make([]byte, len(plaintext)+n)
	copy(out, plaintext)
	for i := len(plaintext); i < len(out); i++ {
		out[i] = byte(n)
	}
	cipher.NewCBCEncrypter(block, iv[:]).CryptBlocks(out, out)
	return out
}

// cbcDecrypt reverses cbcEncrypt into a new slice. A length that is not a
// positive multiple of the block size, or padding that is not 1 to 16 bytes
// each equal to the count, is ErrDecrypt. The padding check does not branch
// on the padding bytes (the MAC or signature has been checked before, so it
// is not an oracle, but it costs nothing).
func cbcDecrypt(key *[32]byte, iv *[16]byte, ciphertext []byte) ([]byte, error) {
	if len(ciphertext) == 0 || len(ciphertext)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("%w: ciphertext of %d bytes is not whole AES blocks", ErrDecrypt, len(ciphertext))
	}
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic("signal: aes: " + err.Error()) // cannot happen: the key is 32 bytes
	}
	out := make([]byte, len(ciphertext))
	cipher.NewCBCDecrypter(block, iv[:]).CryptBlocks(out, ciphertext)
	n := int(out[len(out)-1])
	good := subtle.ConstantTimeLessOrEq(1, n) & subtle.ConstantTimeLessOrEq(n, aes.BlockSize)
	last := out[len(out)-aes.BlockSize:]
	for i := range last {
		// Byte i of the last block is padding when i+n >= 16.
		inPad := subtle.ConstantTimeLessOrEq(aes.BlockSize, i+n)
		good &= subtle.ConstantTimeSelect(inPad, subtle.ConstantTimeByteEq(last[i], byte(n)), 1)
	}
	if good != 1 {
		return nil, fmt.Errorf("%w: bad PKCS#7 padding", ErrDecrypt)
	}
	return out[:len(out)-n], nil
}

// truncatedMAC is the first 8 bytes of HMAC-SHA256(key, parts...).
func truncatedMAC(key *[32]byte, parts ...[]byte) [macLen]byte {
	m := hmac.New(sha256.New, key[:])
	for _, p := range parts {
		m.Write(p)
	}
	var sum [32]byte
	m.Sum(sum[:0])
	return [macLen]byte(sum[:macLen])
}
