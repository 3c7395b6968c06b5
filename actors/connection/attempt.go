package connection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/wafleet/wafleet/actors/pairing"
	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/wire/node"
	"github.com/wafleet/wafleet/wire/payload"
)

// attempt is everything that lives for one connection attempt (one
// generation): the link, the timers, the ids of our requests in flight,
// the pairing child and the close tokens. A new attempt replaces it
// wholesale (endAttempt), so nothing leaks from one attempt into the
// next; messages of an older generation are dropped by Receive.
type attempt struct {
	gen  uint64
	link *link // nil before the dial and for attempts that only own a store call

	retryTimer, pingTimer, pongTimer, logoutTimer, activeTimer *time.Timer

	pingID, logoutID, activeID string // our requests in flight
	countID, uploadID          string // the prekey count and upload IQs in flight
	uploadTop                  uint32 // the largest key ID of the upload in flight
	uploadN                    int    // the number of keys of the upload in flight
	preKeysBusy                bool   // an upload is being prepared or in flight

	dialVersion payload.Version // the version this attempt sent
	loggedIn    bool            // <success> came on this connection
	activeSent  bool            // <active/> went out on this connection
	lastPong    time.Time       // the last answered keepalive ping (or the dial)
	missedPings int             // pings unanswered since lastPong

	child         *actor.PID    // the pairing child
	lastCode      bool          // the pairing child shows its last code
	saving        *store.Device // the pairing being saved, until pairSaved
	expectRestart bool          // a pairing reply went out: the 515 that follows is expected

	// The send path (send.go): the sends waiting, the one being prepared,
	// the answers its IQs wait for, the messages written and not acked.
	sendQueue       []*outgoing
	sending         *outgoing
	sendIQs         map[string]chan node.Node
	sentAwaitingAck map[string]*outgoing

	unlinked    bool   // the operator's logout ends this connection: delete, do not archive
	closeToken  uint64 // close the connection once this frame is written
	endErr      error  // what to report when the connection closes
	streamEnded bool   // the server sent <xmlstreamend/>
}

// newAttempt ends the current attempt and opens the next one's link.
func (c *conn) newAttempt(ctx actor.Context) *link {
	c.endAttempt(ctx)
	c.cur.link = newLink(c.cur.gen, c.deps.WriteQueue)
	return c.cur.link
}

// endAttempt ends the current attempt: its goroutines (by closing the
// link), its timers, its pairing child, a pairing save it started (undone,
// as its reply will never be written) and every message still on the way
// (by moving to a new generation). The next attempt starts empty.
func (c *conn) endAttempt(ctx actor.Context) {
	a := c.cur
	if a.link != nil {
		for _, f := range a.link.close() {
			if c.reply != nil && f.token == c.reply.token {
				r := c.reply
				c.reply = nil
				c.replyFailed(ctx, r, errNotConnected)
			}
		}
	}
	for _, t := range []*time.Timer{a.retryTimer, a.pingTimer, a.pongTimer, a.logoutTimer, a.activeTimer} {
		if t != nil {
			t.Stop()
		}
	}
	if a.child != nil {
		ctx.Stop(a.child)
	}
	if a.saving != nil {
		c.undoPairing(ctx, a.saving) // queued behind the save
	}
	c.failSends(a)
	c.cur = &attempt{gen: nextGen()}
}

// begin starts an attempt: prepare the device first if there is none in
// memory (or it must be wiped), else dial.
func (c *conn) begin(ctx actor.Context) {
	if c.lost {
		c.setPhase(c.beginPhase(), events.KindReconnect, nil, func(e *events.Event) { e.Attempt = c.failures })
	} else {
		c.setPhase(c.beginPhase(), events.KindState, nil, nil)
	}
	c.held = nil // restarted: a held wipe is given up, the device kept
	if c.phase == phaseLoading {
		c.prepare(ctx)
		return
	}
	c.dial(ctx)
}

// beginPhase is the first phase of the next attempt: loading when there is
// no device in memory or it must be wiped, else dialing.
func (c *conn) beginPhase() phase {
	if c.dev == nil || c.wipe != nil {
		return phaseLoading
	}
	return phaseDialing
}

// prepare loads the device in a goroutine: wiping it first if asked,
// creating fresh keys when there is none.
func (c *conn) prepare(ctx actor.Context) {
	l := c.newAttempt(ctx)
	st, id, wipe, timeout := c.deps.Store, c.deps.AccountID, c.wipe, c.deps.StoreTimeout
	self, root := ctx.Self(), ctx.ActorSystem().Root
	c.store.run(func() {
		dev, err := prepareDevice(l.ctx, st, id, wipe, timeout)
		root.Send(self, &loaded{gen: l.gen, dev: dev, err: err})
	})
}

