package storetest_test

import (
	"slices"
	"testing"
	"time"

	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/storetest"
)

// TestDiffSeesEveryField guards the contract tests: a Diff that missed a
// field would let a store lose it unnoticed.
func TestDiffSeesEveryField(t *testing.T) {
	base := storetest.PairedDevice(t, "a", "15551234567", "123456789012345", 5)
	if diff := storetest.Diff(base, base.Clone()); diff != nil {
		t.Fatalf("Diff of a clone = %v, want none", diff)
	}
	tests := []struct {
		field  string
		mutate func(d *store.Device)
	}{
		{"ID", func(d *store.Device) { d.ID += "x" }},
		{"NoiseKey.Priv", func(d *store.Device) { d.NoiseKey.Priv[31]++ }},
		{"NoiseKey.Pub", func(d *store.Device) { d.NoiseKey.Pub[0]++ }},
		{"IdentityKey.Priv", func(d *store.Device) { d.IdentityKey.Priv[0]++ }},
		{"IdentityKey.Pub", func(d *store.Device) { d.IdentityKey.Pub[0]++ }},
		{"SignedPreKey.ID", func(d *store.Device) { d.SignedPreKey.ID++ }},
		{"SignedPreKey.Priv", func(d *store.Device) { d.SignedPreKey.Priv[0]++ }},
		{"SignedPreKey.Pub", func(d *store.Device) { d.SignedPreKey.Pub[0]++ }},
		{"SignedPreKey.Signature", func(d *store.Device) { d.SignedPreKey.Signature[63]++ }},
		{"RegistrationID", func(d *store.Device) { d.RegistrationID++ }},
		{"AdvSecret", func(d *store.Device) { d.AdvSecret[0]++ }},
		{"JID", func(d *store.Device) { d.JID = "1:5@s.whatsapp.net" }},
		{"LID", func(d *store.Device) { d.LID = "" }},
		{"BusinessName", func(d *store.Device) { d.BusinessName = "" }},
		{"Platform", func(d *store.Device) { d.Platform = "ios" }},
		{"Account", func(d *store.Device) { d.Account = d.Account[:len(d.Account)-1] }},
		{"MainDeviceIdentity", func(d *store.Device) { d.MainDeviceIdentity[0]++ }},
		{"PairedAt", func(d *store.Device) { d.PairedAt = d.PairedAt.Add(time.Nanosecond) }},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			c := base.Clone()
			tt.mutate(c)
			if diff := storetest.Diff(base, c); !slices.Equal(diff, []string{tt.field}) {
				t.Fatalf("Diff = %v, want [%s]", diff, tt.field)
			}
		})
	}
	// The same instant in another zone is not a difference.
	c := base.Clone()
	c.PairedAt = c.PairedAt.UTC()
	if diff := storetest.Diff(base, c); diff != nil {
		t.Fatalf("Diff across time zones = %v, want none", diff)
	}
	if diff := storetest.Diff(base, nil); diff == nil {
		t.Fatal("Diff against nil found no difference")
	}
}

func TestNewDevicesDiffer(t *testing.T) {
	a, b := storetest.NewDevice(t, "a"), storetest.NewDevice(t, "a")
	if a.Paired() || a.Validate() != nil {
		t.Fatal("NewDevice must be valid and unpaired")
	}
	if diff := storetest.Diff(a, b); len(diff) < 5 {
		t.Fatalf("two NewDevice calls share key material: only %v differ", diff)
	}
}
