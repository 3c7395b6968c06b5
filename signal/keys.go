package signal

import (
	"errors"
	"fmt"

	"github.com/wafleet/wafleet/crypto"
)

// Sentinel errors of the package. Wrapped errors add context with %w; none
// carries key material, plaintext or ciphertext.
var (
	// ErrMalformed: a message or distribution message does not parse: too
	// short, bad protobuf, a missing field, a key of the wrong form.
	ErrMalformed = errors.New("signal: malformed message")
	// ErrVersion: the version byte is not 0x33 (version 3).
	ErrVersion = errors.New("signal: unsupported message version")
	// ErrBadMAC: a SignalMessage's MAC does not verify under any session
	// state that could have sent it.
	ErrBadMAC = errors.New("signal: message MAC mismatch")
	// ErrBadSignature: a sender-key message's signature, or a prekey
	// bundle's signed-prekey signature, does not verify.
	ErrBadSignature = errors.New("signal: bad signature")
	// ErrDecrypt: the ciphertext is not whole AES blocks or its PKCS#7
	// padding is wrong.
	ErrDecrypt = errors.New("signal: decryption failed")
	// ErrDuplicate: the message's counter (iteration) was already used,
	// or its key was dropped: a replay or a very late message.
	ErrDuplicate = errors.New("signal: message key already used")
	// ErrTooFarAhead: the message would skip more than MaxSkip keys of
	// its chain.
	ErrTooFarAhead = errors.New("signal: message too far ahead in its chain")
	// ErrNoSession: there is no session state to encrypt or decrypt with.
	ErrNoSession = errors.New("signal: no session")
	// ErrNoSenderKey: there is no sender-key state with the message's key
	// ID, or none of ours to encrypt with.
	ErrNoSenderKey = errors.New("signal: no sender key")
	// ErrMissingPreKey: a PreKeySignalMessage names a one-time prekey the
	// caller did not supply, or supplied one it does not name.
	ErrMissingPreKey = errors.New("signal: one-time prekey missing")
	// ErrBadPadding: WhatsApp message padding is missing or wrong.
	ErrBadPadding = errors.New("signal: bad message padding")
	// ErrCorrupt: a stored session or sender-key record does not decode.
	ErrCorrupt = errors.New("signal: corrupt stored state")
)

// keyType is the byte that prefixes a Curve25519 public key on the wire
// (libsignal's DJB_TYPE): ratchet, base, identity and signing keys travel as
// 33 bytes, and the MAC covers the identity keys in that form.
const keyType = 0x05

// keyLen is the length of a serialized public key.
const keyLen = 33

// SerializeKey returns the 33-byte wire form of a public key: 0x05 || pub.
func SerializeKey(pub [32]byte) []byte {
	return appendKey(make([]byte, 0, keyLen), &pub)
}

func appendKey(b []byte, pub *[32]byte) []byte {
	return append(append(b, keyType), pub[:]...)
}

// parseKey reads a 33-byte wire public key. It refuses another length or
// type byte, and keys of small order (crypto.CheckPublicKey). field names
// the key in the error.
func parseKey(b []byte, field string) ([32]byte, error) {
	var pub [32]byte
	if len(b) != keyLen || b[0] != keyType {
		return pub, fmt.Errorf("%w: %s is not a 33-byte type-5 key", ErrMalformed, field)
	}
	if err := crypto.CheckPublicKey(b[1:]); err != nil {
		return pub, fmt.Errorf("%w: %s: %w", ErrMalformed, field, err)
	}
	copy(pub[:], b[1:])
	return pub, nil
}
