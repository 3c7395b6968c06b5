package store

import (
	"crypto/subtle"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/wafleet/wafleet/crypto"
)

// Limits on variable-length fields. Validate enforces them and the codec
// refuses records that exceed them before allocating anything.
const (
	MaxIDLen           = 64        // Device.ID
	MaxJIDLen          = 64        // Device.JID and Device.LID
	MaxBusinessNameLen = 1024      // Device.BusinessName
	MaxPlatformLen     = 256       // Device.Platform
	MaxAccountLen      = 16 * 1024 // Device.Account (a serialized ADVSignedDeviceIdentity is a few hundred bytes)
	MaxSignedPreKeyID  = 1<<24 - 1 // the prekey ID travels as 3 bytes (PROTOCOL.md 5.2)
)

// Servers of the two device JIDs of a linked companion (PROTOCOL.md 7.4).
const (
	PNServer  = "s.whatsapp.net"
	LIDServer = "lid"
)

// KeyPair is an X25519 key pair. Priv is secret: KeyPair never prints it
// (String, Format, LogValue show only whether the pair is set).
type KeyPair struct {
	Priv [32]byte
	Pub  [32]byte
}

// IsZero reports whether both halves are all zeros.
func (k KeyPair) IsZero() bool { return k.Priv == [32]byte{} && k.Pub == [32]byte{} }

// String describes the pair without revealing any key bytes.
func (k KeyPair) String() string {
	if k.IsZero() {
		return "KeyPair(unset)"
	}
	return "KeyPair(set)"
}

// Format makes every fmt verb (%v, %+v, %#v, %x, %s …) print String, so a
// stray Printf cannot leak the private key.
func (k KeyPair) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }

// LogValue keeps key bytes out of structured logs.
func (k KeyPair) LogValue() slog.Value { return slog.StringValue(k.String()) }

// SignedPreKey is the Signal signed prekey: an X25519 pair, its ID and the
// identity key's signature over 0x05 || Pub (PROTOCOL.md 5.2).
type SignedPreKey struct {
	ID uint32
	KeyPair
	Signature [64]byte
}

// String describes the prekey without revealing any key bytes.
func (p SignedPreKey) String() string {
	return "SignedPreKey(id=" + strconv.FormatUint(uint64(p.ID), 10) + ", " + p.KeyPair.String() + ")"
}

// Format makes every fmt verb print String (the embedded KeyPair would
// otherwise lend its own Format and hide the ID).
func (p SignedPreKey) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(p.String())) }

// LogValue keeps key bytes out of structured logs.
func (p SignedPreKey) LogValue() slog.Value { return slog.StringValue(p.String()) }

// Device is everything a linked companion device persists: the key material
// created once per account (PROTOCOL.md 5.2) and, after pairing, the state of
// PROTOCOL.md 8.8. Pairing fields hold their zero values while unpaired.
//
// A Device carries secrets (private keys, ADV secret). String, Format,
// GoString and LogValue never print them, nor any key bytes.
type Device struct {
	// ID is the account id from config: 1..64 of [A-Za-z0-9._-].
	ID string

	NoiseKey       KeyPair
	IdentityKey    KeyPair
	SignedPreKey   SignedPreKey
	RegistrationID uint32
	AdvSecret      [32]byte

	// Set by pairing.

	// JID is the PN device JID, "<phone>:<device>@s.whatsapp.net".
	JID string
	// LID is the LID device JID, "<lid>:<device>@lid"; it may be empty when
	// the server sent none.
	LID          string
	BusinessName string
	Platform     string
	// Account is the serialized ADVSignedDeviceIdentity (details,
	// accountSignatureKey, accountSignature, deviceSignature).
	Account []byte
	// MainDeviceIdentity is the primary phone's identity key
	// (accountSignatureKey).
	MainDeviceIdentity [32]byte
	PairedAt           time.Time
}

// Paired reports whether the device has completed pairing (its JID is set).
func (d *Device) Paired() bool { return d != nil && d.JID != "" }

// PNUser returns the user part of JID ("15551234567"), or "" when unpaired
// or malformed.
func (d *Device) PNUser() string {
	if d == nil {
		return ""
	}
	u, _, err := parseDeviceJID(d.JID, PNServer)
	if err != nil {
		return ""
	}
	return u
}

// LIDUser returns the user part of LID, or "" when unset or malformed.
func (d *Device) LIDUser() string {
	if d == nil {
		return ""
	}
	u, _, err := parseDeviceJID(d.LID, LIDServer)
	if err != nil {
		return ""
	}
	return u
}

