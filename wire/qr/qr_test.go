package qr

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand"
	"os"
	"reflect"
	"strings"
	"testing"
	"testing/quick"

	"github.com/wafleet/wafleet/waproto"
)

const vectorDir = "../../testdata/protocol/vectors/"

type qrVector struct {
	AdvSecretHex   string `json:"adv_secret_hex"`
	Current        string `json:"current_qr_client_type_1_chrome"`
	IdentityPubHex string `json:"identity_pub_hex"`
	Legacy         string `json:"legacy_qr_from_whatsmeow_v0.0.0-20251217143725"`
	NoisePubHex    string `json:"noise_pub_hex"`
	Ref            string `json:"ref"`
}

type pairingVector struct {
	AdvSecret   string   `json:"adv_secret"`
	IdentityPub string   `json:"companion_identity_pub"`
	NoisePub    string   `json:"companion_noise_pub"`
	QRCodes     []string `json:"qr_codes_emitted_by_whatsmeow"`
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

func key(t testing.TB, h string) (k [32]byte) {
	t.Helper()
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != 32 {
		t.Fatalf("bad vector key (%d bytes): %v", len(b), err)
	}
	copy(k[:], b)
	return k
}

func loadQR(t testing.TB) (qrVector, Code) {
	var v qrVector
	loadJSON(t, "qr.json", &v)
	return v, Code{
		Ref:         v.Ref,
		NoisePub:    key(t, v.NoisePubHex),
		IdentityPub: key(t, v.IdentityPubHex),
		AdvSecret:   key(t, v.AdvSecretHex),
	}
}

func TestVectorForms(t *testing.T) {
	v, c := loadQR(t)
	t.Run("current", func(t *testing.T) {
		got, err := Build(c.Ref, c.NoisePub, c.IdentityPub, c.AdvSecret, ClientChrome)
		if err != nil {
			t.Fatal(err)
		}
		if got != v.Current {
			t.Errorf("Build\n got %q\nwant %q", got, v.Current)
		}
		p, err := Parse(v.Current)
		if err != nil {
			t.Fatal(err)
		}
		want := c
		want.ClientType = ClientChrome
		if p != want {
			t.Errorf("Parse = %v, want %v", p, want)
		}
	})
	t.Run("legacy", func(t *testing.T) {
		got, err := BuildLegacy(c.Ref, c.NoisePub, c.IdentityPub, c.AdvSecret)
		if err != nil {
			t.Fatal(err)
		}
		if got != v.Legacy {
			t.Errorf("BuildLegacy\n got %q\nwant %q", got, v.Legacy)
		}
		p, err := Parse(v.Legacy)
		if err != nil {
			t.Fatal(err)
		}
		want := c
		want.Legacy = true
		if p != want {
			t.Errorf("Parse = %v, want %v", p, want)
		}
	})
}

func TestPairingE2EQRCodes(t *testing.T) {
	var v pairingVector
	loadJSON(t, "pairing_e2e.json", &v)
	if len(v.QRCodes) == 0 {
		t.Fatal("vector has no QR codes")
	}
	noise, ident, adv := key(t, v.NoisePub), key(t, v.IdentityPub), key(t, v.AdvSecret)
	for i, s := range v.QRCodes {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			c, err := Parse(s)
			if err != nil {
				t.Fatal(err)
			}
			if !c.Legacy || c.ClientType != 0 {
				t.Errorf("whatsmeow pinned code parsed as legacy=%v type=%v", c.Legacy, c.ClientType)
			}
			if c.NoisePub != noise || c.IdentityPub != ident || c.AdvSecret != adv {
				t.Error("keys differ from the vector's companion keys")
			}
			if !strings.HasPrefix(s, c.Ref+",") {
				t.Error("ref is not the first field")
			}
			again, err := c.Encode()
			if err != nil || again != s {
				t.Errorf("re-encode differs: %v", err)
			}
			cur, err := Build(c.Ref, c.NoisePub, c.IdentityPub, c.AdvSecret, ClientOtherWeb)
			if err != nil || cur != Prefix+s+",9" {
				t.Errorf("current form of the same code = %v", err)
			}
		})
	}
}

