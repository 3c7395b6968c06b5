package connection

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
	"github.com/wafleet/wafleet/wire/payload"
)

// The operator's requests (Pair, Resume, Logout, Resave) and the version
// source's news: they change the goal, then begin an attempt or end one.

func (c *conn) respond(ctx actor.Context, ok bool, reason string) {
	if ctx.Sender() != nil {
		ctx.Respond(&Result{OK: ok, State: c.phase.state(), Reason: reason})
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

func (c *conn) onPair(ctx actor.Context, m *Pair) {
	if c.phase == phaseStopped {
		c.respond(ctx, false, "account is stopped: restart it")
		return
	}
	switch c.phase {
	case phaseUnpaired, phaseLoggedOut:
	case phasePairing:
		if m.Phone != "" {
			break // switch to (or restart) pairing by link code
		}
		if c.goal.linkPhone != "" {
			c.respond(ctx, false, "account is pairing by phone number already: type its link code on the phone")
			return
		}
		c.respond(ctx, false, "account is pairing already: scan its QR code")
		return
	case phaseActive:
		c.respond(ctx, false, "account is connected: log it out to pair it again")
		return
	default:
		c.respond(ctx, false, fmt.Sprintf("account is %s: pairing is re-armed only when unpaired or logged out", c.phase.words()))
		return
	}
	if m.Phone != "" {
		c.log.Info("pairing by link code re-armed")
	} else {
		c.log.Info("pairing re-armed")
	}
	c.goal.linkPhone = m.Phone
	c.goal.connect, c.failures, c.lost = true, 0, false
	c.begin(ctx) // a new attempt: the backoff's timer goes with the old one
	c.respond(ctx, true, "")
}

func (c *conn) onResume(ctx actor.Context) {
	if c.phase != phaseStopped {
		c.respond(ctx, false, fmt.Sprintf("account is %s, not stopped", c.phase.words()))
		return
	}
	c.log.Info("restarting the stopped account")
	c.goal.connect, c.failures, c.lost = true, 0, false
	c.outdated, c.outdatedSaid = payload.Version{}, false
	c.begin(ctx)
	c.respond(ctx, true, "")
}

func (c *conn) onLogout(ctx actor.Context) {
	switch {
	case c.dev == nil || !c.dev.Paired():
		c.respond(ctx, false, "account is not paired: there is no linked device to unlink")
		return
	case c.cur.logoutID != "" || c.goal.logout:
	case c.cur.loggedIn && c.cur.link != nil:
		c.sendLogout(ctx)
	default:
		// Offline: connect to tell the server first, so the phone stops
		// listing the device; end() unlinks locally if that fails.
		c.log.Info("connecting to unlink the device")
		c.goal.logout = true
		c.goal.connect = true
		if c.cur.link == nil {
			c.outdated, c.outdatedSaid = payload.Version{}, false
			c.begin(ctx)
		}
	}
	c.respond(ctx, true, "")
}

// sendLogout asks the server to remove the device and waits for the answer
// (or the server's stream error or close) before wiping it.
func (c *conn) sendLogout(ctx actor.Context) {
	c.goal.logout = false
	id := c.newID()
	own, err := jid.Parse(c.dev.JID)
	if err == nil {
		err = c.write(ctx, node.IQ(id, jid.ServerJID, "set", "md",
			node.New("remove-companion-device", node.JIDAttr("jid", own), node.StrAttr("reason", "user_initiated"))), 0)
	}
	if err != nil {
		c.goal.connect, c.cur.unlinked = true, true
		c.end(ctx, outLoggedOut, nil)
		return
	}
	c.log.Info("unlinking the device")
	c.cur.logoutID = id
	c.cur.logoutTimer = c.after(ctx, c.deps.Keepalive.Timeout, &logoutTimeout{gen: c.cur.gen})
}

func (c *conn) finishLogout(ctx actor.Context) {
	c.cur.logoutID = ""
	c.goal.connect, c.cur.unlinked = true, true
	c.end(ctx, outLoggedOut, nil)
}

func (c *conn) onVersionUpdated(ctx actor.Context) {
	if c.outdated.IsZero() || c.deps.Versions.Current() == c.outdated {
		return
	}
	c.log.Info("a newer client version is available; reconnecting", slog.String("refused", c.outdated.String()), slog.String("version", c.deps.Versions.Current().String()))
	c.outdated, c.outdatedSaid = payload.Version{}, false
	c.goal.connect, c.failures = true, 0
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
	c.setPhase(phaseStopped, events.KindAlarm, err, nil)
}
