package jid

import (
	"errors"
	"testing"
)

func TestParseString(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want JID
		str  string // expected String(); "" means same as in
	}{
		{"server only", "s.whatsapp.net", ServerJID, ""},
		{"server only with leading at", "@s.whatsapp.net", ServerJID, "s.whatsapp.net"},
		{"user", "15551234567@s.whatsapp.net", JID{User: "15551234567", Server: DefaultUserServer}, ""},
		{"pn device", "15551234567:5@s.whatsapp.net", JID{User: "15551234567", Device: 5, Server: DefaultUserServer}, ""},
		{"lid device", "123456789012345:5@lid", JID{User: "123456789012345", Device: 5, Server: HiddenUserServer}, ""},
		{"agent", "1555.7:3@s.whatsapp.net", JID{User: "1555", RawAgent: 7, Device: 3, Server: DefaultUserServer}, ""},
		{"agent device 0", "1555.7:0@s.whatsapp.net", JID{User: "1555", RawAgent: 7, Server: DefaultUserServer}, ""},
		{"agent without device", "1555.7@s.whatsapp.net", JID{User: "1555", RawAgent: 7, Server: DefaultUserServer}, "1555.7:0@s.whatsapp.net"},
		{"device 0 not printed", "1555:0@s.whatsapp.net", JID{User: "1555", Server: DefaultUserServer}, "1555@s.whatsapp.net"},
		{"max device", "1:65535@msgr", JID{User: "1", Device: 65535, Server: MessengerServer}, ""},
		{"group", "120363025246125486@g.us", JID{User: "120363025246125486", Server: GroupServer}, ""},
		{"broadcast", "status@broadcast", JID{User: "status", Server: BroadcastServer}, ""},
		{"hosted lid", "99:2@hosted.lid", JID{User: "99", Device: 2, Server: HostedLIDServer}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("Parse(%q) = %#v, want %#v", tt.in, got, tt.want)
			}
			wantStr := tt.str
			if wantStr == "" {
				wantStr = tt.in
			}
			if s := got.String(); s != wantStr {
				t.Fatalf("String() = %q, want %q", s, wantStr)
			}
			again, err := Parse(got.String())
			if err != nil || again != got {
				t.Fatalf("Parse(String()) = %#v, %v; want %#v", again, err, got)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty", "", ErrEmpty},
		{"bad device", "1:x@s.whatsapp.net", ErrMalformed},
		{"empty device", "1:@s.whatsapp.net", ErrMalformed},
		{"device too big", "1:65536@s.whatsapp.net", ErrMalformed},
		{"negative device", "1:-1@s.whatsapp.net", ErrMalformed},
		{"plus device", "1:+1@s.whatsapp.net", ErrMalformed},
		{"two colons", "1:2:3@s.whatsapp.net", ErrMalformed},
		{"bad agent", "1.x:2@s.whatsapp.net", ErrMalformed},
		{"agent too big", "1.256:2@s.whatsapp.net", ErrMalformed},
		{"two dots", "1.2.3:4@s.whatsapp.net", ErrMalformed},
		{"empty server", "123@", ErrMalformed},
		{"two ats", "a@b@c", ErrMalformed},
		{"device without user", ":5@s.whatsapp.net", ErrMalformed},
		{"agent without user", ".5@s.whatsapp.net", ErrMalformed},
		{"colon in server only", "5:s.whatsapp.net", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse(%q) = %#v, %v; want error %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestADJIDDomains(t *testing.T) {
	tests := []struct {
		domain uint8
		server string
		agent  uint8
	}{
		{0, DefaultUserServer, 0},
		{1, HiddenUserServer, 0},
		{128, HostedServer, 0},
		{129, HostedLIDServer, 0},
		{2, DefaultUserServer, 2},
		{200, DefaultUserServer, 200},
	}
	for _, tt := range tests {
		t.Run(tt.server, func(t *testing.T) {
			j := NewADJID("15551234567", tt.domain, 7)
			if j.Server != tt.server || j.RawAgent != tt.agent || j.Device != 7 || j.User != "15551234567" {
				t.Fatalf("NewADJID(%d) = %#v", tt.domain, j)
			}
			d, ok := j.DomainType()
			if !ok || d != tt.domain {
				t.Fatalf("DomainType() = %d, %v; want %d", d, ok, tt.domain)
			}
		})
	}
	for _, j := range []JID{
		{User: "1", Server: GroupServer},
		{User: "1", Server: DefaultUserServer, RawAgent: 1},
		{User: "1", Server: DefaultUserServer, RawAgent: 128},
		{User: "1", Server: HiddenUserServer, RawAgent: 3},
	} {
		if d, ok := j.DomainType(); ok {
			t.Errorf("DomainType(%#v) = %d, true; want false", j, d)
		}
	}
}

func TestHelpers(t *testing.T) {
	j := JID{User: "15551234567", RawAgent: 3, Device: 5, Server: DefaultUserServer}
	if got := j.ToNonAD(); got != New("15551234567", DefaultUserServer) {
		t.Errorf("ToNonAD() = %#v", got)
	}
	if j.IsEmpty() || !(JID{}).IsEmpty() {
		t.Error("IsEmpty wrong")
	}
	if n, err := j.UserInt(); err != nil || n != 15551234567 {
		t.Errorf("UserInt() = %d, %v", n, err)
	}
	for _, u := range []string{"", "abc", "-1", "+1", "99999999999999999999999"} {
		if _, err := New(u, DefaultUserServer).UserInt(); !errors.Is(err, ErrNotNumber) {
			t.Errorf("UserInt(%q) error = %v", u, err)
		}
	}
	var back JID
	txt, _ := j.MarshalText()
	if err := back.UnmarshalText(txt); err != nil || back != j {
		t.Errorf("text round trip = %#v, %v", back, err)
	}
	if err := back.UnmarshalText([]byte("1:x@lid")); !errors.Is(err, ErrMalformed) {
		t.Errorf("UnmarshalText bad = %v", err)
	}
}
