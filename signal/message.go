package signal

import (
	"crypto/hmac"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/waproto"
)

const (
	// currentVersion is the message version WhatsApp's clients speak.
	currentVersion = 3
	// versionByte opens every serialized message: the message version in
	// the high nibble, the highest version the sender supports in the low
	// one, both 3.
	versionByte = currentVersion<<4 | currentVersion
	// macLen is the length of a SignalMessage's truncated HMAC-SHA256.
	macLen = 8
	// signatureLen is the length of a SenderKeyMessage's signature.
	signatureLen = 64
)

// checkVersion accepts a version byte whose high nibble, the message's
// version, is 3; libsignal ignores the low nibble when reading.
func checkVersion(b byte) error {
	if b>>4 != currentVersion {
		return fmt.Errorf("%w: 0x%02x", ErrVersion, b)
	}
	return nil
}

// SignalMessage is a parsed 1:1 message (enc type "msg"): version byte ||
// protobuf SignalMessage || 8-byte MAC.
type SignalMessage struct {
	RatchetKey      [32]byte // the sender's current ratchet public key
	Counter         uint32   // the message's index in the sender's chain
	PreviousCounter uint32   // the last index of the sender's previous chain
	Ciphertext      []byte

	signed []byte       // version byte || protobuf: what the MAC covers
	mac    [macLen]byte // as received
}

// ParseSignalMessage parses a "msg" body. It checks the form only; the MAC
// is checked by Session.Decrypt, which knows the keys. The result points
// into b.
func ParseSignalMessage(b []byte) (*SignalMessage, error) {
	if len(b) < 1+macLen {
		return nil, fmt.Errorf("%w: message of %d bytes", ErrMalformed, len(b))
	}
	if err := checkVersion(b[0]); err != nil {
		return nil, err
	}
	signed := b[:len(b)-macLen]
	var pb waproto.SignalMessage
	if err := proto.Unmarshal(signed[1:], &pb); err != nil {
		return nil, fmt.Errorf("%w: SignalMessage: %w", ErrMalformed, err)
	}
	if pb.Ciphertext == nil {
		return nil, fmt.Errorf("%w: SignalMessage has no ciphertext", ErrMalformed)
	}
	key, err := parseKey(pb.RatchetKey, "ratchet key")
	if err != nil {
		return nil, err
	}
	return &SignalMessage{
		RatchetKey:      key,
		Counter:         pb.GetCounter(),
		PreviousCounter: pb.GetPreviousCounter(),
		Ciphertext:      pb.Ciphertext,
		signed:          signed,
		mac:             [macLen]byte(b[len(b)-macLen:]),
	}, nil
}

// verifyMAC checks the message's MAC: HMAC-SHA256(macKey, sender identity
// (33 bytes) || receiver identity (33 bytes) || version byte || protobuf),
// truncated to 8 bytes, compared in constant time.
func (m *SignalMessage) verifyMAC(macKey *[32]byte, sender, receiver *[32]byte) bool {
	var ids [2 * keyLen]byte
	appendKey(appendKey(ids[:0], sender), receiver)
	want := truncatedMAC(macKey, ids[:], m.signed)
	return hmac.Equal(want[:], m.mac[:])
}

// marshalSignalMessage builds a "msg" body and its MAC.
func marshalSignalMessage(ratchet *[32]byte, counter, previous uint32, ciphertext []byte,
	macKey *[32]byte, sender, receiver *[32]byte) []byte {
	pb, err := proto.Marshal(&waproto.SignalMessage{
		RatchetKey:      SerializeKey(*ratchet),
		Counter:         proto.Uint32(counter),
		PreviousCounter: proto.Uint32(previous),
		Ciphertext:      ciphertext,
	})
	if err != nil {
		panic("signal: marshal SignalMessage: " + err.Error()) // cannot happen: no required fields
	}
	b := make([]byte, 0, 1+len(pb)+macLen)
	b = append(append(b, versionByte), pb...)
	var ids [2 * keyLen]byte
	appendKey(appendKey(ids[:0], sender), receiver)
	mac := truncatedMAC(macKey, ids[:], b)
	return append(b, mac[:]...)
}