// Clone returns a deep copy of d.
func (d *Device) Clone() *Device {
	if d == nil {
		return nil
	}
	c := *d
	if d.Account != nil {
		c.Account = append([]byte(nil), d.Account...)
	}
	return &c
}

// String describes the device for humans without secrets or key bytes.
// String, GoString, Format and LogValue have value receivers so that a
// Device printed by value is redacted as well as a *Device.
func (d Device) String() string {
	var b strings.Builder
	b.WriteString("Device(id=")
	b.WriteString(strconv.Quote(d.ID))
	if d.JID != "" {
		b.WriteString(", jid=")
		b.WriteString(strconv.Quote(d.JID))
		if d.LID != "" {
			b.WriteString(", lid=")
			b.WriteString(strconv.Quote(d.LID))
		}
	} else {
		b.WriteString(", unpaired")
	}
	b.WriteString(")")
	return b.String()
}

// GoString keeps %#v from dumping the struct with its secrets.
func (d Device) GoString() string { return d.String() }

// Format makes every fmt verb print String.
func (d Device) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(d.String())) }

// LogValue renders the device for slog: identity and pairing state only.
func (d Device) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("id", d.ID),
		slog.Bool("paired", d.JID != ""),
	}
	if d.JID != "" {
		attrs = append(attrs,
			slog.String("jid", d.JID),
			slog.String("lid", d.LID),
			slog.String("platform", d.Platform),
			slog.Time("paired_at", d.PairedAt),
		)
	}
	return slog.GroupValue(attrs...)
}

// ValidationError says which field of a Device is invalid and why. It never
// contains secret values. errors.Is(err, ErrInvalidDevice) holds for it.
type ValidationError struct {
	Field   string // e.g. "NoiseKey.Pub"
	Problem string // e.g. "does not match NoiseKey.Priv"
}

func (e *ValidationError) Error() string {
	return "store: invalid device: " + e.Field + ": " + e.Problem
}

// Is makes errors.Is(err, ErrInvalidDevice) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalidDevice }

func invalid(field, problem string) error { return &ValidationError{Field: field, Problem: problem} }

// ValidateID checks an account id: 1..MaxIDLen characters from
// [A-Za-z0-9._-]. The error names the problem, not the id itself.
func ValidateID(id string) error {
	if id == "" {
		return invalid("ID", "empty")
	}
	if len(id) > MaxIDLen {
		return invalid("ID", fmt.Sprintf("%d bytes long, at most %d allowed", len(id), MaxIDLen))
	}
	for i := 0; i < len(id); i++ {
		if !idChar(id[i]) {
			return invalid("ID", fmt.Sprintf("byte %d is not a letter, digit, '-', '_' or '.'", i))
		}
	}
	return nil
}

func idChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '_' || c == '.'
}

// Validate checks that d is complete and consistent: a valid ID, non-zero key
// material whose public halves match the private ones, and either no pairing
// state at all or a complete one (JID, account record, main device identity,
// pairing time; LID optional but, when set, with the same device number).
// Errors are *ValidationError and never contain secret values.
//
// Checking that the public halves match costs three X25519 base-point
// multiplications, so it runs where a device is written (Save, Encode), not
// where a stored record is read back (see Decode).
func (d *Device) Validate() error {
	return d.validate(true)
}

// validate is Validate; with derive false it requires the key halves to be
// set but does not re-derive the public halves from the private ones.
func (d *Device) validate(derive bool) error {
	if d == nil {
		return invalid("Device", "nil")
	}
	if err := ValidateID(d.ID); err != nil {
		return err
	}
	if err := checkKeyPair("NoiseKey", d.NoiseKey, derive); err != nil {
		return err
	}
	if err := checkKeyPair("IdentityKey", d.IdentityKey, derive); err != nil {
		return err
	}
	if err := checkKeyPair("SignedPreKey", d.SignedPreKey.KeyPair, derive); err != nil {
		return err
	}
	if d.SignedPreKey.ID == 0 || d.SignedPreKey.ID > MaxSignedPreKeyID {
		return invalid("SignedPreKey.ID", fmt.Sprintf("%d is outside 1..%d", d.SignedPreKey.ID, MaxSignedPreKeyID))
	}
	if d.SignedPreKey.Signature == [64]byte{} {
		return invalid("SignedPreKey.Signature", "all zeros")
	}
	if isZero32(&d.AdvSecret) {
		return invalid("AdvSecret", "all zeros")
	}
	if !d.Paired() {
		return d.checkUnpaired()
	}
	return d.checkPaired()
}

