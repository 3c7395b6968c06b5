package connection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/wafleet/wafleet/actors/pairing"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/wire/node"
)

// The pairing transaction. The pairing child shows the QR codes and
// verifies pair-success; this actor owns everything that follows, in the
// reference client's order: save the paired device, then write the
// pair-device-sign reply; a failed save is answered with an error IQ, and a
// saved pairing whose reply never reaches the server is undone.

// pendingReply is a pair-device-sign reply handed to the writer: the
// account counts as paired from then on, but if the reply is never written
// the pairing is undone.
type pendingReply struct {
	token  uint64
	paired *store.Device
}

func (c *conn) onPairDevice(ctx actor.Context, n node.Node) {
	if c.dev.Paired() {
		c.log.Warn("pair-device for a paired device ignored")
		return
	}
	if c.cur.child == nil {
		c.cur.lastCode = false
		c.cur.child = ctx.Spawn(actor.PropsFromProducer(pairing.New(pairing.Deps{
			AccountID:  c.deps.AccountID,
			Gen:        c.cur.gen,
			Device:     c.dev,
			Events:     c.deps.Events,
			Logger:     c.deps.Logger,
			Schedule:   pairing.Schedule{First: c.deps.QR.First, Next: c.deps.QR.Next},
			ClientType: c.deps.clientType(),
			Now:        c.deps.Now,
			LinkPhone:  c.goal.linkPhone,
		})))
		c.setPhase(phasePairing, events.KindState, nil, nil)
	}
	ctx.Send(c.cur.child, &pairing.PairDevice{Node: n})
}

func (c *conn) onPairingSend(ctx actor.Context, m *pairing.Send) {
	if m.Gen != c.cur.gen {
		return
	}
	c.write(ctx, m.Node, 0)
}

// onPairingFinish takes the child's verdict on a pair-success: a verified
// pairing is saved (pairSaved goes on), a refused one answered.
func (c *conn) onPairingFinish(ctx actor.Context, m *pairing.Finish) {
	if m.Gen != c.cur.gen {
		return // its connection is gone; nothing was saved
	}
	if c.cur.child != nil {
		ctx.Stop(c.cur.child)
		c.cur.child = nil
	}
	if m.Err != nil {
		c.refusePairing(ctx, m)
		return
	}
	c.log.Info("pair-success verified; saving the paired device", slog.String("jid", m.Paired.JID))
	c.cur.saving = m.Paired
	l, st, timeout := c.cur.link, c.deps.Store, c.deps.StoreTimeout
	self, root := ctx.Self(), ctx.ActorSystem().Root
	c.store.run(func() {
		if l.ctx.Err() != nil {
			return // the attempt ended before the save: nothing to reply to
		}
		// Not bound to the attempt: a save once begun completes, and
		// closeLink queues its undo behind it.
		sctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := st.Save(sctx, m.Paired)
		cancel()
		root.Send(self, &pairSaved{gen: l.gen, fin: m, err: err})
	})
}

// onPairSaved replies to the server once the pairing is saved, or answers
// with an error when the save failed.
func (c *conn) onPairSaved(ctx actor.Context, m *pairSaved) {
	c.cur.saving = nil
	if m.err != nil {
		c.log.Error("save the paired device", slog.String("error", m.err.Error()))
		c.refusePairing(ctx, m.fin.SaveFailed(m.err))
		return
	}
	// Paired as soon as the reply is on its way: the server's 515 may
	// arrive before the writer reports, and the next dial must log in.
	paired, token := m.fin.Paired, nextGen()
	c.dev = paired
	c.reply = &pendingReply{token: token, paired: paired}
	c.cur.expectRestart = true
	c.log.Info("paired; sending pair-device-sign", slog.String("jid", paired.JID))
	c.write(ctx, m.fin.Reply, token)
}

// refusePairing writes the error answer to a pair-success and closes the
// connection once it is written, reporting m.Err.
func (c *conn) refusePairing(ctx actor.Context, m *pairing.Finish) {
	token := nextGen()
	c.cur.closeToken, c.cur.endErr = token, m.Err
	if err := c.write(ctx, m.Reply, token); errors.Is(err, errNotConnected) {
		c.end(ctx, outBackoff, m.Err)
	}
}

func (c *conn) onReplyWritten(ctx actor.Context, w *written) {
	r := c.reply
	c.reply = nil
	if w.err != nil {
		c.replyFailed(ctx, r, w.err)
		if w.gen == c.cur.gen {
			c.end(ctx, outBackoff, fmt.Errorf("send pair-device-sign: %w", w.err))
		}
		return
	}
	c.goal.linkPhone = ""
	c.report(events.KindPaired, nil, func(e *events.Event) { e.JID = r.paired.JID })
}

// replyFailed undoes a pairing whose reply was never written.
func (c *conn) replyFailed(ctx actor.Context, r *pendingReply, err error) {
	c.log.Warn("pair-device-sign not sent; undoing the pairing", slog.String("error", err.Error()))
	if c.dev == r.paired {
		c.dev = pairing.Unpaired(r.paired)
		c.cur.expectRestart = false
	}
	c.undoPairing(ctx, r.paired)
}

// undoPairing queues the undo of a saved pairing (pairing.Restore) behind
// every store call queued before it. A failure is logged here, where it
// happens, and reaches last_error through restored.
func (c *conn) undoPairing(ctx actor.Context, paired *store.Device) {
	st, timeout, log := c.deps.Store, c.deps.StoreTimeout, c.log
	self, root := ctx.Self(), ctx.ActorSystem().Root
	c.store.run(func() {
		rc, cancel := context.WithTimeout(context.Background(), timeout)
		err := pairing.Restore(rc, st, paired)
		cancel()
		if err != nil {
			log.Error("undo the pairing", slog.String("error", err.Error()))
		}
		root.Send(self, &restored{err: err})
	})
}

// onRestored reports an undone pairing, and a failed undo, in last_error.
func (c *conn) onRestored(m *restored) {
	err := errPairingUndone
	if m.err != nil {
		err = fmt.Errorf("%w, but restoring the store failed: %w", errPairingUndone, m.err)
	}
	c.report(events.KindState, err, nil)
}
