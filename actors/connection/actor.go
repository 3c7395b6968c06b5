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
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
	"github.com/wafleet/wafleet/wire/payload"
)

// New returns the producer of a connection actor for one account. Spawn it
// with SpawnNamed(props, accountID) so that a second actor for the same
// account is refused.
func New(deps Deps) actor.Producer {
	deps.defaults()
	return func() actor.Actor {
		return &conn{
			deps:  deps,
			log:   deps.Logger.With(slog.String("account", deps.AccountID)),
			store: new(storeQueue),
			state: events.StateConnecting,
		}
	}
}

// Props is New wrapped in actor props.
func Props(deps Deps) *actor.Props {
	return actor.PropsFromProducer(New(deps))
}

// conn is the connection actor. Every field is touched only inside Receive.
type conn struct {
	deps   Deps
	log    *slog.Logger
	store  *storeQueue // every store call of the account, in order
	ctx    context.Context
	cancel context.CancelFunc

	state events.State // what is (as published)
	want  bool         // what should be: connected (goal, kept apart from state)
	dev   *store.Device
	wipe  *wipeOrder // wipe the stored device before the next attempt (nil: keep it)
	held  *heldWipe  // a server-initiated wipe the WipeGuard holds (state stopped)

	gen         uint64 // current attempt; messages of other generations are stale
	link        *link
	dials       int
	attempt     int // consecutive failures, for the backoff
	lastDelay   time.Duration
	lost        bool // the next attempt follows a lost connection (a reconnect)
	connectedAt time.Time

	retryTimer, pingTimer, pongTimer, logoutTimer, activeTimer *time.Timer
	pingID, logoutID, activeID                                 string
	idPrefix                                                   string
	idSeq                                                      uint64

	loggedIn    bool      // <success> came on the current connection
	activeSent  bool      // <active/> went out on the current connection
	lastPong    time.Time // the last answered keepalive ping (or the dial)
	missedPings int       // pings unanswered since lastPong

	countID, uploadID string // the prekey count and upload IQs in flight
	uploadTop         uint32 // the largest key ID of the upload in flight
	uploadN           int    // the number of keys of the upload in flight
	preKeysBusy       bool   // an upload is being prepared or in flight

	dialVersion  payload.Version // the version the current attempt sent
	outdated     payload.Version // refused by the server (405): waiting for a newer one
	outdatedSaid bool            // the client_outdated alarm is raised
	logoutWanted bool            // a logout asked while offline: connect, unlink, then wipe
	unlinked     bool            // the operator's logout ends this connection: delete, do not archive

	child         *actor.PID
	lastCode      bool          // the pairing child shows its last code
	saving        *store.Device // the pairing being saved, until pairSaved
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
	case *Resume:
		c.onResume(ctx)
	case *Resave:
		c.resave()
	case *Logout:
		c.onLogout(ctx)
	case *ConfirmWipe:
		c.onConfirmWipe(ctx)
	case *RestoreArchived:
		c.onRestoreArchived(ctx, m)
	case *archiveRestored:
		c.onArchiveRestored(ctx, m)
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
			c.onPingMissed(ctx)
		}
	case *logoutTimeout:
		c.logoutTimer = nil
		if c.logoutID != "" {
			c.log.Warn("unlink request unanswered; wiping the device anyway")
			c.finishLogout(ctx)
		}
	case *activeTimeout:
		c.activeTimer = nil
		switch {
		case !c.activeSent:
			c.log.Warn("prekeys not settled in time; going active")
			c.goActive(ctx)
		case c.activeID != "":
			c.log.Warn("the server did not answer <active/>; going on")
			c.activeID = ""
			c.connected()
		}
	case *undecodable:
		c.onUndecodable(ctx, m)
	case *preKeysReady:
		c.onPreKeysReady(ctx, m)
	case *wiped:
		if m.err != nil {
			c.log.Error("wipe the device", slog.String("error", m.err.Error()))
		} else {
			c.log.Info("device wiped", slog.Bool("archived", m.archived))
		}
	case *VersionUpdated:
		c.onVersionUpdated(ctx)
	case *VersionUnavailable:
		c.onVersionUnavailable(m)
	case *restored:
		c.onRestored(m)
	case *pairing.Send:
		c.onPairingSend(ctx, m)
	case *pairing.Finish:
		c.onPairingFinish(ctx, m)
	case *pairSaved:
		c.onPairSaved(ctx, m)
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
	if kind == events.KindAlarm && e.Alarm == "" {
		e.Alarm = alarmFor(err)
	}
	c.deps.Events.Publish(e)
	attrs := []any{slog.String("state", string(state)), slog.String("from", string(prev)), slog.String("event", string(kind))}
	if e.Alarm != "" {
		attrs = append(attrs, slog.String("alarm", string(e.Alarm)))
	}
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
	c.held = nil // restarted: a held wipe is given up, the device kept
	if c.dev == nil || c.wipe != nil {
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
	c.dial(ctx)
}

