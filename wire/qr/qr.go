package qr

import (
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/wafleet/wafleet/waproto"
)

// Prefix starts a QR code in the current form.
const Prefix = "https://wa.me/settings/linked_devices#"

// Limits on the input of Parse and Build.
const (
	// MaxRefLen bounds a ref. Refs seen in practice are about 100 bytes.
	MaxRefLen = 1024
	// MaxLen bounds a whole QR string: prefix, ref, three keys, TYPE and
	// separators.
	MaxLen = len(Prefix) + MaxRefLen + 3*keyB64Len + 1 + 4
)

// keyB64Len is the length of 32 bytes in padded standard base64.
const keyB64Len = 44

// Errors of Build and Parse. They say which field is wrong, never its value.
var (
	ErrTooLong       = errors.New("qr: code too long")
	ErrFieldCount    = errors.New("qr: code must have 4 (legacy) or 5 comma-separated fields")
	ErrBadRef        = errors.New("qr: invalid ref")
	ErrBadKey        = errors.New("qr: invalid key field")
	ErrBadClientType = errors.New("qr: invalid client type")
)

// ClientType is the one-character companion type in the last field of a
// current-form QR code.
type ClientType byte

// Client types (PROTOCOL.md 8.3).
const (
	ClientUnknown  ClientType = '0'
	ClientChrome   ClientType = '1'
	ClientEdge     ClientType = '2'
	ClientFirefox  ClientType = '3'
	ClientIE       ClientType = '4'
	ClientOpera    ClientType = '5'
	ClientSafari   ClientType = '6'
	ClientElectron ClientType = '7'
	ClientUWP      ClientType = '8'
	ClientOtherWeb ClientType = '9'
	ClientMacOS    ClientType = 'c'
	ClientAndroid  ClientType = 'e'
)

var clientTypeNames = map[ClientType]string{
	ClientUnknown:  "unknown",
	ClientChrome:   "chrome",
	ClientEdge:     "edge",
	ClientFirefox:  "firefox",
	ClientIE:       "ie",
	ClientOpera:    "opera",
	ClientSafari:   "safari",
	ClientElectron: "electron",
	ClientUWP:      "uwp",
	ClientOtherWeb: "web",
	ClientMacOS:    "macos",
	ClientAndroid:  "android",
}

// Valid reports whether t is one of the client types of the table.
func (t ClientType) Valid() bool {
	_, ok := clientTypeNames[t]
	return ok
}

// String returns the character and a name, e.g. "1 (chrome)".
func (t ClientType) String() string {
	if name, ok := clientTypeNames[t]; ok {
		return string(rune(t)) + " (" + name + ")"
	}
	return fmt.Sprintf("ClientType(%#02x)", byte(t))
}

// ClientTypeFor derives the client type the way whatsmeow does: from the
// DeviceProps platform type when it names a browser, UWP or Android phone,
// else from the user-agent platform (WEB → '9', MACOS → 'c'), else '0'.
func ClientTypeFor(pt waproto.DeviceProps_PlatformType, ua waproto.ClientPayload_UserAgent_Platform) ClientType {
	switch pt {
	case waproto.DeviceProps_CHROME:
		return ClientChrome
	case waproto.DeviceProps_FIREFOX:
		return ClientFirefox
	case waproto.DeviceProps_EDGE:
		return ClientEdge
	case waproto.DeviceProps_IE:
		return ClientIE
	case waproto.DeviceProps_OPERA:
		return ClientOpera
	case waproto.DeviceProps_SAFARI:
		return ClientSafari
	case waproto.DeviceProps_UWP:
		return ClientUWP
	case waproto.DeviceProps_ANDROID_PHONE:
		return ClientAndroid
	}
	switch ua {
	case waproto.ClientPayload_UserAgent_WEB:
		return ClientOtherWeb
	case waproto.ClientPayload_UserAgent_MACOS:
		return ClientMacOS
	}
	return ClientUnknown
}

// Code is a parsed QR code.
//
// AdvSecret is secret: Code's String, GoString and LogValue redact it (and
// the ref); do not log its fields one by one.
type Code struct {
	Ref         string
	NoisePub    [32]byte
	IdentityPub [32]byte
	AdvSecret   [32]byte
	// ClientType is the TYPE field; zero in the legacy form.
	ClientType ClientType
	// Legacy is true for the 4-field form (no TYPE field).
	Legacy bool
}

// Build returns the current-form QR text for one ref.
func Build(ref string, noisePub, identityPub, advSecret [32]byte, t ClientType) (string, error) {
	return Code{Ref: ref, NoisePub: noisePub, IdentityPub: identityPub, AdvSecret: advSecret, ClientType: t}.Encode()
}

// BuildLegacy returns the legacy 4-field QR text (no prefix, no TYPE), as
// older whatsmeow emitted it. Clients should emit the current form; this is
// for tests and for an emulator that checks both.
func BuildLegacy(ref string, noisePub, identityPub, advSecret [32]byte) (string, error) {
	return Code{Ref: ref, NoisePub: noisePub, IdentityPub: identityPub, AdvSecret: advSecret, Legacy: true}.Encode()
}

