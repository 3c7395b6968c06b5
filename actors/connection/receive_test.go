package connection

import (
	"testing"

	"github.com/wafleet/wafleet/store"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/signal"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// ourBundle is the bundle the server hands out for dev with one-time
// prekey id.
func ourBundle(t *testing.T, st store.Store, dev *store.Device, id uint32) *signal.Bundle {
	t.Helper()
	pk, err := st.PreKey(t.Context(), dev.ID, id)
	if err != nil {
		t.Fatal(err)
	}
	return &signal.Bundle{
		RegistrationID: dev.RegistrationID, IdentityKey: dev.IdentityKey.Pub,
		SignedPreKeyID: dev.SignedPreKey.ID, SignedPreKey: dev.SignedPreKey.Pub,
		SignedPreKeySignature: dev.SignedPreKey.Signature, PreKeyID: id, PreKey: &pk.Pub,
	}
}

// expectReceiptAndAck reads what the actor sends for message id: its
// delivery receipt, then its ack.
func expectReceiptAndAck(t *testing.T, s *fakeSession, id string) {
	t.Helper()
	r := s.next(t, "the receipt of "+id)
	if typ, _ := r.Attr("type"); r.Tag != "receipt" || idOf(r) != id || typ != "inactive" {
		t.Fatalf("for %s the actor sent %v, want its delivery receipt", id, r)
	}
	if a := s.next(t, "the ack of "+id); a.Tag != "ack" || idOf(a) != id {
		t.Fatalf("for %s the actor sent %v, want its ack", id, a)
	}
}

// Through the actor: a message is receipted and acknowledged only after
// its state is stored, in that order; one that does not decrypt gets a
// retry receipt with our registration ID, then its ack, and is counted;
// a receipt the server pushes becomes a receipt event.
func TestActorReceivesMessages(t *testing.T) {
	h := newHarness(t)
	d, fd, obs, dev := pairedFake(t, h, "rx")
	h.spawn(d)
	s := connectFake(t, h, fd)
	h.rec.WaitFor(t, "connected", kindIs(events.KindConnected))

	alice := newPeer(t, jid.New(peerUser, jid.DefaultUserServer))
	alice.start(ourBundle(t, h.store, dev, 1))
	s.push(t, direct("3EB0AA", alice.jid, alice.encrypt(text("through the actor"))))
	receipt := s.next(t, "the delivery receipt")
	want := node.New("receipt", node.StrAttr("id", "3EB0AA"), node.JIDAttr("to", alice.jid), node.StrAttr("type", "inactive"))
	if !receipt.Equal(want) {
		t.Fatalf("receipt %v, want %v", receipt, want)
	}
	// The state was stored before the receipt went out.
	if _, err := h.store.Session(t.Context(), dev.ID, "15559990000.0:0"); err != nil {
		t.Fatalf("receipted before the session was stored: %v", err)
	}
	ack := s.next(t, "the ack")
	if wantAck := node.New("ack", node.StrAttr("class", "message"), node.StrAttr("id", "3EB0AA"), node.JIDAttr("to", alice.jid)); !ack.Equal(wantAck) {
		t.Fatalf("ack %v, want %v", ack, wantAck)
	}
	e := h.rec.WaitFor(t, "the message event", kindIs(events.KindMessage))
	if e.Message.Text != "through the actor" || e.Account != "rx" {
		t.Fatalf("message event %+v", e.Message)
	}

	s.push(t, direct("3EB0AB", alice.jid, encNode("msg", []byte{0x33, 0, 1})))
	retry := s.next(t, "the retry receipt")
	if typ, _ := retry.Attr("type"); retry.Tag != "receipt" || typ != "retry" {
		t.Fatalf("after a failed decrypt %v, want a retry receipt", retry)
	}
	r, ok := retry.Child("retry")
	if count, _ := r.AttrInt("count"); !ok || count != 1 {
		t.Fatalf("retry receipt %v, want <retry count=1>", retry)
	}
	reg, ok := retry.Child("registration")
	if b, _ := reg.Bytes(); !ok || string(b) != string(registrationBytes(dev.RegistrationID)) {
		t.Fatalf("retry receipt %v without our registration ID", retry)
	}
	if ack := s.next(t, "the ack of the failed message"); ack.Tag != "ack" || idOf(ack) != "3EB0AB" {
		t.Fatalf("after the retry receipt %v, want its ack", ack)
	}
	waitFor(t, "the failure counted", func() bool { return obs.failures(failMalformed) == 1 })

	s.push(t, node.New("receipt", node.JIDAttr("from", alice.jid), node.StrAttr("id", "3EB0XX"), node.StrAttr("type", "read"), node.IntAttr("t", 1_800_000_000)))
	if ack := s.next(t, "the receipt's ack"); ack.Tag != "ack" || idOf(ack) != "3EB0XX" {
		t.Fatalf("ack %v", ack)
	}
	re := h.rec.WaitFor(t, "the receipt event", kindIs(events.KindReceipt))
	if re.Receipt.Type != "read" || len(re.Receipt.IDs) != 1 || re.Receipt.IDs[0] != "3EB0XX" || re.Receipt.Chat != peerUser+"@s.whatsapp.net" {
		t.Fatalf("receipt event %+v", re.Receipt)
	}
}

// A restart of the actor in the middle of a conversation (the store is
// the same bbolt file) breaks no session: the next message decrypts under
// the stored state, and a message delivered again after it was stored
// (as after a crash before its ack) is receipted without a second event.
func TestActorRestartMidConversation(t *testing.T) {
	h := newHarness(t)
	d, fd, _, dev := pairedFake(t, h, "rs")
	pid := h.spawn(d)
	s := connectFake(t, h, fd)
	alice := newPeer(t, jid.New(peerUser, jid.DefaultUserServer))
	alice.start(ourBundle(t, h.store, dev, 1))
	s.push(t, direct("3EB0R1", alice.jid, alice.encrypt(text("before the restart"))))
	expectReceiptAndAck(t, s, "3EB0R1")

	h.stop(pid)
	h.spawn(d)
	s = connectFake(t, h, fd)

	// Our answer, as the send path writes it: Alice then sends msg.
	addr := store.PeerAddress(peerUser, 0, 0)
	rec, err := h.store.Session(t.Context(), dev.ID, addr)
	if err != nil {
		t.Fatal(err)
	}
	var ours signal.Session
	if err := ours.UnmarshalBinary(rec); err != nil {
		t.Fatal(err)
	}
	reply, err := ours.Encrypt(signal.Pad([]byte("answer")))
	if err != nil {
		t.Fatal(err)
	}
	if rec, err = ours.MarshalBinary(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.store.ApplySignal(t.Context(), dev.ID, store.SignalChanges{Sessions: []store.SessionChange{{Addr: addr, Record: rec}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.session.Decrypt(reply.Body); err != nil {
		t.Fatal(err)
	}
	after := direct("3EB0R2", alice.jid, alice.encrypt(text("after the restart")))
	s.push(t, after)
	expectReceiptAndAck(t, s, "3EB0R2")
	s.push(t, after) // redelivered
	expectReceiptAndAck(t, s, "3EB0R2")

	h.rec.WaitForN(t, 2, "both messages", kindIs(events.KindMessage))
	var texts []string
	for _, e := range h.rec.Events() {
		if e.Kind == events.KindMessage {
			texts = append(texts, e.Message.Text)
		}
	}
	if len(texts) != 2 || texts[0] != "before the restart" || texts[1] != "after the restart" {
		t.Fatalf("message events %q, want each message once", texts)
	}
}
