package connection

import (
	"log/slog"

	"github.com/wafleet/wafleet/events"
)

// phase is where the account is in its lifecycle: the one internal state
// of the actor. The public events.State derives from it (phase.state).
// setPhase is the only place it changes; the diagram and the table of
// transitions are in the package doc (doc.go), checked against
// transitions by a test.
type phase int

const (
	phaseLoading     phase = iota // the device is loaded (wiped first if ordered) or created
	phaseDialing                  // the connect limiter, the dial and the Noise handshake (one Dialer call)
	phaseRegistering              // handshake done with an unpaired device: waiting for <pair-device>
	phasePairing                  // the pairing child shows QR codes; the pairing is saved and answered
	phaseLoggingIn                // handshake done with a paired device: <success>, prekeys, <active/>
	phaseActive                   // logged in and active: keepalive pings
	phaseBackoff                  // waiting to retry: backoff, a temporary ban's expiry, a newer version
	phaseUnpaired                 // the QR codes ran out: waiting for *Pair
	phaseLoggedOut                // the device was unlinked and goes; pairing follows or waits for *Pair
	phaseStopped                  // not reconnecting: stopped, refused, replaced, handed over, wipe held

	// phaseAny stands for every phase in transitions.
	phaseAny phase = -1
)

var phaseNames = map[phase]string{
	phaseLoading: "loading", phaseDialing: "dialing", phaseRegistering: "registering",
	phasePairing: "pairing", phaseLoggingIn: "logging_in", phaseActive: "active",
	phaseBackoff: "backoff", phaseUnpaired: "unpaired", phaseLoggedOut: "logged_out",
	phaseStopped: "stopped", phaseAny: "any",
}

func (p phase) String() string { return phaseNames[p] }

// state is the public state of the phase.
func (p phase) state() events.State {
	switch p {
	case phasePairing:
		return events.StatePairing
	case phaseActive:
		return events.StateConnected
	case phaseBackoff:
		return events.StateBackoff
	case phaseUnpaired:
		return events.StateUnpaired
	case phaseLoggedOut:
		return events.StateLoggedOut
	case phaseStopped:
		return events.StateStopped
	}
	return events.StateConnecting
}

// words says the phase in an operator's words, for refusals: "account is
// " + words.
func (p phase) words() string {
	switch p {
	case phaseBackoff:
		return "waiting to reconnect (backoff)"
	case phaseLoggedOut:
		return "logged out"
	}
	return string(p.state())
}

// transition is one edge of the state diagram.
type transition struct {
	from, to phase
	why      string
}

// transitions are the phase changes the actor makes. An event in the same
// phase (paired, pairing undone, a reconnect) is no change.
var transitions = []transition{
	{phaseAny, phaseLoading, "begin: no device in memory, or it must be wiped"},
	{phaseAny, phaseDialing, "begin with the device in memory, or once it is loaded"},
	{phaseDialing, phaseRegistering, "handshake done; the device is unpaired"},
	{phaseDialing, phaseLoggingIn, "handshake done; the device is paired"},
	{phaseRegistering, phasePairing, "<pair-device>: the pairing child shows QR codes"},
	{phaseRegistering, phaseLoggingIn, "<success> all the same (a warning: the device is not paired)"},
	{phaseLoggingIn, phaseActive, "<active/> answered, or its wait over"},
	{phasePairing, phaseUnpaired, "the QR codes ran out"},
	{phaseAny, phaseBackoff, "the attempt failed: wait, then begin"},
	{phaseAny, phaseLoggedOut, "the device was unlinked (server or *Logout)"},
	{phaseAny, phaseStopped, "the actor stops, or the account must not reconnect"},
}

// msgUndocumentedPhase is logged (a bug) for a phase change transitions
// lacks.
const msgUndocumentedPhase = "phase change missing from the state diagram"

// allowed reports whether transitions has the edge from → to.
func allowed(from, to phase) bool {
	for _, t := range transitions {
		if (t.from == from || t.from == phaseAny) && t.to == to {
			return true
		}
	}
	return false
}

// setPhase is the one place the phase changes. It publishes an event of
// kind (its one log line is the event's, written by the process that
// consumes the bus); with kind "" it publishes a KindState event
// only when the public state changes (loading → dialing does not). An
// event in the same phase (to == c.phase) is published as well. A phase change
// within one state is logged here, at debug level.
func (c *conn) setPhase(to phase, kind events.Kind, err error, mod func(*events.Event)) {
	from := c.phase
	c.phase = to
	if from != to && !allowed(from, to) {
		c.log.Error(msgUndocumentedPhase, slog.String("from", from.String()), slog.String("phase", to.String()))
	}
	if kind == "" {
		if from.state() == to.state() {
			c.log.Debug("account "+string(to.state()), slog.String("phase", to.String()), slog.String("from_phase", from.String()))
			return
		}
		kind = events.KindState
	}
	e := events.Event{Account: c.deps.AccountID, Kind: kind, State: to.state(), From: from.state(), Reason: c.ending, Time: c.deps.Now()}
	c.ending = "" // one event tells of a connection's end
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
}

// report publishes an event in the current phase. It tells of no
// connection's end: a report made while a connection ends (a send failed
// by it) leaves the reason to the disconnect event that follows.
func (c *conn) report(kind events.Kind, err error, mod func(*events.Event)) {
	ending := c.ending
	c.ending = ""
	c.setPhase(c.phase, kind, err, mod)
	c.ending = ending
}
