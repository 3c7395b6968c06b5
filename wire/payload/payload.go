package payload

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/waproto"
)

// Errors returned by the builders. They name the field that is wrong, never
// its value.
var (
	ErrBadVersion        = errors.New("payload: invalid version")
	ErrBadProfile        = errors.New("payload: unknown profile")
	ErrBadDeviceProps    = errors.New("payload: invalid device props")
	ErrZeroKey           = errors.New("payload: key or signature is all zero (not set)")
	ErrBadSignedPreKeyID = errors.New("payload: signed prekey ID does not fit in 3 bytes")
	ErrBadUsername       = errors.New("payload: username is not a phone number of 1 to 15 digits")
	ErrBadDevice         = errors.New("payload: device ID must be 1..65535 (0 is the phone)")
)

// Profile selects which whatsmeow behaviour the payloads follow, apart from
// the version number (see the package comment).
type Profile int

const (
	// ProfileCurrent follows whatsmeow HEAD: the login payload carries
	// lc=1, and DeviceProps.historySyncConfig also announces call-log and
	// group history, a 60-day thumbnail sync limit, and Manus/Hatch history.
	ProfileCurrent Profile = iota
	// ProfilePinned follows whatsmeow v0.0.0-20251217143725-11cf47c62d32,
	// which produced the test vectors: no lc field, and its smaller
	// historySyncConfig.
	ProfilePinned
)

// String returns "current" or "pinned".
func (p Profile) String() string {
	switch p {
	case ProfileCurrent:
		return "current"
	case ProfilePinned:
		return "pinned"
	default:
		return fmt.Sprintf("Profile(%d)", int(p))
	}
}

func (p Profile) validate() error {
	if p != ProfileCurrent && p != ProfilePinned {
		return fmt.Errorf("%w: %d", ErrBadProfile, int(p))
	}
	return nil
}

// DefaultOS is the DeviceProps os name used when DeviceProps.OS is empty; the
// phone shows it in its list of linked devices, after the platform (with
// PlatformType CHROME: "Chrome (Linux)"). It is an ordinary operating system
// name, as a browser would send, so that the device looks like WhatsApp Web.
const DefaultOS = "Linux"

// MaxOSLen bounds DeviceProps.OS, in bytes. The phone shows the name in a
// list; a long name is a configuration mistake.
const MaxOSLen = 64

// DeviceProps describes the companion to the phone at registration.
type DeviceProps struct {
	// OS is the name the phone shows for the linked device. Default
	// DefaultOS ("Linux"); whatsmeow sends "whatsmeow", a browser its
	// operating system. Valid UTF-8, at most MaxOSLen bytes.
	OS string
	// Version is the companion's own version. Default (zero) {0, 1, 0}, as
	// whatsmeow.
	Version Version
	// PlatformType is the browser/platform the phone shows an icon for.
	// Default UNKNOWN (0), as whatsmeow. It also selects the QR code's
	// client type (package qr).
	PlatformType waproto.DeviceProps_PlatformType
	// RequireFullSync asks the phone for full history. Default false.
	RequireFullSync bool
}

// BuildDeviceProps returns the DeviceProps message for p under profile prof,
// with defaults applied. It is sent serialized inside the registration
// payload.
func BuildDeviceProps(p DeviceProps, prof Profile) (*waproto.DeviceProps, error) {
	if err := prof.validate(); err != nil {
		return nil, err
	}
	osName := p.OS
	if osName == "" {
		osName = DefaultOS
	}
	if len(osName) > MaxOSLen {
		return nil, fmt.Errorf("%w: os name longer than %d bytes", ErrBadDeviceProps, MaxOSLen)
	}
	if !utf8.ValidString(osName) {
		return nil, fmt.Errorf("%w: os name is not valid UTF-8", ErrBadDeviceProps)
	}
	if p.PlatformType.Descriptor().Values().ByNumber(p.PlatformType.Number()) == nil {
		return nil, fmt.Errorf("%w: unknown platform type %d", ErrBadDeviceProps, int32(p.PlatformType))
	}
	ver := p.Version
	if ver.IsZero() {
		ver = Version{0, 1, 0}
	}
	return &waproto.DeviceProps{
		Os: proto.String(osName),
		Version: &waproto.DeviceProps_AppVersion{
			Primary:   proto.Uint32(ver.Primary),
			Secondary: proto.Uint32(ver.Secondary),
			Tertiary:  proto.Uint32(ver.Tertiary),
		},
		PlatformType:      p.PlatformType.Enum(),
		RequireFullSync:   proto.Bool(p.RequireFullSync),
		HistorySyncConfig: historySyncConfig(prof),
	}, nil
}

