package signal

import (
	"bytes"
	"fmt"

	"github.com/wafleet/wafleet/crypto"
)

// Bundle is a peer device's prekey bundle, as the server hands it out for
// us to start a session.
type Bundle struct {
	RegistrationID        uint32
	IdentityKey           [32]byte
	SignedPreKeyID        uint32
	SignedPreKey          [32]byte
	SignedPreKeySignature [64]byte // by IdentityKey over 0x05 || SignedPreKey
	PreKeyID              uint32
	PreKey                *[32]byte // the one-time prekey; nil when the server had none left
}

// ResponderKeys are our keys a PreKeySignalMessage names, looked up by the
// caller from its SignedPreKeyID and PreKeyID.
type ResponderKeys struct {
	Local        LocalIdentity
	SignedPreKey *crypto.KeyPair
	PreKey       *crypto.KeyPair // nil when the message names none (HasPreKeyID false)
}

// discontinuity opens the X3DH master secret: 32 bytes of 0xFF (the
// Curve25519 "discontinuity bytes" of the X3DH specification).
var discontinuity = bytes.Repeat([]byte{0xff}, 32)

// x3dh derives the first root and chain keys from the DH results:
// HKDF(0xFF×32 || DH1 || DH2 || DH3 [|| DH4], no salt, "WhisperText") → 64
// bytes, root key || chain key.
func x3dh(dhs ...[32]byte) (root, ck [32]byte) {
	secret := make([]byte, 0, 32*5)
	secret = append(secret, discontinuity...)
	for i := range dhs {
		secret = append(secret, dhs[i][:]...)
	}
	var out [64]byte
	hkdfInto(out[:], secret, nil, infoText)
	clear(secret)
	copy(root[:], out[:32])
	copy(ck[:], out[32:])
	return root, ck
}

// Initiate starts a new session from a peer's bundle (we send first): it
// checks the signed prekey's signature, runs X3DH with fresh base and ratchet
// keys, and makes the result the current state, archiving the previous one.
// Until the peer answers, Encrypt sends TypePreKey messages. Whether the
// bundle's identity key is to be trusted is the caller's decision.
func (s *Session) Initiate(local LocalIdentity, b *Bundle) error {
	base, err := crypto.GenerateKeyPair()
	if err != nil {
		return err
	}
	ratchet, err := crypto.GenerateKeyPair()
	if err != nil {
		return err
	}
	st, err := initiatorState(local, b, base, ratchet)
	if err != nil {
		return err
	}
	s.install(st)
	return nil
}

// initiatorState is Initiate's X3DH with the base and first ratchet key
// given: DH1 = DH(our identity, their signed prekey), DH2 = DH(base, their
// identity), DH3 = DH(base, signed prekey), DH4 = DH(base, one-time prekey).
func initiatorState(local LocalIdentity, b *Bundle, base, ratchet *crypto.KeyPair) (*sessionState, error) {
	if !crypto.Verify(b.IdentityKey[:], SerializeKey(b.SignedPreKey), b.SignedPreKeySignature[:]) {
		return nil, fmt.Errorf("%w: signed prekey %d", ErrBadSignature, b.SignedPreKeyID)
	}
	dh := func(kp *crypto.KeyPair, pub []byte, what string) ([32]byte, error) {
		out, err := kp.DH(pub)
		if err != nil {
			return out, fmt.Errorf("x3dh %s: %w", what, err)
		}
		return out, nil
	}
	dh1, err := dh(local.Key, b.SignedPreKey[:], "signed prekey")
	if err != nil {
		return nil, err
	}
	dh2, err := dh(base, b.IdentityKey[:], "identity key")
	if err != nil {
		return nil, err
	}
	dh3, _ := base.DH(b.SignedPreKey[:]) // the key passed the check of dh1
	dhs := [][32]byte{dh1, dh2, dh3}
	p := &pendingPreKey{signedPreKeyID: b.SignedPreKeyID}
	if b.PreKey != nil {
		dh4, err := dh(base, b.PreKey[:], "one-time prekey")
		if err != nil {
			return nil, err
		}
		dhs = append(dhs, dh4)
		p.preKeyID, p.hasPreKeyID = b.PreKeyID, true
	}
	root, ck := x3dh(dhs...)

	// Their signed prekey is their first ratchet key: our receiving chain
	// for it is the X3DH chain, and our first sending chain comes from a
	// ratchet step with our first ratchet key.
	dh5, _ := ratchet.DH(b.SignedPreKey[:])
	nextRoot, sendCK := rootStep(&root, &dh5)
	return &sessionState{
		localIdentity:  local.Key.Pub,
		remoteIdentity: b.IdentityKey,
		localRegID:     local.RegistrationID,
		remoteRegID:    b.RegistrationID,
		baseKey:        base.Pub,
		root:           nextRoot,
		sendRatchet:    *ratchet,
		send:           chain{key: sendCK},
		receivers:      []receiverChain{{ratchet: b.SignedPreKey, keyChain: keyChain{chain: chain{key: ck}}}},
		pending:        p,
	}, nil
}

