package emulator_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/signal"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
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

func TestContactSendsThroughSignalAndCountsReceipts(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{DayOne: quiet(), ReceiptDeadline: -1})
	r, linked := newReceiver(t, srv, 10)
	c, err := srv.AddContact("")
	if err != nil {
		t.Fatal(err)
	}
	companion := c.Devices()[1]

	// First contact: a pkmsg built from a bundle of the device's upload.
	sent, err := srv.SendText(companion, linked.JID, "hello")
	if err != nil {
		t.Fatal(err)
	}
	if len(sent.Devices) != 1 || sent.Devices[0] != linked.JID {
		t.Fatalf("sent to %v", sent.Devices)
	}
	n := r.nextMessage()
	if attr(n, "id") != sent.ID || attr(n, "type") != "text" || attr(n, "notify") != c.Name() || attr(n, "t") == "" {
		t.Fatalf("stanza %v", n)
	}
	if from := jidAttr(n, "from"); from != companion.JID() {
		t.Fatalf("from %s, want the contact's companion %s", from, companion.JID())
	}
	m, types, err := r.decrypt(n)
	if err != nil {
		t.Fatal(err)
	}
	if m.GetConversation() != "hello" || len(types) != 1 || types[0] != "pkmsg" {
		t.Fatalf("got %q in %v", m.GetConversation(), types)
	}
	if _, used := r.prekeys[1]; used {
		t.Fatal("the first message did not use the oldest one-time prekey")
	}
	r.c.send(receipt(n, linked.JID))
	r.c.send(emulator.AckFor(n))
	emutest.WaitStats(t, srv, waitTimeout, "the receipt", func(s emulator.Stats) bool { return s.Receipts == 1 && s.AcksOK == 1 })

	// Steady state: the same session; the phone (device 0) has its own.
	for i, from := range []*emulator.SignalDevice{companion, c.Devices()[0], companion} {
		text := fmt.Sprintf("message %d", i)
		if _, err := srv.SendText(from, linked.JID, text); err != nil {
			t.Fatal(err)
		}
		n, m := r.receive()
		if m.GetConversation() != text || jidAttr(n, "from") != from.JID() {
			t.Fatalf("got %q from %s", m.GetConversation(), jidAttr(n, "from"))
		}
	}
	st := emutest.WaitStats(t, srv, waitTimeout, "four receipts", func(s emulator.Stats) bool { return s.Receipts == 4 })
	if st.ContactMessages != 4 || st.MessagesRouted != 4 || st.RetryReceipts != 0 || len(st.Violations) != 0 {
		t.Fatalf("stats %+v", st)
	}
	if _, err := srv.SendText(companion, jid.New("15550009999", jid.DefaultUserServer), "x"); !errors.Is(err, emulator.ErrNoRecipient) {
		t.Fatalf("a send to no account: %v", err)
	}
}

func TestContactGroupMessagesCarryTheSenderKeyOnce(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{DayOne: quiet(), ReceiptDeadline: -1})
	r, linked := newReceiver(t, srv, 10)
	c, err := srv.AddContact("")
	if err != nil {
		t.Fatal(err)
	}
	group := jid.New("120363000000000001", jid.GroupServer)
	for i, want := range [][]string{{"pkmsg", "skmsg"}, {"skmsg"}} {
		text := fmt.Sprintf("group %d", i)
		if _, err := srv.SendGroupText(c.Devices()[1], group, []jid.JID{linked.JID}, text); err != nil {
			t.Fatal(err)
		}
		n := r.nextMessage()
		if jidAttr(n, "from") != group || jidAttr(n, "participant") != c.Devices()[1].JID() {
			t.Fatalf("stanza %v", n)
		}
		m, types, err := r.decrypt(n)
		if err != nil {
			t.Fatal(err)
		}
		if m.GetConversation() != text || fmt.Sprint(types) != fmt.Sprint(want) {
			t.Fatalf("got %q in %v, want %v", m.GetConversation(), types, want)
		}
		r.c.send(receipt(n, linked.JID))
		r.c.send(emulator.AckFor(n))
	}
	st := emutest.WaitStats(t, srv, waitTimeout, "two receipts", func(s emulator.Stats) bool { return s.Receipts == 2 })
	if len(st.Violations) != 0 {
		t.Fatalf("violations %v", st.Violations)
	}
}

