package crypto

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/waproto"
)

type advHMACVector struct {
	Secret          string `json:"adv_secret_hex"`
	Details         string `json:"details_hex"`
	ContainerE2EE   string `json:"container_e2ee_hex"`
	ContainerHosted string `json:"container_hosted_hex"`
	HMACE2EE        string `json:"hmac_e2ee_hex"`
	HMACHosted      string `json:"hmac_hosted_hex"`
}

type pairingVector struct {
	AccountSignature     string `json:"account_signature_hex"`
	AccountSignatureMsg  string `json:"account_signature_message_hex"`
	DeviceIdentity       string `json:"adv_device_identity_hex"`
	Secret               string `json:"adv_secret"`
	SignedDeviceIdentity string `json:"adv_signed_device_identity_hex"`
	Container            string `json:"adv_signed_device_identity_hmac_hex"`
	CompanionIdentityPub string `json:"companion_identity_pub"`
	DeviceSignatureMsg   string `json:"device_signature_message_hex"`
	DeviceSignatureValid bool   `json:"device_signature_valid"`
	HMAC                 string `json:"hmac_hex"`
	PrimaryIdentityPriv  string `json:"primary_identity_priv"`
	PrimaryIdentityPub   string `json:"primary_identity_pub"`
	ReplyKeyAbsent       bool   `json:"reply_account_signature_key_absent"`
	ReplyKeyIndex        string `json:"reply_key_index"`
	ReplySelfSignedIdent string `json:"reply_self_signed_identity_hex"`
}

func TestADVHMACVector(t *testing.T) {
	var v advHMACVector
	loadVector(t, "adv_hmac.json", &v)
	secret, details := unhex(t, v.Secret), unhex(t, v.Details)
	tests := []struct {
		name      string
		typ       waproto.ADVEncryptionType
		mac, cont string
	}{
		{"E2EE", waproto.ADVEncryptionType_E2EE, v.HMACE2EE, v.ContainerE2EE},
		{"HOSTED", waproto.ADVEncryptionType_HOSTED, v.HMACHosted, v.ContainerHosted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eqHex(t, "hmac", advMAC(secret, details, tt.typ), tt.mac)
			c, err := MakeADVContainer(details, secret, tt.typ)
			if err != nil {
				t.Fatal(err)
			}
			eqHex(t, "container", c, tt.cont)
			// The container verifies; its details (0a03010203) parse as an
			// identity whose own details 010203 are not a valid protobuf.
			_, _, err = VerifyADVContainer(unhex(t, tt.cont), secret)
			if !errors.Is(err, ErrADVMalformed) {
				t.Fatalf("err = %v, want ErrADVMalformed (HMAC must pass first)", err)
			}
			if _, _, err := VerifyADVContainer(unhex(t, tt.cont), bytes.Repeat([]byte{1}, 32)); !errors.Is(err, ErrADVHMACMismatch) {
				t.Fatalf("wrong secret: %v, want ErrADVHMACMismatch", err)
			}
		})
	}
}

