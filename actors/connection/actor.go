package connection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/wafleet/wafleet/actors/pairing"
	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// New returns the producer of a connection actor for one account. Spawn it
// with SpawnNamed(props, accountID) so that a second actor for the same
// account is refused.
func New(deps Deps) actor.Producer {
	deps.defaults()
	return func() actor.Actor {
		return &conn{
			deps:    deps,
			log:     deps.Logger.With(slog.String("account", deps.AccountID)),
			storeMu: new(sync.Mutex),
			state:   events.StateConnecting,
		}
	}
}

// Props is New wrapped in actor props.
func Props(deps Deps) *actor.Props {
	return actor.PropsFromProducer(New(deps))
}

// pendingReply is a pair-device-sign reply handed to the writer: the
// account counts as paired from then on, but if the reply is never written
// the pairing is undone.
type pendingReply struct {
	token  uint64
	paired *store.Device
}

// conn is the connection actor. Every field is touched only inside Receive.
type conn struct {
	deps    Deps
	log     *slog.Logger
	storeMu *sync.Mutex // shared with the pairing child: one store writer at a time
	ctx     context.Context
	cancel  context.CancelFunc

	state events.State // what is (as published)
	want  bool         // what should be: connected (goal, kept apart from state)
	dev   *store.Device
	wipe  bool // wipe the stored device before the next attempt

	gen         uint64 // current attempt; messages of other generations are stale
	link        *link
	dials       int
	attempt     int // consecutive failures, for the backoff
	lastDelay   time.Duration
	lost        bool // the next attempt follows a lost connection (a reconnect)
	connectedAt time.Time

	retryTimer, pingTimer, pongTimer, logoutTimer *time.Timer
	pingID, logoutID                              string
	idPrefix                                      string
	idSeq                                         uint64

	child         *actor.PID
	lastCode      bool          // the pairing child shows its last code
	reply         *pendingReply // the pairing reply, until written
	expectRestart bool          // a pairing reply went out: the 515 that follows is expected
	closeToken    uint64        // close the connection once this frame is written
	endErr        error         // what to report when the connection closes
	streamEnded   bool          // the server sent <xmlstreamend/>
}

// Receive implements actor.Actor.
func (c *conn) Receive(ctx actor.Context) {
	msg := ctx.Message()
	if w, ok := msg.(*written); ok && c.reply != nil && w.token == c.reply.token {
		// The pairing reply's outcome matters even after its connection
		// ended (the 515 may overtake it).
		c.onReplyWritten(ctx, w)
		return
	}
	if !current(c.gen, msg) {
		if d, ok := msg.(*dialed); ok && d.sess != nil {
			_ = d.sess.Close()
		}
		return
	}
	switch m := msg.(type) {
	case *actor.Started:
		c.onStarted(ctx)
	case *actor.Stopping:
		c.onStopping(ctx, true)
	case *actor.Restarting:
		c.onStopping(ctx, false)
	case *actor.Stopped, *actor.Restart, *actor.Terminated:
	case *Pair:
		c.onPair(ctx)
	case *Resave:
		c.resave()
	case *Logout:
		c.onLogout(ctx)
	case *inspect:
		ctx.Respond(c.snapshot())
	case *loaded:
		c.onLoaded(ctx, m)
	case *dialed:
		c.onDialed(ctx, m)
	case *nodeIn:
		c.onNode(ctx, m.node)
	case *readFailed:
		c.onReadFailed(ctx, m.err)
	case *written:
		c.onWritten(ctx, m)
	case *retry:
		c.retryTimer = nil
		if c.want {
			c.begin(ctx)
		}
	case *pingDue:
		c.pingTimer = nil
		c.onPingDue(ctx)
	case *pingTimeout:
		if m.id == c.pingID {
			c.end(ctx, outBackoff, fmt.Errorf("%w (no answer within %v)", ErrKeepaliveTimeout, c.deps.Keepalive.Timeout))
		}
	case *logoutTimeout:
		c.logoutTimer = nil
		if c.logoutID != "" {
			c.log.Warn("unlink request unanswered; wiping the device anyway")
			c.finishLogout(ctx)
		}
	case *restored:
		err := errPairingUndone
		if m.err != nil {
			err = fmt.Errorf("%w, but restoring the store failed: %w", errPairingUndone, m.err)
		}
		c.publish(events.KindState, c.state, err, nil)
	case *pairing.Send:
		c.onPairingSend(ctx, m)
	case *pairing.Finish:
		c.onPairingFinish(ctx, m)
	case *pairing.LastCode:
		if m.Gen == c.gen {
			c.lastCode = true
		}
	case *pairing.Expired:
		if m.Gen == c.gen && c.child != nil {
			c.end(ctx, outUnpaired, pairing.ErrExpired)
		}
	default:
		c.log.Warn("unexpected message", slog.String("type", fmt.Sprintf("%T", m)))
	}
}

