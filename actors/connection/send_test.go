package connection

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/wire/jid"
)

// waitReceived waits until the emulated device decrypted n messages from
// our companions.
func waitReceived(t *testing.T, d *emulator.SignalDevice, n int) []emulator.Received {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		if got := d.Received(); len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s decrypted %d messages, want %d", d.JID(), len(d.Received()), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSendText(t *testing.T) {
	h := newHarness(t)
	srv := emutest.Start(t, emulator.Options{})
	d := h.deps("acct1")
	pid, linked := pairAccount(t, h, srv, d)
	contact, err := srv.AddContact("")
	if err != nil {
		t.Fatal(err)
	}
	ownPhone, ok := srv.SignalDevice(linked.JID.ToNonAD())
	if !ok {
		t.Fatal("the account's phone is not an emulated Signal device")
	}
	to := contact.JID()

	send := func(m *SendText) *SendResult {
		t.Helper()
		res, err := h.system.Root.RequestFuture(pid, m, waitTimeout).Result()
		if err != nil {
			t.Fatal(err)
		}
		return res.(*SendResult)
	}
	sent := func(id string, from int) int {
		t.Helper()
		e, i := h.rec.WaitFrom(t, from, "message_sent "+id, func(e events.Event) bool {
			return (e.Kind == events.KindMessageSent || e.Kind == events.KindMessageFailed) && e.MessageID == id
		})
		if e.Kind != events.KindMessageSent || e.Chat != to.String() {
			t.Fatalf("got %s for %s (chat %q): %s", e.Kind, id, e.Chat, e.Error)
		}
		return i
	}

	// First contact: a pkmsg for each of the contact's devices and a
	// device-sent copy for our phone.
	r1 := send(&SendText{To: to, Text: "hello", Key: "k1"})
	if r1.Err != nil || r1.ID == "" || r1.Duplicate {
		t.Fatalf("first send: %+v", r1)
	}
	from := sent(r1.ID, 0)
	for _, dev := range contact.Devices() {
		got := waitReceived(t, dev, 1)[0]
		if got.ID != r1.ID || got.Type != "pkmsg" || got.Message.GetConversation() != "hello" || got.From != linked.JID || got.Chat != to {
			t.Errorf("%s got %+v", dev.JID(), got)
		}
	}
	// The contact's delivery receipt comes back as a receipt event.
	h.rec.WaitFrom(t, 0, "the delivery receipt of "+r1.ID, func(e events.Event) bool {
		return e.Kind == events.KindReceipt && e.Receipt != nil && len(e.Receipt.IDs) == 1 && e.Receipt.IDs[0] == r1.ID &&
			e.Receipt.Type == "delivery" && e.Receipt.Sender == to.String()
	})
	own := waitReceived(t, ownPhone, 1)[0]
	if dsm := own.Message.GetDeviceSentMessage(); own.Type != "pkmsg" || dsm.GetDestinationJID() != to.String() || dsm.GetMessage().GetConversation() != "hello" {
		t.Errorf("own phone got %+v", own)
	}

	// The sessions were stored: the next message continues them on every
	// device, no bundle fetched again. (Until a device answers, the
	// protocol keeps sending pkmsg on the same session.)
	before := contact.Devices()[0].PublishedPreKeys()
	r2 := send(&SendText{To: to, Text: "again"})
	if r2.Err != nil || r2.ID == r1.ID {
		t.Fatalf("second send: %+v", r2)
	}
	from = sent(r2.ID, from)
	for _, dev := range append(contact.Devices(), ownPhone) {
		if got := waitReceived(t, dev, 2)[1]; got.ID != r2.ID {
			t.Errorf("%s second message %+v", dev.JID(), got)
		}
	}
	if after := contact.Devices()[0].PublishedPreKeys(); after != before {
		t.Errorf("the second send fetched a prekey bundle again (%d published prekeys, then %d)", before, after)
	}

	// The same key sends nothing, even after a restart of the actor.
	if r := send(&SendText{To: to, Text: "hello", Key: "k1"}); r.Err != nil || !r.Duplicate || r.ID != r1.ID {
		t.Errorf("repeated key: %+v", r)
	}
	h.stop(pid)
	pid = h.spawn(emulatorDeps(d, srv))
	h.rec.WaitFrom(t, from, "connected again", kindIs(events.KindConnected))
	if r := send(&SendText{To: to, Text: "hello", Key: "k1"}); r.Err != nil || !r.Duplicate || r.ID != r1.ID {
		t.Errorf("repeated key after a restart: %+v", r)
	}
	// The restarted actor continues the stored sessions.
	r3 := send(&SendText{To: to, Text: "after restart", Key: "k2"})
	sent(r3.ID, from)
	if got := waitReceived(t, contact.Devices()[1], 3)[2]; got.Message.GetConversation() != "after restart" {
		t.Errorf("after restart: %+v", got)
	}
	st := srv.Stats()
	if st.CompanionMessages != 3 || st.CompanionDecryptFailures != 0 || st.CompanionMessagesRefused != 0 || len(st.Violations) != 0 {
		t.Errorf("emulator stats: %d messages, %d decrypt failures, %d refused, violations %v",
			st.CompanionMessages, st.CompanionDecryptFailures, st.CompanionMessagesRefused, st.Violations)
	}
}