// responderState is the X3DH of the side that receives a pkmsg: the same
// four DH values from the other ends. Our signed prekey is our first ratchet
// key, with the X3DH chain as its (unused) sending chain; the message's own
// ratchet key makes the first ratchet step when it is decrypted.
func responderState(keys *ResponderKeys, m *PreKeySignalMessage) (*sessionState, error) {
	dh1, err := keys.SignedPreKey.DH(m.IdentityKey[:])
	if err != nil {
		return nil, fmt.Errorf("x3dh identity key: %w", err)
	}
	dh2, err := keys.Local.Key.DH(m.BaseKey[:])
	if err != nil {
		return nil, fmt.Errorf("x3dh base key: %w", err)
	}
	dh3, _ := keys.SignedPreKey.DH(m.BaseKey[:]) // the key passed the check of dh2
	dhs := [][32]byte{dh1, dh2, dh3}
	if keys.PreKey != nil {
		dh4, _ := keys.PreKey.DH(m.BaseKey[:])
		dhs = append(dhs, dh4)
	}
	root, ck := x3dh(dhs...)
	return &sessionState{
		localIdentity:  keys.Local.Key.Pub,
		remoteIdentity: m.IdentityKey,
		localRegID:     keys.Local.RegistrationID,
		remoteRegID:    m.RegistrationID,
		baseKey:        m.BaseKey,
		root:           root,
		sendRatchet:    *keys.SignedPreKey,
		send:           chain{key: ck},
	}, nil
}

// DecryptPreKey decrypts a "pkmsg". When a state was already built from the
// message's base key (the peer repeats its pkmsg until we answer, and a
// message may come twice), the inner message is decrypted under it and keys
// is not used. Otherwise keys must hold our signed prekey and, when the
// message names one (HasPreKeyID), the one-time prekey (else
// ErrMissingPreKey); the new state becomes current, archiving the previous
// one, only if the inner message decrypts. The caller then deletes the
// one-time prekey, and decides whether the sender's identity key is to be
// trusted.
func (s *Session) DecryptPreKey(m *PreKeySignalMessage, keys ResponderKeys) ([]byte, error) {
	for i, st := range s.states {
		if st.baseKey == m.BaseKey && st.remoteIdentity == m.IdentityKey {
			plaintext, err := st.decrypt(m.Message)
			if err != nil {
				return nil, err
			}
			s.promote(i)
			return plaintext, nil
		}
	}
	if keys.Local.Key == nil || keys.SignedPreKey == nil {
		return nil, fmt.Errorf("%w: no identity or signed prekey %d given", ErrMissingPreKey, m.SignedPreKeyID)
	}
	if m.HasPreKeyID != (keys.PreKey != nil) {
		return nil, fmt.Errorf("%w: message names prekey %d (%t), given %t",
			ErrMissingPreKey, m.PreKeyID, m.HasPreKeyID, keys.PreKey != nil)
	}
	st, err := responderState(&keys, m)
	if err != nil {
		return nil, err
	}
	plaintext, err := st.decrypt(m.Message)
	if err != nil {
		return nil, err
	}
	s.install(st)
	return plaintext, nil
}
