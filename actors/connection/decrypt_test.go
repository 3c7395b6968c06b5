package connection

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/signal"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/storetest"
	"github.com/wafleet/wafleet/waproto"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// The receive pipeline against a fake peer built from package signal: the
// peer encrypts as a contact's device would, the stanzas are shaped as the
// server pushes them, and the receiver decrypts and writes.

const (
	ownUser  = "15550001111"
	peerUser = "15559990000"
	groupID  = "120363000000000001@g.us"
)

// journalLog makes the outbox records of events as *journal.Journal does
// and records the order of durable writes: the Signal applies, with the
// kinds of the events they carry, and Written.
type journalLog struct {
	mu    sync.Mutex
	steps []string
	// fail makes ApplySignal fail without writing anything, as a store
	// that is down (or a crash before the write) leaves things.
	fail error
}

func (j *journalLog) Record(e events.Event) store.OutboxRecord {
	return store.OutboxRecord{Account: e.Account, Kind: string(e.Kind), Instance: "test", Time: e.Time, Body: events.Marshal(e, "test")}
}

func (j *journalLog) Written(n int) { j.note("written:" + strconv.Itoa(n)) }

func (j *journalLog) note(s string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.steps = append(j.steps, s)
}

// orderedSignal notes every ApplySignal in the journal's log.
type orderedSignal struct {
	store.SignalStore
	log *journalLog
}

func (o orderedSignal) ApplySignal(ctx context.Context, id string, c store.SignalChanges) (store.SignalApplied, error) {
	step := "apply"
	for _, e := range c.Events {
		step += "+" + e.Kind
	}
	o.log.note(step)
	o.log.mu.Lock()
	fail := o.log.fail
	o.log.mu.Unlock()
	if fail != nil {
		return store.SignalApplied{}, fail
	}
	return o.SignalStore.ApplySignal(ctx, id, c)
}

// published collects the events the receiver publishes.
type published struct {
	mu  sync.Mutex
	evs []events.Event
}

func (p *published) Publish(e events.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.evs = append(p.evs, e)
}

func (p *published) take() []events.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.evs
	p.evs = nil
	return out
}

// fixture is our paired device in a bbolt store, with one-time prekeys.
type fixture struct {
	t       testing.TB
	st      *store.BoltStore
	dev     *store.Device
	journal *journalLog
	pub     *published
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "wafleet.db"), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	dev := storetest.PairedDevice(t, "acct", ownUser, "", 3)
	identity := &crypto.KeyPair{Pub: dev.IdentityKey.Pub, Priv: dev.IdentityKey.Priv}
	if dev.SignedPreKey.Signature, err = crypto.Sign(identity, signal.SerializeKey(dev.SignedPreKey.Pub)); err != nil {
		t.Fatal(err)
	}
	if err := st.Save(t.Context(), dev); err != nil {
		t.Fatal(err)
	}
	if _, err := addPreKeys(t.Context(), st, dev.ID, 0, 5); err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, st: st, dev: dev, journal: &journalLog{}, pub: &published{}}
}

func (f *fixture) receiver() *receiver {
	return newReceiver(&receiver{st: f.st, sig: orderedSignal{f.st, f.journal}, journal: f.journal, events: f.pub,
		dev: f.dev.Clone(), log: slog.New(slog.NewTextHandler(io.Discard, nil)), now: time.Now})
}

// bundle is our prekey bundle with one-time prekey id, as the server
// hands it to a peer.
func (f *fixture) bundle(id uint32) *signal.Bundle {
	f.t.Helper()
	pk, err := f.st.PreKey(f.t.Context(), f.dev.ID, id)
	if err != nil {
		f.t.Fatal(err)
	}
	return &signal.Bundle{
		RegistrationID: f.dev.RegistrationID, IdentityKey: f.dev.IdentityKey.Pub,
		SignedPreKeyID: f.dev.SignedPreKey.ID, SignedPreKey: f.dev.SignedPreKey.Pub,
		SignedPreKeySignature: f.dev.SignedPreKey.Signature, PreKeyID: id, PreKey: &pk.Pub,
	}
}

// receive runs the pipeline on n as the store queue does.
func (f *fixture) receive(n node.Node, sent int) *received {
	f.t.Helper()
	in, err := parseInbound(n, f.dev)
	if err != nil {
		f.t.Fatalf("parseInbound: %v", err)
	}
	return f.receiver().receive(f.t.Context(), in, sent)
}