func TestSendRefusals(t *testing.T) {
	h := newHarness(t)
	srv := emutest.Start(t, emulator.Options{})
	d := h.deps("acct1")
	d.SendRate = SendRate{PerMinute: 1, Burst: 2}
	pid, _ := pairAccount(t, h, srv, d)
	contact, err := srv.AddContact("")
	if err != nil {
		t.Fatal(err)
	}
	send := func(m *SendText) *SendResult {
		t.Helper()
		res, err := h.system.Root.RequestFuture(pid, m, waitTimeout).Result()
		if err != nil {
			t.Fatal(err)
		}
		return res.(*SendResult)
	}
	bad := []*SendText{
		{To: contact.JID(), Text: ""},
		{To: contact.JID(), Text: string(make([]byte, MaxTextLen+1))},
		{To: contact.Devices()[1].JID(), Text: "to a device"},
		{To: jid.New("1203630123x", jid.GroupServer), Text: "to a group that is not one"},
		{To: jid.New("12345", jid.BroadcastServer), Text: "to a broadcast list"},
		{To: contact.JID(), Text: "bad key", Key: "with space"},
	}
	for _, m := range bad {
		if r := send(m); !errors.Is(r.Err, ErrSendInput) || r.ID != "" {
			t.Errorf("%s %q: %+v, want ErrSendInput", m.To, m.Key, r)
		}
	}
	// The burst goes out; the next send waits for the rate.
	keyed := send(&SendText{To: contact.JID(), Text: "burst", Key: "k-burst"})
	if keyed.Err != nil {
		t.Fatalf("send 0 of the burst: %v", keyed.Err)
	}
	if r := send(&SendText{To: contact.JID(), Text: "burst"}); r.Err != nil {
		t.Fatalf("send 1 of the burst: %v", r.Err)
	}
	r := send(&SendText{To: contact.JID(), Text: "one too many", Key: "k"})
	if !errors.Is(r.Err, ErrRateLimited) || r.RetryAfter <= 0 || r.RetryAfter > time.Minute {
		t.Fatalf("beyond the burst: %+v", r)
	}
	// A repeat of a sent key is a duplicate, rate limit or not.
	if r := send(&SendText{To: contact.JID(), Text: "burst", Key: "k-burst"}); r.Err != nil || !r.Duplicate || r.ID != keyed.ID {
		t.Fatalf("a sent key repeated beyond the rate: %+v, want a duplicate of %s", r, keyed.ID)
	}
	// Only the burst reached the server.
	waitReceived(t, contact.Devices()[0], 2)
	if got := srv.Stats().CompanionMessages; got != 2 {
		t.Errorf("%d messages reached the server, want 2", got)
	}

	// Not connected: refused at once.
	h.stop(pid)
	d.SendRate = SendRate{}
	d.Dialer = func(ctx context.Context, _ DialRequest) (Session, error) { <-ctx.Done(); return nil, ctx.Err() }
	pid = h.spawn(emulatorDeps(d, srv))
	if r := send(&SendText{To: contact.JID(), Text: "offline", Key: "k-offline"}); !errors.Is(r.Err, ErrNotConnected) {
		t.Errorf("offline: %+v, want ErrNotConnected", r)
	}
	// A repeat of a sent key is a duplicate, connected or not (a request
	// repeated during a reconnection or after a failover).
	if r := send(&SendText{To: contact.JID(), Text: "burst", Key: "k-burst"}); r.Err != nil || !r.Duplicate || r.ID != keyed.ID {
		t.Errorf("a sent key repeated offline: %+v, want a duplicate of %s", r, keyed.ID)
	}
}