// historySyncConfig returns the capabilities whatsmeow announces (PROTOCOL.md
// 5.2). wafleet does not process history sync; it announces what the client
// it imitates announces so that it looks like that client.
func historySyncConfig(prof Profile) *waproto.DeviceProps_HistorySyncConfig {
	head := prof == ProfileCurrent
	c := &waproto.DeviceProps_HistorySyncConfig{
		StorageQuotaMb:                           proto.Uint32(10240),
		InlineInitialPayloadInE2EeMsg:            proto.Bool(true),
		SupportCallLogHistory:                    proto.Bool(head),
		SupportBotUserAgentChatHistory:           proto.Bool(true),
		SupportCagReactionsAndPolls:              proto.Bool(true),
		SupportBizHostedMsg:                      proto.Bool(true),
		SupportRecentSyncChunkMessageCountTuning: proto.Bool(true),
		SupportHostedGroupMsg:                    proto.Bool(true),
		SupportFbidBotChatHistory:                proto.Bool(true),
		SupportMessageAssociation:                proto.Bool(true),
		SupportGroupHistory:                      proto.Bool(head),
	}
	if head {
		c.ThumbnailSyncDaysLimit = proto.Uint32(60)
		c.SupportManusHistory = proto.Bool(true)
		c.SupportHatchHistory = proto.Bool(true)
	}
	return c
}

// base returns the fields common to both payloads (PROTOCOL.md 5.1).
func base(v Version) *waproto.ClientPayload {
	return &waproto.ClientPayload{
		UserAgent: &waproto.ClientPayload_UserAgent{
			Platform: waproto.ClientPayload_UserAgent_WEB.Enum(),
			AppVersion: &waproto.ClientPayload_UserAgent_AppVersion{
				Primary:   proto.Uint32(v.Primary),
				Secondary: proto.Uint32(v.Secondary),
				Tertiary:  proto.Uint32(v.Tertiary),
			},
			Mcc:                         proto.String("000"),
			Mnc:                         proto.String("000"),
			OsVersion:                   proto.String("0.1"),
			Manufacturer:                proto.String(""),
			Device:                      proto.String("Desktop"),
			OsBuildNumber:               proto.String("0.1"),
			ReleaseChannel:              waproto.ClientPayload_UserAgent_RELEASE.Enum(),
			LocaleLanguageIso6391:       proto.String("en"),
			LocaleCountryIso31661Alpha2: proto.String("US"),
		},
		WebInfo: &waproto.ClientPayload_WebInfo{
			WebSubPlatform: waproto.ClientPayload_WebInfo_WEB_BROWSER.Enum(),
		},
		ConnectType:   waproto.ClientPayload_WIFI_UNKNOWN.Enum(),
		ConnectReason: waproto.ClientPayload_USER_ACTIVATED.Enum(),
	}
}