func TestPhoneSyncsWhatItSentToTheCompanions(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{DayOne: quiet(), ReceiptDeadline: -1})
	r, linked := newReceiver(t, srv, 10)
	peer := jid.New("15551234567", jid.DefaultUserServer)
	if _, err := srv.SendFromPhone(linked.JID.ToNonAD(), peer, "sent from the phone"); err != nil {
		t.Fatal(err)
	}
	n, m := r.receive()
	if jidAttr(n, "from") != linked.JID.ToNonAD() || jidAttr(n, "recipient") != peer {
		t.Fatalf("stanza %v", n)
	}
	ds := m.GetDeviceSentMessage()
	if ds.GetDestinationJID() != peer.String() || ds.GetMessage().GetConversation() != "sent from the phone" {
		t.Fatalf("device-sent message %v", m)
	}
	// The phone's session uses the account's identity: the one its bundle
	// publishes.
	b, err := srv.PreKeyBundle(linked.JID.ToNonAD())
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := r.sessions[linked.JID.ToNonAD()].RemoteIdentity(); id != b.IdentityKey {
		t.Fatal("the phone's messages are not under its published identity")
	}
	emutest.WaitStats(t, srv, waitTimeout, "the receipt (type sender)", func(s emulator.Stats) bool { return s.Receipts == 1 })
}

func TestMissingReceiptsAreCounted(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{DayOne: quiet(), ReceiptDeadline: 50 * time.Millisecond})
	r, linked := newReceiver(t, srv, 10)
	c, err := srv.AddContact("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.SendText(c.Devices()[0], linked.JID, "unreceipted"); err != nil {
		t.Fatal(err)
	}
	n := r.nextMessage()
	if _, _, err := r.decrypt(n); err != nil {
		t.Fatal(err)
	}
	// Acked, but no receipt: the contact's message counts as overdue.
	r.c.send(emulator.AckFor(n))
	emutest.WaitStats(t, srv, waitTimeout, "an overdue receipt", func(s emulator.Stats) bool { return s.ReceiptsOverdue == 1 })
	// A receipt naming another chat confirms nothing.
	wrong := receipt(n, linked.JID).WithAttr(node.JIDAttr("to", c.Devices()[1].JID()))
	r.c.send(wrong)
	emutest.WaitStats(t, srv, waitTimeout, "the violation", func(s emulator.Stats) bool { return len(s.Violations) == 1 })
	r.c.send(receipt(n, linked.JID))
	st := emutest.WaitStats(t, srv, waitTimeout, "a late receipt", func(s emulator.Stats) bool { return s.ReceiptsLate == 1 })
	if st.Receipts != 1 || st.ReceiptsOverdue != 1 {
		t.Fatalf("stats %+v", st)
	}
	// The message's ack, once more: nothing is pending under that id.
	r.c.send(emulator.AckFor(n))
	emutest.WaitStats(t, srv, waitTimeout, "the duplicate ack", func(s emulator.Stats) bool { return s.AcksMalformed == 1 })
}