// A contact's device and our phone that lost their sessions with us (as
// reinstalled devices have) cannot decrypt our next 1:1 message: their
// retry receipts are answered, the first on the old session (it fails
// again), the second, which carries the device's keys, on a new session
// that decrypts: the text for the contact, the device-sent copy for our
// phone.
func TestSendRetryReceipt(t *testing.T) {
	h := newHarness(t)
	srv := emutest.Start(t, emulator.Options{})
	pid, linked := pairAccount(t, h, srv, h.deps("acct1"))
	contact, err := srv.AddContact("")
	if err != nil {
		t.Fatal(err)
	}
	ownPhone, ok := srv.SignalDevice(linked.JID.ToNonAD())
	if !ok {
		t.Fatal("the account's phone is not an emulated Signal device")
	}
	to := contact.JID()
	from := 0
	send := func(text string) string {
		t.Helper()
		var id string
		id, from = sendAndWait(t, h, pid, &SendText{To: to, Text: text}, from)
		return id
	}
	companion := contact.Devices()[1]
	send("one")
	waitReceived(t, companion, 1)
	waitReceived(t, ownPhone, 1)
	companion.ForgetSession(linked.JID)
	ownPhone.ForgetSession(linked.JID)
	published := companion.PublishedPreKeys()

	id2 := send("two")
	if got := waitReceived(t, companion, 2)[1]; got.ID != id2 || got.Type != "pkmsg" || got.Chat != to || got.Message.GetConversation() != "two" {
		t.Errorf("the contact's device, the retry answer: %s %s in %s: %q", got.ID, got.Type, got.Chat, got.Message.GetConversation())
	}
	own := waitReceived(t, ownPhone, 2)[1]
	if dsm := own.Message.GetDeviceSentMessage(); own.ID != id2 || own.Type != "pkmsg" ||
		dsm.GetDestinationJID() != to.String() || dsm.GetMessage().GetConversation() != "two" {
		t.Errorf("our phone, the retry answer: %+v", own)
	}
	if n := companion.PublishedPreKeys(); n != published-1 {
		t.Errorf("%d published prekeys, then %d: want only the one the retry receipt carried used (none fetched)", published, n)
	}
	// the new sessions go on
	id3 := send("three")
	for _, dev := range []*emulator.SignalDevice{companion, ownPhone} {
		if got := waitReceived(t, dev, 3)[2]; got.ID != id3 {
			t.Errorf("%s after the retry: %s %s", dev.JID(), got.ID, got.Type)
		}
	}
	st := srv.Stats()
	if st.CompanionDecryptFailures != 4 || st.CompanionRetryReceipts != 4 || st.CompanionRetryAnswers != 4 || len(st.Violations) != 0 {
		t.Errorf("emulator stats: %d decrypt failures, %d retry receipts, %d answers, violations %v",
			st.CompanionDecryptFailures, st.CompanionRetryReceipts, st.CompanionRetryAnswers, st.Violations)
	}
}
