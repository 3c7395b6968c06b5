package emulator_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// burstLogin logs r's device in again (replacing its connection) with
// day-one pushing a burst of n and nothing else, and returns the <message>
// stanzas of the burst (not acked), acking everything else, up to <ib>.
func burstLogin(t *testing.T, srv *emulator.Server, r *receiver, d1 emulator.DayOne, n int) []node.Node {
	t.Helper()
	d1.PushBurst = n
	if err := srv.SetDayOne(d1); err != nil {
		t.Fatal(err)
	}
	r.connect()
	var msgs []node.Node
	for {
		n := r.c.pump(func(n node.Node) bool { return n.Tag == "message" || n.Tag == "ib" })
		if n.Tag == "ib" {
			return msgs
		}
		msgs = append(msgs, n)
	}
}

// Day-one messages are a contact's real ciphertext: a client that decrypts
// them with its own keys reads every one (1:1 pkmsg from one of its
// uploaded one-time prekeys, group skmsg after the sender key, the phone's
// deviceSentMessage), and its receipts confirm them, without a retry.
func TestDayOneMessagesDecrypt(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{DayOne: quiet(), ReceiptDeadline: -1})
	r, linked := newReceiver(t, srv, 30)
	msgs := burstLogin(t, srv, r, quiet(), 40)
	if len(msgs) != 16 { // 8 of the 20 kinds of the cycle are messages
		t.Fatalf("%d messages in a burst of 40", len(msgs))
	}
	seen := map[string]bool{}
	for _, n := range msgs {
		m, types, err := r.decrypt(n)
		if err != nil {
			t.Fatalf("day-one message %v does not decrypt: %v", n, err)
		}
		for _, typ := range types {
			seen[typ] = true
		}
		party := sender(n)
		if rcpt := jidAttr(n, "recipient"); !rcpt.IsEmpty() {
			party = rcpt
		}
		if !srv.DayOneParty(party) || srv.DayOneParty(linked.JID) {
			t.Fatalf("DayOneParty(%v) false, or true for the account", party)
		}
		switch {
		case jidAttr(n, "from").Server == jid.GroupServer:
			seen["group"] = m.GetConversation() != ""
		case !jidAttr(n, "recipient").IsEmpty():
			ds := m.GetDeviceSentMessage()
			seen["own"] = jidAttr(n, "from") == linked.JID.ToNonAD() && ds.GetDestinationJID() == jidAttr(n, "recipient").String() &&
				strings.HasPrefix(ds.GetMessage().GetConversation(), "day-one message")
		default:
			seen["1:1"] = strings.HasPrefix(m.GetConversation(), "day-one message")
		}
		r.c.send(receipt(n, r.d.jid))
		r.c.send(emulator.AckFor(n))
	}
	for _, want := range []string{"pkmsg", "skmsg", "group", "own", "1:1"} {
		if !seen[want] {
			t.Errorf("no %s among the day-one messages (%v)", want, seen)
		}
	}
	// The contact and the phone each started a session from a bundle, and
	// the pkmsg kinds started new ones: one-time prekeys were used up.
	if left := len(r.prekeys); left > 30-4 {
		t.Errorf("%d of 30 uploaded one-time prekeys left; want the sessions to have used some", left)
	}
	st := emutest.WaitStats(t, srv, waitTimeout, "every receipt", func(s emulator.Stats) bool { return s.Receipts == int64(len(msgs)) })
	if st.RetryReceipts != 0 || st.DecryptFailures != 0 || len(st.Violations) != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// A client that acks day-one messages without receipting them is counted
// as for any contact message (receipts_overdue); its retry receipt is
// answered with the message encrypted again.
func TestDayOneMessagesAwaitReceiptsAndRetries(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{DayOne: quiet(), ReceiptDeadline: 50 * time.Millisecond})
	r, _ := newReceiver(t, srv, 30)
	msgs := burstLogin(t, srv, r, quiet(), 20)
	for _, n := range msgs {
		if _, _, err := r.decrypt(n); err != nil { // keeps the sessions in step
			t.Fatal(err)
		}
		r.c.send(emulator.AckFor(n))
	}
	emutest.WaitStats(t, srv, waitTimeout, "every message overdue", func(s emulator.Stats) bool {
		return s.ReceiptsOverdue == int64(len(msgs))
	})
	first := msgs[0]
	r.c.send(r.retryReceipt(first, 1, false))
	resend := r.nextMessage()
	enc, _ := resend.Child("enc")
	if attr(resend, "id") != attr(first, "id") || attr(*enc, "count") != "1" {
		t.Fatalf("resend %v of %v", resend, first)
	}
	if _, _, err := r.decrypt(resend); err != nil {
		t.Fatalf("the resend does not decrypt: %v", err)
	}
	r.c.send(receipt(resend, r.d.jid))
	r.c.send(emulator.AckFor(resend))
	st := emutest.WaitStats(t, srv, waitTimeout, "the late receipt", func(s emulator.Stats) bool { return s.ReceiptsLate == 1 })
	if st.RetryReceipts != 1 || st.Resends != 1 || st.Receipts != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// GarbageShare keeps the old fault: messages of random bytes from made-up
// peers, which no client decrypts and whose retry receipts go unanswered.
func TestDayOneGarbageShare(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{DayOne: quiet(), ReceiptDeadline: -1})
	r, _ := newReceiver(t, srv, 10)
	d1 := quiet()
	d1.GarbageShare = 1
	msgs := burstLogin(t, srv, r, d1, 20)
	for _, n := range msgs {
		if _, _, err := r.decrypt(n); err == nil {
			t.Fatalf("garbage message %v decrypted", n)
		}
		peer := sender(n)
		if rcpt := jidAttr(n, "recipient"); !rcpt.IsEmpty() {
			peer = rcpt // a message "from the phone" to a made-up peer
		}
		if !strings.HasPrefix(peer.User, "15559") {
			t.Fatalf("garbage message %v, want a made-up peer", n)
		}
		r.c.send(r.retryReceipt(n, 1, false))
		r.c.send(emulator.AckFor(n))
	}
	// No resend comes: the next stanza is the answer to a ping of ours.
	r.c.send(iq("p1", "get", "w:p"))
	if n := r.c.pump(func(n node.Node) bool { return n.Tag == "message" || n.Tag == "iq" }); n.Tag != "iq" {
		t.Fatalf("%v after retry receipts of garbage", n)
	}
	if st := srv.Stats(); st.Resends != 0 || st.RetryReceipts != 0 || st.AcksOK != st.StanzasPushed {
		t.Fatalf("stats %+v", st)
	}
	d1.GarbageShare = 1.5
	if err := srv.SetDayOne(d1); !errors.Is(err, emulator.ErrBadDayOne) {
		t.Fatalf("garbage share 1.5: %v", err)
	}
}
