package jid

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Errors returned by Parse and UserInt.
var (
	ErrEmpty     = errors.New("jid: empty string")
	ErrMalformed = errors.New("jid: malformed")
	ErrNotNumber = errors.New("jid: user is not a number")
)

// Known servers (PROTOCOL.md 7.1).
const (
	DefaultUserServer = "s.whatsapp.net"
	HiddenUserServer  = "lid"
	GroupServer       = "g.us"
	LegacyUserServer  = "c.us"
	BroadcastServer   = "broadcast"
	NewsletterServer  = "newsletter"
	HostedServer      = "hosted"
	HostedLIDServer   = "hosted.lid"
	MessengerServer   = "msgr"
	InteropServer     = "interop"
	BotServer         = "bot"
)

// AD_JID domain types (PROTOCOL.md 7.2). Any other domain byte is an agent
// number on DefaultUserServer.
const (
	DomainWhatsApp  uint8 = 0
	DomainLID       uint8 = 1
	DomainHosted    uint8 = 128
	DomainHostedLID uint8 = 129
)

// JID identifies a user, a device of a user, a group or a server.
//
// Device 0 is the primary device of an account; companions have 1, 2, ...
// RawAgent is the AD_JID domain byte when it is not one of the known
// domain types (it is then kept on DefaultUserServer). Integrator is only
// meaningful for InteropServer.
type JID struct {
	User       string
	RawAgent   uint8
	Device     uint16
	Integrator uint16
	Server     string
}

// ServerJID is the bare s.whatsapp.net JID used as to/from of control stanzas.
var ServerJID = JID{Server: DefaultUserServer}

// New returns the JID user@server (no device).
func New(user, server string) JID {
	return JID{User: user, Server: server}
}

// NewADJID returns the JID that an AD_JID with the given domain type, device
// and user stands for: domain 0 is s.whatsapp.net, 1 lid, 128 hosted and
// 129 hosted.lid; any other domain is kept as RawAgent on s.whatsapp.net.
func NewADJID(user string, domainType uint8, device uint16) JID {
	j := JID{User: user, Device: device}
	switch domainType {
	case DomainWhatsApp:
		j.Server = DefaultUserServer
	case DomainLID:
		j.Server = HiddenUserServer
	case DomainHosted:
		j.Server = HostedServer
	case DomainHostedLID:
		j.Server = HostedLIDServer
	default:
		j.Server = DefaultUserServer
		j.RawAgent = domainType
	}
	return j
}

// DomainType returns the AD_JID domain byte for j, and false when j's
// server has no AD_JID form (or its agent would read back as another
// server).
func (j JID) DomainType() (uint8, bool) {
	switch j.Server {
	case DefaultUserServer:
		switch j.RawAgent {
		case DomainLID, DomainHosted, DomainHostedLID:
			return 0, false
		}
		return j.RawAgent, true
	case HiddenUserServer:
		return DomainLID, j.RawAgent == 0
	case HostedServer:
		return DomainHosted, j.RawAgent == 0
	case HostedLIDServer:
		return DomainHostedLID, j.RawAgent == 0
	}
	return 0, false
}

// ToNonAD returns j without its device and agent (the account's user JID).
func (j JID) ToNonAD() JID {
	return JID{User: j.User, Integrator: j.Integrator, Server: j.Server}
}

// IsEmpty reports whether j has no server (the zero JID).
func (j JID) IsEmpty() bool {
	return j.Server == ""
}

// UserInt returns the user part as an unsigned integer (the phone number
// of a PN JID, as the login payload wants it).
func (j JID) UserInt() (uint64, error) {
	if j.User == "" || !allDigits(j.User) {
		return 0, fmt.Errorf("%w: %q", ErrNotNumber, j.User)
	}
	n, err := strconv.ParseUint(j.User, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q", ErrNotNumber, j.User)
	}
	return n, nil
}

// String returns the whatsmeow-style form: "server" for a server-only JID,
// "user@server", "user:device@server", or "user.agent:device@server" when
// RawAgent is set. Device 0 is not printed unless an agent is.
func (j JID) String() string {
	switch {
	case j.RawAgent > 0:
		return j.User + "." + strconv.Itoa(int(j.RawAgent)) + ":" + strconv.Itoa(int(j.Device)) + "@" + j.Server
	case j.Device > 0:
		return j.User + ":" + strconv.Itoa(int(j.Device)) + "@" + j.Server
	case j.User != "":
		return j.User + "@" + j.Server
	}
	return j.Server
}

// MarshalText implements encoding.TextMarshaler with the String form.
func (j JID) MarshalText() ([]byte, error) {
	return []byte(j.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with Parse.
func (j *JID) UnmarshalText(b []byte) error {
	p, err := Parse(string(b))
	if err != nil {
		return err
	}
	*j = p
	return nil
}

// Parse reads the String form. A string without '@' is a server-only JID;
// "@server" is accepted for it too. The user part may carry ":device"
// (0–65535) and, before it, ".agent" (0–255).
func Parse(s string) (JID, error) {
	if s == "" {
		return JID{}, ErrEmpty
	}
	at := strings.IndexByte(s, '@')
	if at < 0 {
		if strings.ContainsAny(s, ":") {
			return JID{}, fmt.Errorf("%w: %q: device without user", ErrMalformed, s)
		}
		return JID{Server: s}, nil
	}
	user, server := s[:at], s[at+1:]
	if server == "" {
		return JID{}, fmt.Errorf("%w: %q: empty server", ErrMalformed, s)
	}
	if strings.ContainsAny(server, "@:") {
		return JID{}, fmt.Errorf("%w: %q: bad server", ErrMalformed, s)
	}
	j := JID{Server: server}
	if colon := strings.IndexByte(user, ':'); colon >= 0 {
		dev := user[colon+1:]
		user = user[:colon]
		d, ok := parseSmall(dev, 0xFFFF)
		if !ok {
			return JID{}, fmt.Errorf("%w: %q: bad device", ErrMalformed, s)
		}
		j.Device = uint16(d)
		if dot := strings.IndexByte(user, '.'); dot >= 0 {
			a, ok := parseSmall(user[dot+1:], 0xFF)
			if !ok {
				return JID{}, fmt.Errorf("%w: %q: bad agent", ErrMalformed, s)
			}
			j.RawAgent = uint8(a)
			user = user[:dot]
		}
		if user == "" {
			return JID{}, fmt.Errorf("%w: %q: device without user", ErrMalformed, s)
		}
	} else if dot := strings.IndexByte(user, '.'); dot >= 0 {
		a, ok := parseSmall(user[dot+1:], 0xFF)
		if !ok {
			return JID{}, fmt.Errorf("%w: %q: bad agent", ErrMalformed, s)
		}
		j.RawAgent = uint8(a)
		user = user[:dot]
		if user == "" {
			return JID{}, fmt.Errorf("%w: %q: agent without user", ErrMalformed, s)
		}
	}
	j.User = user
	return j, nil
}

// parseSmall parses a non-empty run of decimal digits no larger than max.
func parseSmall(s string, max uint64) (uint64, bool) {
	if s == "" || len(s) > 5 || !allDigits(s) {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n > max {
		return 0, false
	}
	return n, true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