// peer is one device of a contact: its identity and its session with us.
type peer struct {
	t       testing.TB
	jid     jid.JID
	local   signal.LocalIdentity
	session signal.Session
}

func newPeer(t testing.TB, j jid.JID) *peer {
	t.Helper()
	key, err := crypto.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	return &peer{t: t, jid: j, local: signal.LocalIdentity{Key: key, RegistrationID: 4242}}
}

func (p *peer) start(b *signal.Bundle) {
	p.t.Helper()
	if err := p.session.Initiate(p.local, b); err != nil {
		p.t.Fatal(err)
	}
}

// encrypt pads and encrypts msg for us: an <enc> node.
func (p *peer) encrypt(msg *waproto.Message) node.Node {
	p.t.Helper()
	raw, err := proto.Marshal(msg)
	if err != nil {
		p.t.Fatal(err)
	}
	ct, err := p.session.Encrypt(signal.Pad(raw))
	if err != nil {
		p.t.Fatal(err)
	}
	return encNode(ct.Type.String(), ct.Body)
}

func encNode(typ string, body []byte) node.Node {
	return node.New("enc", node.StrAttr("v", "2"), node.StrAttr("type", typ)).WithBytes(body)
}

func text(s string) *waproto.Message { return &waproto.Message{Conversation: proto.String(s)} }

// direct is a 1:1 <message> from p.
func direct(id string, from jid.JID, encs ...node.Node) node.Node {
	return node.New("message", node.JIDAttr("from", from), node.StrAttr("id", id), node.StrAttr("type", "text"),
		node.IntAttr("t", 1_800_000_000), node.StrAttr("notify", "Alice")).WithChildren(encs...)
}

func messageEvents(t *testing.T, evs []events.Event) []*events.Message {
	t.Helper()
	var out []*events.Message
	for _, e := range evs {
		if e.Kind == events.KindMessage {
			if !e.Journaled {
				t.Errorf("message event %s published without Journaled: the journal would append it twice", e.Message.ID)
			}
			out = append(out, e.Message)
		}
	}
	return out
}

// A first message (pkmsg) builds the session from our signed and one-time
// prekeys, consumes the one-time key, records the peer's identity and
// gives a message event; the event is written before the state, and the
// state in one apply. Our answer makes the peer switch to msg, which
// decrypts against the stored session; a redelivered copy decrypts to
// nothing new.
func TestReceiveOneToOne(t *testing.T) {
	f := newFixture(t)
	alice := newPeer(t, jid.New(peerUser, jid.DefaultUserServer))
	alice.start(f.bundle(2))

	first := direct("3EB0A1", alice.jid, alice.encrypt(text("hello")))
	if res := f.receive(first, 0); res.err != nil {
		t.Fatalf("pkmsg: %v", res.err)
	}
	if got := f.journal.steps; len(got) != 2 || got[0] != "apply+message" || got[1] != "written:1" {
		t.Fatalf("durable steps %v, want one apply carrying the event, then the journal told", got)
	}
	if got := f.outbox(); len(got) != 1 || got[0] != "3EB0A1" {
		t.Fatalf("outbox %v, want the message event", got)
	}
	msgs := messageEvents(t, f.pub.take())
	if len(msgs) != 1 {
		t.Fatalf("%d message events, want 1", len(msgs))
	}
	m := msgs[0]
	if m.ID != "3EB0A1" || m.Text != "hello" || m.Type != "text" || m.Chat != peerUser+"@s.whatsapp.net" ||
		m.Sender != peerUser+"@s.whatsapp.net" || m.SenderDevice != 0 || m.FromMe || m.PushName != "Alice" ||
		!m.Timestamp.Equal(time.Unix(1_800_000_000, 0)) || m.Raw != nil {
		t.Fatalf("message event %+v", m)
	}
	if _, err := f.st.PreKey(t.Context(), f.dev.ID, 2); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the one-time prekey the pkmsg used is still stored (%v)", err)
	}
	addr := store.PeerAddress(peerUser, 0, 0)
	if key, err := f.st.PeerIdentity(t.Context(), f.dev.ID, addr); err != nil || key != alice.local.Key.Pub {
		t.Fatalf("peer identity not recorded: %v", err)
	}

	f.answer(alice) // as the send path will: Alice's next message is a msg
	second := direct("3EB0A2", alice.jid, alice.encrypt(text("second")))
	if typ, _ := second.Children()[0].Attr("type"); typ != "msg" {
		t.Fatalf("Alice sent %s after our answer, want msg", typ)
	}
	if res := f.receive(second, 0); res.err != nil {
		t.Fatalf("msg: %v", res.err)
	}
	if msgs := messageEvents(t, f.pub.take()); len(msgs) != 1 || msgs[0].Text != "second" {
		t.Fatalf("events %+v, want the second message", msgs)
	}

	// A redelivery after the state was written (a crash before the ack)
	// decrypts to nothing new: no second event, no failure.
	f.journal.steps = nil
	if res := f.receive(second, 0); res.err != nil {
		t.Fatalf("redelivered msg: %v", res.err)
	}
	if evs := f.pub.take(); len(evs) != 0 {
		t.Fatalf("a redelivered message published %d events", len(evs))
	}
	if len(f.journal.steps) != 0 {
		t.Fatalf("a redelivered message wrote %v", f.journal.steps)
	}
}