func (d *Device) checkUnpaired() error {
	switch {
	case d.LID != "":
		return invalid("LID", "set on an unpaired device (JID is empty)")
	case d.BusinessName != "":
		return invalid("BusinessName", "set on an unpaired device (JID is empty)")
	case d.Platform != "":
		return invalid("Platform", "set on an unpaired device (JID is empty)")
	case len(d.Account) != 0:
		return invalid("Account", "set on an unpaired device (JID is empty)")
	case !isZero32(&d.MainDeviceIdentity):
		return invalid("MainDeviceIdentity", "set on an unpaired device (JID is empty)")
	case !d.PairedAt.IsZero():
		return invalid("PairedAt", "set on an unpaired device (JID is empty)")
	}
	return nil
}

func (d *Device) checkPaired() error {
	_, pnDev, err := parseDeviceJID(d.JID, PNServer)
	if err != nil {
		return invalid("JID", err.Error())
	}
	if d.LID != "" {
		_, lidDev, err := parseDeviceJID(d.LID, LIDServer)
		if err != nil {
			return invalid("LID", err.Error())
		}
		if lidDev != pnDev {
			return invalid("LID", fmt.Sprintf("device %d differs from the JID's device %d", lidDev, pnDev))
		}
	}
	switch {
	case len(d.BusinessName) > MaxBusinessNameLen:
		return invalid("BusinessName", fmt.Sprintf("%d bytes long, at most %d allowed", len(d.BusinessName), MaxBusinessNameLen))
	case len(d.Platform) > MaxPlatformLen:
		return invalid("Platform", fmt.Sprintf("%d bytes long, at most %d allowed", len(d.Platform), MaxPlatformLen))
	case len(d.Account) == 0:
		return invalid("Account", "empty on a paired device")
	case len(d.Account) > MaxAccountLen:
		return invalid("Account", fmt.Sprintf("%d bytes long, at most %d allowed", len(d.Account), MaxAccountLen))
	case isZero32(&d.MainDeviceIdentity):
		return invalid("MainDeviceIdentity", "all zeros on a paired device")
	case d.PairedAt.IsZero():
		return invalid("PairedAt", "zero on a paired device")
	}
	return nil
}

// checkKeyPair requires both halves to be set and, with derive, Pub to be the
// X25519 public key of Priv (X25519 clamps the scalar, so any 32 bytes are a
// usable private key).
func checkKeyPair(name string, k KeyPair, derive bool) error {
	if isZero32(&k.Priv) {
		return invalid(name+".Priv", "all zeros")
	}
	if isZero32(&k.Pub) {
		return invalid(name+".Pub", "all zeros")
	}
	if !derive {
		return nil
	}
	if pub := crypto.PublicKey(&k.Priv); subtle.ConstantTimeCompare(pub[:], k.Pub[:]) != 1 {
		return invalid(name+".Pub", "does not match "+name+".Priv")
	}
	return nil
}

func isZero32(b *[32]byte) bool {
	var zero [32]byte
	return subtle.ConstantTimeCompare(b[:], zero[:]) == 1
}

// parseDeviceJID parses "<digits>:<device>@<server>" as a companion device
// JID in its canonical string form (PROTOCOL.md 7.3): the user is 1..32 ASCII
// digits and the device a decimal 1..65535 without leading zeros (device 0 is
// the primary phone and is never a companion's). Error texts describe the
// problem without echoing the input.
func parseDeviceJID(s, server string) (user string, device uint16, err error) {
	if len(s) > MaxJIDLen {
		return "", 0, fmt.Errorf("%d bytes long, at most %d allowed", len(s), MaxJIDLen)
	}
	at := strings.IndexByte(s, '@')
	if at < 0 {
		return "", 0, fmt.Errorf("no '@' (want <user>:<device>@%s)", server)
	}
	if s[at+1:] != server {
		return "", 0, fmt.Errorf("server is not %q", server)
	}
	left := s[:at]
	colon := strings.IndexByte(left, ':')
	if colon < 0 {
		return "", 0, fmt.Errorf("no device part (want <user>:<device>@%s; device 0 is the primary phone)", server)
	}
	user, devStr := left[:colon], left[colon+1:]
	if user == "" || len(user) > 32 || !allDigits(user) {
		return "", 0, fmt.Errorf("user part is not 1..32 decimal digits")
	}
	if devStr == "" || !allDigits(devStr) || devStr[0] == '0' || len(devStr) > 5 {
		return "", 0, fmt.Errorf("device part is not a decimal 1..65535")
	}
	n, err := strconv.ParseUint(devStr, 10, 16)
	if err != nil || n == 0 {
		return "", 0, fmt.Errorf("device part is not a decimal 1..65535")
	}
	return user, uint16(n), nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
