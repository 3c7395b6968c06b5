package crypto

import (
	"crypto/subtle"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/waproto"
)

// WhatsAppRootKey is the public Curve25519 key that signs the real servers'
// intermediate certificates (PROTOCOL.md 3.3). Clients talking to the
// emulator pass its test root key to VerifyCertChain instead.
var WhatsAppRootKey = [32]byte{
	0x14, 0x23, 0x75, 0x57, 0x4d, 0x0a, 0x58, 0x71, 0x66, 0xaa, 0xe7, 0x1e, 0xbe, 0x51, 0x64, 0x37,
	0xc4, 0xa2, 0x8b, 0x73, 0xe3, 0x69, 0x5c, 0x6c, 0xe1, 0xf7, 0xf9, 0x54, 0x5d, 0xa8, 0xee, 0x6b,
}

// VerifyCertChain checks the serialized CertChain the server sends in
// ServerHello.payload, in the order of PROTOCOL.md 3.3. Every failure wraps
// its own sentinel (ErrCertMalformed, ErrCertRootSignature, …); both expiry
// sentinels also match ErrCertExpired. A root or intermediate key of small
// order is ErrLowOrderKey. Signatures are checked over the
// details bytes exactly as received.
func VerifyCertChain(chain, rootKey, serverStatic []byte, now time.Time) error {
	var cc waproto.CertChain
	if err := proto.Unmarshal(chain, &cc); err != nil {
		return fmt.Errorf("parse cert chain: %w", ErrCertMalformed)
	}
	inter, leaf := cc.GetIntermediate(), cc.GetLeaf()
	if len(inter.GetDetails()) == 0 || len(leaf.GetDetails()) == 0 {
		return fmt.Errorf("cert details missing: %w", ErrCertMalformed)
	}
	if len(inter.GetSignature()) != 64 || len(leaf.GetSignature()) != 64 {
		return fmt.Errorf("cert signature missing or not 64 bytes: %w", ErrCertMalformed)
	}
	if err := CheckPublicKey(rootKey); err != nil {
		return fmt.Errorf("root key: %w", err)
	}
	if !Verify(rootKey, inter.GetDetails(), inter.GetSignature()) {
		return ErrCertRootSignature
	}
	var id waproto.CertChain_NoiseCertificate_Details
	if err := proto.Unmarshal(inter.GetDetails(), &id); err != nil {
		return fmt.Errorf("parse intermediate details: %w", ErrCertMalformed)
	}
	if id.GetIssuerSerial() != 0 {
		return fmt.Errorf("intermediate issuer serial %d: %w", id.GetIssuerSerial(), ErrCertIntermediateIssuer)
	}
	if len(id.GetKey()) != 32 {
		return fmt.Errorf("intermediate key of %d bytes: %w", len(id.GetKey()), ErrCertIntermediateKey)
	}
	if err := CheckPublicKey(id.GetKey()); err != nil {
		return fmt.Errorf("intermediate key: %w", err)
	}
	if !Verify(id.GetKey(), leaf.GetDetails(), leaf.GetSignature()) {
		return ErrCertLeafSignature
	}
	if !validAt(&id, now) {
		return fmt.Errorf("intermediate valid %d..%d, now %d: %w", id.GetNotBefore(), id.GetNotAfter(), now.Unix(), ErrCertIntermediateExpired)
	}
	var ld waproto.CertChain_NoiseCertificate_Details
	if err := proto.Unmarshal(leaf.GetDetails(), &ld); err != nil {
		return fmt.Errorf("parse leaf details: %w", ErrCertMalformed)
	}
	if ld.GetIssuerSerial() != id.GetSerial() {
		return fmt.Errorf("leaf issuer serial %d, intermediate serial %d: %w", ld.GetIssuerSerial(), id.GetSerial(), ErrCertLeafIssuer)
	}
	if subtle.ConstantTimeCompare(ld.GetKey(), serverStatic) != 1 {
		return ErrCertLeafKeyMismatch
	}
	if !validAt(&ld, now) {
		return fmt.Errorf("leaf valid %d..%d, now %d: %w", ld.GetNotBefore(), ld.GetNotAfter(), now.Unix(), ErrCertLeafExpired)
	}
	return nil
}

// validAt reports notBefore <= now <= notAfter in unix seconds.
func validAt(d *waproto.CertChain_NoiseCertificate_Details, now time.Time) bool {
	u := now.Unix()
	if u < 0 {
		return false
	}
	t := uint64(u)
	return d.GetNotBefore() <= t && t <= d.GetNotAfter()
}

// CertSpec describes one certificate for IssueCertChain. A zero NotBefore or
// NotAfter leaves that field unset (0 on the wire).
type CertSpec struct {
	Serial, IssuerSerial uint32
	Key                  []byte // the certified public key; see IssueCertChain
	NotBefore, NotAfter  time.Time
}

// IssueCertChain builds a serialized CertChain as a server would (the
// emulator): the intermediate's details signed with root, the leaf's with
// intermediate. If intermediateSpec.Key is nil it is intermediate.Pub; the
// leaf key is taken as given (normally the server's static public key).
// Faulty chains come from faulty inputs: another root, a Key that is not the
// signer's, wrong serials, or a window that does not contain now.
func IssueCertChain(root, intermediate *KeyPair, intermediateSpec, leafSpec CertSpec) ([]byte, error) {
	if intermediateSpec.Key == nil {
		intermediateSpec.Key = intermediate.Pub[:]
	}
	inter, err := issueCert(root, intermediateSpec)
	if err != nil {
		return nil, fmt.Errorf("issue intermediate: %w", err)
	}
	leaf, err := issueCert(intermediate, leafSpec)
	if err != nil {
		return nil, fmt.Errorf("issue leaf: %w", err)
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(&waproto.CertChain{Leaf: leaf, Intermediate: inter})
}

func issueCert(signer *KeyPair, spec CertSpec) (*waproto.CertChain_NoiseCertificate, error) {
	d := &waproto.CertChain_NoiseCertificate_Details{
		Serial:       proto.Uint32(spec.Serial),
		IssuerSerial: proto.Uint32(spec.IssuerSerial),
		Key:          spec.Key,
		NotBefore:    unixField(spec.NotBefore),
		NotAfter:     unixField(spec.NotAfter),
	}
	details, err := proto.MarshalOptions{Deterministic: true}.Marshal(d)
	if err != nil {
		return nil, err
	}
	sig, err := Sign(signer, details)
	if err != nil {
		return nil, err
	}
	return &waproto.CertChain_NoiseCertificate{Details: details, Signature: sig[:]}, nil
}

func unixField(t time.Time) *uint64 {
	if t.IsZero() || t.Unix() < 0 {
		return nil
	}
	return proto.Uint64(uint64(t.Unix()))
}
