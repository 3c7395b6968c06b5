package emulator

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Default values of the faults that take one.
const (
	// DefaultSlowServerHello is the delay of "slow-server-hello" without a value.
	DefaultSlowServerHello = 3 * time.Second
	// DefaultDisconnectRate is the rate of "random-disconnects" without a value
	// (per second per logged-in connection).
	DefaultDisconnectRate = 0.05
	// DefaultTemporaryBan is the length of "login-failure-402" without a value.
	DefaultTemporaryBan = 30 * time.Second
	// maxDisconnectRate bounds random-disconnects (1000 per second: every
	// millisecond on average).
	maxDisconnectRate = 1000
)

// Faults selects the misbehaviour a server injects. The zero value is a
// well-behaved server. Each field is one fault of the table in doc.go, named
// there in kebab-case; Set parses those names, so *Faults is a flag.Value
// for a repeatable --fault flag.
type Faults struct {
	// Certificate faults: the ServerHello's chain fails one check of
	// PROTOCOL.md 3.3 (every handshake).
	BadRootSignature   bool // bad-root-signature: intermediate signed by another root
	WrongLeafKey       bool // wrong-leaf-key: leaf certifies a key that is not the static key
	ExpiredCertificate bool // expired-certificate: the leaf's validity ended an hour ago
	WrongIssuerSerial  bool // wrong-issuer-serial: leaf issuerSerial ≠ intermediate serial

	// Handshake faults, after the ClientHello has been read.
	DropAfterHello  bool          // drop-after-hello: close the socket
	StallAfterHello bool          // stall-after-hello: never answer; keep the socket open
	SlowServerHello time.Duration // slow-server-hello=DUR: wait DUR, then answer
	HugeServerHello bool          // huge-server-hello: announce a 16 MiB ServerHello and trickle its body

	// Pairing faults (the phone's pair-success).
	BadPairHMAC         bool // bad-pair-hmac: HMAC made with a wrong ADV secret
	BadAccountSignature bool // bad-account-signature: account signature corrupted

	// Link-code faults (the phone's answer to a code typed on it).
	LinkCodeNoAnswer        bool // link-code-no-answer: the phone takes the code, the companion never hears
	LinkCodeBadPrimaryHello bool // link-code-bad-primary-hello: the wrapped primary ephemeral is 40 bytes

	// Session faults.
	LoginFailure401      bool // login-failure-401: every login gets <failure reason="401"/>
	ConflictAfterSuccess bool // conflict-after-success: <success/>, then conflict/replaced
	// RestartAfterActive (restart-after-active): every logged-in connection
	// gets <stream:error code="515"/> right after its <active/> is answered,
	// so a client reconnecting at once on 515 storms the server.
	RestartAfterActive bool
	RandomDisconnects  float64 // random-disconnects=RATE: drop logged-in sockets at RATE per second
	RefuseConnections  bool    // refuse-connections: answer the WebSocket upgrade with HTTP 503

	// LoginFailure402 (login-failure-402=DURATION) is a temporary ban: from
	// the moment the fault is set (New or SetFaults) until DURATION has
	// passed, logins get <failure reason="402" code="101" expire="SECONDS
	// LEFT"/>; afterwards logins succeed again while the fault stays listed
	// (spent). Setting it again with the same duration keeps the running ban;
	// another duration starts a new one.
	LoginFailure402 time.Duration
	// LoginFailure403 (login-failure-403): logins of a paired device get
	// <failure reason="403" logout_message_header logout_message_subtext/>
	// and the device is removed (the account is locked).
	LoginFailure403 bool
	// LoginFailure406 (login-failure-406): logins of a paired device get
	// <failure reason="406"/> and the device is removed (banned).
	LoginFailure406 bool
	// DropPongs (drop-pongs): keepalive pings (xmlns w:p) get no answer
	// while the fault is on, live connections included.
	DropPongs bool
}

// faultDef describes one fault name: how to set it and how to show it.
type faultDef struct {
	name  string
	value string // "" (flag), "duration" or "rate"
	set   func(f *Faults, v string) error
	get   func(f Faults) (on bool, value string)
}

func boolFault(name string, field func(*Faults) *bool) faultDef {
	return faultDef{
		name: name,
		set: func(f *Faults, v string) error {
			if v != "" {
				return fmt.Errorf("%w: %s takes no value", ErrBadFault, name)
			}
			*field(f) = true
			return nil
		},
		get: func(f Faults) (bool, string) { return *field(&f), "" },
	}
}