func TestRetryReceiptsAreAnsweredThenGivenUp(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{DayOne: quiet(), ReceiptDeadline: -1})
	r, linked := newReceiver(t, srv, 10)
	c, err := srv.AddContact("")
	if err != nil {
		t.Fatal(err)
	}
	group := jid.New("120363000000000002", jid.GroupServer)
	if _, err := srv.SendGroupText(c.Devices()[1], group, []jid.JID{linked.JID}, "retried"); err != nil {
		t.Fatal(err)
	}
	n := r.nextMessage()
	id := attr(n, "id")
	// A retry receipt from another registration is a violation and gets
	// no resend.
	r.d.regID++
	r.c.send(r.retryReceipt(n, 1, false))
	r.d.regID--
	emutest.WaitStats(t, srv, waitTimeout, "the violation", func(s emulator.Stats) bool { return len(s.Violations) == 1 })
	// The device could not decrypt: a retry receipt, then the ack. The
	// resend waits for the ack and comes 1:1, with the same id.
	r.c.send(r.retryReceipt(n, 1, false))
	r.c.send(emulator.AckFor(n))
	resend := r.nextMessage()
	enc, _ := resend.Child("enc")
	if attr(resend, "id") != id || jidAttr(resend, "participant") != c.Devices()[1].JID() || len(resend.Children()) != 1 || attr(*enc, "count") != "1" {
		t.Fatalf("resend %v", resend)
	}
	m, _, err := r.decrypt(resend)
	if err != nil {
		t.Fatal(err)
	}
	if m.GetConversation() != "retried" || m.GetSenderKeyDistributionMessage() == nil {
		t.Fatalf("resend carries %v", m)
	}

	// A second retry with the device's keys: a fresh session from them.
	r.c.send(r.retryReceipt(resend, 2, true))
	r.c.send(emulator.AckFor(resend))
	resend2 := r.nextMessage()
	enc, _ = resend2.Child("enc")
	if attr(*enc, "type") != "pkmsg" || attr(*enc, "count") != "2" {
		t.Fatalf("second resend %v", resend2)
	}
	pk, _ := enc.Bytes()
	pm, err := signal.ParsePreKeySignalMessage(pk)
	if err != nil || pm.PreKeyID != r.nextKey {
		t.Fatalf("the fresh session does not use the prekey of the retry receipt: %v", err)
	}
	if m, _, err := r.decrypt(resend2); err != nil || m.GetConversation() != "retried" {
		t.Fatalf("second resend: %v %v", m, err)
	}
	r.c.send(emulator.AckFor(resend2))

	// Retries up to the limit are answered; the next gives the message up.
	last := resend2
	for i := 3; i <= 6; i++ {
		r.c.send(r.retryReceipt(last, i, false))
		if i == 6 {
			break
		}
		last = r.nextMessage()
		r.c.send(emulator.AckFor(last))
	}
	st := emutest.WaitStats(t, srv, waitTimeout, "the message given up", func(s emulator.Stats) bool { return s.MessagesUndelivered == 1 })
	if st.RetryReceipts != 6 || st.DecryptFailures != 1 || st.Resends != 5 || st.Receipts != 0 || len(st.Violations) != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestContactMessagesWaitForAnOfflineDevice(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{ReceiptDeadline: -1}) // no day-one
	r, linked := newReceiver(t, srv, 0)
	c, err := srv.AddContact("")
	if err != nil {
		t.Fatal(err)
	}
	r.c.tr.Close()
	emutest.WaitStats(t, srv, waitTimeout, "the device offline", func(s emulator.Stats) bool { return s.ActiveConnections == 0 })
	if _, err := srv.SendText(c.Devices()[1], linked.JID, "while you were away"); err != nil {
		t.Fatal(err)
	}
	r.connect()
	// Outside day-one the device uploaded no values: X3DH without a
	// one-time prekey.
	n, m := r.receive()
	if m.GetConversation() != "while you were away" {
		t.Fatalf("got %v", m)
	}
	enc, _ := n.Child("enc")
	pk, _ := enc.Bytes()
	if pm, err := signal.ParsePreKeySignalMessage(pk); err != nil || pm.HasPreKeyID {
		t.Fatalf("pkmsg %v, %v", pm, err)
	}
	st := emutest.WaitStats(t, srv, waitTimeout, "the receipt", func(s emulator.Stats) bool { return s.Receipts == 1 && s.AcksOK == 1 })
	if st.Redeliveries != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestContactsControlAPI(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{DayOne: quiet(), ReceiptDeadline: -1})
	r, linked := newReceiver(t, srv, 10)
	base := srv.ControlURL()

	status, c := httpJSON(t, "POST", base+"/contacts", `{"phone":"+15557654321"}`)
	if status != 200 || c["jid"] != "15557654321@s.whatsapp.net" || len(c["devices"].([]any)) != 2 {
		t.Fatalf("POST /contacts: %d %v", status, c)
	}
	for _, bad := range []struct {
		path, body string
		want       int
	}{
		{"/contacts", `{"phone":"+15557654321"}`, 400},                                   // twice
		{"/contacts", `{"phone":"x"}`, 400},                                              // not a number
		{"/contacts/send", `{"from":"15557654321","to":"` + linked.JID.User + `"}`, 400}, // no text
		{"/contacts/send", `{"from":"15550001111","to":"` + linked.JID.User + `","text":"hi"}`, 404},
		{"/contacts/send", `{"from":"15557654321","to":"15550009999","text":"hi"}`, 404},
		{"/contacts/send", `{"from":"15557654321","to":"x@y","text":"hi"}`, 400},
		{"/contacts/send", `{"text":"hi","extra":1}`, 400},
	} {
		if status, body := httpJSON(t, "POST", base+bad.path, bad.body); status != bad.want || body["error"] == nil {
			t.Fatalf("POST %s %s: %d %v, want %d", bad.path, bad.body, status, body, bad.want)
		}
	}

	status, sent := httpJSON(t, "POST", base+"/contacts/send", `{"from":"15557654321:1@s.whatsapp.net","to":"+`+linked.JID.User+`","text":"over HTTP"}`)
	if status != 200 || sent["id"] == "" || len(sent["devices"].([]any)) != 1 {
		t.Fatalf("POST /contacts/send: %d %v", status, sent)
	}
	n, m := r.receive()
	if m.GetConversation() != "over HTTP" || attr(n, "id") != sent["id"] || jidAttr(n, "from").Device != 1 {
		t.Fatalf("got %q in %v", m.GetConversation(), n)
	}
	status, _ = httpJSON(t, "POST", base+"/contacts/send", `{"from":"15557654321","group":"120363000000000003@g.us","to":"`+linked.JID.User+`","text":"group over HTTP"}`)
	if status != 200 {
		t.Fatalf("group send: %d", status)
	}
	if _, m := r.receive(); m.GetConversation() != "group over HTTP" {
		t.Fatalf("got %v", m)
	}
	status, _ = httpJSON(t, "POST", base+"/phone/send", `{"account":"`+linked.JID.User+`","to":"15557654321","text":"mine"}`)
	if status != 200 {
		t.Fatalf("phone send: %d", status)
	}
	if _, m := r.receive(); m.GetDeviceSentMessage().GetMessage().GetConversation() != "mine" {
		t.Fatalf("got %v", m)
	}
	emutest.WaitStats(t, srv, waitTimeout, "three receipts", func(s emulator.Stats) bool { return s.Receipts == 3 })
	// The contact's traffic: two sessions started, one per device (the
	// companion's message, the phone's sender-key distribution); the
	// phone's own-device copy is not the contact's.
	var infos []emulator.ContactInfo
	getJSON(t, base+"/contacts", &infos)
	if len(infos) != 1 || infos[0].Traffic != (emulator.Traffic{SentPreKey: 2}) {
		t.Fatalf("GET /contacts: %+v", infos)
	}
}