// answer makes our side answer p with a message under the stored session,
// as the send path will, so that p's next message is a msg.
func (f *fixture) answer(p *peer) {
	f.t.Helper()
	addr, _ := senderAddress(p.jid)
	rec, err := f.st.Session(f.t.Context(), f.dev.ID, addr)
	if err != nil {
		f.t.Fatal(err)
	}
	var ours signal.Session
	if err := ours.UnmarshalBinary(rec); err != nil {
		f.t.Fatal(err)
	}
	reply, err := ours.Encrypt(signal.Pad([]byte("reply")))
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := p.session.Decrypt(reply.Body); err != nil {
		f.t.Fatal(err)
	}
}

// A message that does not decrypt changes nothing and asks for a retry;
// from the second retry on with a fresh one-time prekey, stored first;
// after the fourth it is only acknowledged.
func TestReceiveFailureRetries(t *testing.T) {
	f := newFixture(t)
	alice := newPeer(t, jid.New(peerUser, jid.DefaultUserServer))
	n := direct("3EB0B1", alice.jid, encNode("msg", []byte{0x33, 1, 2, 3}))

	res := f.receive(n, 0)
	if failureReason(res.err) != failMalformed || res.retry != 1 || res.keys != nil {
		t.Fatalf("garbage msg: err %v retry %d keys %v, want malformed, retry 1 without keys", res.err, res.retry, res.keys)
	}
	counts, _ := f.st.PreKeyCounts(t.Context(), f.dev.ID)
	res = f.receive(n, 1)
	if res.retry != 2 || res.keys == nil || res.keys.preKey.ID != counts.MaxID+1 {
		t.Fatalf("second failure: retry %d keys %v, want retry 2 with prekey %d", res.retry, res.keys, counts.MaxID+1)
	}
	if _, err := f.st.PreKey(t.Context(), f.dev.ID, res.keys.preKey.ID); err != nil {
		t.Fatalf("the retry receipt's prekey is not stored: %v", err)
	}
	if res := f.receive(n, maxRetryReceipts); res.retry != 0 || res.err == nil {
		t.Fatalf("after %d retries: retry %d (%v), want none", maxRetryReceipts, res.retry, res.err)
	}
	if len(f.journal.steps) != 0 || len(f.pub.take()) != 0 {
		t.Fatalf("failed decrypts wrote %v", f.journal.steps)
	}

	// A msg under a session we do not hold (another account's, here: as
	// after our state was lost).
	other := newFixture(t)
	alice.start(other.bundle(1))
	if res := other.receive(direct("3EB0B2", alice.jid, alice.encrypt(text("to the other"))), 0); res.err != nil {
		t.Fatal(res.err)
	}
	other.answer(alice)
	lost := direct("3EB0B3", alice.jid, alice.encrypt(text("lost")))
	if res := f.receive(lost, 0); failureReason(res.err) != failNoSession || res.retry != 1 {
		t.Fatalf("msg without a session: %v (retry %d), want no_session and a retry", res.err, res.retry)
	}
}