func TestADVPairingVector(t *testing.T) {
	var v pairingVector
	loadVector(t, "pairing_e2e.json", &v)
	var ev e2eVector
	loadVector(t, "e2e_session.json", &ev)
	identity := mustKey(t, ev.ClientKeys.IdentityPriv)
	eqHex(t, "companion identity", identity.Pub[:], v.CompanionIdentityPub)
	primary := mustKey(t, v.PrimaryIdentityPriv)
	eqHex(t, "primary identity", primary.Pub[:], v.PrimaryIdentityPub)
	secret, companion := unhex(t, v.Secret), identity.Pub[:]
	diBytes := unhex(t, v.DeviceIdentity)

	// Phone side, byte for byte with the vector's account signature.
	var di waproto.ADVDeviceIdentity
	if err := proto.Unmarshal(diBytes, &di); err != nil {
		t.Fatal(err)
	}
	eqHex(t, "account message", advAccountMessage(di.GetDeviceType(), diBytes, companion), v.AccountSignatureMsg)
	if !Verify(primary.Pub[:], unhex(t, v.AccountSignatureMsg), unhex(t, v.AccountSignature)) {
		t.Fatal("vector account signature does not verify")
	}
	sdi, err := SignADVAccount(primary, &di, companion)
	if err != nil {
		t.Fatal(err)
	}
	eqHex(t, "device identity", sdi.Details, v.DeviceIdentity)
	if err := VerifyADVAccountSignature(sdi, &di, companion); err != nil {
		t.Fatalf("fresh account signature: %v", err)
	}
	sdi.AccountSignature = unhex(t, v.AccountSignature)
	sdiBytes, err := proto.Marshal(sdi)
	if err != nil {
		t.Fatal(err)
	}
	eqHex(t, "signed device identity", sdiBytes, v.SignedDeviceIdentity)
	container, err := MakeADVContainer(sdiBytes, secret, waproto.ADVEncryptionType_E2EE)
	if err != nil {
		t.Fatal(err)
	}
	eqHex(t, "container", container, v.Container)
	eqHex(t, "hmac", advMAC(secret, sdiBytes, waproto.ADVEncryptionType_E2EE), v.HMAC)

	// Client side on the vector's container.
	res, err := VerifyADVPairing(unhex(t, v.Container), secret, identity)
	if err != nil {
		t.Fatal(err)
	}
	if res.KeyIndex != 3 || v.ReplyKeyIndex != "3" {
		t.Fatalf("key index %d (vector %s)", res.KeyIndex, v.ReplyKeyIndex)
	}
	eqHex(t, "account record details", res.Account.GetDetails(), v.DeviceIdentity)
	eqHex(t, "account record key", res.Account.GetAccountSignatureKey(), v.PrimaryIdentityPub)
	eqHex(t, "device message", advDeviceMessage(diBytes, companion, primary.Pub[:]), v.DeviceSignatureMsg)
	if !Verify(companion, unhex(t, v.DeviceSignatureMsg), res.Account.GetDeviceSignature()) {
		t.Fatal("our device signature does not verify")
	}
	if err := VerifyADVReply(res.Reply, diBytes, companion, primary.Pub[:]); err != nil {
		t.Fatalf("phone rejects our reply: %v", err)
	}

	// With whatsmeow's device signature our reply is the vector's, byte for byte.
	vecReply := unhex(t, v.ReplySelfSignedIdent)
	var vr waproto.ADVSignedDeviceIdentity
	if err := proto.Unmarshal(vecReply, &vr); err != nil {
		t.Fatal(err)
	}
	if vr.AccountSignatureKey != nil || !v.ReplyKeyAbsent {
		t.Fatal("vector reply carries accountSignatureKey")
	}
	res.Account.DeviceSignature = vr.DeviceSignature
	reply, keyIndex, err := ADVReply(res.Account, res.Device)
	if err != nil {
		t.Fatal(err)
	}
	eqHex(t, "reply", reply, v.ReplySelfSignedIdent)
	if keyIndex != 3 {
		t.Fatalf("key index %d", keyIndex)
	}
	if res.Account.AccountSignatureKey == nil {
		t.Fatal("ADVReply cleared the caller's accountSignatureKey")
	}
	err = VerifyADVReply(vecReply, diBytes, companion, primary.Pub[:])
	if (err == nil) != v.DeviceSignatureValid {
		t.Fatalf("vector reply verification: %v, vector says valid=%v", err, v.DeviceSignatureValid)
	}
}

// advFixture is a valid pairing made with fresh keys.
type advFixture struct {
	secret             []byte
	primary, companion *KeyPair
	di                 *waproto.ADVDeviceIdentity
	sdi                *waproto.ADVSignedDeviceIdentity
}

