package connection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/signal"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/waproto"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// The receive path of end-to-end encrypted messages (issue 15).
//
// A <message> with <enc> children is not acknowledged at once: it goes to
// the account's store queue (the decrypt reads and writes the store, and
// must not hold the actor's mailbox up), which keeps the stanzas in the
// order they came. There, in this order:
//
//  1. every <enc> child is decrypted (pkmsg, msg, skmsg) against the
//     stored sessions and sender keys, unpadded and parsed; a sender-key
//     distribution inside is processed; a message our own phone sent is
//     unwrapped from its deviceSentMessage;
//  2. everything the stanza changed (sessions, identities, sender keys,
//     the consumed one-time prekey) is written in one ApplySignal, with
//     the message event's outbox record (Deps.Journal): one transaction,
//     one fsync on bbolt, shared with the other accounts' messages
//     written at the same time (the store's group commit); the Redis
//     store appends the event first, then runs its script. Only then is
//     the event published;
//  3. back in the actor: the delivery receipt, then the ack.
//
// A crash before 2 completes loses no ratchet step: the server redelivers
// the stanza and it decrypts again (when the Redis store had appended the
// event already, its event comes again: same message id, events are
// delivered at least once, the id is the key to deduplicate by). A crash
// between 2 and 3 makes the redelivered copy a repeat (signal.ErrDuplicate):
// it is receipted and acknowledged without a second event. A stanza that
// does not decrypt changes nothing and gets a retry receipt, then its ack;
// a store that fails leaves the stanza unacknowledged, for the server to
// redeliver.

// receiver is what a decrypt job needs. The jobs run off the actor's
// goroutine and share it: nothing in it changes once made, and the actor
// makes a new one when its device changes (the device is replaced whole,
// never changed in place).
type receiver struct {
	st      store.Store
	sig     store.SignalStore
	journal EventWriter // nil: events are only published
	events  events.Publisher
	raw     bool
	dev     *store.Device
	log     *slog.Logger
	now     func() time.Time

	// Our keys as package signal takes them, and our device's address
	// (our own sender key's record, never a peer's: groupkey.go), from dev.
	local   signal.LocalIdentity
	signed  *crypto.KeyPair
	ownAddr string
}

// receiver returns the receiver of the current device, made when the
// device changed.
func (c *conn) receiver() *receiver {
	if c.recv == nil || c.recv.dev != c.dev {
		c.recv = newReceiver(&receiver{st: c.deps.Store, sig: c.deps.Signal, journal: c.deps.Journal, events: c.deps.Events,
			raw: c.deps.RawMessages, dev: c.dev, log: c.log, now: c.deps.Now})
	}
	return c.recv
}

// newReceiver completes r with the keys of r.dev.
func newReceiver(r *receiver) *receiver {
	r.local = localIdentity(r.dev)
	r.signed = &crypto.KeyPair{Pub: r.dev.SignedPreKey.Pub, Priv: r.dev.SignedPreKey.Priv}
	if own, err := jid.Parse(r.dev.JID); err == nil {
		r.ownAddr = peerAddress(own)
	}
	return r
}

// received reports a decrypt job's outcome to the actor.
type received struct {
	gen   uint64
	in    *inbound
	err   error      // why it did not decrypt (nil: decrypted, or a repeat)
	retry int        // the count of the retry receipt to send; 0: none
	keys  *retryKeys // for the retry receipt, from the second on
}

func (*received) IgnoreDeadLetterLogging() {}