// A group's first message: the sender-key distribution in a 1:1 pkmsg and
// the content in an skmsg, one stanza; the next skmsg decrypts with the
// stored sender key; an skmsg from a member that never distributed one is
// no_sender_key.
func TestReceiveGroup(t *testing.T) {
	f := newFixture(t)
	alice := newPeer(t, jid.JID{User: peerUser, Device: 1, Server: jid.DefaultUserServer})
	alice.start(f.bundle(4))
	sk, err := signal.NewSenderKey()
	if err != nil {
		t.Fatal(err)
	}
	dist, err := sk.Distribution()
	if err != nil {
		t.Fatal(err)
	}
	skdm := &waproto.Message{SenderKeyDistributionMessage: &waproto.Message_SenderKeyDistribution{
		GroupID: proto.String(groupID), AxolotlSenderKeyDistributionMessage: dist.Marshal()}}
	group := func(id string, encs ...node.Node) node.Node {
		g, _ := jid.Parse(groupID)
		return node.New("message", node.JIDAttr("from", g), node.JIDAttr("participant", alice.jid), node.StrAttr("id", id),
			node.IntAttr("t", 1_800_000_000)).WithChildren(encs...)
	}
	skmsg := func(s string) node.Node {
		raw, _ := proto.Marshal(text(s))
		body, err := sk.Encrypt(signal.Pad(raw))
		if err != nil {
			t.Fatal(err)
		}
		return encNode("skmsg", body)
	}
	if res := f.receive(group("3EB0C1", alice.encrypt(skdm), skmsg("hi all")), 0); res.err != nil {
		t.Fatalf("first group message: %v", res.err)
	}
	msgs := messageEvents(t, f.pub.take())
	if len(msgs) != 1 || msgs[0].Text != "hi all" || msgs[0].Chat != groupID || msgs[0].Sender != peerUser+"@s.whatsapp.net" || msgs[0].SenderDevice != 1 {
		t.Fatalf("events %+v, want the group message", msgs)
	}
	if res := f.receive(group("3EB0C2", skmsg("again")), 0); res.err != nil {
		t.Fatalf("second group message: %v", res.err)
	}
	if msgs := messageEvents(t, f.pub.take()); len(msgs) != 1 || msgs[0].Text != "again" {
		t.Fatalf("events %+v, want the second group message", msgs)
	}
	stranger := newPeer(t, jid.New("15553330000", jid.DefaultUserServer))
	n := node.New("message", node.JIDAttr("from", jid.JID{User: "120363000000000001", Server: jid.GroupServer}),
		node.JIDAttr("participant", stranger.jid), node.StrAttr("id", "3EB0C3")).WithChildren(skmsg("?"))
	if res := f.receive(n, 0); failureReason(res.err) != failNoSenderKey || res.retry != 1 {
		t.Fatalf("skmsg without a sender key: %v (retry %d), want no_sender_key and a retry", res.err, res.retry)
	}
}

// A message our own phone sent to a contact comes wrapped in a
// deviceSentMessage: the event is FromMe, its chat the destination, and
// its receipt of type sender.
func TestReceiveOwnDevice(t *testing.T) {
	f := newFixture(t)
	phone := newPeer(t, jid.New(ownUser, jid.DefaultUserServer))
	phone.start(f.bundle(5))
	dest := peerUser + "@s.whatsapp.net"
	wrapped := &waproto.Message{DeviceSentMessage: &waproto.Message_DeviceSent{DestinationJID: proto.String(dest), Message: text("sent from the phone")}}
	n := node.New("message", node.JIDAttr("from", phone.jid), node.JIDAttr("recipient", jid.New(peerUser, jid.DefaultUserServer)),
		node.StrAttr("id", "3EB0D1"), node.IntAttr("t", 1_800_000_000)).WithChildren(phone.encrypt(wrapped))
	in, err := parseInbound(n, f.dev)
	if err != nil {
		t.Fatal(err)
	}
	r := f.receiver()
	r.raw = true // the operator asked for the protobuf
	if res := r.receive(t.Context(), in, 0); res.err != nil {
		t.Fatal(res.err)
	}
	msgs := messageEvents(t, f.pub.take())
	if len(msgs) != 1 || !msgs[0].FromMe || msgs[0].Chat != dest || msgs[0].Text != "sent from the phone" {
		t.Fatalf("events %+v, want our own message to %s", msgs, dest)
	}
	var raw waproto.Message
	if err := proto.Unmarshal(msgs[0].Raw, &raw); err != nil || raw.GetConversation() != "sent from the phone" {
		t.Fatalf("raw %x (%v), want the unwrapped message", msgs[0].Raw, err)
	}
	if typ, _ := receiptFor(in).Attr("type"); typ != "sender" {
		t.Fatalf("receipt type %q for our own message, want sender", typ)
	}
}

