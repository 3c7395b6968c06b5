package connection

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"golang.org/x/time/rate"

	"github.com/wafleet/wafleet/actors/pairing"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/wire/payload"
)

// New returns the producer of a connection actor for one account. Its
// spawner runs one actor per account at a time, and names each one afresh
// (package supervisor): the actor's goroutines (socket reader and writer,
// timers, store jobs) may still send to its PID after it stopped, and must
// not reach a successor registered under the same name.
func New(deps Deps) actor.Producer {
	deps.defaults()
	d := &deps // read only from here on: every incarnation shares it
	log := deps.Logger.With(slog.String("account", deps.AccountID))
	queue := &storeQueue{calls: deps.StoreCalls} // shared too: one writer across incarnations
	return func() actor.Actor {
		return &conn{
			deps:    d,
			log:     log,
			store:   queue,
			phase:   phaseStopped, // until Started
			cur:     new(attempt),
			limiter: rate.NewLimiter(rate.Limit(d.SendRate.PerMinute/60), d.SendRate.Burst),
		}
	}
}

// Props is New wrapped in actor props, with a lock-free mailbox: a fleet
// keeps thousands of these actors, and the default mailbox's ring buffer
// keeps the size its largest burst of messages gave it (the stanzas of a
// login's offline burst), where the lock-free one holds only the messages
// waiting.
func Props(deps Deps) *actor.Props {
	return actor.PropsFromProducer(New(deps), actor.WithMailbox(actor.UnboundedLockfree()))
}

// conn is the connection actor. Every field is touched only inside Receive.
// What the operator asked (goal), what is (phase), what lives across
// attempts (the device, the backoff count) and what lives for one attempt
// (cur) are kept apart.
type conn struct {
	deps   *Deps // shared by the account's incarnations; never written
	log    *slog.Logger
	store  *storeQueue // every store call of the account, in order
	ctx    context.Context
	cancel context.CancelFunc

	goal  goal
	phase phase    // what is; events.State derives from it
	cur   *attempt // the current attempt, replaced wholesale by the next
	// ending is why the connection ends while end applies it: the
	// Reason of the event setPhase publishes next.
	ending events.Reason

	dev  *store.Device // replaced whole, never changed in place: jobs off the actor share it
	wipe *wipeOrder    // wipe the stored device before the next attempt (nil: keep it)
	held *heldWipe     // a server-initiated wipe the WipeGuard holds (phase stopped)

	dials       int
	failures    int // consecutive failures, for the backoff
	lastDelay   time.Duration
	lost        bool // the next attempt follows a lost connection (a reconnect)
	connectedAt time.Time
	idPrefix    string
	idSeq       uint64

	outdated     payload.Version // refused by the server (405): waiting for a newer one
	outdatedSaid bool            // the client_outdated alarm is raised

	reply *pendingReply // the pairing reply, until written (it may outlive its attempt)

	retries    map[string]int // retry receipts sent, by message id (receive.go)
	failLog    failLog        // the log of messages that did not decrypt (faillog.go)
	recv       *receiver      // what decrypt jobs share, for dev (receive.go)
	recentSent recentSends    // messages sent, for devices' retry receipts (retry.go)
	limiter    *rate.Limiter  // the account's send rate (Deps.SendRate)
}

// goal is what the operator (or the account's history) asks for, kept
// apart from the phase: replaced, refused, banned and unpaired accounts do
// not want to connect; *Pair, *Resume and *Logout make them want it again.
type goal struct {
	connect bool // be connected
	logout  bool // a logout asked while offline: connect, unlink, then wipe
	// linkPhone pairs by link code for this number instead of QR (Pair's
	// Phone, or Deps.LinkPhone from the start); cleared once paired.
	linkPhone string
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
	if !current(c.cur.gen, msg) {
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
		c.onPair(ctx, m)
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
	case *SendText:
		c.onSendText(ctx, m)
	case *sendClaimed:
		c.onSendClaimed(ctx, m)
	case *sendIQ:
		c.onSendIQ(ctx, m)
	case *sendReady:
		c.onSendReady(ctx, m)
	case *loaded:
		c.onLoaded(ctx, m)
	case *dialed:
		c.onDialed(ctx, m)
	case *frameIn:
		c.onFrame(ctx, m.data)
	case *received:
		c.onReceived(ctx, m)
	case *readFailed:
		c.onReadFailed(ctx, m.err)
	case *written:
		c.onWritten(ctx, m)
	case *retry:
		c.cur.retryTimer = nil
		if c.goal.connect {
			c.begin(ctx)
		}
	case *pingDue:
		c.cur.pingTimer = nil
		c.onPingDue(ctx)
	case *pingTimeout:
		if m.id == c.cur.pingID {
			c.onPingMissed(ctx)
		}
	case *logoutTimeout:
		c.cur.logoutTimer = nil
		if c.cur.logoutID != "" {
			c.log.Warn("unlink request unanswered; wiping the device anyway")
			c.finishLogout(ctx)
		}
	case *activeTimeout:
		c.cur.activeTimer = nil
		switch {
		case !c.cur.activeSent:
			c.log.Warn("prekeys not settled in time; going active")
			c.goActive(ctx)
		case c.cur.activeID != "":
			c.log.Warn("the server did not answer <active/>; going on")
			c.cur.activeID = ""
			c.connected()
		}
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
		if m.Gen == c.cur.gen {
			c.cur.lastCode = true
		}
	case *pairing.Failed:
		if m.Gen == c.cur.gen && c.cur.child != nil {
			c.end(ctx, outUnpaired, m.Err)
		}
	case *pairing.Expired:
		if m.Gen == c.cur.gen && c.cur.child != nil {
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

func (c *conn) onStarted(ctx actor.Context) {
	c.ctx, c.cancel = context.WithCancel(context.Background())
	var b [2]byte
	r := c.deps.Rand
	b[0], b[1] = byte(r()*256), byte(r()*256)
	c.idPrefix = fmt.Sprintf("%d.%d-", b[0], b[1])
	c.goal.connect = true
	c.goal.linkPhone = c.deps.LinkPhone
	c.begin(ctx)
}

func (c *conn) onStopping(ctx actor.Context, stopping bool) {
	c.goal.connect = false
	// The system stops the pairing child itself; a second Stop from here
	// could reach it dead (a dead letter).
	c.cur.child = nil
	c.endAttempt(ctx)
	c.failLog.flush(c.log, c.deps.Now(), true)
	if c.cancel != nil {
		c.cancel()
	}
	if stopping {
		c.setPhase(phaseStopped, events.KindState, nil, nil)
	}
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
		State: c.phase.state(), Want: c.goal.connect, Gen: c.cur.gen, Dials: c.dials,
		Timer: c.cur.retryTimer != nil, Child: c.cur.child != nil,
		Paired: c.dev != nil && c.dev.Paired(), Attempt: c.failures, Delay: c.lastDelay,
	}
}
