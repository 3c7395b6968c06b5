package connection

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/payload"
)

// signedPreKeyID is the ID of the one signed prekey a device creates.
const signedPreKeyID = 1

// NewDevice creates the key material of a fresh, unpaired device
// (PROTOCOL.md 5.2): noise key, identity key, signed prekey 1 signed by the
// identity key over 05 || pub, a 14-bit registration ID and a 32-byte ADV
// secret.
func NewDevice(id string) (*store.Device, error) {
	noise, err := crypto.GenerateKeyPair()
	if err != nil {
		return nil, fmt.Errorf("noise key: %w", err)
	}
	identity, err := crypto.GenerateKeyPair()
	if err != nil {
		return nil, fmt.Errorf("identity key: %w", err)
	}
	prekey, err := crypto.GenerateKeyPair()
	if err != nil {
		return nil, fmt.Errorf("signed prekey: %w", err)
	}
	sig, err := crypto.Sign(identity, append([]byte{0x05}, prekey.Pub[:]...))
	if err != nil {
		return nil, fmt.Errorf("sign prekey: %w", err)
	}
	var rnd [2 + 32]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("random: %w", err)
	}
	d := &store.Device{
		ID:             id,
		NoiseKey:       store.KeyPair{Priv: noise.Priv, Pub: noise.Pub},
		IdentityKey:    store.KeyPair{Priv: identity.Priv, Pub: identity.Pub},
		SignedPreKey:   store.SignedPreKey{ID: signedPreKeyID, KeyPair: store.KeyPair{Priv: prekey.Priv, Pub: prekey.Pub}, Signature: sig},
		RegistrationID: uint32(binary.BigEndian.Uint16(rnd[:2])&0x3FFF) | 1,
	}
	copy(d.AdvSecret[:], rnd[2:])
	return d, nil
}

// clientPayload builds the serialized ClientPayload for d: login when it is
// paired, registration otherwise.
func clientPayload(d *store.Device, v payload.Version, props payload.DeviceProps) ([]byte, error) {
	if d.Paired() {
		j, err := jid.Parse(d.JID)
		if err != nil {
			return nil, fmt.Errorf("device jid: %w", err)
		}
		user, err := j.UserInt()
		if err != nil {
			return nil, fmt.Errorf("device jid: %w", err)
		}
		p, err := payload.Login(payload.LoginData{Username: user, Device: uint32(j.Device), Version: v})
		if err != nil {
			return nil, fmt.Errorf("login payload: %w", err)
		}
		return proto.Marshal(p)
	}
	p, err := payload.Registration(payload.RegistrationData{
		RegistrationID:  d.RegistrationID,
		IdentityPub:     d.IdentityKey.Pub,
		SignedPreKeyID:  d.SignedPreKey.ID,
		SignedPreKeyPub: d.SignedPreKey.Pub,
		SignedPreKeySig: d.SignedPreKey.Signature,
		Version:         v,
		DeviceProps:     props,
	})
	if err != nil {
		return nil, fmt.Errorf("registration payload: %w", err)
	}
	return proto.Marshal(p)
}