// PreKeySignalMessage is a parsed session-starting message (enc type
// "pkmsg"): version byte || protobuf PreKeySignalMessage, whose message
// field is a whole SignalMessage.
type PreKeySignalMessage struct {
	RegistrationID uint32
	// PreKeyID names the one-time prekey the sender used, when HasPreKeyID.
	// go.mau.fi/libsignal reads an ID of 0 as absent; this reads the field's
	// presence, as libsignal-node and libsignal do.
	PreKeyID       uint32
	HasPreKeyID    bool
	SignedPreKeyID uint32
	BaseKey        [32]byte // the sender's X3DH ephemeral key
	IdentityKey    [32]byte // the sender's identity key
	Message        *SignalMessage
}

// ParsePreKeySignalMessage parses a "pkmsg" body, the inner SignalMessage
// included. The result points into b.
func ParsePreKeySignalMessage(b []byte) (*PreKeySignalMessage, error) {
	if len(b) < 1 {
		return nil, fmt.Errorf("%w: empty prekey message", ErrMalformed)
	}
	if err := checkVersion(b[0]); err != nil {
		return nil, err
	}
	var pb waproto.PreKeySignalMessage
	if err := proto.Unmarshal(b[1:], &pb); err != nil {
		return nil, fmt.Errorf("%w: PreKeySignalMessage: %w", ErrMalformed, err)
	}
	m := &PreKeySignalMessage{
		RegistrationID: pb.GetRegistrationId(),
		PreKeyID:       pb.GetPreKeyId(),
		HasPreKeyID:    pb.PreKeyId != nil,
		SignedPreKeyID: pb.GetSignedPreKeyId(),
	}
	var err error
	if m.BaseKey, err = parseKey(pb.BaseKey, "base key"); err != nil {
		return nil, err
	}
	if m.IdentityKey, err = parseKey(pb.IdentityKey, "identity key"); err != nil {
		return nil, err
	}
	if m.Message, err = ParseSignalMessage(pb.Message); err != nil {
		return nil, fmt.Errorf("prekey message: %w", err)
	}
	return m, nil
}

// marshalPreKeySignalMessage wraps a "msg" body into a "pkmsg" body.
func marshalPreKeySignalMessage(regID uint32, p *pendingPreKey, baseKey, identity *[32]byte, inner []byte) []byte {
	pb := &waproto.PreKeySignalMessage{
		RegistrationId: proto.Uint32(regID),
		SignedPreKeyId: proto.Uint32(p.signedPreKeyID),
		BaseKey:        SerializeKey(*baseKey),
		IdentityKey:    SerializeKey(*identity),
		Message:        inner,
	}
	if p.hasPreKeyID {
		pb.PreKeyId = proto.Uint32(p.preKeyID)
	}
	raw, err := proto.Marshal(pb)
	if err != nil {
		panic("signal: marshal PreKeySignalMessage: " + err.Error()) // cannot happen: no required fields
	}
	return append([]byte{versionByte}, raw...)
}

// SenderKeyMessage is a parsed group message (enc type "skmsg"): version
// byte || protobuf SenderKeyMessage || 64-byte signature by the sender's
// signing key over everything before it.
type SenderKeyMessage struct {
	KeyID      uint32
	Iteration  uint32
	Ciphertext []byte

	signed    []byte // version byte || protobuf: what the signature covers
	signature []byte
}

