package connection

import (
	"strconv"
	"strings"
	"testing"

	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/wire/jid"
)

func TestSendGroup(t *testing.T) {
	h := newHarness(t)
	srv := emutest.Start(t, emulator.Options{})
	d := h.deps("acct1")
	pid, linked := pairAccount(t, h, srv, d)
	a, err := srv.AddContact("")
	if err != nil {
		t.Fatal(err)
	}
	b, err := srv.AddContact("")
	if err != nil {
		t.Fatal(err)
	}
	group, err := srv.AddGroup(linked.JID.ToNonAD(), a.JID(), b.JID())
	if err != nil {
		t.Fatal(err)
	}
	phone, ok := srv.SignalDevice(linked.JID.ToNonAD())
	if !ok {
		t.Fatal("the account's phone is not an emulated Signal device")
	}

	from := 0
	send := func(text string) string {
		t.Helper()
		// keyed by the text: every text below is sent once
		var id string
		id, from = sendAndWait(t, h, pid, &SendText{To: group, Text: text, Key: strings.ReplaceAll(text, " ", "-")}, from)
		return id
	}
	// check waits until every device decrypted message n (1-based) as the
	// group's skmsg, and that it got our sender key exactly once.
	check := func(devs []*emulator.SignalDevice, n int, id, text string) {
		t.Helper()
		for _, dev := range devs {
			got := waitReceived(t, dev, n)[n-1]
			if got.ID != id || got.Type != "skmsg" || got.Chat != group || got.From != linked.JID || got.Message.GetConversation() != text {
				t.Errorf("%s message %d: %s %s in %s from %s: %q", dev.JID(), n, got.ID, got.Type, got.Chat, got.From, got.Message.GetConversation())
			}
			if k := dev.SenderKeysReceived(); k != 1 {
				t.Errorf("%s got our sender key %d times, want once", dev.JID(), k)
			}
		}
	}
	members := append(append(a.Devices(), b.Devices()...), phone)

	// First send: every member device (and our own phone) gets the
	// distribution in a 1:1 part and decrypts the skmsg.
	id1 := send("hello group")
	check(members, 1, id1, "hello group")
	h.rec.WaitFrom(t, 0, "a delivery receipt from the group", func(e events.Event) bool {
		return e.Kind == events.KindReceipt && e.Receipt != nil && e.Receipt.Chat == group.String() &&
			len(e.Receipt.IDs) == 1 && e.Receipt.IDs[0] == id1 && e.Receipt.Sender == a.JID().String()
	})

	// The second send, after a restart of the actor, distributes nothing
	// again: who holds the key is stored with it.
	h.stop(pid)
	pid = h.spawn(emulatorDeps(d, srv))
	_, from = h.rec.WaitFrom(t, from, "connected again", kindIs(events.KindConnected))
	id2 := send("second")
	check(members, 2, id2, "second")
	// The first send's key, repeated after the restart, sends nothing.
	res, err := h.system.Root.RequestFuture(pid, &SendText{To: group, Text: "hello group", Key: "hello-group"}, waitTimeout).Result()
	if r := res.(*SendResult); err != nil || r.Err != nil || !r.Duplicate || r.ID != id1 {
		t.Fatalf("the first key again: %+v, %v", res, err)
	}

	// A member added between sends gets the key with the next message; the
	// others do not get it again.
	c, err := srv.AddContact("")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.AddGroupMember(group, c.JID()); err != nil {
		t.Fatal(err)
	}
	id3 := send("welcome")
	check(members, 3, id3, "welcome")
	check(c.Devices(), 1, id3, "welcome")

	// A member who leaves: our key is replaced, every remaining device
	// gets the new one, the one who left gets nothing.
	if err := srv.RemoveGroupMember(group, b.JID()); err != nil {
		t.Fatal(err)
	}
	id4 := send("after b left")
	for _, dev := range append(append(a.Devices(), c.Devices()...), phone) {
		if k := dev.SenderKeysReceived(); k != 2 {
			t.Errorf("%s got our sender key %d times, want twice (the new one)", dev.JID(), k)
		}
	}
	for _, dev := range append(a.Devices(), phone) {
		if got := waitReceived(t, dev, 4)[3]; got.ID != id4 || got.Type != "skmsg" {
			t.Errorf("%s after b left: %s %s", dev.JID(), got.ID, got.Type)
		}
	}
	for _, dev := range b.Devices() {
		if n := len(dev.Received()); n != 3 || dev.SenderKeysReceived() != 1 {
			t.Errorf("%s, no longer a member, has %d messages and %d keys", dev.JID(), n, dev.SenderKeysReceived())
		}
	}

	st := srv.Stats()
	if st.CompanionGroupMessages != 4 || st.CompanionDecryptFailures != 0 || st.CompanionRetryReceipts != 0 ||
		st.CompanionMessagesRefused != 0 || len(st.Violations) != 0 {
		t.Errorf("emulator stats: %d group messages, %d decrypt failures, %d retry receipts, %d refused, violations %v",
			st.CompanionGroupMessages, st.CompanionDecryptFailures, st.CompanionRetryReceipts, st.CompanionMessagesRefused, st.Violations)
	}
}

