package connection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/wafleet/wafleet/events"
)

// How an attempt ends: end applies the outcome a connection ended with
// (classify.go names it), the phase the account goes to and what becomes
// of the device.

// errHandedOver is the last error of an account whose lease ended here.
var errHandedOver = errors.New("lease lost: the account runs on another instance")

// end closes the current connection (if any) and applies the outcome. It
// is the only way a connection ends. Once the lease is gone (fleet mode),
// every end but a logout is a hand-over.
func (c *conn) end(ctx actor.Context, out outcome, err error) {
	if c.deps.LeaseHeld != nil && !c.deps.LeaseHeld() && out != outLoggedOut && out != outBanned {
		out = outHandedOver
	}
	c.ending = reasonFor(out, err)
	defer func() { c.ending = "" }()
	wasConnected := c.phase == phaseActive
	// What the ending attempt knew; endAttempt replaces it.
	expected, dialed := c.cur.expectRestart, c.cur.dialVersion
	byOperator := c.cur.unlinked || c.goal.logout
	c.endAttempt(ctx)
	if c.goal.logout {
		// The connection made to unlink the device is gone: unlink locally.
		c.goal.logout = false
		if out != outLoggedOut && out != outBanned {
			c.log.Warn("could not tell the server; unlinking locally (the phone keeps listing the device until it is removed there)", slog.Any("error", err))
			out, err, c.goal.connect = outLoggedOut, nil, true
		}
	}
	if (out == outLoggedOut || out == outBanned) && !byOperator && !c.mayWipe(out, err) {
		return
	}
	var serr *ServerError
	errors.As(err, &serr)
	switch out {
	case outReconnectNow:
		if expected && err == nil {
			c.lost, c.ending = false, "" // the restart pairing asks for: no disconnect
		} else {
			c.lost = true
			c.failures++ // the next 515 before a stable connection backs off
			c.setPhase(c.beginPhase(), events.KindDisconnected, err, nil)
		}
		c.begin(ctx)
	case outBackoff:
		if wasConnected && c.deps.Backoff.Stable(c.deps.Now().Sub(c.connectedAt)) {
			c.failures = 0
		}
		delay := c.deps.Backoff.Next(c.failures, c.deps.Rand)
		c.failures++
		c.lastDelay = delay
		c.lost = true
		c.setPhase(phaseBackoff, events.KindDisconnected, err, func(e *events.Event) { e.Delay = delay })
		c.cur.retryTimer = c.after(ctx, delay, &retry{gen: c.cur.gen})
	case outLoggedOut, outBanned:
		c.loggedOut(ctx, out, err, newWipeOrder(byOperator, err))
	case outStop:
		c.goal.connect = false
		c.setPhase(phaseStopped, events.KindAlarm, err, nil)
	case outTempBanned:
		delay := c.deps.Backoff.Max
		if serr != nil && serr.Expire > 0 {
			delay = serr.Expire
		}
		c.lost = true
		c.lastDelay = delay
		until := c.deps.Now().Add(delay).UTC().Format(time.RFC3339)
		c.setPhase(phaseBackoff, events.KindDisconnected, fmt.Errorf("%w; reconnecting by itself at %s", err, until), func(e *events.Event) { e.Delay = delay })
		c.cur.retryTimer = c.after(ctx, delay, &retry{gen: c.cur.gen})
	case outOutdated:
		c.lost = true
		refused := dialed
		if c.deps.Versions.Current() != refused {
			// A newer version came while this attempt was on its way.
			c.setPhase(c.beginPhase(), events.KindDisconnected, err, nil)
			c.begin(ctx)
			return
		}
		c.outdated, c.outdatedSaid = refused, false
		c.setPhase(phaseBackoff, events.KindDisconnected, fmt.Errorf("%w; looking for a newer version", err), nil)
		c.deps.Versions.Refused(refused)
	case outUnpaired:
		c.goal.connect = false
		c.lost = false
		c.setPhase(phaseUnpaired, events.KindState, err, nil)
	case outHandedOver:
		c.goal.connect, c.lost = false, false
		why := errHandedOver
		if err != nil {
			why = fmt.Errorf("%w; the connection ended with: %w", errHandedOver, err)
		}
		c.setPhase(phaseStopped, events.KindDisconnected, why, nil)
	}
}

// reasonFor classifies why a connection ended with out and err, in the
// bounded words of events.Reason.
func reasonFor(out outcome, err error) events.Reason {
	switch out {
	case outHandedOver:
		return events.ReasonHandedOver
	case outLoggedOut:
		return events.ReasonLoggedOut
	case outBanned:
		return events.ReasonBanned
	case outTempBanned:
		return events.ReasonTemporarilyBanned
	case outOutdated:
		return events.ReasonOutdated
	case outUnpaired:
		return events.ReasonPairingExpired
	case outReconnectNow:
		return events.ReasonServerRestart
	case outStop:
		if errors.Is(err, ErrReplaced) {
			return events.ReasonReplaced
		}
		return events.ReasonRefused
	}
	for _, c := range []struct {
		err    error
		reason events.Reason
	}{
		{ErrKeepaliveTimeout, events.ReasonKeepaliveTimeout},
		{ErrWriteQueueFull, events.ReasonWriteQueueFull},
		{ErrUnacked, events.ReasonUnacked},
		{ErrServer, events.ReasonServerError},
		{ErrRestart, events.ReasonServerRestart},
		{ErrStreamEnd, events.ReasonStreamEnd},
	} {
		if errors.Is(err, c.err) {
			return c.reason
		}
	}
	return events.ReasonNetwork
}

// loggedOut applies a logout (out is outLoggedOut or outBanned): the
// device goes as order says, and the account pairs again (after a ban only
// with AutoRepair; else it waits for Pair, the device wiped now).
func (c *conn) loggedOut(ctx actor.Context, out outcome, err error, order *wipeOrder) {
	c.dev, c.wipe = nil, order
	c.failures, c.lost = 0, false
	if out == outLoggedOut {
		c.setPhase(phaseLoggedOut, events.KindLoggedOut, err, nil)
		if c.goal.connect {
			c.begin(ctx)
		}
		return
	}
	c.setPhase(phaseLoggedOut, events.KindAlarm, err, nil)
	if c.deps.AutoRepair {
		c.log.Info("registering again (auto-repair is on)")
		c.goal.connect = true
		c.begin(ctx)
		return
	}
	c.goal.connect = false
	c.wipeNow(ctx)
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
