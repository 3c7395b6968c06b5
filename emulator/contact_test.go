package emulator_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/signal"
	"github.com/wafleet/wafleet/wire/jid"
)

// checkBundle checks that a bundle's signed prekey is signed by its identity
// key (X3DH from it succeeds) and returns its one-time prekey ID, failing
// when it has none.
func checkBundle(t *testing.T, b signal.Bundle) uint32 {
	t.Helper()
	if !crypto.Verify(b.IdentityKey[:], signal.SerializeKey(b.SignedPreKey), b.SignedPreKeySignature[:]) {
		t.Fatal("the signed prekey's signature does not verify with the identity key")
	}
	if b.PreKey == nil {
		t.Fatal("the bundle has no one-time prekey")
	}
	return b.PreKeyID
}

func TestContactsHaveTwoDevicesWithPublishedBundles(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{})
	c, err := srv.AddContact("")
	if err != nil {
		t.Fatal(err)
	}
	if c.JID().Server != jid.DefaultUserServer || c.JID().Device != 0 || c.JID().User == "" {
		t.Fatalf("contact JID %s", c.JID())
	}
	devs := c.Devices()
	if len(devs) != 2 || devs[0].JID().Device != 0 || devs[1].JID().Device != 1 {
		t.Fatalf("devices %v", devs)
	}
	id0, id1 := devs[0].Identity(), devs[1].Identity()
	if id0.Key.Pub == id1.Key.Pub || id0.RegistrationID == 0 || id1.RegistrationID == 0 {
		t.Fatal("the two devices share an identity or have no registration ID")
	}
	if got, ok := srv.Contact(devs[1].JID()); !ok || got != c {
		t.Fatal("the contact is not found by its companion's JID")
	}
	if _, err := srv.AddContact(c.JID().User); !errors.Is(err, emulator.ErrContact) {
		t.Fatalf("the same phone twice: %v", err)
	}
	if _, err := srv.AddContact("12ab"); !errors.Is(err, emulator.ErrContact) {
		t.Fatalf("a phone that is not a number: %v", err)
	}
	if st := srv.Stats(); st.Contacts != 1 {
		t.Fatalf("contacts %d", st.Contacts)
	}

	// Every fetch hands out another one-time prekey, more than the first
	// stock holds: the device publishes more as it runs low.
	seen := map[uint32]bool{}
	for range 120 {
		b, err := srv.PreKeyBundle(devs[1].JID())
		if err != nil {
			t.Fatal(err)
		}
		if b.IdentityKey != id1.Key.Pub || b.RegistrationID != id1.RegistrationID {
			t.Fatal("the bundle is not the companion's")
		}
		id := checkBundle(t, b)
		if seen[id] {
			t.Fatalf("one-time prekey %d handed out twice", id)
		}
		seen[id] = true
		// A session started from it is one the device can take.
		alice, err := crypto.GenerateKeyPair()
		if err != nil {
			t.Fatal(err)
		}
		var s signal.Session
		if err := s.Initiate(signal.LocalIdentity{Key: alice, RegistrationID: 7}, &b); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := srv.PreKeyBundle(jid.JID{User: c.JID().User, Device: 2, Server: jid.DefaultUserServer}); !errors.Is(err, emulator.ErrUnknownDevice) {
		t.Fatalf("a device the contact does not have: %v", err)
	}
}

func TestCompanionBundlesComeFromItsUploads(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{DayOne: quiet()})
	d := newTestDevice(t)
	linked := pair(t, srv, d)
	c := login(t, srv, d)
	c.expectTag("success")
	c.expectTag("ib")
	up := goodUpload(t, d, 1, 6)
	c.send(up.node("up1"))
	c.expectResult("up1", "result")

	for i := 1; i <= 6; i++ {
		b, err := srv.PreKeyBundle(linked.LID) // the LID names the device too
		if err != nil {
			t.Fatal(err)
		}
		if b.IdentityKey != d.identity.Pub || b.SignedPreKey != d.spk.Pub || b.RegistrationID != d.regID {
			t.Fatal("the bundle is not the device's registration")
		}
		if id := checkBundle(t, b); id != uint32(i) {
			t.Fatalf("fetch %d got prekey %d, want the oldest, %d", i, id, i)
		}
		want, _ := up.keys[i-1].Children()[1].Bytes()
		if !bytes.Equal(b.PreKey[:], want) {
			t.Fatalf("prekey %d is not the value uploaded", i)
		}
	}
	b, err := srv.PreKeyBundle(linked.JID)
	if err != nil {
		t.Fatal(err)
	}
	if b.PreKey != nil {
		t.Fatal("a bundle with a one-time prekey after all were handed out")
	}
	// The second fetch left 4 keys: the device is told to upload more.
	n := c.expectTag("notification")
	if typ, _ := n.Attr("type"); typ != "encrypt" {
		t.Fatalf("got %v, want an encrypt notification", n)
	}
	if cnt, ok := n.Child("count"); !ok || attr(*cnt, "value") != "4" {
		t.Fatalf("count in %v, want 4", n)
	}
	c.send(emulator.AckFor(n))
	emutest.WaitStats(t, srv, waitTimeout, "the notification acked", func(s emulator.Stats) bool { return s.AcksOK == 1 })

	// The account's phone (device 0) publishes a bundle under the account's
	// identity key, the one that signed the companion's ADV identity.
	pb, err := srv.PreKeyBundle(linked.JID.ToNonAD())
	if err != nil {
		t.Fatal(err)
	}
	checkBundle(t, pb)
	if pb.IdentityKey == d.identity.Pub {
		t.Fatal("the phone's bundle carries the companion's identity")
	}
}