// A member device that lost our sender key cannot decrypt the next skmsg:
// its retry receipt is answered with the message and the key, 1:1, and it
// decrypts the skmsg after that.
func TestSendGroupRetryReceipt(t *testing.T) {
	h := newHarness(t)
	srv := emutest.Start(t, emulator.Options{})
	pid, linked := pairAccount(t, h, srv, h.deps("acct1"))
	a, err := srv.AddContact("")
	if err != nil {
		t.Fatal(err)
	}
	group, err := srv.AddGroup(linked.JID.ToNonAD(), a.JID())
	if err != nil {
		t.Fatal(err)
	}
	from := 0
	send := func(text string) string {
		t.Helper()
		var id string
		id, from = sendAndWait(t, h, pid, &SendText{To: group, Text: text}, from)
		return id
	}
	companion := a.Devices()[1]
	send("one")
	waitReceived(t, companion, 1)
	companion.ForgetSenderKey(group, linked.JID)

	id2 := send("two")
	got := waitReceived(t, companion, 2)[1]
	if got.ID != id2 || got.Type == "skmsg" || got.Chat != group || got.Message.GetConversation() != "two" {
		t.Errorf("the retry answer: %s %s in %s: %q", got.ID, got.Type, got.Chat, got.Message.GetConversation())
	}
	id3 := send("three")
	if got := waitReceived(t, companion, 3)[2]; got.ID != id3 || got.Type != "skmsg" || got.Message.GetConversation() != "three" {
		t.Errorf("after the retry: %s %s: %q", got.ID, got.Type, got.Message.GetConversation())
	}
	if got := waitReceived(t, a.Devices()[0], 3)[2]; got.ID != id3 || got.Type != "skmsg" {
		t.Errorf("the phone: %s %s", got.ID, got.Type)
	}
	st := srv.Stats()
	if st.CompanionDecryptFailures != 1 || st.CompanionRetryReceipts != 1 || st.CompanionRetryAnswers != 1 || len(st.Violations) != 0 {
		t.Errorf("emulator stats: %d decrypt failures, %d retry receipts, %d answers, violations %v",
			st.CompanionDecryptFailures, st.CompanionRetryReceipts, st.CompanionRetryAnswers, st.Violations)
	}

	// A reinstalled device lost our session too: the answer to its first
	// retry receipt (on the old session) fails there as well; its second
	// carries its keys, and the answer on a new session decrypts.
	companion.ForgetSession(linked.JID)
	companion.ForgetSenderKey(group, linked.JID)
	published := companion.PublishedPreKeys()
	id4 := send("four")
	got = waitReceived(t, companion, 4)[3]
	if got.ID != id4 || got.Type != "pkmsg" || got.Message.GetConversation() != "four" {
		t.Errorf("the answer on a new session: %s %s: %q", got.ID, got.Type, got.Message.GetConversation())
	}
	if n := companion.PublishedPreKeys(); n != published-1 {
		t.Errorf("%d published prekeys, then %d: want only the one the retry receipt carried used (none fetched)", published, n)
	}
	id5 := send("five")
	if got := waitReceived(t, companion, 5)[4]; got.ID != id5 || got.Type != "skmsg" {
		t.Errorf("after the new session: %s %s", got.ID, got.Type)
	}
	st = srv.Stats()
	if st.CompanionDecryptFailures != 3 || st.CompanionRetryReceipts != 3 || st.CompanionRetryAnswers != 3 || len(st.Violations) != 0 {
		t.Errorf("emulator stats: %d decrypt failures, %d retry receipts, %d answers, violations %v",
			st.CompanionDecryptFailures, st.CompanionRetryReceipts, st.CompanionRetryAnswers, st.Violations)
	}
}

// A group larger than one usync query's worth of users is asked about in
// several (the emulator answers 400 beyond 512 users).
func TestSendGroupManyMembers(t *testing.T) {
	h := newHarness(t)
	srv := emutest.Start(t, emulator.Options{})
	pid, linked := pairAccount(t, h, srv, h.deps("acct1"))
	a, err := srv.AddContact("")
	if err != nil {
		t.Fatal(err)
	}
	members := []jid.JID{linked.JID.ToNonAD(), a.JID()}
	for i := range 2 * maxQueryUsers {
		members = append(members, jid.New(strconv.Itoa(15559000000+i), jid.DefaultUserServer)) // no devices
	}
	group, err := srv.AddGroup(members...)
	if err != nil {
		t.Fatal(err)
	}
	res, err := h.system.Root.RequestFuture(pid, &SendText{To: group, Text: "to many"}, waitTimeout).Result()
	if err != nil {
		t.Fatal(err)
	}
	id := res.(*SendResult).ID
	e, _ := h.rec.WaitFrom(t, 0, "message_sent "+id, func(e events.Event) bool {
		return (e.Kind == events.KindMessageSent || e.Kind == events.KindMessageFailed) && e.MessageID == id
	})
	if e.Kind != events.KindMessageSent {
		t.Fatalf("got %s: %s", e.Kind, e.Error)
	}
	for _, dev := range a.Devices() {
		if got := waitReceived(t, dev, 1)[0]; got.ID != id || got.Type != "skmsg" {
			t.Errorf("%s: %s %s", dev.JID(), got.ID, got.Type)
		}
	}
}