// dial starts the dial and handshake in a goroutine, after the limiter.
func (c *conn) dial(ctx actor.Context) {
	l := c.newAttempt(ctx)
	c.dialVersion = c.deps.Versions.Current()
	pl, err := clientPayload(c.dev, c.dialVersion, c.deps.DeviceProps)
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
	c.lastPong, c.missedPings = c.deps.Now(), 0
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
		if serr.Class == ErrUnacked {
			c.deps.Observer.StreamErrorAck()
			c.log.Warn("server ended the stream for an unacknowledged stanza",
				slog.String("class", serr.AckClass), slog.String("id", serr.AckID))
		}
		if c.logoutID != "" {
			c.finishLogout(ctx)
			return
		}
		if out == outReconnectNow && c.expectRestart {
			c.log.Info("pairing done; reconnecting to log in")
			c.end(ctx, outReconnectNow, nil)
			return
		}
		if out == outReconnectNow {
			// A 515 reconnects at once only once per stable connection:
			// a server that asks for it on every login (or before login)
			// would otherwise be stormed at the connect rate. Consecutive
			// ones back off like any other failure (end counts them).
			if c.state == events.StateConnected && c.deps.Backoff.Stable(c.deps.Now().Sub(c.connectedAt)) {
				c.attempt = 0
			}
			if c.state != events.StateConnected || c.attempt > 0 {
				out = outBackoff
			}
		}
		c.end(ctx, out, serr)
	case "xmlstreamend":
		c.streamEnded = true
	case "ib":
		if _, ok := n.Child("downgrade_webclient"); ok {
			c.log.Warn("the phone scanned the code but does not support multi-device")
		}
	default:
		if ackable[n.Tag] {
			c.onAckable(ctx, n)
			return
		}
		// presence, chatstate and the like need no answer
		c.log.Debug("stanza ignored", slog.String("tag", n.Tag))
	}
}

// onUndecodable counts and logs a frame that did not decode. If its tag and
// id did and it is ackable, it is acknowledged all the same: the server
// would otherwise end the stream for it and redeliver it on every login.
func (c *conn) onUndecodable(ctx actor.Context, m *undecodable) {
	c.deps.Observer.StanzaUndecodable()
	if ack, ok := ackFor(m.header); ok {
		c.log.Warn("stanza not decodable; acknowledged by its tag and id", slog.String("tag", m.header.Tag), slog.String("error", m.err.Error()))
		if c.write(ctx, ack, 0) == nil {
			c.deps.Observer.AckSent(m.header.Tag)
		}
		return
	}
	c.log.Warn("stanza not decodable; skipped", slog.String("error", m.err.Error()))
}

