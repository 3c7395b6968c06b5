package connection

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// Sending a text (POST /api/accounts/{id}/messages). The actor takes
// *SendText, checks the account's rate limit, records the idempotency key
// (Deps.SendLog) before anything goes out, answers with the message ID,
// and queues the send. Sends run one at a time per account, each in a
// goroutine (sendRun) that asks the actor to write its IQs and hands the
// finished <message> back; the Signal work (sessions read, new sessions
// from bundles, encryption, ApplySignal) runs as one job of the account's
// store queue, so it never interleaves with the receive path's, and every
// session change is stored before the message is written: a crash never
// reuses a chain key. The server's <ack> is reported as message_sent (or
// message_failed with its error); a send that cannot finish as
// message_failed.

// MaxTextLen bounds the text of one message, in bytes (WhatsApp Web's
// limit is 65,536 characters; the bound keeps one message well inside a
// frame for every recipient device).
const MaxTextLen = 16 * 1024

// DefaultSendRate is the per-account send limit where the configuration
// sets none: conservative, so that a caller's bug cannot get the account
// banned for spam.
var DefaultSendRate = SendRate{PerMinute: 20, Burst: 5}

// SendRate limits the messages one account sends: PerMinute on average,
// at most Burst at once.
type SendRate struct {
	PerMinute float64
	Burst     int
}

// SendText asks the account to send a text message. Send it with
// Request; the answer is a *SendResult.
type SendText struct {
	// To is the recipient: a user's phone-number JID (no device) or a
	// group's JID (…@g.us).
	To jid.JID
	// Text is the message, 1..MaxTextLen bytes.
	Text string
	// Key is the caller's idempotency key ("" for none): a SendText with
	// a key already recorded sends nothing and answers with the first
	// message's ID.
	Key string
}

// SendResult answers SendText.
type SendResult struct {
	// ID is the message's ID; its message_sent or message_failed event
	// carries it.
	ID string
	// Duplicate is true when Key named an earlier message: nothing was
	// sent now.
	Duplicate bool
	// Err is why nothing was queued: ErrNotConnected, ErrRateLimited
	// (RetryAfter says when to try again), ErrSendInput, a store error.
	Err        error
	RetryAfter time.Duration
}

// Errors of SendText.
var (
	// ErrNotConnected: the account is not connected; nothing was sent.
	ErrNotConnected = errors.New("connection: account not connected")
	// ErrRateLimited: the account's send rate limit is reached.
	ErrRateLimited = errors.New("connection: send rate limit reached")
	// ErrSendInput: the recipient or the text is not acceptable.
	ErrSendInput = errors.New("connection: invalid message")
	// ErrNoSignalStore: Deps has no Signal or SendLog store.
	ErrNoSignalStore = errors.New("connection: no Signal store configured")
)

// outgoing is one queued send: a message, or the answer to a device's
// retry receipt for one (retry set; retry.go).
type outgoing struct {
	id    string
	to    jid.JID
	text  string
	retry *retryReceipt
}

// Internal messages of the send path (generation-bound, see msgGen).
type (
	// sendClaimed: the idempotency key is recorded (or named an earlier
	// message); answer the requester and queue the send.
	sendClaimed struct {
		req       *actor.PID
		out       *outgoing
		existing  string
		duplicate bool
		err       error
	}
	// sendIQ: the send goroutine asks the actor to write an IQ (its id is
	// the actor's) and to hand the answer to reply.
	sendIQ struct {
		gen   uint64
		iq    node.Node
		reply chan node.Node
	}
	// sendReady: the send goroutine is done: the message to write, or why
	// it cannot be sent.
	sendReady struct {
		gen uint64
		out *outgoing
		msg node.Node
		err error
	}
)

func (*sendClaimed) IgnoreDeadLetterLogging() {}
func (*sendIQ) IgnoreDeadLetterLogging()      {}
func (*sendReady) IgnoreDeadLetterLogging()   {}

// newMessageID returns a message ID in WhatsApp Web's style: "3EB0" and
// 16 upper-case hex digits of randomness.
func newMessageID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return "3EB0" + strings.ToUpper(hex.EncodeToString(b[:]))
}

