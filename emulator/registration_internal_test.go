package emulator

import (
	"errors"
	"testing"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/waproto"
)

func TestParseRegistrationRefusesSmallOrderKeys(t *testing.T) {
	identity, err := crypto.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	skey, err := crypto.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	// registration signs the signed prekey value with the identity key, as
	// a client does, so only the key under test is wrong.
	registration := func(ident, skeyVal []byte) *waproto.ClientPayload_DevicePairingRegistrationData {
		sig, err := crypto.Sign(identity, append([]byte{5}, skeyVal...))
		if err != nil {
			t.Fatal(err)
		}
		return &waproto.ClientPayload_DevicePairingRegistrationData{
			ERegid: []byte{0, 0, 0, 1}, EKeytype: []byte{5}, EIdent: ident,
			ESkeyID: []byte{0, 0, 1}, ESkeyVal: skeyVal, ESkeySig: sig[:],
		}
	}
	if _, err := parseRegistration([32]byte{}, registration(identity.Pub[:], skey.Pub[:])); err != nil {
		t.Fatalf("good registration: %v", err)
	}
	zero := make([]byte, 32)
	if _, err := parseRegistration([32]byte{}, registration(identity.Pub[:], zero)); !errors.Is(err, crypto.ErrLowOrderKey) {
		t.Errorf("signed prekey of zeros: %v, want ErrLowOrderKey", err)
	}
	if _, err := parseRegistration([32]byte{}, registration(zero, skey.Pub[:])); !errors.Is(err, crypto.ErrLowOrderKey) {
		t.Errorf("identity key of zeros: %v, want ErrLowOrderKey", err)
	}
}