func newADVFixture(t testing.TB, deviceType waproto.ADVEncryptionType) *advFixture {
	t.Helper()
	primary, err := GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	companion, err := GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	di := &waproto.ADVDeviceIdentity{RawID: proto.Uint32(77), Timestamp: proto.Uint64(1_760_000_000), KeyIndex: proto.Uint32(5)}
	if deviceType == waproto.ADVEncryptionType_HOSTED {
		di.AccountType = deviceType.Enum()
		di.DeviceType = deviceType.Enum()
	}
	sdi, err := SignADVAccount(primary, di, companion.Pub[:])
	if err != nil {
		t.Fatal(err)
	}
	return &advFixture{bytes.Repeat([]byte{0x42}, 32), primary, companion, di, sdi}
}

// container marshals the (possibly altered) sdi into a correctly MACed container.
func (f *advFixture) container(t testing.TB, typ waproto.ADVEncryptionType) []byte {
	t.Helper()
	b, err := proto.Marshal(f.sdi)
	if err != nil {
		t.Fatal(err)
	}
	c, err := MakeADVContainer(b, f.secret, typ)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestADVTampering(t *testing.T) {
	e2ee, hosted := waproto.ADVEncryptionType_E2EE, waproto.ADVEncryptionType_HOSTED
	remac := func(f *advFixture, t *testing.T) []byte { return f.container(t, e2ee) }
	editContainer := func(edit func(c *waproto.ADVSignedDeviceIdentityHMAC)) func(*advFixture, *testing.T) []byte {
		return func(f *advFixture, t *testing.T) []byte {
			var c waproto.ADVSignedDeviceIdentityHMAC
			if err := proto.Unmarshal(f.container(t, e2ee), &c); err != nil {
				t.Fatal(err)
			}
			edit(&c)
			b, _ := proto.Marshal(&c)
			return b
		}
	}
	tests := []struct {
		name    string
		device  waproto.ADVEncryptionType
		alter   func(f *advFixture) // edits f.sdi before MACing
		build   func(f *advFixture, t *testing.T) []byte
		want    error
		usePeer bool // verify as another companion
	}{
		{"valid", e2ee, nil, remac, nil, false},
		{"valid hosted device and account", hosted, nil, func(f *advFixture, t *testing.T) []byte { return f.container(t, hosted) }, nil, false},
		{"container not protobuf", e2ee, nil, func(*advFixture, *testing.T) []byte { return []byte{0x0a, 0x05, 1} }, ErrADVMalformed, false},
		{"hmac flipped", e2ee, nil, editContainer(func(c *waproto.ADVSignedDeviceIdentityHMAC) { c.HMAC[0] ^= 1 }), ErrADVHMACMismatch, false},
		{"hmac missing", e2ee, nil, editContainer(func(c *waproto.ADVSignedDeviceIdentityHMAC) { c.HMAC = nil }), ErrADVHMACMismatch, false},
		{"details flipped", e2ee, nil, editContainer(func(c *waproto.ADVSignedDeviceIdentityHMAC) { c.Details[3] ^= 1 }), ErrADVHMACMismatch, false},
		{"account type switched to hosted", e2ee, nil, editContainer(func(c *waproto.ADVSignedDeviceIdentityHMAC) {
			c.AccountType = waproto.ADVEncryptionType_HOSTED.Enum()
		}), ErrADVHMACMismatch, false},
		{"signed identity not protobuf", e2ee, nil, func(f *advFixture, t *testing.T) []byte {
			c, _ := MakeADVContainer([]byte{0xff, 0xff}, f.secret, e2ee)
			return c
		}, ErrADVMalformed, false},
		{"device identity not protobuf", e2ee, func(f *advFixture) { f.sdi.Details = []byte{0xff} }, remac, ErrADVMalformed, false},
		{"device identity altered", e2ee, func(f *advFixture) { f.sdi.Details = append(bytes.Clone(f.sdi.Details), 0x18, 0x01) }, remac, ErrADVSignatureMismatch, false},
		{"account signature flipped", e2ee, func(f *advFixture) { f.sdi.AccountSignature[10] ^= 1 }, remac, ErrADVSignatureMismatch, false},
		{"account signature short", e2ee, func(f *advFixture) { f.sdi.AccountSignature = f.sdi.AccountSignature[:63] }, remac, ErrADVSignatureMismatch, false},
		{"account signature missing", e2ee, func(f *advFixture) { f.sdi.AccountSignature = nil }, remac, ErrADVSignatureMismatch, false},
		{"account key other", e2ee, func(f *advFixture) { f.sdi.AccountSignatureKey = f.companion.Pub[:] }, remac, ErrADVSignatureMismatch, false},
		{"account key short", e2ee, func(f *advFixture) { f.sdi.AccountSignatureKey = f.sdi.AccountSignatureKey[:31] }, remac, ErrADVSignatureMismatch, false},
		{"signed for another companion", e2ee, nil, remac, ErrADVSignatureMismatch, true},
		{"hosted device signed with 06 00", e2ee, func(f *advFixture) {
			f.di.DeviceType = waproto.ADVEncryptionType_HOSTED.Enum()
			f.sdi.Details, _ = proto.Marshal(f.di)
			sig, _ := Sign(f.primary, advAccountMessage(e2ee, f.sdi.Details, f.companion.Pub[:]))
			f.sdi.AccountSignature = sig[:]
		}, remac, ErrADVSignatureMismatch, false},
	}
	all := []error{ErrADVMalformed, ErrADVHMACMismatch, ErrADVSignatureMismatch}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newADVFixture(t, tt.device)
			if tt.alter != nil {
				tt.alter(f)
			}
			container := tt.build(f, t)
			identity := f.companion
			if tt.usePeer {
				var err error
				if identity, err = GenerateKeyPair(); err != nil {
					t.Fatal(err)
				}
			}
			res, err := VerifyADVPairing(container, f.secret, identity)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				if res.KeyIndex != 5 {
					t.Fatalf("key index %d", res.KeyIndex)
				}
				if err := VerifyADVReply(res.Reply, f.sdi.Details, f.companion.Pub[:], f.primary.Pub[:]); err != nil {
					t.Fatalf("phone rejects reply: %v", err)
				}
				return
			}
			if res != nil || !errors.Is(err, tt.want) {
				t.Fatalf("res %v, err = %v, want %v", res, err, tt.want)
			}
			for _, e := range all {
				if e != tt.want && errors.Is(err, e) {
					t.Fatalf("err %v also matches %v", err, e)
				}
			}
		})
	}
}