func TestParseAcceptsPrefixCombinations(t *testing.T) {
	v, _ := loadQR(t)
	// Prefix with 4 fields and 5 fields without prefix are accepted too.
	c, err := Parse(Prefix + v.Legacy)
	if err != nil || !c.Legacy {
		t.Errorf("prefix + 4 fields: %v legacy=%v", err, c.Legacy)
	}
	c, err = Parse(strings.TrimPrefix(v.Current, Prefix))
	if err != nil || c.Legacy || c.ClientType != ClientChrome {
		t.Errorf("5 fields without prefix: %v", err)
	}
}

func TestClientTypeFor(t *testing.T) {
	web, mac, android := waproto.ClientPayload_UserAgent_WEB, waproto.ClientPayload_UserAgent_MACOS, waproto.ClientPayload_UserAgent_ANDROID
	tests := []struct {
		pt   waproto.DeviceProps_PlatformType
		ua   waproto.ClientPayload_UserAgent_Platform
		want ClientType
	}{
		{waproto.DeviceProps_CHROME, web, '1'},
		{waproto.DeviceProps_FIREFOX, web, '3'},
		{waproto.DeviceProps_EDGE, web, '2'},
		{waproto.DeviceProps_IE, web, '4'},
		{waproto.DeviceProps_OPERA, web, '5'},
		{waproto.DeviceProps_SAFARI, web, '6'},
		{waproto.DeviceProps_UWP, web, '8'},
		{waproto.DeviceProps_ANDROID_PHONE, web, 'e'},
		{waproto.DeviceProps_CHROME, mac, '1'},
		{waproto.DeviceProps_UNKNOWN, web, '9'},
		{waproto.DeviceProps_DESKTOP, web, '9'},
		{waproto.DeviceProps_UNKNOWN, mac, 'c'},
		{waproto.DeviceProps_IPAD, mac, 'c'},
		{waproto.DeviceProps_UNKNOWN, android, '0'},
		{waproto.DeviceProps_DESKTOP, android, '0'},
	}
	for _, tt := range tests {
		t.Run(tt.pt.String()+"/"+tt.ua.String(), func(t *testing.T) {
			if got := ClientTypeFor(tt.pt, tt.ua); got != tt.want {
				t.Errorf("ClientTypeFor = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestClientTypeValid(t *testing.T) {
	valid := "0123456789ce"
	for c := range 256 {
		want := strings.IndexByte(valid, byte(c)) >= 0
		if got := ClientType(c).Valid(); got != want {
			t.Errorf("ClientType(%#x).Valid() = %v", c, got)
		}
	}
	if got := ClientChrome.String(); got != "1 (chrome)" {
		t.Errorf("String = %q", got)
	}
	if got := ClientType('x').String(); got != "ClientType(0x78)" {
		t.Errorf("String = %q", got)
	}
}

// malformedCases are bad inputs built from the vector; each names the
// sentinel error expected.
func malformedCases(t testing.TB) []struct {
	name string
	in   string
	want error
} {
	v, c := loadQR(t)
	n := base64.StdEncoding.EncodeToString(c.NoisePub[:])
	id := base64.StdEncoding.EncodeToString(c.IdentityPub[:])
	adv := base64.StdEncoding.EncodeToString(c.AdvSecret[:])
	zero := base64.StdEncoding.EncodeToString(make([]byte, 32))
	join := func(f ...string) string { return Prefix + strings.Join(f, ",") }
	return []struct {
		name string
		in   string
		want error
	}{
		{"empty", "", ErrFieldCount},
		{"prefix only", Prefix, ErrFieldCount},
		{"three fields", join(v.Ref, n, id), ErrFieldCount},
		{"six fields", join(v.Ref, n, id, adv, "1", "x"), ErrFieldCount},
		{"trailing comma", v.Current + ",", ErrFieldCount},
		{"too long", strings.Repeat("A", MaxLen+1), ErrTooLong},
		{"empty ref", join("", n, id, adv, "1"), ErrBadRef},
		{"ref with space", join("2@a b", n, id, adv, "1"), ErrBadRef},
		{"ref with newline", join("2@a\nb", n, id, adv, "1"), ErrBadRef},
		{"ref non-ascii", join("2@é", n, id, adv, "1"), ErrBadRef},
		{"ref too long", strings.Join([]string{strings.Repeat("r", MaxRefLen+1), n, id, adv}, ","), ErrBadRef},
		{"ref too long current form", join(strings.Repeat("r", MaxRefLen+1), n, id, adv, "1"), ErrTooLong},
		{"ref is url", Prefix + v.Current, ErrBadRef},
		{"noise short", join(v.Ref, n[:40], id, adv, "1"), ErrBadKey},
		{"noise unpadded", join(v.Ref, strings.TrimRight(n, "="), id, adv, "1"), ErrBadKey},
		{"noise url alphabet", join(v.Ref, strings.NewReplacer("+", "-", "/", "_").Replace(n), id, adv, "1"), ErrBadKey},
		{"identity 33 bytes", join(v.Ref, n, base64.StdEncoding.EncodeToString(make([]byte, 33)), adv, "1"), ErrBadKey},
		{"adv newline", join(v.Ref, n, id, adv[:20]+"\n"+adv[21:], "1"), ErrBadKey},
		{"adv bad char", join(v.Ref, n, id, adv[:20]+"*"+adv[21:], "1"), ErrBadKey},
		{"adv non-canonical", join(v.Ref, n, id, adv[:42]+"b=", "1"), ErrBadKey},
		{"adv all zero", join(v.Ref, n, id, zero, "1"), ErrBadKey},
		{"noise all zero", join(v.Ref, zero, id, adv, "1"), ErrBadKey},
		{"adv empty", join(v.Ref, n, id, "", "1"), ErrBadKey},
		{"type empty", join(v.Ref, n, id, adv, ""), ErrBadClientType},
		{"type two chars", join(v.Ref, n, id, adv, "12"), ErrBadClientType},
		{"type unknown", join(v.Ref, n, id, adv, "a"), ErrBadClientType},
		{"type upper C", join(v.Ref, n, id, adv, "C"), ErrBadClientType},
		{"type NUL", join(v.Ref, n, id, adv, "\x00"), ErrBadClientType},
	}
}

func TestParseMalformed(t *testing.T) {
	_, c := loadQR(t)
	adv := base64.StdEncoding.EncodeToString(c.AdvSecret[:])
	for _, tt := range malformedCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse error = %v, want %v", err, tt.want)
			}
			if got != (Code{}) {
				t.Error("Parse returned a non-zero Code with an error")
			}
			assertNoSecret(t, err.Error(), adv, c)
		})
	}
}

func TestBuildErrors(t *testing.T) {
	_, c := loadQR(t)
	adv := base64.StdEncoding.EncodeToString(c.AdvSecret[:])
	tests := []struct {
		name   string
		mutate func(*Code)
		want   error
	}{
		{"empty ref", func(c *Code) { c.Ref = "" }, ErrBadRef},
		{"ref with comma", func(c *Code) { c.Ref = "2@a,b" }, ErrBadRef},
		{"ref with prefix", func(c *Code) { c.Ref = Prefix + "x" }, ErrBadRef},
		{"ref too long", func(c *Code) { c.Ref = strings.Repeat("r", MaxRefLen+1) }, ErrBadRef},
		{"zero noise", func(c *Code) { c.NoisePub = [32]byte{} }, ErrBadKey},
		{"zero identity", func(c *Code) { c.IdentityPub = [32]byte{} }, ErrBadKey},
		{"zero adv", func(c *Code) { c.AdvSecret = [32]byte{} }, ErrBadKey},
		{"no client type", func(c *Code) { c.ClientType = 0 }, ErrBadClientType},
		{"bad client type", func(c *Code) { c.ClientType = 'z' }, ErrBadClientType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc := c
			cc.ClientType = ClientChrome
			tt.mutate(&cc)
			s, err := cc.Encode()
			if !errors.Is(err, tt.want) || s != "" {
				t.Fatalf("Encode = %q, %v; want %v", s, err, tt.want)
			}
			assertNoSecret(t, err.Error(), adv, c)
		})
	}
	// The legacy form has no client type to check.
	c.Legacy = true
	if _, err := c.Encode(); err != nil {
		t.Errorf("legacy encode with zero client type: %v", err)
	}
}

