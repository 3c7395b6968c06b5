package emulator_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/signal"
	"github.com/wafleet/wafleet/waproto"
	"github.com/wafleet/wafleet/wire/e2e"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// TestRouteCompanionMessage sends as a raw client: the device lists, the
// bundles (each one-time prekey once), and the server's teeth: a pkmsg
// without device identity refused, a stale device list answered with the
// server's phash, a part for the wrong identity counted and answered
// with the device's retry receipt, whose answer decrypts.
func TestRouteCompanionMessage(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{ReceiptDeadline: -1})
	d := newTestDevice(t)
	linked := pair(t, srv, d)
	c := login(t, srv, d)
	c.expectTag("success")
	contact, err := srv.AddContact("")
	if err != nil {
		t.Fatal(err)
	}
	dev0, dev1 := contact.Devices()[0], contact.Devices()[1]
	ownPhone := linked.JID.ToNonAD()

	c.send(e2e.DeviceQuery("u1", "s1", []jid.JID{contact.JID(), ownPhone}))
	lists, err := e2e.ParseDevices(c.expectResult("u1", "result"))
	if err != nil {
		t.Fatal(err)
	}
	if got := lists[contact.JID()]; len(got) != 2 || got[0] != dev0.JID() || got[1] != dev1.JID() {
		t.Fatalf("contact's devices %v", got)
	}
	if got := lists[ownPhone]; len(got) != 2 || got[0] != ownPhone || got[1] != linked.JID {
		t.Fatalf("own devices %v", got)
	}

	stranger := jid.JID{User: "15559999999", Server: jid.DefaultUserServer}
	fetch := func(id string) map[jid.JID]e2e.BundleResult {
		t.Helper()
		c.send(e2e.KeyQuery(id, []jid.JID{dev0.JID(), dev1.JID(), stranger}))
		b, err := e2e.ParseBundles(c.expectResult(id, "result"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	first, second := fetch("k1"), fetch("k2")
	b0 := first[dev0.JID()].Bundle
	if b0 == nil || b0.PreKey == nil || b0.IdentityKey != dev0.Identity().Key.Pub || first[stranger].Err == nil {
		t.Fatalf("bundles %+v", first)
	}
	if b := second[dev0.JID()].Bundle; b == nil || b.PreKey == nil || b.PreKeyID == b0.PreKeyID {
		t.Fatalf("the second fetch handed out the same one-time prekey %d", b0.PreKeyID)
	}

	local := signal.LocalIdentity{Key: d.identity, RegistrationID: d.regID}
	encrypt := func(b *signal.Bundle, text string) signal.Ciphertext {
		t.Helper()
		var s signal.Session
		if err := s.Initiate(local, b); err != nil {
			t.Fatal(err)
		}
		pt, err := proto.Marshal(&waproto.Message{Conversation: proto.String(text)})
		if err != nil {
			t.Fatal(err)
		}
		ct, err := s.Encrypt(signal.Pad(pt))
		if err != nil {
			t.Fatal(err)
		}
		return ct
	}
	ack := func(id string) node.Node {
		t.Helper()
		a := c.expectTag("ack")
		if got, _ := a.Attr("id"); got != id {
			t.Fatalf("ack %v, want id %s", a, id)
		}
		return a
	}

	// A pkmsg without <device-identity>: refused whole.
	ct := encrypt(b0, "no identity")
	bare := e2e.Message("M1", contact.JID(), []e2e.Part{{Device: dev0.JID(), Ciphertext: ct}}, d.account)
	bare = bare.WithChildren(bare.Children()[0]) // drop <device-identity>
	c.send(bare)
	if code, _ := ack("M1").Attr("error"); code != "479" {
		t.Fatal("a pkmsg without device identity was not refused with 479")
	}
	if len(dev0.Received()) != 0 {
		t.Fatal("a refused message was delivered")
	}

	// With it, the part is delivered; the ack says the list missed
	// devices (the contact's companion, our phone) with the server's phash.
	c.send(e2e.Message("M2", contact.JID(), []e2e.Part{{Device: dev0.JID(), Ciphertext: encrypt(b0, "hello")}}, d.account))
	a := ack("M2")
	phash, _ := a.Attr("phash")
	if _, ok := a.Attr("error"); ok || phash != e2e.ParticipantHash([]jid.JID{dev0.JID(), dev1.JID(), ownPhone}) {
		t.Fatalf("ack %v: want no error and the server's phash", a)
	}
	if t1, ok := a.AttrInt("t"); !ok || t1 <= 0 {
		t.Fatalf("ack without t: %v", a)
	}
	got := dev0.Received()
	if len(got) != 1 || got[0].ID != "M2" || got[0].Message.GetConversation() != "hello" || got[0].From != linked.JID {
		t.Fatalf("the contact's phone received %+v", got)
	}
	if r := c.expectTag("receipt"); attrJID(r, "from") != dev0.JID() || attr(r, "id") != "M2" {
		t.Fatalf("receipt %v", r)
	}

	// A part encrypted for another device's identity does not decrypt:
	// counted, no receipt.
	c.send(e2e.Message("M3", contact.JID(), []e2e.Part{{Device: dev1.JID(), Ciphertext: encrypt(second[dev0.JID()].Bundle, "wrong")}}, d.account))
	ack("M3")
	st := emutest.WaitStats(t, srv, waitTimeout, "the failure counted", func(s emulator.Stats) bool { return s.CompanionDecryptFailures == 1 })
	if st.CompanionMessages != 2 || st.CompanionMessagesRefused != 1 || len(dev1.Received()) != 0 || len(st.Violations) != 1 {
		t.Fatalf("stats %+v", st)
	}

	// The control API shows the contact's side: one pkmsg decrypted, one
	// failure, and what was received.
	var infos []emulator.ContactInfo
	getJSON(t, srv.ControlURL()+"/contacts", &infos)
	if len(infos) != 1 || infos[0].Traffic != (emulator.Traffic{ReceivedPreKey: 1, DecryptFailures: 1}) {
		t.Fatalf("GET /contacts: %+v", infos)
	}
	var recv []emulator.ReceivedInfo
	getJSON(t, srv.ControlURL()+"/contacts/received?contact=+"+contact.JID().User, &recv)
	want := emulator.ReceivedInfo{ID: "M2", Device: dev0.JID().String(), From: linked.JID.String(), Chat: contact.JID().String(), Type: "pkmsg", Text: "hello"}
	if len(recv) != 1 || recv[0] != want {
		t.Fatalf("GET /contacts/received: %+v, want [%+v]", recv, want)
	}
	for q, code := range map[string]int{"?contact=15550001111": 404, "?contact=x@y": 400, "": 400} {
		if status, body := httpJSON(t, "GET", srv.ControlURL()+"/contacts/received"+q, ""); status != code || body["error"] == nil {
			t.Fatalf("GET /contacts/received%s: %d %v, want %d", q, status, body, code)
		}
	}

	// The part that did not decrypt drew the device's retry receipt (the
	// first: no keys); the answer, to the device alone on a session from
	// its own bundle, decrypts and is receipted.
	r := c.expectTag("receipt")
	retry, ok := r.Child("retry")
	_, hasKeys := r.Child("keys")
	_, hasRecipient := r.Attr("recipient")
	if !ok || attr(r, "type") != "retry" || attrJID(r, "from") != dev1.JID() || attr(r, "id") != "M3" || attr(*retry, "count") != "1" ||
		attr(*retry, "id") != "M3" || hasKeys || hasRecipient {
		t.Fatalf("receipt %v, want dev1's first retry receipt", r)
	}
	answer := e2e.RetryMessage("M3", contact.JID(), e2e.Part{Device: dev1.JID(), Ciphertext: encrypt(first[dev1.JID()].Bundle, "again")}, 1, 1700000000, d.account)
	c.send(answer)
	ack("M3")
	if r := c.expectTag("receipt"); attrJID(r, "from") != dev1.JID() || attr(r, "id") != "M3" || attr(r, "type") != "" {
		t.Fatalf("receipt %v, want dev1's delivery receipt", r)
	}
	if got := dev1.Received(); len(got) != 1 || got[0].ID != "M3" || got[0].Message.GetConversation() != "again" {
		t.Fatalf("dev1 received %+v", got)
	}
	if st := srv.Stats(); st.CompanionRetryReceipts != 1 || st.CompanionRetryAnswers != 1 || st.CompanionDecryptFailures != 1 || len(st.Violations) != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// getJSON decodes the 200 answer of a GET into v.
func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func attrJID(n node.Node, key string) jid.JID {
	j, _ := n.AttrJID(key)
	return j
}