// checkSend says why msg cannot be sent (nil: it can).
func checkSend(m *SendText) error {
	if m.Text == "" || len(m.Text) > MaxTextLen {
		return fmt.Errorf("%w: the text is %d bytes (1 to %d)", ErrSendInput, len(m.Text), MaxTextLen)
	}
	if m.To.Device != 0 || m.To.RawAgent != 0 {
		return fmt.Errorf("%w: the recipient %s names a device", ErrSendInput, m.To)
	}
	switch {
	case m.To.Server == jid.GroupServer:
		// a group's ID is digits, or the creator's number and a timestamp
		// joined by "-" (older groups)
		if m.To.User == "" || len(m.To.String()) > store.MaxGroupIDLen || strings.Trim(m.To.User, "0123456789-") != "" {
			return fmt.Errorf("%w: the recipient %s is not a group JID", ErrSendInput, m.To)
		}
	case m.To.Server != jid.DefaultUserServer:
		return fmt.Errorf("%w: the recipient %s is not a phone-number user or group JID", ErrSendInput, m.To)
	case m.To.User == "" || len(m.To.User) > store.MaxPeerUserLen || strings.Trim(m.To.User, "0123456789") != "":
		return fmt.Errorf("%w: the recipient's number is not 1 to %d digits", ErrSendInput, store.MaxPeerUserLen)
	}
	return nil
}

// onSendText answers a send request: refused at once (input, not
// connected, rate), or queued once its key is recorded.
func (c *conn) onSendText(ctx actor.Context, m *SendText) {
	refuse := func(err error, after time.Duration) { ctx.Respond(&SendResult{Err: err, RetryAfter: after}) }
	if err := checkSend(m); err != nil {
		refuse(err, 0)
		return
	}
	if m.Key != "" {
		if err := store.ValidateSendKey(m.Key, "0"); err != nil {
			refuse(fmt.Errorf("%w: %w", ErrSendInput, err), 0)
			return
		}
	}
	if c.deps.Signal == nil || c.deps.SendLog == nil {
		refuse(ErrNoSignalStore, 0)
		return
	}
	if c.phase != phaseActive || c.cur.link == nil {
		c.refuseUnlessSent(ctx, m, ErrNotConnected, 0)
		return
	}
	r := c.limiter.ReserveN(c.deps.Now(), 1)
	if d := r.DelayFrom(c.deps.Now()); d > 0 {
		r.CancelAt(c.deps.Now())
		c.refuseUnlessSent(ctx, m, ErrRateLimited, d)
		return
	}
	out := &outgoing{id: newMessageID(), to: m.To, text: m.Text}
	if m.Key == "" {
		ctx.Respond(&SendResult{ID: out.id})
		c.queueSend(ctx, out)
		return
	}
	sl, id, key, timeout, actx := c.deps.SendLog, c.deps.AccountID, m.Key, c.deps.StoreTimeout, c.ctx
	self, root, req := ctx.Self(), ctx.ActorSystem().Root, ctx.Sender()
	c.store.run(func() {
		sctx, cancel := context.WithTimeout(actx, timeout)
		defer cancel()
		existing, fresh, err := sl.ClaimSend(sctx, id, key, out.id)
		root.Send(self, &sendClaimed{req: req, out: out, existing: existing, duplicate: !fresh, err: err})
	})
}

// refuseUnlessSent refuses a send that cannot go now (not connected, rate
// limited), unless its key already names a message: then the answer is
// that message, a duplicate, as it would be once the send could go (a
// request repeated during a reconnection or a failover). The key is read,
// not claimed, in the account's store queue.
func (c *conn) refuseUnlessSent(ctx actor.Context, m *SendText, err error, after time.Duration) {
	req, root := ctx.Sender(), ctx.ActorSystem().Root
	if m.Key == "" || req == nil {
		ctx.Respond(&SendResult{Err: err, RetryAfter: after})
		return
	}
	sl, id, key, timeout, actx := c.deps.SendLog, c.deps.AccountID, m.Key, c.deps.StoreTimeout, c.ctx
	c.store.run(func() {
		sctx, cancel := context.WithTimeout(actx, timeout)
		defer cancel()
		if msgID, ok, lerr := sl.SentWith(sctx, id, key); lerr == nil && ok {
			root.Send(req, &SendResult{ID: msgID, Duplicate: true})
			return
		}
		root.Send(req, &SendResult{Err: err, RetryAfter: after})
	})
}

// onSendClaimed answers the requester once the key is recorded, and
// queues the send (or reports it failed when the connection went away in
// between: the key is spent, the message was not sent).
func (c *conn) onSendClaimed(ctx actor.Context, m *sendClaimed) {
	switch {
	case m.err != nil:
		ctx.Send(m.req, &SendResult{Err: fmt.Errorf("record the idempotency key: %w", m.err)})
	case m.duplicate:
		ctx.Send(m.req, &SendResult{ID: m.existing, Duplicate: true})
	default:
		ctx.Send(m.req, &SendResult{ID: m.out.id})
		c.queueSend(ctx, m.out)
	}
}

// queueSend queues a send on the current connection and starts it when
// none runs; without a connection the message is reported failed.
func (c *conn) queueSend(ctx actor.Context, out *outgoing) {
	if c.phase != phaseActive || c.cur.link == nil {
		c.sendFailed(out, ErrNotConnected)
		return
	}
	c.cur.sendQueue = append(c.cur.sendQueue, out)
	c.nextSend(ctx)
}