func TestUnackedContactMessagesEndTheStreamAndComeAgain(t *testing.T) {
	d1 := quiet()
	d1.AckDeadline = 100 * time.Millisecond
	srv := emutest.Start(t, emulator.Options{DayOne: d1, ReceiptDeadline: -1})
	r, linked := newReceiver(t, srv, 10)
	c, err := srv.AddContact("")
	if err != nil {
		t.Fatal(err)
	}
	sent, err := srv.SendText(c.Devices()[1], linked.JID, "ack me")
	if err != nil {
		t.Fatal(err)
	}
	first := r.nextMessage()
	kill := r.c.expectTag("stream:error")
	if ack, ok := kill.Child("ack"); !ok || attr(*ack, "class") != "message" || attr(*ack, "id") != sent.ID {
		t.Fatalf("got %v, want the stream ended for the unacked message", kill)
	}
	r.c.expectClosed()
	r.connect() // the redelivery comes first, before <ib><offline/>
	n, m := r.receive()
	if attr(n, "id") != sent.ID || m.GetConversation() != "ack me" {
		t.Fatalf("redelivered %v", n)
	}
	b1, _ := first.Children()[0].Bytes()
	b2, _ := n.Children()[0].Bytes()
	if !bytes.Equal(b1, b2) {
		t.Fatal("the redelivery is not the same ciphertext")
	}
	st := emutest.WaitStats(t, srv, waitTimeout, "the receipt", func(s emulator.Stats) bool { return s.Receipts == 1 })
	if st.AckDeadlineKills != 1 || st.Redeliveries != 1 {
		t.Fatalf("stats %+v", st)
	}
}