func TestADVReplyChecks(t *testing.T) {
	f := newADVFixture(t, waproto.ADVEncryptionType_E2EE)
	res, err := VerifyADVPairing(f.container(t, waproto.ADVEncryptionType_E2EE), f.secret, f.companion)
	if err != nil {
		t.Fatal(err)
	}
	details, cpub, ppub := f.sdi.Details, f.companion.Pub[:], f.primary.Pub[:]
	withField := func(edit func(r *waproto.ADVSignedDeviceIdentity)) []byte {
		var r waproto.ADVSignedDeviceIdentity
		if err := proto.Unmarshal(res.Reply, &r); err != nil {
			t.Fatal(err)
		}
		edit(&r)
		b, _ := proto.Marshal(&r)
		return b
	}
	tests := []struct {
		name    string
		reply   []byte
		details []byte
		want    error
	}{
		{"valid", res.Reply, details, nil},
		{"not protobuf", []byte{0xff}, details, ErrADVMalformed},
		{"account key present", withField(func(r *waproto.ADVSignedDeviceIdentity) { r.AccountSignatureKey = ppub }), details, ErrADVMalformed},
		{"details changed", res.Reply, append(bytes.Clone(details), 0), ErrADVMalformed},
		{"device signature flipped", withField(func(r *waproto.ADVSignedDeviceIdentity) { r.DeviceSignature[5] ^= 1 }), details, ErrADVSignatureMismatch},
		{"device signature missing", withField(func(r *waproto.ADVSignedDeviceIdentity) { r.DeviceSignature = nil }), details, ErrADVSignatureMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyADVReply(tt.reply, tt.details, cpub, ppub)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// fuzzSecret is the ADV secret of the fuzz target: the one in the vectors,
// so the committed seed containers pass the HMAC check.
var fuzzSecret = []byte{0x82, 0xee, 0xc4, 0x53, 0xb3, 0x52, 0x10, 0xcf, 0xdf, 0x68, 0xaa, 0x2d, 0x73, 0x10,
	0x2a, 0xd7, 0x8e, 0x7d, 0x6a, 0xdb, 0xa1, 0x2c, 0xe7, 0xb7, 0x3f, 0xb6, 0x9e, 0x59, 0xb1, 0xc4, 0xb1, 0xa9}

// FuzzADVContainer feeds arbitrary bytes to the client's ADV procedure.
// With wrap set, data is taken as ADVSignedDeviceIdentity bytes and wrapped
// in a correctly MACed container so that the parsing behind the HMAC check
// is reached too. Nothing may panic; every error is one of the sentinels.
func FuzzADVContainer(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzADVContainer", "*"))
	if len(seeds) == 0 {
		f.Fatal("no committed seed corpus")
	}
	f.Add([]byte{}, false)
	f.Add([]byte{0x0a, 0x00}, true)
	// The companion identity key of the vectors, so the pairing seed passes every check.
	identity := mustKey(f, "f8112604cc634e1177c7ec6f31f24c56b4231ac2d857369fd6c21c0fe032e55e")
	f.Fuzz(func(t *testing.T, data []byte, wrap bool) {
		container := data
		if wrap {
			var err error
			if container, err = MakeADVContainer(data, fuzzSecret, waproto.ADVEncryptionType(len(data)%2)); err != nil {
				t.Fatal(err)
			}
		}
		res, err := VerifyADVPairing(container, fuzzSecret, identity)
		if err != nil {
			if res != nil || !(errors.Is(err, ErrADVMalformed) || errors.Is(err, ErrADVHMACMismatch) || errors.Is(err, ErrADVSignatureMismatch)) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if wrap && !bytes.Equal(res.Account.GetDetails(), mustDetails(t, data)) {
			t.Fatal("details not kept as received")
		}
	})
}

func mustDetails(t *testing.T, sdiBytes []byte) []byte {
	var sdi waproto.ADVSignedDeviceIdentity
	if err := proto.Unmarshal(sdiBytes, &sdi); err != nil {
		t.Fatal(err)
	}
	return sdi.GetDetails()
}

// TestFuzzSeedsAreVectors keeps the committed seeds equal to the vectors.
func TestFuzzSeedsAreVectors(t *testing.T) {
	var pv pairingVector
	loadVector(t, "pairing_e2e.json", &pv)
	var hv advHMACVector
	loadVector(t, "adv_hmac.json", &hv)
	eqHex(t, "fuzz secret", fuzzSecret, pv.Secret)
	seeds := map[string]string{
		"pairing_e2e_container": pv.Container,
		"adv_hmac_e2ee":         hv.ContainerE2EE,
		"adv_hmac_hosted":       hv.ContainerHosted,
	}
	for name, hexContainer := range seeds {
		b, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzADVContainer", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(quoteGo(unhex(t, hexContainer)))) {
			t.Errorf("seed %s does not hold the vector container", name)
		}
	}
}

// quoteGo renders b as the fuzz corpus file format does.
func quoteGo(b []byte) string { return fmt.Sprintf("[]byte(%q)", b) }
