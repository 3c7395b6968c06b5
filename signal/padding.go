package signal

import (
	"crypto/rand"
	"fmt"
)

// Pad appends WhatsApp's random padding to a serialized Message before it
// is encrypted: n bytes each equal to n, n uniform in 1..16. That is what
// WhatsApp Web's writeRandomPadMax16 does (1 + (random byte & 15)), and
// Baileys now. whatsmeow (and Baileys before) draws random & 15 and turns 0
// into 15, so 1..15 with 15 twice as likely; receivers accept both. Pad
// appends to plaintext's array when it has room.
func Pad(plaintext []byte) []byte {
	var r [1]byte
	_, _ = rand.Read(r[:]) // crypto/rand.Read never fails (Go 1.24+)
	n := int(r[0]&15) + 1
	for range n {
		plaintext = append(plaintext, byte(n))
	}
	return plaintext
}

// Unpad removes the padding of a decrypted message: the last byte n, which
// must be at least 1 and at most the length, and the n last bytes must all
// be n (whatsmeow's check; WhatsApp Web only checks the length). Larger n
// than 16 are accepted, as both do. Messages of <enc v="3"> carry no padding
// and must not be unpadded (whatsmeow). The result shares b's array.
func Unpad(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty message", ErrBadPadding)
	}
	n := int(b[len(b)-1])
	if n == 0 || n > len(b) {
		return nil, fmt.Errorf("%w: pad length %d of a %d-byte message", ErrBadPadding, n, len(b))
	}
	for _, c := range b[len(b)-n:] {
		if int(c) != n {
			return nil, fmt.Errorf("%w: pad bytes differ", ErrBadPadding)
		}
	}
	return b[:len(b)-n], nil
}