func prepareDevice(ctx context.Context, st store.Store, id string, wipe *wipeOrder, timeout time.Duration) (*store.Device, error) {
	if st == nil {
		return nil, ErrNoStore
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := ctx.Err(); err != nil {
		return nil, err // a later attempt replaced this one: leave the store to it
	}
	if wipe != nil {
		if err := wipe.apply(ctx, st, id); err != nil {
			return nil, fmt.Errorf("wipe device: %w", err)
		}
	}
	d, err := st.Load(ctx, id)
	if err == nil {
		return d, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("load device: %w", err)
	}
	if d, err = NewDevice(id); err != nil {
		return nil, fmt.Errorf("create device: %w", err)
	}
	if err := st.Save(ctx, d); err != nil {
		return nil, fmt.Errorf("save new device: %w", err)
	}
	return d, nil
}

func (c *conn) onLoaded(ctx actor.Context, m *loaded) {
	if m.err != nil {
		c.end(ctx, outBackoff, m.err)
		return
	}
	c.dev, c.wipe = m.dev, nil
	c.log.Info("device ready", slog.Bool("paired", c.dev.Paired()))
	c.setPhase(phaseDialing, "", nil, nil)
	c.dial(ctx)
}

// dial starts the dial and handshake in a goroutine once the limiter's slot
// comes: a goroutine takes the slot (a round trip at most) and, when the
// slot is later, leaves a timer to start the dial (link.startAfter).
func (c *conn) dial(ctx actor.Context) {
	l := c.newAttempt(ctx)
	c.cur.dialVersion = c.deps.Versions.Current()
	pl, err := clientPayload(c.dev, c.cur.dialVersion, c.deps.DeviceProps)
	if err != nil {
		c.end(ctx, outStop, err)
		return
	}
	// The stored halves as they are: the store checked that they agree
	// when it wrote the device, and the handshake's DH needs only the
	// private half (no X25519 multiplication to build the pair).
	noise := &crypto.KeyPair{Pub: c.dev.NoiseKey.Pub, Priv: c.dev.NoiseKey.Priv}
	c.dials++
	req := DialRequest{URL: c.deps.Server.URL, Proxy: c.deps.Proxy, RootKey: c.deps.Server.RootKey, NoiseKey: noise, Payload: pl,
		HandshakeTimeout: c.deps.HandshakeTimeout, WriteTimeout: c.deps.WriteTimeout}
	dialer, limiter := c.deps.Dialer, c.deps.Limiter
	self, root := ctx.Self(), ctx.ActorSystem().Root
	start := func() {
		s, err := dialer(l.ctx, req)
		if err == nil && !l.deliver(s) {
			return
		}
		root.Send(self, &dialed{gen: l.gen, sess: s, err: err})
	}
	if limiter == nil {
		go start()
		return
	}
	go func() {
		wait, cancel, err := limiter.Take(l.ctx)
		if err != nil {
			root.Send(self, &dialed{gen: l.gen, err: fmt.Errorf("connect rate limit: %w", err)})
			return
		}
		if l.startAfter(wait, cancel, start) {
			start()
		}
	}()
}

func (c *conn) onDialed(ctx actor.Context, m *dialed) {
	if m.err != nil {
		c.end(ctx, outBackoff, m.err)
		return
	}
	if c.dev.Paired() {
		c.setPhase(phaseLoggingIn, "", nil, nil)
	} else {
		c.setPhase(phaseRegistering, "", nil, nil)
	}
	c.cur.link.receive(m.sess, ctx.Self(), ctx.ActorSystem().Root)
	c.cur.lastPong, c.cur.missedPings = c.deps.Now(), 0
	c.armPing(ctx)
}

// write queues a stanza on the current connection. A full queue ends the
// connection (the caller must not touch the link afterwards).
func (c *conn) write(ctx actor.Context, n node.Node, token uint64) error {
	b, err := node.MarshalPayload(n)
	if err != nil {
		c.log.Error("cannot encode own stanza", slog.String("tag", n.Tag), slog.String("error", err.Error()))
		return err
	}
	if c.cur.link == nil {
		return errNotConnected
	}
	ok, err := c.cur.link.send(outFrame{data: b, token: token}, ctx.Self(), ctx.ActorSystem().Root)
	if err != nil {
		c.end(ctx, outBackoff, err)
		return err
	}
	if !ok {
		if c.reply != nil && token == c.reply.token {
			r := c.reply
			c.reply = nil
			c.replyFailed(ctx, r, errNotConnected)
		}
		return errNotConnected
	}
	return nil
}

func (c *conn) onWritten(ctx actor.Context, w *written) {
	switch {
	case w.err != nil:
		if c.cur.endErr != nil {
			c.end(ctx, outBackoff, c.cur.endErr)
			return
		}
		c.end(ctx, outBackoff, w.err)
	case w.token != 0 && w.token == c.cur.closeToken:
		c.end(ctx, outBackoff, c.cur.endErr)
	}
}

func (c *conn) onReadFailed(ctx actor.Context, err error) {
	switch {
	case c.cur.logoutID != "":
		c.finishLogout(ctx)
	case c.cur.endErr != nil:
		c.end(ctx, outBackoff, c.cur.endErr)
	case c.cur.child != nil && c.cur.lastCode && c.goal.linkPhone != "":
		c.end(ctx, outUnpaired, pairing.ErrLinkCodeExpired)
	case c.cur.child != nil && c.cur.lastCode:
		c.end(ctx, outUnpaired, pairing.ErrExpired)
	case c.cur.expectRestart:
		c.end(ctx, outReconnectNow, nil)
	case c.cur.streamEnded:
		c.end(ctx, outBackoff, fmt.Errorf("%w: %w", ErrStreamEnd, err))
	default:
		c.end(ctx, outBackoff, err)
	}
}
