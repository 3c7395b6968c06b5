package payload

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/waproto"
)

const vectorDir = "../../testdata/protocol/vectors/"

type clientPayloadVector struct {
	BuildHash        string `json:"build_hash_md5_of_version_string"`
	DevicePropsHex   string `json:"device_props_hex"`
	LoginHex         string `json:"login_hex"`
	RegistrationHex  string `json:"registration_hex"`
	RegistrationJSON string `json:"registration_json"`
	LoginJSON        string `json:"login_json"`
	WAVersion        string `json:"wa_version"`
}

type e2eVector struct {
	ClientKeys struct {
		IdentityPub     string `json:"identity_pub"`
		RegistrationID  uint32 `json:"registration_id,string"`
		SignedPreKeyID  uint32 `json:"signed_prekey_id,string"`
		SignedPreKeyPub string `json:"signed_prekey_pub"`
		SignedPreKeySig string `json:"signed_prekey_signature"`
	} `json:"client_keys"`
	RegistrationHex string `json:"registration_client_payload_hex"`
	LoginHex        string `json:"login_client_payload_hex"`
}

type pairingVector struct {
	DeviceJID string `json:"device_jid"`
}

func loadJSON(t testing.TB, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(vectorDir + name)
	if err != nil {
		t.Fatalf("read vector: %v", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex in vector: %v", err)
	}
	return b
}

func arr32(t testing.TB, b []byte) (a [32]byte) {
	t.Helper()
	if len(b) != 32 {
		t.Fatalf("vector key has %d bytes, want 32", len(b))
	}
	copy(a[:], b)
	return a
}

func arr64(t testing.TB, b []byte) (a [64]byte) {
	t.Helper()
	if len(b) != 64 {
		t.Fatalf("vector signature has %d bytes, want 64", len(b))
	}
	copy(a[:], b)
	return a
}

// whatsmeowProps is the DeviceProps whatsmeow sends (device_props_json).
var whatsmeowProps = DeviceProps{OS: "whatsmeow", Version: Version{0, 1, 0}, PlatformType: waproto.DeviceProps_UNKNOWN}

// deviceJIDParts splits "15551234567:5@s.whatsapp.net" into user and device.
func deviceJIDParts(t testing.TB, jid string) (uint64, uint32) {
	t.Helper()
	userDev, _, ok := strings.Cut(jid, "@")
	if !ok {
		t.Fatalf("bad jid %q", jid)
	}
	user, dev, ok := strings.Cut(userDev, ":")
	if !ok {
		t.Fatalf("jid %q has no device", jid)
	}
	u, err := strconv.ParseUint(user, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	d, err := strconv.ParseUint(dev, 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	return u, uint32(d)
}

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return b
}

func TestVersionAndBuildHash(t *testing.T) {
	var v clientPayloadVector
	loadJSON(t, "client_payload.json", &v)
	if got := PinnedVersion().String(); got != v.WAVersion {
		t.Errorf("PinnedVersion().String() = %q, want %q", got, v.WAVersion)
	}
	if got := PinnedVersion().String(); got != "2.3000.1031080782" {
		t.Errorf("PinnedVersion().String() = %q", got)
	}
	if got := DefaultVersion().String(); got != "2.3000.1045649367" {
		t.Errorf("DefaultVersion().String() = %q", got)
	}
	h := BuildHash(PinnedVersion())
	if got := hex.EncodeToString(h[:]); got != v.BuildHash || got != "c6779ee540c6f59ea0167c7c5db73d75" {
		t.Errorf("BuildHash = %s, want %s", got, v.BuildHash)
	}
	if h2 := BuildHash(DefaultVersion()); h2 == h {
		t.Error("BuildHash does not depend on the version")
	}
}

func TestParseVersion(t *testing.T) {
	tests := []struct {
		in   string
		want Version
		ok   bool
	}{
		{"2.3000.1031080782", Version{2, 3000, 1031080782}, true},
		{"2.3000.1045649367", Version{2, 3000, 1045649367}, true},
		{"1.0.0", Version{1, 0, 0}, true},
		{"4294967295.4294967295.4294967295", Version{4294967295, 4294967295, 4294967295}, true},
		{"", Version{}, false},
		{"2.3000", Version{}, false},
		{"2.3000.1.4", Version{}, false},
		{"2..1", Version{}, false},
		{"0.1.0", Version{}, false},             // primary zero
		{"02.3000.1", Version{}, false},         // leading zero
		{"+2.3000.1", Version{}, false},         // sign
		{"-2.3000.1", Version{}, false},         // sign
		{"2.3000.4294967296", Version{}, false}, // overflow
		{"2.3000.1x", Version{}, false},
		{" 2.3000.1", Version{}, false},
		{strings.Repeat("1", 100), Version{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseVersion(tt.in)
			if tt.ok {
				if err != nil || got != tt.want {
					t.Fatalf("ParseVersion(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
				}
				if got.String() != tt.in {
					t.Errorf("String() = %q, want %q", got.String(), tt.in)
				}
				return
			}
			if !errors.Is(err, ErrBadVersion) {
				t.Fatalf("ParseVersion(%q) error = %v, want ErrBadVersion", tt.in, err)
			}
		})
	}
}

func TestDevicePropsVector(t *testing.T) {
	var v clientPayloadVector
	loadJSON(t, "client_payload.json", &v)
	dp, err := BuildDeviceProps(whatsmeowProps, ProfilePinned)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(marshal(t, dp)); got != v.DevicePropsHex {
		t.Errorf("device props\n got %s\nwant %s", got, v.DevicePropsHex)
	}
	// The zero Version means {0,1,0}: same bytes.
	p := whatsmeowProps
	p.Version = Version{}
	dp2, err := BuildDeviceProps(p, ProfilePinned)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(dp, dp2) {
		t.Error("zero DeviceProps.Version is not {0,1,0}")
	}
}

func TestDevicePropsDefaultsAndProfiles(t *testing.T) {
	dp, err := BuildDeviceProps(DeviceProps{}, ProfileCurrent)
	if err != nil {
		t.Fatal(err)
	}
	if dp.GetOs() != "Linux" || dp.Os == nil {
		t.Errorf("os = %q, want Linux", dp.GetOs())
	}
	if dp.PlatformType == nil || dp.GetPlatformType() != waproto.DeviceProps_UNKNOWN {
		t.Errorf("platformType = %v, want explicit UNKNOWN", dp.PlatformType)
	}
	if dp.RequireFullSync == nil || dp.GetRequireFullSync() {
		t.Error("requireFullSync must be set to false")
	}
	h := dp.GetHistorySyncConfig()
	if !h.GetSupportCallLogHistory() || !h.GetSupportGroupHistory() || h.GetThumbnailSyncDaysLimit() != 60 ||
		!h.GetSupportManusHistory() || !h.GetSupportHatchHistory() || h.GetStorageQuotaMb() != 10240 {
		t.Errorf("current profile history sync config = %v", h)
	}
	pinned, err := BuildDeviceProps(DeviceProps{}, ProfilePinned)
	if err != nil {
		t.Fatal(err)
	}
	ph := pinned.GetHistorySyncConfig()
	if ph.GetSupportCallLogHistory() || ph.SupportCallLogHistory == nil || ph.ThumbnailSyncDaysLimit != nil || ph.SupportManusHistory != nil {
		t.Errorf("pinned profile history sync config = %v", ph)
	}

	custom, err := BuildDeviceProps(DeviceProps{OS: "Mac OS", Version: Version{10, 15, 7}, PlatformType: waproto.DeviceProps_CHROME, RequireFullSync: true}, ProfileCurrent)
	if err != nil {
		t.Fatal(err)
	}
	if custom.GetOs() != "Mac OS" || custom.GetPlatformType() != waproto.DeviceProps_CHROME || !custom.GetRequireFullSync() ||
		custom.GetVersion().GetPrimary() != 10 || custom.GetVersion().GetTertiary() != 7 {
		t.Errorf("custom device props = %v", custom)
	}
}

func TestDevicePropsErrors(t *testing.T) {
	tests := []struct {
		name string
		p    DeviceProps
		prof Profile
		want error
	}{
		{"long os", DeviceProps{OS: strings.Repeat("x", 65)}, ProfileCurrent, ErrBadDeviceProps},
		{"invalid utf8 os", DeviceProps{OS: "a\xffb"}, ProfileCurrent, ErrBadDeviceProps},
		{"unknown platform", DeviceProps{PlatformType: 999}, ProfileCurrent, ErrBadDeviceProps},
		{"negative platform", DeviceProps{PlatformType: -1}, ProfileCurrent, ErrBadDeviceProps},
		{"unknown profile", DeviceProps{}, Profile(7), ErrBadProfile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := BuildDeviceProps(tt.p, tt.prof); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := BuildDeviceProps(DeviceProps{OS: strings.Repeat("é", 32)}, ProfileCurrent); err != nil {
		t.Errorf("64-byte UTF-8 os refused: %v", err)
	}
}

// registrationFromVector takes the keys from the registration payload of
// client_payload.json (its signature differs from e2e_session.json's: the
// signature scheme is randomized) and checks them against client_keys.
func registrationFromVector(t *testing.T) (RegistrationData, clientPayloadVector) {
	var v clientPayloadVector
	loadJSON(t, "client_payload.json", &v)
	var e e2eVector
	loadJSON(t, "e2e_session.json", &e)

	var rj struct {
		DevicePairingData struct {
			ESkeySig string `json:"eSkeySig"`
		} `json:"devicePairingData"`
	}
	if err := json.Unmarshal([]byte(v.RegistrationJSON), &rj); err != nil {
		t.Fatal(err)
	}
	sig, err := base64.StdEncoding.DecodeString(rj.DevicePairingData.ESkeySig)
	if err != nil {
		t.Fatal(err)
	}
	ver, err := ParseVersion(v.WAVersion)
	if err != nil {
		t.Fatal(err)
	}
	return RegistrationData{
		RegistrationID:  e.ClientKeys.RegistrationID,
		IdentityPub:     arr32(t, unhex(t, e.ClientKeys.IdentityPub)),
		SignedPreKeyID:  e.ClientKeys.SignedPreKeyID,
		SignedPreKeyPub: arr32(t, unhex(t, e.ClientKeys.SignedPreKeyPub)),
		SignedPreKeySig: arr64(t, sig),
		Version:         ver,
		Profile:         ProfilePinned,
		DeviceProps:     whatsmeowProps,
	}, v
}

func TestRegistrationVector(t *testing.T) {
	d, v := registrationFromVector(t)
	p, err := Registration(d)
	if err != nil {
		t.Fatal(err)
	}
	got := marshal(t, p)
	if want := unhex(t, v.RegistrationHex); !bytes.Equal(got, want) {
		t.Errorf("registration payload\n got %x\nwant %x", got, want)
	}
	// Plain proto.Marshal gives the same bytes.
	if plain, err := proto.Marshal(p); err != nil || !bytes.Equal(plain, got) {
		t.Errorf("proto.Marshal differs from deterministic marshal: %v", err)
	}
	// The vector decodes to a message equal to ours.
	var dec waproto.ClientPayload
	if err := proto.Unmarshal(unhex(t, v.RegistrationHex), &dec); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&dec, p) {
		t.Errorf("decoded vector differs from built payload:\n vec %v\n got %v", &dec, p)
	}
	if hex.EncodeToString(p.GetDevicePairingData().GetDeviceProps()) != v.DevicePropsHex {
		t.Error("embedded device props differ from device_props_hex")
	}
}

func TestLoginVector(t *testing.T) {
	var v clientPayloadVector
	loadJSON(t, "client_payload.json", &v)
	var pv pairingVector
	loadJSON(t, "pairing_e2e.json", &pv)
	user, dev := deviceJIDParts(t, pv.DeviceJID)
	p, err := Login(LoginData{Username: user, Device: dev, Version: PinnedVersion(), Profile: ProfilePinned})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := marshal(t, p), unhex(t, v.LoginHex); !bytes.Equal(got, want) {
		t.Errorf("login payload\n got %x\nwant %x", got, want)
	}
}

func TestE2ESessionPayloads(t *testing.T) {
	var e e2eVector
	loadJSON(t, "e2e_session.json", &e)
	var pv pairingVector
	loadJSON(t, "pairing_e2e.json", &pv)

	reg := RegistrationData{
		RegistrationID:  e.ClientKeys.RegistrationID,
		IdentityPub:     arr32(t, unhex(t, e.ClientKeys.IdentityPub)),
		SignedPreKeyID:  e.ClientKeys.SignedPreKeyID,
		SignedPreKeyPub: arr32(t, unhex(t, e.ClientKeys.SignedPreKeyPub)),
		SignedPreKeySig: arr64(t, unhex(t, e.ClientKeys.SignedPreKeySig)),
		Version:         PinnedVersion(),
		Profile:         ProfilePinned,
		DeviceProps:     whatsmeowProps,
	}
	rp, err := Registration(reg)
	if err != nil {
		t.Fatal(err)
	}
	user, dev := deviceJIDParts(t, pv.DeviceJID)
	lp, err := Login(LoginData{Username: user, Device: dev, Version: PinnedVersion(), Profile: ProfilePinned})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		got  proto.Message
		hex  string
	}{
		{"registration", rp, e.RegistrationHex},
		{"login", lp, e.LoginHex},
	} {
		t.Run(c.name, func(t *testing.T) {
			want := unhex(t, c.hex)
			var dec waproto.ClientPayload
			if err := proto.Unmarshal(want, &dec); err != nil {
				t.Fatalf("vector does not decode: %v", err)
			}
			if !proto.Equal(&dec, c.got) {
				t.Errorf("decoded vector differs:\n vec %v\n got %v", &dec, c.got)
			}
			if got := marshal(t, c.got); !bytes.Equal(got, want) {
				t.Errorf("bytes differ\n got %x\nwant %x", got, want)
			}
		})
	}
}

func TestCurrentProfileAndDefaults(t *testing.T) {
	d, _ := registrationFromVector(t)
	d.Version, d.Profile, d.DeviceProps = Version{}, ProfileCurrent, DeviceProps{}
	rp, err := Registration(d)
	if err != nil {
		t.Fatal(err)
	}
	av := rp.GetUserAgent().GetAppVersion()
	if got := (Version{av.GetPrimary(), av.GetSecondary(), av.GetTertiary()}); got != DefaultVersion() {
		t.Errorf("default user agent version = %v, want %v", got, DefaultVersion())
	}
	wantHash := BuildHash(DefaultVersion())
	if !bytes.Equal(rp.GetDevicePairingData().GetBuildHash(), wantHash[:]) {
		t.Error("build hash is not that of the default version")
	}
	if rp.Lc != nil {
		t.Error("registration payload carries lc")
	}
	var dp waproto.DeviceProps
	if err := proto.Unmarshal(rp.GetDevicePairingData().GetDeviceProps(), &dp); err != nil {
		t.Fatal(err)
	}
	if dp.GetOs() != DefaultOS || dp.GetHistorySyncConfig().GetThumbnailSyncDaysLimit() != 60 {
		t.Errorf("embedded device props = %v", &dp)
	}

	lp, err := Login(LoginData{Username: 15551234567, Device: 5})
	if err != nil {
		t.Fatal(err)
	}
	if lp.Lc == nil || lp.GetLc() != 1 {
		t.Errorf("current-profile login lc = %v, want 1", lp.Lc)
	}
	pinned, err := Login(LoginData{Username: 15551234567, Device: 5, Profile: ProfilePinned})
	if err != nil {
		t.Fatal(err)
	}
	if pinned.Lc != nil {
		t.Error("pinned-profile login carries lc")
	}
	pinned.Lc = proto.Int32(1)
	if !proto.Equal(pinned, lp) {
		t.Error("current and pinned login payloads differ by more than lc")
	}
}

func TestRegistrationFields(t *testing.T) {
	d, _ := registrationFromVector(t)
	d.RegistrationID = 0x01020304
	d.SignedPreKeyID = 0xABCDEF
	p, err := Registration(d)
	if err != nil {
		t.Fatal(err)
	}
	pd := p.GetDevicePairingData()
	if !bytes.Equal(pd.GetERegid(), []byte{1, 2, 3, 4}) {
		t.Errorf("eRegid = %x", pd.GetERegid())
	}
	if !bytes.Equal(pd.GetESkeyID(), []byte{0xAB, 0xCD, 0xEF}) {
		t.Errorf("eSkeyID = %x", pd.GetESkeyID())
	}
	if !bytes.Equal(pd.GetEKeytype(), []byte{5}) {
		t.Errorf("eKeytype = %x", pd.GetEKeytype())
	}
	if p.Passive == nil || p.GetPassive() || p.Pull == nil || p.GetPull() {
		t.Error("registration must set passive=false and pull=false explicitly")
	}
	if p.Username != nil || p.Device != nil || p.LidDbMigrated != nil {
		t.Error("registration carries login fields")
	}
	// The payload does not alias the caller's arrays.
	pd.EIdent[0] ^= 0xFF
	if d.IdentityPub[0] == pd.EIdent[0] {
		t.Error("payload aliases the input key")
	}
}

func TestRegistrationErrors(t *testing.T) {
	good, _ := registrationFromVector(t)
	tests := []struct {
		name   string
		mutate func(*RegistrationData)
		want   error
	}{
		{"zero identity", func(d *RegistrationData) { d.IdentityPub = [32]byte{} }, ErrZeroKey},
		{"zero signed prekey", func(d *RegistrationData) { d.SignedPreKeyPub = [32]byte{} }, ErrZeroKey},
		{"zero signature", func(d *RegistrationData) { d.SignedPreKeySig = [64]byte{} }, ErrZeroKey},
		{"prekey id too large", func(d *RegistrationData) { d.SignedPreKeyID = 1 << 24 }, ErrBadSignedPreKeyID},
		{"primary version zero", func(d *RegistrationData) { d.Version = Version{0, 3000, 1} }, ErrBadVersion},
		{"bad profile", func(d *RegistrationData) { d.Profile = -1 }, ErrBadProfile},
		{"bad device props", func(d *RegistrationData) { d.DeviceProps.PlatformType = 1000 }, ErrBadDeviceProps},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := good
			tt.mutate(&d)
			p, err := Registration(d)
			if !errors.Is(err, tt.want) || p != nil {
				t.Fatalf("Registration = %v, %v; want nil, %v", p, err, tt.want)
			}
		})
	}
	d := good
	d.SignedPreKeyID = 0xFFFFFF
	if _, err := Registration(d); err != nil {
		t.Errorf("largest 3-byte prekey id refused: %v", err)
	}
}

func TestLoginErrors(t *testing.T) {
	tests := []struct {
		name string
		d    LoginData
		want error
	}{
		{"zero username", LoginData{Username: 0, Device: 5}, ErrBadUsername},
		{"16 digits", LoginData{Username: 1_000_000_000_000_000, Device: 5}, ErrBadUsername},
		{"device zero", LoginData{Username: 15551234567, Device: 0}, ErrBadDevice},
		{"device too large", LoginData{Username: 15551234567, Device: 1 << 16}, ErrBadDevice},
		{"bad version", LoginData{Username: 15551234567, Device: 5, Version: Version{0, 1, 1}}, ErrBadVersion},
		{"bad profile", LoginData{Username: 15551234567, Device: 5, Profile: 2}, ErrBadProfile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Login(tt.d)
			if !errors.Is(err, tt.want) || p != nil {
				t.Fatalf("Login = %v, %v; want nil, %v", p, err, tt.want)
			}
		})
	}
	if _, err := Login(LoginData{Username: 999_999_999_999_999, Device: 0xFFFF}); err != nil {
		t.Errorf("limits refused: %v", err)
	}
}

