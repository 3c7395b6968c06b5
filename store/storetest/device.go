package storetest

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"strconv"
	"testing"
	"time"

	"github.com/wafleet/wafleet/store"
)

// NewDevice returns a valid, unpaired device with fresh random key material
// (X25519 pairs whose public halves match, a non-zero signature and ADV
// secret). The signature is random bytes, not a real signature: stores do
// not verify it.
func NewDevice(t testing.TB, id string) *store.Device {
	t.Helper()
	d := &store.Device{
		ID:             id,
		NoiseKey:       newKeyPair(t),
		IdentityKey:    newKeyPair(t),
		SignedPreKey:   store.SignedPreKey{ID: 1, KeyPair: newKeyPair(t)},
		RegistrationID: binary.BigEndian.Uint32(randBytes(4)),
	}
	copy(d.SignedPreKey.Signature[:], randBytes(64))
	copy(d.AdvSecret[:], randBytes(32))
	if err := d.Validate(); err != nil {
		t.Fatalf("storetest: NewDevice made an invalid device: %v", err)
	}
	return d
}

// Pair sets the pairing state of d as if the phone pnUser (LID lidUser, which
// may be empty) had linked it as companion number device.
func Pair(d *store.Device, pnUser, lidUser string, device int) {
	dev := strconv.Itoa(device)
	d.JID = pnUser + ":" + dev + "@" + store.PNServer
	d.LID = ""
	if lidUser != "" {
		d.LID = lidUser + ":" + dev + "@" + store.LIDServer
	}
	d.BusinessName = "Shop " + pnUser
	d.Platform = "android"
	d.Account = append([]byte{0x0a, 0x20}, randBytes(200)...)
	copy(d.MainDeviceIdentity[:], randBytes(32))
	// Local zone and a monotonic reading on purpose: stores must keep the
	// instant, compared with Equal.
	d.PairedAt = time.Now().Add(-time.Hour).Round(0).Add(123 * time.Nanosecond).Local()
}

// PairedDevice is NewDevice followed by Pair.
func PairedDevice(t testing.TB, id, pnUser, lidUser string, device int) *store.Device {
	t.Helper()
	d := NewDevice(t, id)
	Pair(d, pnUser, lidUser, device)
	if err := d.Validate(); err != nil {
		t.Fatalf("storetest: PairedDevice made an invalid device: %v", err)
	}
	return d
}

// Diff returns the names of the fields in which got differs from want (never
// their values, which may be secret). PairedAt is compared with Equal.
func Diff(want, got *store.Device) []string {
	if want == nil || got == nil {
		if want == got {
			return nil
		}
		return []string{"Device (one is nil)"}
	}
	var diffs []string
	check := func(name string, same bool) {
		if !same {
			diffs = append(diffs, name)
		}
	}
	check("ID", want.ID == got.ID)
	check("NoiseKey.Priv", want.NoiseKey.Priv == got.NoiseKey.Priv)
	check("NoiseKey.Pub", want.NoiseKey.Pub == got.NoiseKey.Pub)
	check("IdentityKey.Priv", want.IdentityKey.Priv == got.IdentityKey.Priv)
	check("IdentityKey.Pub", want.IdentityKey.Pub == got.IdentityKey.Pub)
	check("SignedPreKey.ID", want.SignedPreKey.ID == got.SignedPreKey.ID)
	check("SignedPreKey.Priv", want.SignedPreKey.Priv == got.SignedPreKey.Priv)
	check("SignedPreKey.Pub", want.SignedPreKey.Pub == got.SignedPreKey.Pub)
	check("SignedPreKey.Signature", want.SignedPreKey.Signature == got.SignedPreKey.Signature)
	check("RegistrationID", want.RegistrationID == got.RegistrationID)
	check("AdvSecret", want.AdvSecret == got.AdvSecret)
	check("JID", want.JID == got.JID)
	check("LID", want.LID == got.LID)
	check("BusinessName", want.BusinessName == got.BusinessName)
	check("Platform", want.Platform == got.Platform)
	check("Account", bytes.Equal(want.Account, got.Account))
	check("MainDeviceIdentity", want.MainDeviceIdentity == got.MainDeviceIdentity)
	check("PairedAt", want.PairedAt.Equal(got.PairedAt))
	return diffs
}

// DeviceSecretIn reports the name of the first secret of d (a private key
// or the ADV secret) of which any 16-byte half appears in raw, for tests
// that read what a store wrote at rest.
func DeviceSecretIn(raw []byte, d *store.Device) (string, bool) {
	secrets := []struct {
		name  string
		bytes [32]byte
	}{
		{"NoiseKey.Priv", d.NoiseKey.Priv},
		{"IdentityKey.Priv", d.IdentityKey.Priv},
		{"SignedPreKey.Priv", d.SignedPreKey.Priv},
		{"AdvSecret", d.AdvSecret},
	}
	for _, s := range secrets {
		if bytes.Contains(raw, s.bytes[:16]) || bytes.Contains(raw, s.bytes[16:]) {
			return s.name, true
		}
	}
	return "", false
}

func newKeyPair(t testing.TB) store.KeyPair {
	t.Helper()
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("storetest: generate X25519 key: %v", err)
	}
	var kp store.KeyPair
	copy(kp.Priv[:], priv.Bytes())
	copy(kp.Pub[:], priv.PublicKey().Bytes())
	return kp
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return b
}