var faultDefs = []faultDef{
	boolFault("bad-root-signature", func(f *Faults) *bool { return &f.BadRootSignature }),
	boolFault("wrong-leaf-key", func(f *Faults) *bool { return &f.WrongLeafKey }),
	boolFault("expired-certificate", func(f *Faults) *bool { return &f.ExpiredCertificate }),
	boolFault("wrong-issuer-serial", func(f *Faults) *bool { return &f.WrongIssuerSerial }),
	boolFault("drop-after-hello", func(f *Faults) *bool { return &f.DropAfterHello }),
	boolFault("stall-after-hello", func(f *Faults) *bool { return &f.StallAfterHello }),
	{
		name: "slow-server-hello", value: "duration",
		set: func(f *Faults, v string) error {
			if v == "" {
				f.SlowServerHello = DefaultSlowServerHello
				return nil
			}
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return fmt.Errorf("%w: slow-server-hello wants a positive duration such as 3s", ErrBadFault)
			}
			f.SlowServerHello = d
			return nil
		},
		get: func(f Faults) (bool, string) { return f.SlowServerHello > 0, f.SlowServerHello.String() },
	},
	boolFault("huge-server-hello", func(f *Faults) *bool { return &f.HugeServerHello }),
	boolFault("bad-pair-hmac", func(f *Faults) *bool { return &f.BadPairHMAC }),
	boolFault("bad-account-signature", func(f *Faults) *bool { return &f.BadAccountSignature }),
	boolFault("link-code-no-answer", func(f *Faults) *bool { return &f.LinkCodeNoAnswer }),
	boolFault("link-code-bad-primary-hello", func(f *Faults) *bool { return &f.LinkCodeBadPrimaryHello }),
	boolFault("login-failure-401", func(f *Faults) *bool { return &f.LoginFailure401 }),
	boolFault("conflict-after-success", func(f *Faults) *bool { return &f.ConflictAfterSuccess }),
	boolFault("restart-after-active", func(f *Faults) *bool { return &f.RestartAfterActive }),
	{
		name: "random-disconnects", value: "rate",
		set: func(f *Faults, v string) error {
			if v == "" {
				f.RandomDisconnects = DefaultDisconnectRate
				return nil
			}
			r, err := strconv.ParseFloat(v, 64)
			if err != nil || math.IsNaN(r) || r <= 0 || r > maxDisconnectRate {
				return fmt.Errorf("%w: random-disconnects wants a rate per second in (0, %d], such as 0.05", ErrBadFault, maxDisconnectRate)
			}
			f.RandomDisconnects = r
			return nil
		},
		get: func(f Faults) (bool, string) {
			return f.RandomDisconnects > 0, strconv.FormatFloat(f.RandomDisconnects, 'g', -1, 64)
		},
	},
	boolFault("refuse-connections", func(f *Faults) *bool { return &f.RefuseConnections }),
	{
		name: "login-failure-402", value: "duration",
		set: func(f *Faults, v string) error {
			if v == "" {
				f.LoginFailure402 = DefaultTemporaryBan
				return nil
			}
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return fmt.Errorf("%w: login-failure-402 wants a positive duration such as 30s", ErrBadFault)
			}
			f.LoginFailure402 = d
			return nil
		},
		get: func(f Faults) (bool, string) { return f.LoginFailure402 > 0, f.LoginFailure402.String() },
	},
	boolFault("login-failure-403", func(f *Faults) *bool { return &f.LoginFailure403 }),
	boolFault("login-failure-406", func(f *Faults) *bool { return &f.LoginFailure406 }),
	boolFault("drop-pongs", func(f *Faults) *bool { return &f.DropPongs }),
}

// FaultNames returns the valid fault names in the order of the table in
// doc.go; the ones that take a value are shown as name=DURATION / name=RATE.
func FaultNames() []string {
	names := make([]string, len(faultDefs))
	for i, d := range faultDefs {
		names[i] = d.name
		switch d.value {
		case "duration":
			names[i] += "[=DURATION]"
		case "rate":
			names[i] += "[=RATE]"
		}
	}
	return names
}

// ParseFaults parses fault specs such as "drop-after-hello" or
// "slow-server-hello=3s" into Faults. An unknown name is ErrUnknownFault with
// the list of valid names.
func ParseFaults(specs ...string) (Faults, error) {
	var f Faults
	for _, s := range specs {
		if err := f.Set(s); err != nil {
			return Faults{}, err
		}
	}
	return f, nil
}

// Set turns on one fault given as NAME or NAME=VALUE (flag.Value).
func (f *Faults) Set(spec string) error {
	name, value, _ := strings.Cut(strings.TrimSpace(spec), "=")
	for _, d := range faultDefs {
		if d.name == name {
			return d.set(f, value)
		}
	}
	return fmt.Errorf("%w %q; valid faults: %s", ErrUnknownFault, name, strings.Join(FaultNames(), ", "))
}

// Specs returns the faults that are on, as specs that Set accepts.
func (f Faults) Specs() []string {
	var out []string
	for _, d := range faultDefs {
		if on, v := d.get(f); on {
			if d.value != "" {
				out = append(out, d.name+"="+v)
			} else {
				out = append(out, d.name)
			}
		}
	}
	return out
}

// String lists the faults that are on, comma-separated (flag.Value).
func (f *Faults) String() string {
	if f == nil {
		return ""
	}
	return strings.Join(f.Specs(), ",")
}