// RegistrationData is the input of Registration: the device's long-term
// public keys (created once per device) and the payload options.
type RegistrationData struct {
	RegistrationID  uint32
	IdentityPub     [32]byte // X25519 identity public key
	SignedPreKeyID  uint32   // must fit in 3 bytes (whatsmeow uses 1)
	SignedPreKeyPub [32]byte // X25519 signed prekey public key
	SignedPreKeySig [64]byte // identity key's signature over 05 || SignedPreKeyPub

	Version     Version // zero: DefaultVersion()
	Profile     Profile // zero: ProfileCurrent
	DeviceProps DeviceProps
}

// Registration builds the payload of a device that is not yet paired
// (PROTOCOL.md 5.1 and 5.2).
func Registration(d RegistrationData) (*waproto.ClientPayload, error) {
	v := d.Version.orDefault()
	if err := v.validate(); err != nil {
		return nil, err
	}
	if d.SignedPreKeyID > 0xFFFFFF {
		return nil, ErrBadSignedPreKeyID
	}
	var zero [64]byte
	for _, k := range []struct {
		name string
		b    []byte
	}{
		{"identity public key", d.IdentityPub[:]},
		{"signed prekey public key", d.SignedPreKeyPub[:]},
		{"signed prekey signature", d.SignedPreKeySig[:]},
	} {
		if bytes.Equal(k.b, zero[:len(k.b)]) {
			return nil, fmt.Errorf("%w: %s", ErrZeroKey, k.name)
		}
	}
	dp, err := BuildDeviceProps(d.DeviceProps, d.Profile)
	if err != nil {
		return nil, err
	}
	dpBytes, err := proto.MarshalOptions{Deterministic: true}.Marshal(dp)
	if err != nil {
		return nil, fmt.Errorf("payload: marshal device props: %w", err)
	}

	regID := binary.BigEndian.AppendUint32(nil, d.RegistrationID)
	skeyID := binary.BigEndian.AppendUint32(nil, d.SignedPreKeyID)[1:]
	hash := BuildHash(v)

	p := base(v)
	p.Passive = proto.Bool(false)
	p.Pull = proto.Bool(false)
	p.DevicePairingData = &waproto.ClientPayload_DevicePairingRegistrationData{
		ERegid:      regID,
		EKeytype:    []byte{0x05},
		EIdent:      bytes.Clone(d.IdentityPub[:]),
		ESkeyID:     skeyID,
		ESkeyVal:    bytes.Clone(d.SignedPreKeyPub[:]),
		ESkeySig:    bytes.Clone(d.SignedPreKeySig[:]),
		BuildHash:   hash[:],
		DeviceProps: dpBytes,
	}
	return p, nil
}

// LoginData is the input of Login: the paired device's phone-number device
// JID, split into its parts, and the payload options.
type LoginData struct {
	// Username is the phone number (user part of the device JID,
	// e.g. 15551234567): 1 to 15 decimal digits, not zero.
	Username uint64
	// Device is the device ID of the JID (15551234567:5 → 5), 1..65535.
	Device uint32

	Version Version // zero: DefaultVersion()
	Profile Profile // zero: ProfileCurrent
}

// maxUsername is the largest E.164 number: 15 digits.
const maxUsername = 999_999_999_999_999

// Login builds the payload of a paired device (PROTOCOL.md 5.1 and 5.3).
func Login(d LoginData) (*waproto.ClientPayload, error) {
	v := d.Version.orDefault()
	if err := v.validate(); err != nil {
		return nil, err
	}
	if err := d.Profile.validate(); err != nil {
		return nil, err
	}
	if d.Username == 0 || d.Username > maxUsername {
		return nil, ErrBadUsername
	}
	if d.Device == 0 || d.Device > 0xFFFF {
		return nil, ErrBadDevice
	}
	p := base(v)
	p.Username = proto.Uint64(d.Username)
	p.Device = proto.Uint32(d.Device)
	p.Passive = proto.Bool(true)
	p.Pull = proto.Bool(true)
	p.LidDbMigrated = proto.Bool(true)
	if d.Profile == ProfileCurrent {
		p.Lc = proto.Int32(1)
	}
	return p, nil
}
