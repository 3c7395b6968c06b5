package store_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/storetest"
)

func TestDeviceAccessors(t *testing.T) {
	tests := []struct {
		name          string
		d             *store.Device
		paired        bool
		pnUser, lidUs string
	}{
		{"nil", nil, false, "", ""},
		{"unpaired", storetest.NewDevice(t, "a"), false, "", ""},
		{"paired", storetest.PairedDevice(t, "b", "15551234567", "123456789012345", 5), true, "15551234567", "123456789012345"},
		{"paired without lid", storetest.PairedDevice(t, "c", "15551234567", "", 5), true, "15551234567", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.d.Paired(); got != tt.paired {
				t.Errorf("Paired = %v, want %v", got, tt.paired)
			}
			if got := tt.d.PNUser(); got != tt.pnUser {
				t.Errorf("PNUser = %q, want %q", got, tt.pnUser)
			}
			if got := tt.d.LIDUser(); got != tt.lidUs {
				t.Errorf("LIDUser = %q, want %q", got, tt.lidUs)
			}
		})
	}
}

func TestDeviceClone(t *testing.T) {
	d := storetest.PairedDevice(t, "a", "15551234567", "123456789012345", 5)
	c := d.Clone()
	if diff := storetest.Diff(d, c); diff != nil {
		t.Fatalf("Clone differs in %v", diff)
	}
	c.Account[0] ^= 1
	c.NoiseKey.Priv[0] ^= 1
	if d.Account[0] == c.Account[0] || d.NoiseKey.Priv[0] == c.NoiseKey.Priv[0] {
		t.Fatal("Clone shares memory with the original")
	}
	if (*store.Device)(nil).Clone() != nil {
		t.Fatal("Clone of nil is not nil")
	}
}

func TestValidateNamesField(t *testing.T) {
	d := storetest.PairedDevice(t, "a", "15551234567", "123456789012345", 5)
	if err := d.Validate(); err != nil {
		t.Fatalf("valid device: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(d *store.Device)
		field  string
	}{
		{"noise pub", func(d *store.Device) { d.NoiseKey.Pub[3]++ }, "NoiseKey.Pub"},
		{"identity priv", func(d *store.Device) { d.IdentityKey.Priv = [32]byte{} }, "IdentityKey.Priv"},
		{"prekey id", func(d *store.Device) { d.SignedPreKey.ID = 0 }, "SignedPreKey.ID"},
		{"adv secret", func(d *store.Device) { d.AdvSecret = [32]byte{} }, "AdvSecret"},
		{"jid", func(d *store.Device) { d.JID = "x" }, "JID"},
		{"lid", func(d *store.Device) { d.LID = "1:5@s.whatsapp.net" }, "LID"},
		{"id", func(d *store.Device) { d.ID = "no spaces" }, "ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := d.Clone()
			tt.mutate(c)
			err := c.Validate()
			var ve *store.ValidationError
			if !errors.As(err, &ve) || ve.Field != tt.field || !errors.Is(err, store.ErrInvalidDevice) {
				t.Fatalf("Validate = %v, want a ValidationError on %s", err, tt.field)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("error %q does not name the field", err)
			}
		})
	}
}

func TestParseDeviceJIDForms(t *testing.T) {
	tests := []struct {
		jid, lid string
		ok       bool
	}{
		{"15551234567:5@s.whatsapp.net", "123456789012345:5@lid", true},
		{"1:65535@s.whatsapp.net", "", true},
		{"1:65536@s.whatsapp.net", "", false},
		{"1:05@s.whatsapp.net", "", false},
		{"1:@s.whatsapp.net", "", false},
		{":5@s.whatsapp.net", "", false},
		{"1.2:5@s.whatsapp.net", "", false},
		{"1:5@s.whatsapp.net.", "", false},
		{"1:5@", "", false},
		{"1:5", "", false},
		{"15551234567:5@s.whatsapp.net", "1:5@lid:5@lid", false},
		{"15551234567:5@s.whatsapp.net", "123456789012345@lid", false},
		{strings.Repeat("1", 33) + ":5@s.whatsapp.net", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.jid+"|"+tt.lid, func(t *testing.T) {
			d := storetest.PairedDevice(t, "a", "15551234567", "", 5)
			d.JID, d.LID = tt.jid, tt.lid
			if err := d.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

// secretForms are renderings of a secret that must never appear in output.
func secretForms(d *store.Device) []string {
	var forms []string
	for _, s := range [][32]byte{d.NoiseKey.Priv, d.IdentityKey.Priv, d.SignedPreKey.Priv, d.AdvSecret} {
		forms = append(forms,
			fmt.Sprintf("%x", s[:8]), fmt.Sprintf("%X", s[:8]),
			strings.Trim(fmt.Sprint(s[:6]), "[]"), // decimal, as %v of an array prints
			string(s[:8]),
		)
	}
	// Public keys are not secret but are not printed either.
	forms = append(forms, fmt.Sprintf("%x", d.NoiseKey.Pub[:8]))
	return forms
}

func TestDeviceNeverPrintsSecrets(t *testing.T) {
	d := storetest.PairedDevice(t, "acct-1", "15551234567", "123456789012345", 5)
	var outputs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
		outputs = append(outputs,
			fmt.Sprintf(verb, d), fmt.Sprintf(verb, *d),
			fmt.Sprintf(verb, d.NoiseKey), fmt.Sprintf(verb, &d.IdentityKey),
			fmt.Sprintf(verb, d.SignedPreKey),
		)
	}
	if got := fmt.Sprint((*store.Device)(nil)); got != "<nil>" {
		t.Errorf("Sprint(nil *Device) = %q, want <nil>", got)
	}
	outputs = append(outputs, d.String(), fmt.Sprint([]*store.Device{d}), fmt.Sprintf("%v", struct{ D *store.Device }{d}))
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	logger.Info("save", "device", d, "noise", d.NoiseKey, "spk", d.SignedPreKey)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("save", "device", d, "identity", d.IdentityKey)
	outputs = append(outputs, logs.String())

	for _, out := range outputs {
		for _, form := range secretForms(d) {
			if strings.Contains(out, form) {
				t.Fatalf("output %q reveals key bytes (%q)", out, form)
			}
		}
	}
	if s := d.String(); !strings.Contains(s, "acct-1") || !strings.Contains(s, "15551234567:5@s.whatsapp.net") {
		t.Fatalf("String = %q, want the id and JID", s)
	}
	if !strings.Contains(logs.String(), `"jid":"15551234567:5@s.whatsapp.net"`) {
		t.Fatalf("log lacks the JID: %s", logs.String())
	}
}