// onAckable acknowledges a message, receipt, notification or call at once,
// in the order they came, and reacts to the ones it understands.
func (c *conn) onAckable(ctx actor.Context, n node.Node) {
	ack, ok := ackFor(n)
	if !ok {
		c.log.Warn("ackable stanza without id", slog.String("tag", n.Tag))
		return
	}
	if c.write(ctx, ack, 0) != nil {
		return
	}
	c.deps.Observer.AckSent(n.Tag)
	if typ, _ := n.Attr("type"); n.Tag == "notification" && typ == "encrypt" {
		if count, ok := serverPreKeyCount(n); ok {
			c.onServerPreKeyCount(ctx, count)
		}
	}
}
func (c *conn) onIQ(ctx actor.Context, n node.Node) {
	if isServerPing(n) {
		c.write(ctx, pongFor(n), 0)
		return
	}
	typ, _ := n.Attr("type")
	id, _ := n.Attr("id")
	switch typ {
	case "result", "error":
		if id != "" {
			c.onIQAnswer(ctx, n, id, typ == "result")
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
	}
}

// onIQAnswer matches the answer to an IQ of ours by its id.
func (c *conn) onIQAnswer(ctx actor.Context, n node.Node, id string, ok bool) {
	switch id {
	case c.pingID:
		c.stopTimer(&c.pongTimer)
		c.pingID = ""
		if c.missedPings > 0 {
			c.log.Info("keepalive restored", slog.Int("missed", c.missedPings))
		}
		c.lastPong, c.missedPings = c.deps.Now(), 0
		c.armPing(ctx)
	case c.logoutID:
		c.finishLogout(ctx)
	case c.activeID:
		c.stopTimer(&c.activeTimer)
		c.activeID = ""
		if !ok {
			c.log.Warn("the server refused <active/>; going on", slog.String("error", iqErrorText(n)))
		}
		c.connected()
	case c.countID:
		c.countID = ""
		count, valid := serverPreKeyCount(n)
		if !ok || !valid {
			c.log.Warn("prekey count not answered", slog.String("error", iqErrorText(n)))
			c.goActive(ctx)
			return
		}
		if !c.onServerPreKeyCount(ctx, count) {
			c.goActive(ctx)
		}
	case c.uploadID:
		c.uploadID = ""
		c.onPreKeysUploaded(ctx, n, ok)
	}
}

// iqErrorText describes an error IQ's <error code text/>.
func iqErrorText(n node.Node) string {
	e, ok := n.Child("error")
	if !ok {
		return "no error child"
	}
	code, _ := e.Attr("code")
	text, _ := e.Attr("text")
	return code + " " + text
}

// onSuccess follows the reference client's order after <success>
// (PROTOCOL.md 9.8): note the LID and the server's clock, ask for the
// prekey count and upload prekeys if the server runs low, then send
// <active/> and report connected once it is answered. Each step is bounded
// by Keepalive.Timeout (activeTimeout), after which the next one goes on
// anyway. Stanzas the server pushes meanwhile are acknowledged as they come.
func (c *conn) onSuccess(ctx actor.Context, n node.Node) {
	if !c.dev.Paired() {
		c.log.Warn("login success for a device that is not paired")
	}
	c.expectRestart = false
	c.loggedIn = true
	c.noteSuccess(n)
	if c.logoutWanted {
		c.sendLogout(ctx)
		return
	}
	c.countID = c.newID()
	if c.write(ctx, preKeyCountIQ(c.countID), 0) != nil {
		return
	}
	c.activeTimer = c.after(ctx, c.deps.Keepalive.Timeout, &activeTimeout{gen: c.gen})
}

// goActive leaves passive mode, once per connection; connected follows
// its answer.
func (c *conn) goActive(ctx actor.Context) {
	if c.activeSent || !c.loggedIn {
		return
	}
	c.activeSent = true
	c.activeID = c.newID()
	if c.write(ctx, node.IQ(c.activeID, jid.ServerJID, "set", "passive", node.New("active")), 0) != nil {
		return
	}
	c.stopTimer(&c.activeTimer)
	c.activeTimer = c.after(ctx, c.deps.Keepalive.Timeout, &activeTimeout{gen: c.gen})
}

// noteSuccess checks our clock against the server's and saves the LID the
// server gives the device when the store has another (or none).
func (c *conn) noteSuccess(n node.Node) {
	if t, ok := n.AttrInt("t"); ok && t > 0 {
		// Nothing uses the server's clock yet (the reference sends it in
		// telemetry); a skewed clock is worth a warning.
		if offset := time.Unix(t, 0).Sub(c.deps.Now()); offset > time.Minute || offset < -time.Minute {
			c.log.Warn("our clock differs from the server's", slog.Duration("offset", offset))
		}
	}
	lid, ok := n.AttrJID("lid")
	if !ok || !c.dev.Paired() || lid.String() == c.dev.LID {
		return
	}
	if lid.Server != jid.HiddenUserServer {
		c.log.Warn("success carries a LID that is not one", slog.String("lid", lid.String()))
		return
	}
	if c.dev.LID != "" {
		c.log.Warn("the server gave another LID; replacing the stored one", slog.String("stored", c.dev.LID), slog.String("lid", lid.String()))
	}
	d := c.dev.Clone()
	d.LID = lid.String()
	c.dev = d
	c.resave()
}

// connected reports the login done (once per connection).
func (c *conn) connected() {
	if c.state == events.StateConnected {
		return
	}
	c.connectedAt = c.deps.Now()
	c.publish(events.KindConnected, events.StateConnected, nil, nil)
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

// onPingMissed: one unanswered ping is not a dead connection (PROTOCOL.md
// 9.8, as the reference client). The connection is given up only when no
// ping has been answered for Keepalive.Window; socket errors end it at once
// anyway.
func (c *conn) onPingMissed(ctx actor.Context) {
	c.pingID = ""
	c.pongTimer = nil
	c.missedPings++
	silent := c.deps.Now().Sub(c.lastPong)
	if silent >= c.deps.Keepalive.Window {
		c.end(ctx, outBackoff, fmt.Errorf("%w: %d pings unanswered over %v", ErrKeepaliveTimeout, c.missedPings, silent.Round(time.Second)))
		return
	}
	c.log.Warn("keepalive ping unanswered", slog.Int("missed", c.missedPings), slog.Duration("since_last_answer", silent))
	c.armPing(ctx)
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
	dev, st, timeout, log, parent := c.dev.Clone(), c.deps.Store, c.deps.StoreTimeout, c.log, c.ctx
	c.store.run(func() {
		ctx, cancel := context.WithTimeout(parent, timeout)
		defer cancel()
		if err := st.Save(ctx, dev); err != nil {
			log.Error("save the device again", slog.String("error", err.Error()))
			return
		}
		log.Info("device saved again")
	})
}

func (c *conn) onPair(ctx actor.Context) {
	if c.state == events.StateStopped {
		c.respond(ctx, false, "account is stopped: restart it")
		return
	}
	if c.state != events.StateUnpaired && c.state != events.StateLoggedOut {
		c.respond(ctx, false, fmt.Sprintf("account is %s: pairing is re-armed only when unpaired or logged out", c.state))
		return
	}
	c.log.Info("pairing re-armed")
	c.want, c.attempt, c.lost = true, 0, false
	c.stopTimer(&c.retryTimer)
	c.begin(ctx)
	c.respond(ctx, true, "")
}

func (c *conn) onResume(ctx actor.Context) {
	if c.state != events.StateStopped {
		c.respond(ctx, false, fmt.Sprintf("account is %s, not stopped", c.state))
		return
	}
	c.log.Info("restarting the stopped account")
	c.want, c.attempt, c.lost = true, 0, false
	c.outdated, c.outdatedSaid = payload.Version{}, false
	c.stopTimer(&c.retryTimer)
	c.begin(ctx)
	c.respond(ctx, true, "")
}

func (c *conn) onLogout(ctx actor.Context) {
	switch {
	case c.dev == nil || !c.dev.Paired():
		c.respond(ctx, false, "account is not paired")
		return
	case c.logoutID != "" || c.logoutWanted:
	case c.loggedIn && c.link != nil:
		c.sendLogout(ctx)
	default:
		// Offline: connect to tell the server first, so the phone stops
		// listing the device; end() unlinks locally if that fails.
		c.log.Info("connecting to unlink the device")
		c.logoutWanted = true
		c.want = true
		if c.link == nil {
			c.stopTimer(&c.retryTimer)
			c.outdated, c.outdatedSaid = payload.Version{}, false
			c.begin(ctx)
		}
	}
	c.respond(ctx, true, "")
}

// sendLogout asks the server to remove the device and waits for the answer
// (or the server's stream error or close) before wiping it.
func (c *conn) sendLogout(ctx actor.Context) {
	c.logoutWanted = false
	id := c.newID()
	own, err := jid.Parse(c.dev.JID)
	if err == nil {
		err = c.write(ctx, node.IQ(id, jid.ServerJID, "set", "md",
			node.New("remove-companion-device", node.JIDAttr("jid", own), node.StrAttr("reason", "user_initiated"))), 0)
	}
	if err != nil {
		c.want, c.unlinked = true, true
		c.end(ctx, outLoggedOut, nil)
		return
	}
	c.log.Info("unlinking the device")
	c.logoutID = id
	c.logoutTimer = c.after(ctx, c.deps.Keepalive.Timeout, &logoutTimeout{gen: c.gen})
}
func (c *conn) finishLogout(ctx actor.Context) {
	c.logoutID = ""
	c.want, c.unlinked = true, true
	c.end(ctx, outLoggedOut, nil)
}

// errHandedOver is the last error of an account whose lease ended here.
var errHandedOver = errors.New("lease lost: the account runs on another instance")

// end closes the current connection (if any) and applies the outcome. It
// is the only way a connection ends. Once the lease is gone (fleet mode),
// every end but a logout is a hand-over.
func (c *conn) end(ctx actor.Context, out outcome, err error) {
	if c.deps.LeaseHeld != nil && !c.deps.LeaseHeld() && out != outLoggedOut && out != outBanned {
		out = outHandedOver
	}
	wasConnected := c.state == events.StateConnected
	expected := c.expectRestart
	byOperator := c.unlinked || c.logoutWanted
	c.unlinked = false
	c.closeLink(ctx)
	c.stopTimer(&c.retryTimer)
	if c.logoutWanted {
		// The connection made to unlink the device is gone: unlink locally.
		c.logoutWanted = false
		if out != outLoggedOut && out != outBanned {
			c.log.Warn("could not tell the server; unlinking locally (the phone keeps listing the device until it is removed there)", slog.Any("error", err))
			out, err, c.want = outLoggedOut, nil, true
		}
	}
	if (out == outLoggedOut || out == outBanned) && !byOperator && !c.mayWipe(out, err) {
		return
	}
	var serr *ServerError
	errors.As(err, &serr)
	switch out {
	case outReconnectNow:
		c.expectRestart = false
		if expected && err == nil {
			c.lost = false
		} else {
			c.lost = true
			c.attempt++ // the next 515 before a stable connection backs off
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
	case outLoggedOut, outBanned:
		c.loggedOut(ctx, out, err, newWipeOrder(byOperator, err))
	case outStop:
		c.want = false
		c.publish(events.KindAlarm, events.StateStopped, err, nil)
	case outTempBanned:
		delay := c.deps.Backoff.Max
		if serr != nil && serr.Expire > 0 {
			delay = serr.Expire
		}
		c.lost = true
		c.lastDelay = delay
		until := c.deps.Now().Add(delay).UTC().Format(time.RFC3339)
		c.publish(events.KindDisconnected, events.StateBackoff, fmt.Errorf("%w; reconnecting by itself at %s", err, until), func(e *events.Event) { e.Delay = delay })
		c.retryTimer = c.after(ctx, delay, &retry{gen: c.gen})
	case outOutdated:
		c.lost = true
		refused := c.dialVersion
		if c.deps.Versions.Current() != refused {
			// A newer version came while this attempt was on its way.
			c.publish(events.KindDisconnected, events.StateConnecting, err, nil)
			c.begin(ctx)
			return
		}
		c.outdated, c.outdatedSaid = refused, false
		c.publish(events.KindDisconnected, events.StateBackoff, fmt.Errorf("%w; looking for a newer version", err), nil)
		c.deps.Versions.Refused(refused)
	case outUnpaired:
		c.want = false
		c.lost = false
		c.publish(events.KindState, events.StateUnpaired, err, nil)
	case outHandedOver:
		c.want, c.lost = false, false
		why := errHandedOver
		if err != nil {
			why = fmt.Errorf("%w; the connection ended with: %w", errHandedOver, err)
		}
		c.publish(events.KindDisconnected, events.StateStopped, why, nil)
	}
}

// loggedOut applies a logout (out is outLoggedOut or outBanned): the
// device goes as order says, and the account pairs again (after a ban only
// with AutoRepair; else it waits for Pair, the device wiped now).
func (c *conn) loggedOut(ctx actor.Context, out outcome, err error, order *wipeOrder) {
	c.dev, c.wipe = nil, order
	c.attempt, c.lost, c.expectRestart = 0, false, false
	if out == outLoggedOut {
		c.publish(events.KindLoggedOut, events.StateLoggedOut, err, nil)
		if c.want {
			c.begin(ctx)
		}
		return
	}
	c.publish(events.KindAlarm, events.StateLoggedOut, err, nil)
	if c.deps.AutoRepair {
		c.log.Info("registering again (auto-repair is on)")
		c.want = true
		c.begin(ctx)
		return
	}
	c.want = false
	c.wipeNow(ctx)
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
	c.stopTimer(&c.activeTimer)
	c.pingID, c.logoutID, c.activeID, c.countID, c.uploadID = "", "", "", "", ""
	c.loggedIn, c.activeSent, c.missedPings, c.preKeysBusy = false, false, 0, false
	if c.child != nil {
		ctx.Stop(c.child)
		c.child = nil
	}
	if c.saving != nil {
		// Its reply will never be written: undo the save (queued after it).
		c.undoPairing(ctx, c.saving)
		c.saving = nil
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

// wipeNow archives (or deletes) the device without starting a new one (a
// locked or banned account waits for an operator). It runs as an attempt
// of its own, so that a later attempt (pairing re-armed) replaces it.
func (c *conn) wipeNow(ctx actor.Context) {
	l := c.newAttempt(ctx) // never dialed: it only owns the goroutine
	st, id, timeout, order := c.deps.Store, c.deps.AccountID, c.deps.StoreTimeout, c.wipe
	self, root := ctx.Self(), ctx.ActorSystem().Root
	c.store.run(func() {
		wctx, cancel := context.WithTimeout(l.ctx, timeout)
		defer cancel()
		err := wctx.Err()
		if err == nil {
			err = order.apply(wctx, st, id)
		}
		root.Send(self, &wiped{gen: l.gen, err: err, archived: order.archive})
	})
}

// alarmFor names the alarm of an error that stops an account.
func alarmFor(err error) events.Alarm {
	var serr *ServerError
	switch {
	case errors.Is(err, ErrReplaced):
		return events.AlarmReplaced
	case errors.Is(err, ErrBanned):
		return events.AlarmBanned
	case errors.Is(err, ErrOutdated):
		return events.AlarmClientOutdated
	case errors.As(err, &serr):
		return events.AlarmRefused
	}
	return events.AlarmDevice
}

// Versions.

func (c *conn) onVersionUpdated(ctx actor.Context) {
	if c.outdated.IsZero() || c.deps.Versions.Current() == c.outdated {
		return
	}
	c.log.Info("a newer client version is available; reconnecting", slog.String("refused", c.outdated.String()), slog.String("version", c.deps.Versions.Current().String()))
	c.outdated, c.outdatedSaid = payload.Version{}, false
	c.want, c.attempt = true, 0
	c.begin(ctx)
}

func (c *conn) onVersionUnavailable(m *VersionUnavailable) {
	if c.outdated.IsZero() || c.outdatedSaid {
		return
	}
	c.outdatedSaid = true
	err := fmt.Errorf("%w: %s is refused and no newer version can be had", ErrOutdated, c.outdated)
	if m.Err != nil {
		err = fmt.Errorf("%w: %w", ErrOutdated, m.Err) // the source's error names the version
	}
	c.publish(events.KindAlarm, events.StateStopped, err, nil)
}

// Prekeys.

// onServerPreKeyCount starts an upload when the server's count (or the
// store's) is low, unless one is already under way on this connection. It
// reports whether it started one; its end (onPreKeysReady or
// onPreKeysUploaded) goes active.
func (c *conn) onServerPreKeyCount(ctx actor.Context, count int) bool {
	if c.preKeysBusy || c.dev == nil || !c.dev.Paired() || c.link == nil {
		return false
	}
	c.preKeysBusy = true
	l, st, id, timeout := c.link, c.deps.Store, c.deps.AccountID, c.deps.StoreTimeout
	self, root := ctx.Self(), ctx.ActorSystem().Root
	c.store.run(func() {
		pctx, cancel := context.WithTimeout(l.ctx, timeout)
		defer cancel()
		var keys []store.PreKey
		err := pctx.Err() // after a wipe that came first, the old device's keys must not come back
		if err == nil {
			keys, err = preparePreKeys(pctx, st, id, count)
		}
		root.Send(self, &preKeysReady{gen: l.gen, keys: keys, err: err})
	})
	return true
}

func (c *conn) onPreKeysReady(ctx actor.Context, m *preKeysReady) {
	if m.err != nil {
		c.preKeysBusy = false
		c.log.Error("prepare prekeys", slog.String("error", m.err.Error()))
		c.goActive(ctx)
		return
	}
	if len(m.keys) == 0 {
		c.preKeysBusy = false
		c.goActive(ctx)
		return
	}
	id := c.newID()
	if c.write(ctx, preKeyUploadIQ(id, c.dev, m.keys), 0) != nil {
		return
	}
	c.uploadID, c.uploadTop, c.uploadN = id, m.keys[len(m.keys)-1].ID, len(m.keys)
	c.log.Info("uploading prekeys", slog.String("keys", preKeyRange(m.keys)))
}

// onPreKeysUploaded records an upload the server accepted, so the keys are
// not offered again, and goes active. A refused upload (or one whose mark
// is lost) offers the same keys again at the next trigger, as the
// reference client does.
func (c *conn) onPreKeysUploaded(ctx actor.Context, n node.Node, ok bool) {
	c.preKeysBusy = false
	defer c.goActive(ctx)
	if !ok {
		c.log.Warn("the server refused the prekey upload", slog.String("error", iqErrorText(n)))
		return
	}
	c.deps.Observer.PreKeysUploaded(c.uploadN)
	l, st, id, top, timeout, log := c.link, c.deps.Store, c.deps.AccountID, c.uploadTop, c.deps.StoreTimeout, c.log
	c.store.run(func() {
		ctx, cancel := context.WithTimeout(l.ctx, timeout)
		defer cancel()
		err := ctx.Err()
		if err == nil {
			err = st.MarkPreKeysUploaded(ctx, id, top)
		}
		if err != nil {
			log.Warn("mark prekeys uploaded (they will be offered again)", slog.String("error", err.Error()))
		}
	})
}