// onMessage takes a <message> with encrypted content to the store queue;
// it reports false for one that is not (it is acknowledged at once).
func (c *conn) onMessage(ctx actor.Context, n node.Node) bool {
	if c.dev == nil || !c.dev.Paired() || c.deps.Signal == nil {
		return false
	}
	in, err := parseInbound(n, c.dev)
	if errors.Is(err, errNotE2E) {
		return false
	}
	if err != nil {
		id, _ := n.Attr("id")
		c.deps.Observer.DecryptFailed(failMalformed)
		c.failLog.failed(c.log, c.deps.Now(), failMalformed, slog.String("id", id), slog.String("error", err.Error()))
		return false // acknowledged
	}
	r := c.receiver()
	l, timeout, sent := c.cur.link, c.deps.StoreTimeout, c.retries[in.id]
	self, root := ctx.Self(), ctx.ActorSystem().Root
	c.store.run(func() {
		jctx, cancel := context.WithTimeout(l.ctx, timeout)
		defer cancel()
		res := r.receive(jctx, in, sent)
		res.gen = l.gen
		root.Send(self, res)
	})
	return true
}

// onReceived answers a decrypted (or undecryptable) message: its receipt,
// then its ack.
func (c *conn) onReceived(ctx actor.Context, m *received) {
	in := m.in
	if m.err != nil {
		reason := failureReason(m.err)
		c.deps.Observer.DecryptFailed(reason)
		c.failLog.failed(c.log, c.deps.Now(), reason, slog.String("id", in.id), slog.String("from", in.sender.String()),
			slog.Int("retry", m.retry), slog.String("error", m.err.Error()))
		if reason == failStore {
			return // unacknowledged: the server redelivers it
		}
		if m.retry > 0 {
			c.noteRetry(in.id, m.retry)
			if c.write(ctx, retryReceiptFor(in, m.retry, c.dev, m.keys), 0) != nil {
				return
			}
		}
	} else {
		c.failLog.flush(c.log, c.deps.Now(), false)
		delete(c.retries, in.id)
		if c.write(ctx, receiptFor(in), 0) != nil {
			return
		}
	}
	ack, _ := ackFor(in.node)
	if c.write(ctx, ack, 0) == nil {
		c.deps.Observer.AckSent(in.node.Tag)
	}
}

// noteRetry remembers that the message id got retry receipt count, across
// reconnects (the server redelivers it). The memory is bounded: past
// maxRetriesKept ids it starts over, and the counts the senders' answers
// carry take over.
func (c *conn) noteRetry(id string, count int) {
	if c.retries == nil || len(c.retries) >= maxRetriesKept {
		c.retries = make(map[string]int)
	}
	c.retries[id] = count
}

const maxRetriesKept = 1024

// onReceipt publishes a receipt the server pushed for messages we sent;
// a device's retry receipt is answered (onRetryReceipt).
func (c *conn) onReceipt(ctx actor.Context, n node.Node) {
	ids, chat, sender, typ, at := receiptEvent(n)
	if typ == "retry" {
		c.onRetryReceipt(ctx, n)
		return
	}
	if len(ids) == 0 {
		return
	}
	c.report(events.KindReceipt, nil, func(e *events.Event) {
		e.Receipt = &events.Receipt{IDs: ids, Chat: chat.String(), Sender: jidUser(sender), SenderDevice: sender.Device, Type: typ, Timestamp: at}
	})
}