// current reports whether m belongs to the attempt gen: messages without a
// generation always do.
func current(gen uint64, m any) bool {
	g, ok := msgGen(m)
	return !ok || g == gen
}

// publish is the one place where the state changes: it records the state,
// publishes the event and logs the transition.
func (c *conn) publish(kind events.Kind, state events.State, err error, mod func(*events.Event)) {
	prev := c.state
	c.state = state
	e := events.Event{Account: c.deps.AccountID, Kind: kind, State: state, Time: c.deps.Now()}
	if c.dev != nil && c.dev.Paired() {
		e.JID = c.dev.JID
	}
	if err != nil {
		e.Error = err.Error()
	}
	if mod != nil {
		mod(&e)
	}
	c.deps.Events.Publish(e)
	attrs := []any{slog.String("state", string(state)), slog.String("from", string(prev)), slog.String("event", string(kind))}
	if e.Error != "" {
		attrs = append(attrs, slog.String("error", e.Error))
	}
	if e.Delay > 0 {
		attrs = append(attrs, slog.Duration("delay", e.Delay))
	}
	level := slog.LevelInfo
	if kind == events.KindAlarm {
		level = slog.LevelError
	}
	c.log.Log(context.Background(), level, "account "+string(state), attrs...)
}

func (c *conn) onStarted(ctx actor.Context) {
	c.ctx, c.cancel = context.WithCancel(context.Background())
	var b [2]byte
	r := c.deps.Rand
	b[0], b[1] = byte(r()*256), byte(r()*256)
	c.idPrefix = fmt.Sprintf("%d.%d-", b[0], b[1])
	c.want = true
	c.begin(ctx)
}

func (c *conn) onStopping(ctx actor.Context, stopping bool) {
	c.want = false
	c.stopTimer(&c.retryTimer)
	// The system stops the pairing child itself; a second Stop from here
	// could reach it dead (a dead letter).
	c.child = nil
	c.closeLink(ctx)
	if c.cancel != nil {
		c.cancel()
	}
	if stopping {
		c.publish(events.KindState, events.StateStopped, nil, nil)
	}
}

// begin starts an attempt: prepare the device first if there is none in
// memory (or it must be wiped), else dial.
func (c *conn) begin(ctx actor.Context) {
	if c.lost {
		c.publish(events.KindReconnect, events.StateConnecting, nil, func(e *events.Event) { e.Attempt = c.attempt })
	} else {
		c.publish(events.KindState, events.StateConnecting, nil, nil)
	}
	if c.dev == nil || c.wipe {
		c.prepare(ctx)
		return
	}
	c.dial(ctx)
}

// newAttempt closes the current link and opens the next generation's.
func (c *conn) newAttempt(ctx actor.Context) *link {
	c.closeLink(ctx)
	c.link = newLink(c.ctx, c.gen, c.deps.WriteQueue)
	return c.link
}

// prepare loads the device in a goroutine: wiping it first if asked,
// creating fresh keys when there is none.
func (c *conn) prepare(ctx actor.Context) {
	l := c.newAttempt(ctx)
	st, mu, id, wipe, timeout := c.deps.Store, c.storeMu, c.deps.AccountID, c.wipe, c.deps.StoreTimeout
	self, root := ctx.Self(), ctx.ActorSystem().Root
	go func() {
		dev, err := prepareDevice(l.ctx, st, mu, id, wipe, timeout)
		root.Send(self, &loaded{gen: l.gen, dev: dev, err: err})
	}()
}

