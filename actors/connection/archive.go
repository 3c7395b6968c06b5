package connection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/store"
)

// ConfirmWipe is the operator's confirmation of a wipe the WipeGuard held
// (POST /api/wipes/confirm): the account archives its device, as it would
// have without the guard, and goes on (pairs again, or waits after a ban).
// An account with no held wipe answers a Result that is not OK.
type ConfirmWipe struct{}

// RestoreArchived puts an archived device of the account back
// (POST /api/archive/{id}/restore) and logs it in. It is refused while the
// account holds a paired device. The answer is a *RestoreResult.
type RestoreArchived struct {
	// Key names the archive entry (store.ArchiveEntry.Key).
	Key string
}

// RestoreResult answers RestoreArchived.
type RestoreResult struct {
	// Entry is the restored entry when Err is nil.
	Entry store.ArchiveEntry
	// Err wraps store.ErrNotFound (no such entry), store.ErrPaired (the
	// account has a paired device) or says what else failed.
	Err error
}

// wipeOrder says how the stored device goes: a server-initiated wipe
// archives it (restorable), the operator's own logout deletes it (the
// device is certainly unlinked).
type wipeOrder struct {
	archive bool
	reason  string // why, for the archive entry
}

func newWipeOrder(byOperator bool, err error) *wipeOrder {
	if byOperator {
		return &wipeOrder{}
	}
	reason := "logged out by the server"
	if err != nil {
		reason = err.Error()
	}
	return &wipeOrder{archive: true, reason: reason}
}

// apply archives or deletes the device of id. Nothing to archive is not an
// error: the device is gone either way.
func (o *wipeOrder) apply(ctx context.Context, st store.Store, id string) error {
	if !o.archive {
		return st.Delete(ctx, id)
	}
	_, err := st.Archive(ctx, id, o.reason)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

// heldWipe is a server-initiated logout whose wipe the WipeGuard holds.
type heldWipe struct {
	out outcome
	err error
}

// mayWipe asks the WipeGuard whether the server's logout (out, err) may
// wipe the device now. When it may not, the account stops with the
// mass_logout alarm and keeps its device, in memory and in the store.
func (c *conn) mayWipe(out outcome, err error) bool {
	if c.deps.WipeGuard == nil || c.deps.WipeGuard.Allow(c.deps.AccountID) {
		return true
	}
	c.held = &heldWipe{out: out, err: err}
	c.goal.connect = false
	c.failures, c.lost = 0, false
	c.setPhase(phaseStopped, events.KindAlarm, fmt.Errorf("%w: %w", err, ErrWipePaused),
		func(e *events.Event) { e.Alarm = events.AlarmMassLogout })
	return false
}

func (c *conn) onConfirmWipe(ctx actor.Context) {
	h := c.held
	if h == nil {
		c.respond(ctx, false, "no wipe of this account awaits confirmation")
		return
	}
	c.held = nil
	c.log.Info("wipe confirmed by the operator")
	c.goal.connect = true
	c.loggedOut(ctx, h.out, h.err, newWipeOrder(false, h.err))
	c.respond(ctx, true, "")
}

func (c *conn) onRestoreArchived(ctx actor.Context, m *RestoreArchived) {
	if c.dev.Paired() {
		ctx.Respond(&RestoreResult{Err: fmt.Errorf("%w (%s): log it out first", store.ErrPaired, c.dev.JID)})
		return
	}
	// The current attempt (pairing, most likely) ends first, so that no
	// pairing saves a new device over the restored one.
	l := c.newAttempt(ctx)
	st, id, timeout := c.deps.Store, c.deps.AccountID, c.deps.StoreTimeout
	self, root, sender := ctx.Self(), ctx.ActorSystem().Root, ctx.Sender()
	c.store.run(func() {
		rctx, cancel := context.WithTimeout(l.ctx, timeout)
		defer cancel()
		e, err := st.RestoreArchived(rctx, id, m.Key)
		root.Send(self, &archiveRestored{gen: l.gen, sender: sender, entry: e, err: err})
	})
}

func (c *conn) onArchiveRestored(ctx actor.Context, m *archiveRestored) {
	if m.sender != nil {
		ctx.Send(m.sender, &RestoreResult{Entry: m.entry, Err: m.err})
	}
	if m.gen != c.cur.gen {
		return // another attempt began meanwhile; it has the store's word
	}
	if m.err != nil {
		c.log.Info("restore refused", slog.String("error", m.err.Error()))
		if c.goal.connect {
			c.begin(ctx) // nothing changed: go on as before
		}
		return
	}
	c.log.Info("archived device restored", slog.String("entry", m.entry.Key))
	c.dev, c.wipe = nil, nil
	c.goal.connect, c.failures, c.lost = true, 0, false
	c.begin(ctx)
}

// archiveRestored: the store answered a RestoreArchived. It is handled
// whatever the generation: the requester waits for the answer.
type archiveRestored struct {
	gen    uint64
	sender *actor.PID
	entry  store.ArchiveEntry
	err    error
}

func (*archiveRestored) IgnoreDeadLetterLogging() {}