// ParseSenderKeyMessage parses an "skmsg" body. The signature is checked by
// SenderKey.Decrypt, which knows the signing key. The result points into b.
func ParseSenderKeyMessage(b []byte) (*SenderKeyMessage, error) {
	if len(b) < 1+signatureLen {
		return nil, fmt.Errorf("%w: sender-key message of %d bytes", ErrMalformed, len(b))
	}
	if err := checkVersion(b[0]); err != nil {
		return nil, err
	}
	signed := b[:len(b)-signatureLen]
	var pb waproto.SenderKeyMessage
	if err := proto.Unmarshal(signed[1:], &pb); err != nil {
		return nil, fmt.Errorf("%w: SenderKeyMessage: %w", ErrMalformed, err)
	}
	if pb.Ciphertext == nil {
		return nil, fmt.Errorf("%w: SenderKeyMessage has no ciphertext", ErrMalformed)
	}
	return &SenderKeyMessage{
		KeyID:      pb.GetId(),
		Iteration:  pb.GetIteration(),
		Ciphertext: pb.Ciphertext,
		signed:     signed,
		signature:  b[len(b)-signatureLen:],
	}, nil
}

// marshalSenderKeyMessage returns version byte || protobuf, to be signed.
func marshalSenderKeyMessage(keyID, iteration uint32, ciphertext []byte) []byte {
	raw, err := proto.Marshal(&waproto.SenderKeyMessage{
		Id:         proto.Uint32(keyID),
		Iteration:  proto.Uint32(iteration),
		Ciphertext: ciphertext,
	})
	if err != nil {
		panic("signal: marshal SenderKeyMessage: " + err.Error()) // cannot happen: no required fields
	}
	b := make([]byte, 0, 1+len(raw)+signatureLen)
	return append(append(b, versionByte), raw...)
}

// SenderKeyDistribution is a parsed sender-key distribution message: what a
// group member sends each other device (inside a 1:1 message) so that they
// can read its group messages. Version byte || protobuf, no MAC or
// signature: the 1:1 session that carries it authenticates it.
type SenderKeyDistribution struct {
	KeyID      uint32
	Iteration  uint32   // the chain key's iteration
	ChainKey   [32]byte // secret: never logged
	SigningKey [32]byte // the public key that signs the sender's messages
}

// ParseSenderKeyDistribution parses a serialized distribution message.
func ParseSenderKeyDistribution(b []byte) (*SenderKeyDistribution, error) {
	if len(b) < 1 {
		return nil, fmt.Errorf("%w: empty distribution message", ErrMalformed)
	}
	if err := checkVersion(b[0]); err != nil {
		return nil, err
	}
	var pb waproto.SenderKeyDistributionMessage
	if err := proto.Unmarshal(b[1:], &pb); err != nil {
		return nil, fmt.Errorf("%w: SenderKeyDistributionMessage: %w", ErrMalformed, err)
	}
	if len(pb.ChainKey) != 32 {
		return nil, fmt.Errorf("%w: chain key of %d bytes", ErrMalformed, len(pb.ChainKey))
	}
	d := &SenderKeyDistribution{KeyID: pb.GetId(), Iteration: pb.GetIteration(), ChainKey: [32]byte(pb.ChainKey)}
	var err error
	if d.SigningKey, err = parseKey(pb.SigningKey, "signing key"); err != nil {
		return nil, err
	}
	return d, nil
}

// Marshal serializes the distribution message.
func (d *SenderKeyDistribution) Marshal() []byte {
	raw, err := proto.Marshal(&waproto.SenderKeyDistributionMessage{
		Id:         proto.Uint32(d.KeyID),
		Iteration:  proto.Uint32(d.Iteration),
		ChainKey:   d.ChainKey[:],
		SigningKey: SerializeKey(d.SigningKey),
	})
	if err != nil {
		panic("signal: marshal SenderKeyDistributionMessage: " + err.Error()) // cannot happen: no required fields
	}
	return append([]byte{versionByte}, raw...)
}

// String keeps the chain key out of %v and logs.
func (d SenderKeyDistribution) String() string {
	return fmt.Sprintf("SenderKeyDistribution(id=%d, iteration=%d)", d.KeyID, d.Iteration)
}

// GoString keeps the chain key out of %#v.
func (d SenderKeyDistribution) GoString() string { return d.String() }