// receive decrypts in and writes what it changed (the job of onMessage).
// sent is how many retry receipts the message got on this run.
func (r *receiver) receive(ctx context.Context, in *inbound, sent int) *received {
	d := newDecryption(ctx, r)
	var ev *events.Event // of the first part with content
	chat := in.chat
	for _, e := range in.encs {
		msg, err := d.decrypt(in, e)
		if errors.Is(err, signal.ErrDuplicate) {
			continue // a repeat: its event was written before its state
		}
		if err != nil {
			return r.failed(ctx, in, sent, err)
		}
		if ds := msg.GetDeviceSentMessage(); in.fromMe && ds.GetMessage() != nil {
			if dest, err := jid.Parse(ds.GetDestinationJID()); err == nil && !in.group {
				chat = dest.ToNonAD()
			}
			msg = ds.GetMessage()
		}
		if skdm := msg.GetSenderKeyDistributionMessage(); skdm != nil {
			if err := d.distribution(in, skdm.GetAxolotlSenderKeyDistributionMessage()); err != nil {
				return r.failed(ctx, in, sent, err)
			}
		}
		if ev == nil {
			ev = r.messageEvent(in, chat, msg)
		}
	}
	changes, err := d.changes()
	if err != nil {
		return r.failed(ctx, in, sent, fmt.Errorf("%w: encode state: %w", errStore, err))
	}
	if ev != nil && r.journal != nil {
		changes.Events = []store.OutboxRecord{r.journal.Record(*ev)}
	}
	var applied store.SignalApplied
	if !changes.Empty() {
		if applied, err = r.sig.ApplySignal(ctx, r.dev.ID, changes); err != nil {
			return &received{in: in, err: fmt.Errorf("%w: apply signal state: %w", errStore, err)}
		}
	}
	if ev != nil {
		if len(changes.Events) > 0 {
			r.journal.Written(len(changes.Events))
			ev.Journaled = true
		}
		r.events.Publish(*ev)
	}
	for _, addr := range applied.ChangedIdentities {
		r.events.Publish(events.Event{Account: r.dev.ID, Kind: events.KindIdentityChanged, JID: r.dev.JID, Peer: peerJID(addr), Time: r.now()})
	}
	return &received{in: in}
}

// messageEvent is the event of a message with content; nil when it has
// none (a bare sender-key distribution).
func (r *receiver) messageEvent(in *inbound, chat jid.JID, msg *waproto.Message) *events.Event {
	m := &events.Message{ID: in.id, Chat: chat.String(), Sender: jidUser(in.sender), SenderDevice: in.sender.Device,
		FromMe: in.fromMe, Timestamp: in.at, PushName: in.pushName}
	if !describe(msg, m) {
		return nil
	}
	if r.raw {
		m.Raw, _ = proto.Marshal(msg) // a parsed message re-marshals
	}
	// No State: the job runs off the actor, and the connection may have
	// ended meanwhile; the status board keeps the state the actor reported.
	return &events.Event{Account: r.dev.ID, Kind: events.KindMessage, JID: r.dev.JID, Message: m, Time: r.now()}
}

// failed is the outcome of a message that did not decrypt: nothing it
// changed is written; a retry receipt asks the sender to send it again,
// with a fresh one-time prekey from the second retry on (stored first, so
// the pkmsg that follows finds it). A part this client does not read (an
// enc type or version it does not know) gets no retry receipt: the reference
// client only logs those.
func (r *receiver) failed(ctx context.Context, in *inbound, sent int, err error) *received {
	res := &received{in: in, err: err}
	if errors.Is(err, errStore) || errors.Is(err, errUnsupported) {
		return res // unacknowledged; or acknowledged without a retry, which would fail again
	}
	count := retryCount(in, sent)
	if count > maxRetryReceipts {
		return res // given up: acknowledged, counted, logged
	}
	res.retry = count
	if count >= 2 {
		counts, err := r.st.PreKeyCounts(ctx, r.dev.ID)
		var keys []store.PreKey
		if err == nil {
			keys, err = addPreKeys(ctx, r.st, r.dev.ID, counts.MaxID, 1)
		}
		if err != nil {
			r.log.Warn("no fresh prekey for the retry receipt", slog.String("id", in.id), slog.String("error", err.Error()))
		} else {
			res.keys = &retryKeys{preKey: keys[0]}
		}
	}
	return res
}

// peerJID turns a store address "USER.DOMAIN:DEVICE" back into a device
// JID for events (the address itself if it is not one).
func peerJID(addr string) string {
	user, rest, ok1 := strings.Cut(addr, ".")
	domain, device, ok2 := strings.Cut(rest, ":")
	dom, err1 := strconv.ParseUint(domain, 10, 8)
	dev, err2 := strconv.ParseUint(device, 10, 16)
	if !ok1 || !ok2 || err1 != nil || err2 != nil {
		return addr
	}
	return jid.NewADJID(user, uint8(dom), uint16(dev)).String()
}