// assertNoSecret fails if s contains the ADV secret (base64, hex or a long
// piece of it) or the ref.
func assertNoSecret(t *testing.T, s, advB64 string, c Code) {
	t.Helper()
	advHex := hex.EncodeToString(c.AdvSecret[:])
	for _, secret := range []string{advB64, advB64[:12], advB64[20:32], advHex, advHex[:16], c.Ref} {
		if strings.Contains(s, secret) {
			t.Errorf("%q leaks secret material", s)
		}
	}
	if strings.Contains(s, Prefix) {
		t.Errorf("%q echoes the QR text", s)
	}
}

func TestCodeRedaction(t *testing.T) {
	v, _ := loadQR(t)
	c, err := Parse(v.Current)
	if err != nil {
		t.Fatal(err)
	}
	adv := base64.StdEncoding.EncodeToString(c.AdvSecret[:])
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("qr", "code", c)
	slog.New(slog.NewTextHandler(&logged, nil)).Info("qr", "code", c)
	outputs := map[string]string{
		"String":    c.String(),
		"%v":        fmt.Sprintf("%v", c),
		"%+v":       fmt.Sprintf("%+v", c),
		"%#v":       fmt.Sprintf("%#v", c),
		"%s":        fmt.Sprintf("%s", c),
		"pointer":   fmt.Sprintf("%v", &c),
		"slog":      logged.String(),
		"errorf %v": fmt.Errorf("pairing with %v", c).Error(),
	}
	for name, out := range outputs {
		t.Run(name, func(t *testing.T) {
			assertNoSecret(t, out, adv, c)
			if !strings.Contains(out, "redacted") {
				t.Errorf("%q does not say the secret is redacted", out)
			}
		})
	}
	if !strings.Contains(logged.String(), `"client_type":"1"`) || !strings.Contains(logged.String(), fingerprint(&c.NoisePub)) {
		t.Errorf("log lacks the public parts: %s", logged.String())
	}
	legacy, err := Parse(v.Legacy)
	if err != nil {
		t.Fatal(err)
	}
	if s := legacy.String(); !strings.Contains(s, "legacy") || strings.Contains(s, adv) {
		t.Errorf("legacy String = %q", s)
	}
}

