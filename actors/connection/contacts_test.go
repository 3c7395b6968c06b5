package connection

import (
	"context"
	"sync"
	"testing"

	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// End to end against the emulator's contacts, which encrypt through the
// real protocol path and hold the client to its receipts: a message whose
// delivery receipt never comes stays unreceipted in the emulator's stats,
// so these tests fail when the client's receive path is taken away.

// waitMessage waits for the message event of id.
func waitMessage(t *testing.T, h *harness, id string) *events.Message {
	t.Helper()
	e := h.rec.WaitFor(t, "the message event of "+id, func(e events.Event) bool {
		return e.Kind == events.KindMessage && e.Message.ID == id
	})
	return e.Message
}

// waitReceipts waits until the emulator counts n delivery receipts.
func waitReceipts(t *testing.T, srv *emulator.Server, n int64) emulator.Stats {
	t.Helper()
	st, err := srv.WaitFor(ctxT(t), func(s emulator.Stats) bool { return s.Receipts >= n })
	if err != nil {
		t.Fatalf("the emulator counted %d delivery receipts of %d: %v", st.Receipts, n, err)
	}
	return st
}

func TestContactMessagesEndToEnd(t *testing.T) {
	h := newHarness(t)
	srv := emutest.Start(t, emulator.Options{})
	_, linked := pairAccount(t, h, srv, h.deps("acct"))
	account := linked.JID.ToNonAD()
	alice, err := srv.AddContact("")
	if err != nil {
		t.Fatal(err)
	}
	phone, companion := alice.Devices()[0], alice.Devices()[1]

	// 1:1, first contact (pkmsg), from the phone and from the companion.
	for i, tc := range []struct {
		from *emulator.SignalDevice
		text string
	}{{phone, "hello"}, {phone, "hello again"}, {companion, "from my laptop"}} {
		sent, err := srv.SendText(tc.from, account, tc.text)
		if err != nil {
			t.Fatal(err)
		}
		m := waitMessage(t, h, sent.ID)
		if m.Text != tc.text || m.Type != "text" || m.Chat != alice.JID().String() || m.Sender != alice.JID().String() ||
			m.SenderDevice != tc.from.JID().Device || m.FromMe || m.PushName != alice.Name() {
			t.Fatalf("message %d: %+v", i, m)
		}
	}

	// A group: the sender key comes in the first stanza, then skmsg alone.
	group := jid.New("120363000000000042", jid.GroupServer)
	for _, text := range []string{"hi group", "still here"} {
		sent, err := srv.SendGroupText(phone, group, []jid.JID{account}, text)
		if err != nil {
			t.Fatal(err)
		}
		if m := waitMessage(t, h, sent.ID); m.Text != text || m.Chat != group.String() || m.Sender != alice.JID().String() {
			t.Fatalf("group message %+v", m)
		}
	}

	// What our own phone sent to Alice, synced to this companion.
	sent, err := srv.SendFromPhone(account, alice.JID(), "sent from my phone")
	if err != nil {
		t.Fatal(err)
	}
	if m := waitMessage(t, h, sent.ID); !m.FromMe || m.Chat != alice.JID().String() || m.Text != "sent from my phone" {
		t.Fatalf("own-device message %+v", m)
	}

	st := waitReceipts(t, srv, 6)
	if st.RetryReceipts != 0 || st.DecryptFailures != 0 || st.ReceiptsOverdue != 0 {
		t.Fatalf("emulator stats %+v: retries or failures in a clean conversation", st)
	}
}

// A sender key we lost (deleted here, as after restoring an old backup)
// is recovered through a retry receipt: the sender answers with the
// message again, 1:1, with its sender key. (A lost 1:1 session is not
// tested here: the emulator hands out our bundles without one-time
// prekeys outside day-one mode, and a prekey message without one rebuilds
// its session by itself; the unit tests cover no_session.)
func TestRetryAfterLostSenderKey(t *testing.T) {
	h := newHarness(t)
	srv := emutest.Start(t, emulator.Options{})
	d := h.deps("acct")
	obs := &countingObserver{}
	d.Observer = obs
	_, linked := pairAccount(t, h, srv, d)
	account := linked.JID.ToNonAD()
	alice, err := srv.AddContact("")
	if err != nil {
		t.Fatal(err)
	}
	phone := alice.Devices()[0]
	group := jid.New("120363000000000043", jid.GroupServer)
	first, err := srv.SendGroupText(phone, group, []jid.JID{account}, "one")
	if err != nil {
		t.Fatal(err)
	}
	waitMessage(t, h, first.ID)
	waitReceipts(t, srv, 1)

	lost := store.SenderKeyChange{Group: group.String(), Sender: store.PeerAddress(alice.JID().User, 0, 0)}
	if _, err := h.store.ApplySignal(context.Background(), "acct", store.SignalChanges{SenderKeys: []store.SenderKeyChange{lost}}); err != nil {
		t.Fatal(err)
	}
	second, err := srv.SendGroupText(phone, group, []jid.JID{account}, "two")
	if err != nil {
		t.Fatal(err)
	}
	if m := waitMessage(t, h, second.ID); m.Text != "two" || m.Chat != group.String() {
		t.Fatalf("after the retry: %+v", m)
	}
	st := waitReceipts(t, srv, 2)
	if st.RetryReceipts != 1 || st.MessagesUndelivered != 0 {
		t.Fatalf("emulator stats %+v, want one retry receipt and nothing given up", st)
	}
	if obs.failures(failNoSenderKey) != 1 {
		t.Fatalf("no_sender_key failures %d, want 1", obs.failures(failNoSenderKey))
	}
}

// A restart of the account's actor in the middle of a conversation, with
// a message sent while it was down: nothing is lost, the session goes on.
func TestRestartMidConversationEndToEnd(t *testing.T) {
	h := newHarness(t)
	srv := emutest.Start(t, emulator.Options{})
	d := h.deps("acct")
	pid, linked := pairAccount(t, h, srv, d)
	account := linked.JID.ToNonAD()
	alice, err := srv.AddContact("")
	if err != nil {
		t.Fatal(err)
	}
	phone := alice.Devices()[0]
	first, err := srv.SendText(phone, account, "before")
	if err != nil {
		t.Fatal(err)
	}
	waitMessage(t, h, first.ID)
	waitReceipts(t, srv, 1)

	h.stop(pid)
	down, err := srv.SendText(phone, account, "while down")
	if err != nil {
		t.Fatal(err)
	}
	from := len(h.rec.Events())
	h.spawn(emulatorDeps(d, srv))
	h.rec.WaitFrom(t, from, "connected again", kindIs(events.KindConnected))
	after, err := srv.SendText(phone, account, "after")
	if err != nil {
		t.Fatal(err)
	}
	waitMessage(t, h, down.ID)
	waitMessage(t, h, after.ID)
	if st := waitReceipts(t, srv, 3); st.RetryReceipts != 0 || st.DecryptFailures != 0 {
		t.Fatalf("emulator stats %+v: the restart broke the session", st)
	}
}

// recvTap wraps a dialer: every stanza the actor receives is shown to
// onRecv first.
type recvTap struct {
	next   Dialer
	onRecv func(node.Node)
}

func (d recvTap) dial(ctx context.Context, req DialRequest) (Session, error) {
	s, err := d.next(ctx, req)
	if err != nil {
		return nil, err
	}
	return &recvTapSession{Session: s, onRecv: d.onRecv}, nil
}

type recvTapSession struct {
	Session
	onRecv func(node.Node)
}

func (s *recvTapSession) Watch(onFrame func([]byte), onEnd func(error)) {
	s.Session.Watch(func(b []byte) {
		if n, err := node.UnmarshalPayload(b); err == nil {
			s.onRecv(n)
		}
		onFrame(b)
	}, onEnd)
}

// A conversation: the contact's first message is a pkmsg; once our answer
// (the send path's) reached it, its next one is a msg, which decrypts
// against the session the pkmsg built and we updated by sending.
func TestConversationPkmsgThenMsg(t *testing.T) {
	h := newHarness(t)
	srv := emutest.Start(t, emulator.Options{})
	var mu sync.Mutex
	encTypes := map[string]string{} // message id → its enc type
	d := h.deps("acct")
	d.Dialer = recvTap{next: WireDialer, onRecv: func(n node.Node) {
		if n.Tag != "message" {
			return
		}
		if enc, ok := n.Child("enc"); ok {
			typ, _ := enc.Attr("type")
			mu.Lock()
			encTypes[idOf(n)] = typ
			mu.Unlock()
		}
	}}.dial
	pid, linked := pairAccount(t, h, srv, d)
	account := linked.JID.ToNonAD()
	alice, err := srv.AddContact("")
	if err != nil {
		t.Fatal(err)
	}
	phone := alice.Devices()[0]
	first, err := srv.SendText(phone, account, "hello")
	if err != nil {
		t.Fatal(err)
	}
	waitMessage(t, h, first.ID)

	res, err := h.system.Root.RequestFuture(pid, &SendText{To: alice.JID(), Text: "hello Alice"}, waitTimeout).Result()
	if err != nil {
		t.Fatal(err)
	}
	if sr := res.(*SendResult); sr.Err != nil {
		t.Fatalf("send: %v", sr.Err)
	}
	waitFor(t, "Alice's phone to read our answer", func() bool {
		for _, r := range phone.Received() {
			if r.Message.GetConversation() == "hello Alice" {
				return true
			}
		}
		return false
	})

	second, err := srv.SendText(phone, account, "and now a msg")
	if err != nil {
		t.Fatal(err)
	}
	if m := waitMessage(t, h, second.ID); m.Text != "and now a msg" {
		t.Fatalf("second message %+v", m)
	}
	mu.Lock()
	defer mu.Unlock()
	if encTypes[first.ID] != "pkmsg" || encTypes[second.ID] != "msg" {
		t.Fatalf("enc types %q then %q, want pkmsg then msg", encTypes[first.ID], encTypes[second.ID])
	}
	if st := waitReceipts(t, srv, 2); st.RetryReceipts != 0 || st.DecryptFailures != 0 {
		t.Fatalf("emulator stats %+v", st)
	}
}