func prepareDevice(ctx context.Context, st store.Store, mu sync.Locker, id string, wipe bool, timeout time.Duration) (*store.Device, error) {
	if st == nil {
		return nil, ErrNoStore
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	mu.Lock()
	defer mu.Unlock()
	if wipe {
		if err := st.Delete(ctx, id); err != nil {
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
	c.dev, c.wipe = m.dev, false
	c.log.Info("device ready", slog.Bool("paired", c.dev.Paired()))
	c.dial(ctx)
}

// dial starts the dial and handshake in a goroutine, after the limiter.
func (c *conn) dial(ctx actor.Context) {
	l := c.newAttempt(ctx)
	pl, err := clientPayload(c.dev, c.deps.Versions.Current(), c.deps.DeviceProps)
	if err != nil {
		c.end(ctx, outStop, err)
		return
	}
	noise, err := crypto.KeyPairFromPrivate(c.dev.NoiseKey.Priv[:])
	if err != nil {
		c.end(ctx, outStop, fmt.Errorf("noise key: %w", err))
		return
	}
	c.dials++
	req := DialRequest{URL: c.deps.Server.URL, Proxy: c.deps.Proxy, RootKey: c.deps.Server.RootKey, NoiseKey: noise, Payload: pl,
		HandshakeTimeout: c.deps.HandshakeTimeout, WriteTimeout: c.deps.WriteTimeout}
	dialer, limiter := c.deps.Dialer, c.deps.Limiter
	self, root := ctx.Self(), ctx.ActorSystem().Root
	go func() {
		if limiter != nil {
			if err := limiter.Wait(l.ctx); err != nil {
				root.Send(self, &dialed{gen: l.gen, err: fmt.Errorf("connect rate limit: %w", err)})
				return
			}
		}
		s, err := dialer(l.ctx, req)
		if err == nil && !l.deliver(s) {
			return
		}
		root.Send(self, &dialed{gen: l.gen, sess: s, err: err})
	}()
}

func (c *conn) onDialed(ctx actor.Context, m *dialed) {
	if m.err != nil {
		c.end(ctx, outBackoff, m.err)
		return
	}
	c.log.Debug("handshake done")
	go c.link.readLoop(m.sess, ctx.Self(), ctx.ActorSystem().Root)
	c.armPing(ctx)
}

func (c *conn) onNode(ctx actor.Context, n node.Node) {
	switch n.Tag {
	case "iq":
		c.onIQ(ctx, n)
	case "success":
		c.onSuccess(ctx, n)
	case "failure", "stream:error":
		out, serr := classify(n)
		if c.logoutID != "" {
			c.finishLogout(ctx)
			return
		}
		if out == outReconnectNow && c.expectRestart {
			c.log.Info("pairing done; reconnecting to log in")
			c.end(ctx, outReconnectNow, nil)
			return
		}
		if out == outReconnectNow && c.state != events.StateConnected {
			// A 515 before login is not the pairing's: reconnecting at
			// once could loop as fast as the server answers.
			out = outBackoff
		}
		c.end(ctx, out, serr)
	case "xmlstreamend":
		c.streamEnded = true
	case "ib":
		if _, ok := n.Child("downgrade_webclient"); ok {
			c.log.Warn("the phone scanned the code but does not support multi-device")
		}
	default:
		c.log.Debug("stanza ignored", slog.String("tag", n.Tag))
	}
}

func (c *conn) onIQ(ctx actor.Context, n node.Node) {
	typ, _ := n.Attr("type")
	id, _ := n.Attr("id")
	switch typ {
	case "result", "error":
		switch {
		case id != "" && id == c.pingID:
			c.stopTimer(&c.pongTimer)
			c.pingID = ""
			c.armPing(ctx)
		case id != "" && id == c.logoutID:
			c.finishLogout(ctx)
		}
	case "set":
		if _, ok := n.Child("pair-device"); ok {
			c.onPairDevice(ctx, n)
		} else if _, ok := n.Child("pair-success"); ok {
			if c.child == nil {
				c.log.Warn("pair-success without a pairing in progress ignored")
				return
			}
			ctx.Send(c.child, &pairing.PairSuccess{Node: n})
		}
	case "get":
		if xmlns, _ := n.Attr("xmlns"); xmlns == "urn:xmpp:ping" {
			to := jid.ServerJID
			if j, ok := n.AttrJID("from"); ok {
				to = j
			}
			c.write(ctx, node.IQ(id, to, "result", ""), 0)
		}
	}
}

func (c *conn) onPairDevice(ctx actor.Context, n node.Node) {
	if c.dev.Paired() {
		c.log.Warn("pair-device for a paired device ignored")
		return
	}
	if c.child == nil {
		c.lastCode = false
		c.child = ctx.Spawn(actor.PropsFromProducer(pairing.New(pairing.Deps{
			AccountID:    c.deps.AccountID,
			Gen:          c.gen,
			Device:       c.dev,
			Store:        c.deps.Store,
			StoreLock:    c.storeMu,
			Events:       c.deps.Events,
			Logger:       c.deps.Logger,
			Schedule:     pairing.Schedule{First: c.deps.QR.First, Next: c.deps.QR.Next},
			ClientType:   c.deps.clientType(),
			StoreTimeout: c.deps.StoreTimeout,
			Now:          c.deps.Now,
		})))
		c.publish(events.KindState, events.StatePairing, nil, nil)
	}
	ctx.Send(c.child, &pairing.PairDevice{Node: n})
}

func (c *conn) onPairingSend(ctx actor.Context, m *pairing.Send) {
	if m.Gen != c.gen {
		return
	}
	c.write(ctx, m.Node, 0)
}

func (c *conn) onPairingFinish(ctx actor.Context, m *pairing.Finish) {
	if m.Gen != c.gen {
		if m.Paired != nil {
			// Ownership of the saved pairing came with the message; its
			// connection is gone, so the reply will never be written.
			c.restore(ctx, m.Paired)
		}
		return
	}
	if c.child != nil {
		ctx.Stop(c.child)
		c.child = nil
	}
	token := nextGen()
	if m.Err != nil {
		c.closeToken, c.endErr = token, m.Err
		if err := c.write(ctx, m.Reply, token); errors.Is(err, errNotConnected) {
			c.end(ctx, outBackoff, m.Err)
		}
		return
	}
	// Paired as soon as the reply is on its way: the server's 515 may
	// arrive before the writer reports, and the next dial must log in.
	c.dev = m.Paired
	c.reply = &pendingReply{token: token, paired: m.Paired}
	c.expectRestart = true
	c.log.Info("paired; sending pair-device-sign", slog.String("jid", m.Paired.JID))
	c.write(ctx, m.Reply, token)
}

func (c *conn) onReplyWritten(ctx actor.Context, w *written) {
	r := c.reply
	c.reply = nil
	if w.err != nil {
		c.replyFailed(ctx, r, w.err)
		if w.gen == c.gen {
			c.end(ctx, outBackoff, fmt.Errorf("send pair-device-sign: %w", w.err))
		}
		return
	}
	c.publish(events.KindPaired, c.state, nil, func(e *events.Event) { e.JID = r.paired.JID })
}

// replyFailed undoes a pairing whose reply was never written.
func (c *conn) replyFailed(ctx actor.Context, r *pendingReply, err error) {
	c.log.Warn("pair-device-sign not sent; undoing the pairing", slog.String("error", err.Error()))
	if c.dev == r.paired {
		c.dev = pairing.Unpaired(r.paired)
		c.expectRestart = false
	}
	c.restore(ctx, r.paired)
}

func (c *conn) restore(ctx actor.Context, paired *store.Device) {
	st, mu, timeout := c.deps.Store, c.storeMu, c.deps.StoreTimeout
	self, root := ctx.Self(), ctx.ActorSystem().Root
	go func() {
		rc, cancel := context.WithTimeout(context.Background(), timeout)
		err := pairing.Restore(rc, st, mu, paired)
		cancel()
		root.Send(self, &restored{err: err})
	}()
}

func (c *conn) onSuccess(ctx actor.Context, n node.Node) {
	if !c.dev.Paired() {
		c.log.Warn("login success for a device that is not paired")
	}
	c.expectRestart = false
	c.connectedAt = c.deps.Now()
	c.publish(events.KindConnected, events.StateConnected, nil, nil)
	// Leave passive mode, as clients do after <success>; the answer is
	// not awaited.
	c.write(ctx, node.IQ(c.newID(), jid.ServerJID, "set", "passive", node.New("active")), 0)
}

func (c *conn) onWritten(ctx actor.Context, w *written) {
	switch {
	case w.err != nil:
		if c.endErr != nil {
			c.end(ctx, outBackoff, c.endErr)
			return
		}
		c.end(ctx, outBackoff, w.err)
	case w.token != 0 && w.token == c.closeToken:
		c.end(ctx, outBackoff, c.endErr)
	}
}

func (c *conn) onReadFailed(ctx actor.Context, err error) {
	switch {
	case c.logoutID != "":
		c.finishLogout(ctx)
	case c.endErr != nil:
		c.end(ctx, outBackoff, c.endErr)
	case c.child != nil && c.lastCode:
		c.end(ctx, outUnpaired, pairing.ErrExpired)
	case c.expectRestart:
		c.end(ctx, outReconnectNow, nil)
	case c.streamEnded:
		c.end(ctx, outBackoff, fmt.Errorf("%w: %w", ErrStreamEnd, err))
	default:
		c.end(ctx, outBackoff, err)
	}
}

// write queues a stanza on the current connection. A full queue ends the
// connection (the caller must not touch the link afterwards).
func (c *conn) write(ctx actor.Context, n node.Node, token uint64) error {
	b, err := node.MarshalPayload(n)
	if err != nil {
		c.log.Error("cannot encode own stanza", slog.String("tag", n.Tag), slog.String("error", err.Error()))
		return err
	}
	if c.link == nil {
		return errNotConnected
	}
	ok, err := c.link.send(outFrame{data: b, token: token}, ctx.Self(), ctx.ActorSystem().Root)
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

func (c *conn) newID() string {
	c.idSeq++
	return fmt.Sprintf("%s%d", c.idPrefix, c.idSeq)
}

// Keepalive.

func (c *conn) armPing(ctx actor.Context) {
	c.stopTimer(&c.pingTimer)
	iv := c.deps.Keepalive.Interval
	d := time.Duration(float64(iv) * (0.8 + 0.4*c.deps.Rand()))
	c.pingTimer = c.after(ctx, d, &pingDue{gen: c.gen})
}

func (c *conn) onPingDue(ctx actor.Context) {
	if c.pingID != "" || c.link == nil {
		return
	}
	id := c.newID()
	if err := c.write(ctx, node.IQ(id, jid.ServerJID, "get", "w:p"), 0); err != nil {
		return
	}
	c.pingID = id
	c.pongTimer = c.after(ctx, c.deps.Keepalive.Timeout, &pingTimeout{gen: c.gen, id: id})
}

// Pair and logout.

func (c *conn) respond(ctx actor.Context, ok bool, reason string) {
	if ctx.Sender() != nil {
		ctx.Respond(&Result{OK: ok, State: c.state, Reason: reason})
	}
	if !ok {
		c.log.Info("request refused", slog.String("reason", reason))
	}
}

// resave writes the device held in memory back to the store, in a
// goroutine bound to the actor's lifetime.
func (c *conn) resave() {
	if c.dev == nil || c.ctx == nil {
		return
	}
	dev, st, mu, timeout, log, parent := c.dev.Clone(), c.deps.Store, c.storeMu, c.deps.StoreTimeout, c.log, c.ctx
	go func() {
		ctx, cancel := context.WithTimeout(parent, timeout)
		defer cancel()
		mu.Lock()
		err := st.Save(ctx, dev)
		mu.Unlock()
		if err != nil {
			log.Error("save the device again", slog.String("error", err.Error()))
			return
		}
		log.Info("device saved again")
	}()
}

func (c *conn) onPair(ctx actor.Context) {
	if c.state != events.StateUnpaired && c.state != events.StateLoggedOut {
		c.respond(ctx, false, fmt.Sprintf("pairing is re-armed only when unpaired or logged out; the account is %s", c.state))
		return
	}
	c.log.Info("pairing re-armed")
	c.want, c.attempt, c.lost = true, 0, false
	c.stopTimer(&c.retryTimer)
	c.begin(ctx)
	c.respond(ctx, true, "")
}

func (c *conn) onLogout(ctx actor.Context) {
	switch {
	case c.dev == nil || !c.dev.Paired():
		c.respond(ctx, false, "the account is not paired")
		return
	case c.logoutID != "":
	case c.state == events.StateConnected && c.link != nil:
		id := c.newID()
		own, err := jid.Parse(c.dev.JID)
		if err == nil {
			err = c.write(ctx, node.IQ(id, jid.ServerJID, "set", "md",
				node.New("remove-companion-device", node.JIDAttr("jid", own), node.StrAttr("reason", "user_initiated"))), 0)
		}
		if err != nil {
			c.want = true
			c.end(ctx, outLoggedOut, nil)
			break
		}
		c.log.Info("unlinking the device")
		c.logoutID = id
		c.logoutTimer = c.after(ctx, c.deps.Keepalive.Timeout, &logoutTimeout{gen: c.gen})
	default:
		c.log.Info("unlinking locally; the phone keeps listing the device until it is removed there")
		c.want = true
		c.end(ctx, outLoggedOut, nil)
	}
	c.respond(ctx, true, "")
}

func (c *conn) finishLogout(ctx actor.Context) {
	c.logoutID = ""
	c.want = true
	c.end(ctx, outLoggedOut, nil)
}

// end closes the current connection (if any) and applies the outcome. It
// is the only way a connection ends.
func (c *conn) end(ctx actor.Context, out outcome, err error) {
	wasConnected := c.state == events.StateConnected
	expected := c.expectRestart
	c.closeLink(ctx)
	c.stopTimer(&c.retryTimer)
	switch out {
	case outReconnectNow:
		c.expectRestart = false
		if expected && err == nil {
			c.lost = false
		} else {
			c.lost = true
			c.publish(events.KindDisconnected, events.StateConnecting, err, nil)
		}
		c.begin(ctx)
	case outBackoff:
		if wasConnected && c.deps.Backoff.Stable(c.deps.Now().Sub(c.connectedAt)) {
			c.attempt = 0
		}
		delay := c.deps.Backoff.Next(c.attempt, c.deps.Rand)
		c.attempt++
		c.lastDelay = delay
		c.lost = true
		c.publish(events.KindDisconnected, events.StateBackoff, err, func(e *events.Event) { e.Delay = delay })
		c.retryTimer = c.after(ctx, delay, &retry{gen: c.gen})
	case outLoggedOut:
		c.dev, c.wipe = nil, true
		c.attempt, c.lost, c.expectRestart = 0, false, false
		c.publish(events.KindLoggedOut, events.StateLoggedOut, err, nil)
		if c.want {
			c.begin(ctx)
		}
	case outStop:
		c.want = false
		c.publish(events.KindAlarm, events.StateStopped, err, nil)
	case outUnpaired:
		c.want = false
		c.lost = false
		c.publish(events.KindState, events.StateUnpaired, err, nil)
	}
}

// closeLink ends the current attempt: its goroutines, timers, pairing child
// and every message still on the way (by moving to a new generation).
func (c *conn) closeLink(ctx actor.Context) {
	if c.link != nil {
		for _, f := range c.link.close() {
			if c.reply != nil && f.token == c.reply.token {
				r := c.reply
				c.reply = nil
				c.replyFailed(ctx, r, errNotConnected)
			}
		}
		c.link = nil
	}
	c.stopTimer(&c.pingTimer)
	c.stopTimer(&c.pongTimer)
	c.stopTimer(&c.logoutTimer)
	c.pingID, c.logoutID = "", ""
	if c.child != nil {
		ctx.Stop(c.child)
		c.child = nil
	}
	c.lastCode, c.streamEnded = false, false
	c.closeToken, c.endErr = 0, nil
	c.gen = nextGen()
}

// after sends msg to the actor after d.
func (c *conn) after(ctx actor.Context, d time.Duration, msg any) *time.Timer {
	self, root := ctx.Self(), ctx.ActorSystem().Root
	return time.AfterFunc(d, func() { root.Send(self, msg) })
}

func (c *conn) stopTimer(t **time.Timer) {
	if *t != nil {
		(*t).Stop()
		*t = nil
	}
}

func (c *conn) snapshot() *snapshot {
	return &snapshot{
		State: c.state, Want: c.want, Gen: c.gen, Dials: c.dials,
		Timer: c.retryTimer != nil, Child: c.child != nil,
		Paired: c.dev != nil && c.dev.Paired(), Attempt: c.attempt, Delay: c.lastDelay,
	}
}