// Encode returns c as QR text: the legacy form if c.Legacy, else the current
// form. It checks the ref, that no key is all zero and, in the current form,
// the client type.
func (c Code) Encode() (string, error) {
	if err := checkRef(c.Ref); err != nil {
		return "", err
	}
	for _, k := range []struct {
		name string
		key  *[32]byte
	}{{"noise", &c.NoisePub}, {"identity", &c.IdentityPub}, {"adv", &c.AdvSecret}} {
		if isZero(k.key) {
			return "", fmt.Errorf("%w: %s key is all zero", ErrBadKey, k.name)
		}
	}
	n := len(c.Ref) + 3*(1+keyB64Len)
	if !c.Legacy {
		if !c.ClientType.Valid() {
			return "", fmt.Errorf("%w: not in the table", ErrBadClientType)
		}
		n += len(Prefix) + 2
	}
	var b strings.Builder
	b.Grow(n)
	if !c.Legacy {
		b.WriteString(Prefix)
	}
	b.WriteString(c.Ref)
	var enc [keyB64Len]byte
	for _, k := range []*[32]byte{&c.NoisePub, &c.IdentityPub, &c.AdvSecret} {
		b.WriteByte(',')
		base64.StdEncoding.Encode(enc[:], k[:])
		b.Write(enc[:])
	}
	if !c.Legacy {
		b.WriteByte(',')
		b.WriteByte(byte(c.ClientType))
	}
	return b.String(), nil
}

// Parse reads QR text in the current form or the legacy form: an optional
// Prefix, then 4 or 5 comma-separated fields. The three keys must be padded
// standard base64 of 32 bytes, not all zero; TYPE must be one character of the
// client-type table. Legacy is set when there are 4 fields.
func Parse(s string) (Code, error) {
	if len(s) > MaxLen {
		return Code{}, fmt.Errorf("%w: more than %d bytes", ErrTooLong, MaxLen)
	}
	s = strings.TrimPrefix(s, Prefix)
	commas := strings.Count(s, ",")
	if commas != 3 && commas != 4 {
		return Code{}, ErrFieldCount
	}
	fields := strings.Split(s, ",")
	n := len(fields)
	var c Code
	if err := checkRef(fields[0]); err != nil {
		return Code{}, err
	}
	c.Ref = fields[0]
	for i, k := range []struct {
		name string
		dst  *[32]byte
	}{{"noise", &c.NoisePub}, {"identity", &c.IdentityPub}, {"adv", &c.AdvSecret}} {
		if err := decodeKey(fields[i+1], k.dst); err != nil {
			return Code{}, fmt.Errorf("%w: %s key (field %d): %s", ErrBadKey, k.name, i+2, err)
		}
	}
	if n == 4 {
		c.Legacy = true
		return c, nil
	}
	if len(fields[4]) != 1 || !ClientType(fields[4][0]).Valid() {
		return Code{}, fmt.Errorf("%w: field 5 must be one character of the table", ErrBadClientType)
	}
	c.ClientType = ClientType(fields[4][0])
	return c, nil
}

// keyError is a reason a key field was refused; it carries no input.
type keyError string

func (e keyError) Error() string { return string(e) }

func decodeKey(f string, dst *[32]byte) error {
	if len(f) != keyB64Len {
		return keyError(fmt.Sprintf("want %d characters of padded base64, got %d", keyB64Len, len(f)))
	}
	var buf [33]byte
	n, err := base64.StdEncoding.Strict().Decode(buf[:], []byte(f))
	if err != nil || n != 32 {
		// The decoder's own error names only a position, but keep the
		// message independent of the input anyway.
		return keyError("not canonical padded standard base64 of 32 bytes")
	}
	copy(dst[:], buf[:32])
	clear(buf[:])
	if isZero(dst) {
		return keyError("all zero")
	}
	return nil
}

// checkRef accepts 1..MaxRefLen printable ASCII characters other than space
// and ',' that do not begin with Prefix (such a ref would not survive a
// round trip through the legacy form).
func checkRef(ref string) error {
	if ref == "" {
		return fmt.Errorf("%w: empty", ErrBadRef)
	}
	if len(ref) > MaxRefLen {
		return fmt.Errorf("%w: longer than %d bytes", ErrBadRef, MaxRefLen)
	}
	for i := 0; i < len(ref); i++ {
		if c := ref[i]; c <= ' ' || c >= 0x7f || c == ',' {
			return fmt.Errorf("%w: byte %d is not printable ASCII or is a comma", ErrBadRef, i)
		}
	}
	if strings.HasPrefix(ref, Prefix) {
		return fmt.Errorf("%w: begins with the URL prefix", ErrBadRef)
	}
	return nil
}

func isZero(k *[32]byte) bool {
	var zero [32]byte
	return subtle.ConstantTimeCompare(k[:], zero[:]) == 1
}

// fingerprint is a short prefix of a public key, for logs.
func fingerprint(k *[32]byte) string { return hex.EncodeToString(k[:4]) }

// String describes c without the ref or the ADV secret.
func (c Code) String() string {
	form := "current"
	if c.Legacy {
		form = "legacy"
	}
	ct := "none"
	if !c.Legacy {
		ct = c.ClientType.String()
	}
	return fmt.Sprintf("qr.Code{form: %s, ref: [%d bytes], noise: %s…, identity: %s…, adv: [redacted], type: %s}",
		form, len(c.Ref), fingerprint(&c.NoisePub), fingerprint(&c.IdentityPub), ct)
}

// GoString is String, so that %#v does not print the secret either.
func (c Code) GoString() string { return c.String() }

// LogValue implements slog.LogValuer with the secret and the ref left out.
func (c Code) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.Bool("legacy", c.Legacy),
		slog.Int("ref_len", len(c.Ref)),
		slog.String("noise_pub", fingerprint(&c.NoisePub)),
		slog.String("identity_pub", fingerprint(&c.IdentityPub)),
		slog.String("adv_secret", "[redacted]"),
	}
	if !c.Legacy {
		attrs = append(attrs, slog.String("client_type", string(rune(c.ClientType))))
	}
	return slog.GroupValue(attrs...)
}