// A contact's device that comes back with another identity key (a
// reinstall) starts a new session: recorded, an identity_changed event,
// the message delivered.
func TestReceiveIdentityChanged(t *testing.T) {
	f := newFixture(t)
	j := jid.New(peerUser, jid.DefaultUserServer)
	alice := newPeer(t, j)
	alice.start(f.bundle(1))
	if res := f.receive(direct("3EB0E1", j, alice.encrypt(text("one"))), 0); res.err != nil {
		t.Fatal(res.err)
	}
	f.pub.take()
	again := newPeer(t, j)
	again.start(f.bundle(2))
	if res := f.receive(direct("3EB0E2", j, again.encrypt(text("two"))), 0); res.err != nil {
		t.Fatal(res.err)
	}
	var changed, delivered int
	for _, e := range f.pub.take() {
		switch e.Kind {
		case events.KindIdentityChanged:
			changed++
			if e.Peer != peerUser+"@s.whatsapp.net" {
				t.Fatalf("identity_changed names %q", e.Peer)
			}
		case events.KindMessage:
			delivered++
		}
	}
	if changed != 1 || delivered != 1 {
		t.Fatalf("%d identity_changed and %d message events, want 1 and 1", changed, delivered)
	}
}

// With the store down nothing is written and the stanza stays
// unacknowledged (failStore, no retry receipt).
func TestReceiveStoreFailureLeavesUnacked(t *testing.T) {
	f := newFixture(t)
	alice := newPeer(t, jid.New(peerUser, jid.DefaultUserServer))
	alice.start(f.bundle(1))
	f.journal.fail = errors.New("store down")
	res := f.receive(direct("3EB0F1", alice.jid, alice.encrypt(text("x"))), 0)
	if failureReason(res.err) != failStore || res.retry != 0 {
		t.Fatalf("store down: %v (retry %d), want store and no retry", res.err, res.retry)
	}
	if _, err := f.st.PreKey(t.Context(), f.dev.ID, 1); err != nil {
		t.Fatalf("the prekey was consumed although nothing was written: %v", err)
	}
	if len(f.pub.take()) != 0 || len(f.outbox()) != 0 {
		t.Fatal("an event of a stanza whose state was not written")
	}
}

// fitSession drops the oldest archived states of a record over its limit,
// never the current one.
func TestFitSessionDropsOldestArchived(t *testing.T) {
	f := newFixture(t)
	alice := newPeer(t, jid.New(peerUser, jid.DefaultUserServer))
	var ours signal.Session
	keys := signal.ResponderKeys{Local: signal.LocalIdentity{Key: &crypto.KeyPair{Pub: f.dev.IdentityKey.Pub, Priv: f.dev.IdentityKey.Priv}, RegistrationID: 1},
		SignedPreKey: &crypto.KeyPair{Pub: f.dev.SignedPreKey.Pub, Priv: f.dev.SignedPreKey.Priv}}
	for i := range 3 { // three sessions: the newest current, two archived
		alice.session = signal.Session{}
		alice.start(f.bundle(uint32(i + 1)))
		pk, _ := alice.encrypt(text("x")).Bytes()
		m, err := signal.ParsePreKeySignalMessage(pk)
		if err != nil {
			t.Fatal(err)
		}
		k := keys
		got, _ := f.st.PreKey(t.Context(), f.dev.ID, uint32(i+1))
		k.PreKey = &crypto.KeyPair{Pub: got.Pub, Priv: got.Priv}
		if _, err := ours.DecryptPreKey(m, k); err != nil {
			t.Fatal(err)
		}
	}
	full, _ := ours.MarshalBinary()
	rec, err := fitSession(&ours, len(full)-1)
	if err != nil || len(rec) >= len(full) || ours.Archived() != 1 {
		t.Fatalf("fit under %d bytes: %d bytes, %d archived (%v), want one archived state dropped", len(full)-1, len(rec), ours.Archived(), err)
	}
	if rec, _ := fitSession(&ours, 1); len(rec) == 0 || ours.Archived() != 0 || !ours.HasCurrent() {
		t.Fatal("fitSession dropped the current state")
	}
}

