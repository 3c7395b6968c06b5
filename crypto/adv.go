package crypto

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/waproto"
)

// ADV (account-device verification) checks of QR pairing, PROTOCOL.md 8.6.
// The client verifies the primary phone's HMAC container and account
// signature and adds its device signature; the phone side (the emulator)
// makes the container and checks the reply. Errors map to pairing replies:
// ErrADVMalformed → 500 internal-error, ErrADVHMACMismatch → 401
// hmac-mismatch, ErrADVSignatureMismatch → 401 signature-mismatch.

// Two-byte prefixes of the signed and MACed messages.
var (
	advPrefixAccount = []byte{0x06, 0x00}
	advPrefixDevice  = []byte{0x06, 0x01}
	advPrefixHosted  = []byte{0x06, 0x05}
)

// advMAC is HMAC-SHA256(secret, P || details), P = 06 05 for HOSTED accounts.
func advMAC(secret, details []byte, accountType waproto.ADVEncryptionType) []byte {
	m := hmac.New(sha256.New, secret)
	if accountType == waproto.ADVEncryptionType_HOSTED {
		m.Write(advPrefixHosted)
	}
	m.Write(details)
	return m.Sum(nil)
}

// advAccountMessage is Q || details || companion identity key, Q = 06 05
// for a HOSTED device, else 06 00.
func advAccountMessage(deviceType waproto.ADVEncryptionType, details, companionIdentityPub []byte) []byte {
	q := advPrefixAccount
	if deviceType == waproto.ADVEncryptionType_HOSTED {
		q = advPrefixHosted
	}
	return concat(q, details, companionIdentityPub)
}

// advDeviceMessage is 06 01 || details || companion identity key || account key.
func advDeviceMessage(details, companionIdentityPub, accountKey []byte) []byte {
	return concat(advPrefixDevice, details, companionIdentityPub, accountKey)
}