func TestProfileString(t *testing.T) {
	for p, want := range map[Profile]string{ProfileCurrent: "current", ProfilePinned: "pinned", 9: "Profile(9)"} {
		if got := p.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(p), got, want)
		}
	}
}

func BenchmarkRegistrationMarshal(b *testing.B) {
	d := RegistrationData{RegistrationID: 12345, SignedPreKeyID: 1}
	d.IdentityPub[0], d.SignedPreKeyPub[0], d.SignedPreKeySig[0] = 1, 2, 3
	b.ReportAllocs()
	for b.Loop() {
		p, err := Registration(d)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := proto.Marshal(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLoginMarshal(b *testing.B) {
	d := LoginData{Username: 15551234567, Device: 5}
	b.ReportAllocs()
	for b.Loop() {
		p, err := Login(d)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := proto.Marshal(p); err != nil {
			b.Fatal(err)
		}
	}
}

func TestVersionCompare(t *testing.T) {
	v := func(a, b, c uint32) Version { return Version{Primary: a, Secondary: b, Tertiary: c} }
	tests := []struct {
		a, b Version
		want int
	}{
		{v(2, 3000, 1), v(2, 3000, 2), -1},
		{v(2, 3000, 2), v(2, 3000, 1), 1},
		{v(2, 3000, 2), v(2, 3000, 2), 0},
		{v(2, 3001, 1), v(2, 3000, 999), 1},
		{v(3, 0, 0), v(2, 3000, 999), 1},
		{v(1, 9999, 9999), v(2, 0, 0), -1},
	}
	for _, tt := range tests {
		if got := tt.a.Compare(tt.b); got != tt.want {
			t.Errorf("%v.Compare(%v) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}