// nextSend starts the next queued send unless one runs.
func (c *conn) nextSend(ctx actor.Context) {
	if c.cur.sending != nil || len(c.cur.sendQueue) == 0 {
		return
	}
	out := c.cur.sendQueue[0]
	c.cur.sendQueue[0] = nil
	c.cur.sendQueue = c.cur.sendQueue[1:]
	c.cur.sending = out
	own, err := jid.Parse(c.dev.JID)
	if err != nil {
		c.cur.sending = nil
		c.sendFailed(out, fmt.Errorf("own JID: %w", err))
		c.nextSend(ctx)
		return
	}
	r := &sendRun{
		out: out, own: own, local: localIdentity(c.dev), identity: bytes.Clone(c.dev.Account),
		l: c.cur.link, st: c.deps.Signal, q: c.store, account: c.deps.AccountID, log: c.log,
		timeout: c.deps.Keepalive.Timeout, storeTimeout: c.deps.StoreTimeout,
		self: ctx.Self(), root: ctx.ActorSystem().Root,
	}
	go r.run()
}

// onSendIQ writes an IQ of the send goroutine and remembers where its
// answer goes.
func (c *conn) onSendIQ(ctx actor.Context, m *sendIQ) {
	id := c.newID()
	m.iq.Attrs[0] = node.StrAttr("id", id) // node.IQ puts the id first
	if c.write(ctx, m.iq, 0) != nil {
		return // the attempt ends: the goroutine sees its context end
	}
	if c.cur.sendIQs == nil {
		c.cur.sendIQs = make(map[string]chan node.Node)
	}
	c.cur.sendIQs[id] = m.reply
}

// onSendReady writes a finished message (or reports why there is none)
// and starts the next send.
func (c *conn) onSendReady(ctx actor.Context, m *sendReady) {
	c.cur.sending = nil
	defer c.nextSend(ctx)
	if m.err != nil {
		c.sendFailed(m.out, m.err)
		return
	}
	if c.write(ctx, m.msg, 0) != nil {
		return // endAttempt reported every send of the attempt
	}
	if m.out.retry != nil {
		return // the message was reported when first acknowledged
	}
	c.recentSent.remember(m.out)
	if c.cur.sentAwaitingAck == nil {
		c.cur.sentAwaitingAck = make(map[string]*outgoing)
	}
	c.cur.sentAwaitingAck[m.out.id] = m.out
}

// onServerAck reports the server's <ack class=message id from t [phash]
// [error]/> for a message we sent: message_sent, or message_failed with
// the server's error code. A phash differing from ours means the server
// knows devices the message did not reach (whatsmeow then drops its
// device cache; we fetch device lists for every send): it is logged.
func (c *conn) onServerAck(n node.Node) {
	id, _ := n.Attr("id")
	out, ok := c.cur.sentAwaitingAck[id]
	if class, _ := n.Attr("class"); !ok || class != "message" {
		return
	}
	delete(c.cur.sentAwaitingAck, id)
	if code, ok := n.Attr("error"); ok {
		c.sendFailed(out, fmt.Errorf("the server refused the message: error %s", code))
		return
	}
	if ph, ok := n.Attr("phash"); ok {
		c.log.Warn("the server's device list differs from the one the message was sent to",
			slog.String("id", id), slog.String("phash", ph))
	}
	t := c.deps.Now()
	if secs, ok := n.AttrInt("t"); ok {
		t = time.Unix(secs, 0)
	}
	c.report(events.KindMessageSent, nil, func(e *events.Event) {
		e.MessageID, e.Chat, e.Time = out.id, out.to.String(), t
	})
}

// sendFailed reports a message that was not sent (or not acknowledged).
// A retry receipt's answer that fails is only logged: its message was
// reported when first sent.
func (c *conn) sendFailed(out *outgoing, err error) {
	if out.retry != nil {
		c.log.Warn("retry receipt not answered", slog.String("id", out.id), slog.String("device", out.retry.device.String()),
			slog.String("error", err.Error()))
		return
	}
	c.log.Warn("message not sent", slog.String("id", out.id), slog.String("error", err.Error()))
	c.report(events.KindMessageFailed, err, func(e *events.Event) { e.MessageID, e.Chat = out.id, out.to.String() })
}

// failSends reports every send of the ending attempt failed: queued,
// running, or written and not acknowledged.
func (c *conn) failSends(a *attempt) {
	lost := fmt.Errorf("%w before the message was acknowledged", errNotConnected)
	if a.sending != nil {
		c.sendFailed(a.sending, lost)
	}
	for _, out := range a.sendQueue {
		c.sendFailed(out, lost)
	}
	for _, out := range a.sentAwaitingAck {
		c.sendFailed(out, lost)
	}
}