func concat(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// VerifyADVContainer parses the <device-identity> bytes of pair-success (an
// ADVSignedDeviceIdentityHMAC), checks its HMAC with the ADV secret in
// constant time, and returns the signed identity and the device identity it
// carries. sdi.Details keeps the raw bytes that were signed.
func VerifyADVContainer(container, advSecret []byte) (sdi *waproto.ADVSignedDeviceIdentity, di *waproto.ADVDeviceIdentity, err error) {
	var c waproto.ADVSignedDeviceIdentityHMAC
	if err := proto.Unmarshal(container, &c); err != nil {
		return nil, nil, fmt.Errorf("parse ADV container: %w", ErrADVMalformed)
	}
	if !hmac.Equal(advMAC(advSecret, c.GetDetails(), c.GetAccountType()), c.GetHMAC()) {
		return nil, nil, ErrADVHMACMismatch
	}
	sdi = new(waproto.ADVSignedDeviceIdentity)
	if err := proto.Unmarshal(c.GetDetails(), sdi); err != nil {
		return nil, nil, fmt.Errorf("parse ADV signed identity: %w", ErrADVMalformed)
	}
	di = new(waproto.ADVDeviceIdentity)
	if err := proto.Unmarshal(sdi.GetDetails(), di); err != nil {
		return nil, nil, fmt.Errorf("parse ADV device identity: %w", ErrADVMalformed)
	}
	return sdi, di, nil
}

// VerifyADVAccountSignature checks the primary's account signature over
// Q || sdi.Details || companionIdentityPub with sdi.AccountSignatureKey.
// Every failure is ErrADVSignatureMismatch; a key of small order is also
// ErrLowOrderKey.
func VerifyADVAccountSignature(sdi *waproto.ADVSignedDeviceIdentity, di *waproto.ADVDeviceIdentity, companionIdentityPub []byte) error {
	key, sig := sdi.GetAccountSignatureKey(), sdi.GetAccountSignature()
	if len(key) != 32 || len(sig) != 64 {
		return fmt.Errorf("account key %d bytes, signature %d bytes: %w", len(key), len(sig), ErrADVSignatureMismatch)
	}
	if err := CheckPublicKey(key); err != nil {
		return fmt.Errorf("account signature key: %w: %w", err, ErrADVSignatureMismatch)
	}
	if !Verify(key, advAccountMessage(di.GetDeviceType(), sdi.GetDetails(), companionIdentityPub), sig) {
		return ErrADVSignatureMismatch
	}
	return nil
}

// SignADVDevice sets sdi.DeviceSignature: the companion identity key's
// signature over 06 01 || sdi.Details || identity pub || account key.
func SignADVDevice(sdi *waproto.ADVSignedDeviceIdentity, identity *KeyPair) error {
	sig, err := Sign(identity, advDeviceMessage(sdi.GetDetails(), identity.Pub[:], sdi.GetAccountSignatureKey()))
	if err != nil {
		return fmt.Errorf("device signature: %w", err)
	}
	sdi.DeviceSignature = sig[:]
	return nil
}

// ADVReply serializes the identity for pair-device-sign: a copy of sdi
// without accountSignatureKey. keyIndex is di.KeyIndex (0 if unset).
func ADVReply(sdi *waproto.ADVSignedDeviceIdentity, di *waproto.ADVDeviceIdentity) (reply []byte, keyIndex uint32, err error) {
	c := proto.CloneOf(sdi)
	c.AccountSignatureKey = nil
	if reply, err = proto.Marshal(c); err != nil {
		return nil, 0, fmt.Errorf("marshal ADV reply: %w", ErrADVMalformed)
	}
	return reply, di.GetKeyIndex(), nil
}

// ADVPairing is the outcome of the client's ADV procedure.
type ADVPairing struct {
	// Account is the record to persist: details, accountSignatureKey,
	// accountSignature and the new deviceSignature.
	Account *waproto.ADVSignedDeviceIdentity
	Device  *waproto.ADVDeviceIdentity
	// Reply is the <device-identity> content of pair-device-sign and
	// KeyIndex its key-index attribute.
	Reply    []byte
	KeyIndex uint32
}

// VerifyADVPairing runs the whole client procedure on pair-success's
// <device-identity> bytes: HMAC, account signature, device signature with
// the companion identity key, reply.
func VerifyADVPairing(container, advSecret []byte, identity *KeyPair) (*ADVPairing, error) {
	sdi, di, err := VerifyADVContainer(container, advSecret)
	if err != nil {
		return nil, err
	}
	if err := VerifyADVAccountSignature(sdi, di, identity.Pub[:]); err != nil {
		return nil, err
	}
	if err := SignADVDevice(sdi, identity); err != nil {
		return nil, err
	}
	reply, keyIndex, err := ADVReply(sdi, di)
	if err != nil {
		return nil, err
	}
	return &ADVPairing{Account: sdi, Device: di, Reply: reply, KeyIndex: keyIndex}, nil
}

// SignADVAccount is the phone's side: it serializes di and signs it for the
// companion with the primary's identity key (prefix 06 05 if di.DeviceType
// is HOSTED, else 06 00). The result has details, accountSignatureKey and
// accountSignature; marshal it and pass it to MakeADVContainer.
func SignADVAccount(primary *KeyPair, di *waproto.ADVDeviceIdentity, companionIdentityPub []byte) (*waproto.ADVSignedDeviceIdentity, error) {
	details, err := proto.MarshalOptions{Deterministic: true}.Marshal(di)
	if err != nil {
		return nil, fmt.Errorf("marshal ADV device identity: %w", ErrADVMalformed)
	}
	sig, err := Sign(primary, advAccountMessage(di.GetDeviceType(), details, companionIdentityPub))
	if err != nil {
		return nil, fmt.Errorf("account signature: %w", err)
	}
	return &waproto.ADVSignedDeviceIdentity{
		Details:             details,
		AccountSignatureKey: append([]byte(nil), primary.Pub[:]...),
		AccountSignature:    sig[:],
	}, nil
}

// MakeADVContainer wraps serialized ADVSignedDeviceIdentity bytes in the
// HMAC container sent in pair-success. accountType E2EE leaves the field
// unset; HOSTED sets it and MACs with the 06 05 prefix.
func MakeADVContainer(sdiBytes, advSecret []byte, accountType waproto.ADVEncryptionType) ([]byte, error) {
	c := &waproto.ADVSignedDeviceIdentityHMAC{
		Details: sdiBytes,
		HMAC:    advMAC(advSecret, sdiBytes, accountType),
	}
	if accountType != waproto.ADVEncryptionType_E2EE {
		c.AccountType = accountType.Enum()
	}
	out, err := proto.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("marshal ADV container: %w", ErrADVMalformed)
	}
	return out, nil
}

// VerifyADVReply is the phone's check of pair-device-sign's identity: the
// details are the ones it sent, accountSignatureKey is absent, and the
// device signature verifies with the companion identity key.
func VerifyADVReply(reply, details, companionIdentityPub, primaryPub []byte) error {
	var sdi waproto.ADVSignedDeviceIdentity
	if err := proto.Unmarshal(reply, &sdi); err != nil {
		return fmt.Errorf("parse ADV reply: %w", ErrADVMalformed)
	}
	if sdi.AccountSignatureKey != nil {
		return fmt.Errorf("ADV reply carries accountSignatureKey: %w", ErrADVMalformed)
	}
	if !bytes.Equal(sdi.GetDetails(), details) {
		return fmt.Errorf("ADV reply details changed: %w", ErrADVMalformed)
	}
	if !Verify(companionIdentityPub, advDeviceMessage(details, companionIdentityPub, primaryPub), sdi.GetDeviceSignature()) {
		return ErrADVSignatureMismatch
	}
	return nil
}