// When the write fails (a crash before it), nothing is acknowledged and
// nothing is written, neither the state nor the event (one transaction on
// bbolt); the redelivered stanza decrypts again and its event is written
// then, once.
func TestReceiveStateFailureWritesNothing(t *testing.T) {
	f := newFixture(t)
	alice := newPeer(t, jid.New(peerUser, jid.DefaultUserServer))
	alice.start(f.bundle(1))
	n := direct("3EB0G1", alice.jid, alice.encrypt(text("once")))
	f.journal.fail = errors.New("store gone")
	if res := f.receive(n, 0); failureReason(res.err) != failStore || res.retry != 0 {
		t.Fatalf("state not written: %v (retry %d), want store and no retry", res.err, res.retry)
	}
	f.journal.fail = nil
	if res := f.receive(n, 0); res.err != nil {
		t.Fatalf("redelivery: %v", res.err)
	}
	if ids := f.outbox(); len(ids) != 1 || ids[0] != "3EB0G1" {
		t.Fatalf("message ids in the outbox %v, want 3EB0G1 once", ids)
	}
	if _, err := f.st.PreKey(t.Context(), f.dev.ID, 1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the prekey is still stored after the redelivery was applied (%v)", err)
	}
}

// outbox returns the message ids of the message events in the fixture's
// outbox.
func (f *fixture) outbox() []string {
	f.t.Helper()
	entries, err := f.st.After(f.t.Context(), "", 1000)
	if err != nil {
		f.t.Fatal(err)
	}
	var ids []string
	for _, e := range entries {
		var w events.Wire
		if err := json.Unmarshal(e.Body, &w); err != nil || w.Message == nil {
			f.t.Fatalf("outbox entry %s: %v", e.Body, err)
		}
		ids = append(ids, w.Message.ID)
	}
	return ids
}

// BenchmarkReceive is the receive pipeline's cost per steady-state 1:1
// message (msg, in order): parse, read the session record, Double Ratchet
// decrypt, unpad, protobuf, the event, and the ApplySignal of the session,
// on bbolt (one fsync'd transaction per message) and on a map (the CPU
// alone); the journal is a fake. The peer encrypts ahead, outside the
// timer.
func BenchmarkReceive(b *testing.B) {
	for _, bc := range []struct {
		name string
		sig  func(f *fixture) store.SignalStore
	}{
		{"bbolt", func(f *fixture) store.SignalStore { return f.st }},
		{"memory", func(f *fixture) store.SignalStore {
			addr := store.PeerAddress(peerUser, 0, 0)
			rec, err := f.st.Session(b.Context(), f.dev.ID, addr)
			if err != nil {
				b.Fatal(err)
			}
			return &memSignal{sessions: map[string][]byte{addr: rec}}
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f := newFixture(b)
			alice := newPeer(b, jid.New(peerUser, jid.DefaultUserServer))
			alice.start(f.bundle(1))
			if res := f.receive(direct("3EB0", alice.jid, alice.encrypt(text("first"))), 0); res.err != nil {
				b.Fatal(res.err)
			}
			f.answer(alice) // Alice sends msg from here on
			r := f.receiver()
			r.events = events.PublisherFunc(func(events.Event) {})
			r.journal = nopWriter{}
			r.sig = bc.sig(f)
			const batch = 1000
			stanzas := make([]*inbound, 0, batch)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if i%batch == 0 {
					b.StopTimer()
					stanzas = stanzas[:0]
					for j := range batch {
						n := direct("3EB0"+strconv.Itoa(i+j), alice.jid, alice.encrypt(text("a message of some forty bytes of text")))
						in, err := parseInbound(n, f.dev)
						if err != nil {
							b.Fatal(err)
						}
						stanzas = append(stanzas, in)
					}
					b.StartTimer()
				}
				if res := r.receive(b.Context(), stanzas[i%batch], 0); res.err != nil {
					b.Fatal(res.err)
				}
			}
		})
	}
}

type nopWriter struct{}

func (nopWriter) Record(e events.Event) store.OutboxRecord {
	return store.OutboxRecord{Account: e.Account, Kind: string(e.Kind), Time: e.Time, Body: events.Marshal(e, "")}
}
func (nopWriter) Written(int) {}