// quickCode generates valid Codes for testing/quick.
type quickCode struct{ Code }

const refChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789@+/=-_.:!#"

func (quickCode) Generate(r *rand.Rand, size int) reflect.Value {
	var c Code
	n := 1 + r.Intn(min(size, 200)+1)
	ref := make([]byte, n)
	for i := range ref {
		ref[i] = refChars[r.Intn(len(refChars))]
	}
	c.Ref = string(ref)
	for _, k := range []*[32]byte{&c.NoisePub, &c.IdentityPub, &c.AdvSecret} {
		for i := range k {
			k[i] = byte(r.Uint32())
		}
		k[r.Intn(32)] |= 1 // never all zero
	}
	c.Legacy = r.Intn(4) == 0
	if !c.Legacy {
		c.ClientType = ClientType("0123456789ce"[r.Intn(12)])
	}
	return reflect.ValueOf(quickCode{c})
}

func TestRoundTripProperty(t *testing.T) {
	prop := func(q quickCode) bool {
		s, err := q.Encode()
		if err != nil {
			t.Logf("encode: %v", err)
			return false
		}
		if q.Legacy == strings.HasPrefix(s, Prefix) {
			return false
		}
		got, err := Parse(s)
		if err != nil {
			t.Logf("parse: %v", err)
			return false
		}
		return got == q.Code
	}
	cfg := &quick.Config{MaxCount: 2000, Rand: rand.New(rand.NewSource(1))}
	if err := quick.Check(prop, cfg); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkBuild(b *testing.B) {
	_, c := loadQR(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Build(c.Ref, c.NoisePub, c.IdentityPub, c.AdvSecret, ClientChrome); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	v, _ := loadQR(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(v.Current); err != nil {
			b.Fatal(err)
		}
	}
}