// memSignal keeps sessions in a map: the pipeline's cost without a store.
type memSignal struct{ sessions map[string][]byte }

func (m *memSignal) Session(_ context.Context, _, addr string) ([]byte, error) {
	if rec, ok := m.sessions[addr]; ok {
		return rec, nil
	}
	return nil, store.ErrNotFound
}

func (m *memSignal) PeerIdentity(context.Context, string, string) ([32]byte, error) {
	return [32]byte{}, store.ErrNotFound
}

func (m *memSignal) SenderKey(context.Context, string, string, string) ([]byte, error) {
	return nil, store.ErrNotFound
}

func (m *memSignal) ApplySignal(_ context.Context, _ string, c store.SignalChanges) (store.SignalApplied, error) {
	for _, s := range c.Sessions {
		m.sessions[s.Addr] = s.Record
	}
	return store.SignalApplied{}, nil
}

// A part this client does not read (an enc type of bots, an enc v=3) is
// counted and acknowledged without a retry receipt, which would only fail
// again.
func TestReceiveUnsupportedGetsNoRetry(t *testing.T) {
	f := newFixture(t)
	alice := newPeer(t, jid.New(peerUser, jid.DefaultUserServer))
	alice.start(f.bundle(1))
	v3 := alice.encrypt(text("armadillo")).WithAttr(node.StrAttr("v", "3"))
	for _, enc := range []node.Node{encNode("msmsg", []byte{1, 2, 3}), v3} {
		if res := f.receive(direct("3EB0H1", alice.jid, enc), 0); failureReason(res.err) != failUnsupported || res.retry != 0 {
			t.Fatalf("%v: %v (retry %d), want unsupported without a retry", enc, res.err, res.retry)
		}
	}
}

// The events published from the store queue carry no state: the
// connection may have ended while the job ran, and the status board must
// keep the state the actor reported.
func TestReceiveEventsCarryNoState(t *testing.T) {
	f := newFixture(t)
	alice := newPeer(t, jid.New(peerUser, jid.DefaultUserServer))
	alice.start(f.bundle(1))
	if res := f.receive(direct("3EB0I1", alice.jid, alice.encrypt(text("x"))), 0); res.err != nil {
		t.Fatal(res.err)
	}
	again := newPeer(t, alice.jid)
	again.start(f.bundle(2))
	if res := f.receive(direct("3EB0I2", alice.jid, again.encrypt(text("y"))), 0); res.err != nil {
		t.Fatal(res.err)
	}
	evs := f.pub.take()
	if len(evs) != 3 {
		t.Fatalf("%d events, want 2 messages and an identity change", len(evs))
	}
	for _, e := range evs {
		if e.State != "" || e.From != "" {
			t.Fatalf("%s event with state %q from %q", e.Kind, e.State, e.From)
		}
	}
}

// countingPreKeys counts the prekey reads of a store.
type countingPreKeys struct {
	store.Store
	reads int
}

func (c *countingPreKeys) PreKey(ctx context.Context, id string, keyID uint32) (store.PreKey, error) {
	c.reads++
	return c.Store.PreKey(ctx, id, keyID)
}

// A contact that has not heard from us repeats its pkmsg: only the first
// reads the one-time prekey from the store; the repeats decrypt under the
// session it built.
func TestRepeatedPreKeyMessageReadsNoPreKey(t *testing.T) {
	f := newFixture(t)
	alice := newPeer(t, jid.New(peerUser, jid.DefaultUserServer))
	alice.start(f.bundle(1))
	r := f.receiver()
	counted := &countingPreKeys{Store: f.st}
	r.st = counted
	for i, want := range []int{1, 1, 1} {
		enc := alice.encrypt(text("one way"))
		if typ, _ := enc.Attr("type"); typ != "pkmsg" {
			t.Fatalf("message %d is a %s", i, typ)
		}
		in, err := parseInbound(direct("3EB0R"+strconv.Itoa(i), alice.jid, enc), f.dev)
		if err != nil {
			t.Fatal(err)
		}
		if res := r.receive(t.Context(), in, 0); res.err != nil {
			t.Fatalf("message %d: %v", i, res.err)
		}
		if counted.reads != want {
			t.Fatalf("after message %d: %d prekey reads, want %d", i, counted.reads, want)
		}
	}
}
