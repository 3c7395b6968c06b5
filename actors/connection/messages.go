package connection

import (
	"sync/atomic"
	"time"

	"github.com/wafleet/wafleet/actors/pairing"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/store"
)

// Messages from outside (the supervisor and the HTTP API). When sent with
// Request, the actor answers with a *Result.

// Pair re-arms pairing (POST /api/accounts/{id}/pair). It is accepted when
// the account is unpaired (its QR codes ran out) or logged out; otherwise
// nothing changes and the Result says why. With Phone set (digits,
// international, no leading 0) it pairs by link code instead of QR, and is
// accepted while pairing too: the attempt starts over and a link code
// (events.KindLinkCode) replaces the QR codes.
type Pair struct{ Phone string }

// Logout unlinks the account (POST /api/accounts/{id}/logout):
//
//   - when connected, it sends <remove-companion-device reason=user_initiated>
//     for the device's own JID and waits up to Keepalive.Timeout for the
//     answer (or the server's stream error or close);
//   - then, or at once when not connected (the phone then still lists the
//     device until it is removed there), it closes the connection, wipes the
//     Device from the store, publishes KindLoggedOut and starts a fresh
//     pairing with new keys and a new QR code.
//
// A device that is not paired has nothing to unlink: the Result is not OK
// and nothing changes.
type Logout struct{}

// Resume restarts a stopped account (POST /api/accounts/{id}/restart, and a
// config reload) from the device it holds: nothing is wiped, a paired
// device logs in again with the current client version, through the
// connect limiter. It is accepted only in state stopped (a refusal by the
// server, a replaced session, a client version with no newer one); the
// Result of another state names it.
type Resume struct{}

// Resave asks the actor to write the device it holds to the store again,
// as after the store (Redis) lost its data. It has no reply.
type Resave struct{}

// VersionUpdated tells the account that a newer WhatsApp Web version is
// available (VersionSource.Current): an account waiting after a 405
// reconnects with it, through the connect limiter. Others ignore it.
type VersionUpdated struct{}

// VersionUnavailable tells the account that no newer version can be had for
// now: an account waiting after a 405 raises the client_outdated alarm and
// keeps waiting for VersionUpdated. Err says why.
type VersionUnavailable struct {
	Err error
}

// Result answers Pair, Resume and Logout sent with Request.
type Result struct {
	// OK is true when the request was accepted.
	OK bool
	// State is the account's state after the request was handled.
	State events.State
	// Reason says why the request was refused.
	Reason string
}

// gens numbers every connection attempt and every confirmed write of every
// connection actor of the process, so that a message from an attempt of a
// previous incarnation (after a restart) can never look current.
var gens atomic.Uint64

func nextGen() uint64 { return gens.Add(1) }

// Internal messages. Every one carries the generation of the attempt that
// produced it; the actor drops those whose generation is not current.
type (
	// loaded: the device is ready (loaded, or created and saved).
	loaded struct {
		gen uint64
		dev *store.Device
		err error
	}
	// dialed: the dial and handshake ended.
	dialed struct {
		gen  uint64
		sess Session
		err  error
	}
	// frameIn: the session received a frame (a copy the actor owns), to
	// decode.
	frameIn struct {
		gen  uint64
		data []byte
	}
	// readFailed: receiving ended (Session.Watch's onEnd).
	readFailed struct {
		gen uint64
		err error
	}
	// written: a frame with a token was written (err nil) or not.
	written struct {
		gen   uint64
		token uint64
		err   error
	}
	// retry: the backoff delay is over.
	retry struct{ gen uint64 }
	// pingDue: time to send a keepalive ping.
	pingDue struct{ gen uint64 }
	// pingTimeout: the ping id got no answer in time.
	pingTimeout struct {
		gen uint64
		id  string
	}
	// logoutTimeout: the unlink request got no answer in time.
	logoutTimeout struct{ gen uint64 }
	// activeTimeout: the <active/> IQ got no answer in time.
	activeTimeout struct{ gen uint64 }
	// preKeysReady: the prekeys to upload are stored (none: no upload
	// needed).
	preKeysReady struct {
		gen  uint64
		keys []store.PreKey
		err  error
	}
	// wiped: the device was archived or deleted from the store (a ban).
	wiped struct {
		gen      uint64
		err      error
		archived bool
	}
	// pairSaved: the paired device was saved (err nil) or not.
	pairSaved struct {
		gen uint64
		fin *pairing.Finish
		err error
	}
	// restored: a pairing that could not be confirmed was undone.
	restored struct{ err error }

	// inspect asks for a snapshot (tests).
	inspect struct{}
	// snapshot answers inspect.
	snapshot struct {
		State   events.State
		Want    bool
		Gen     uint64
		Dials   int
		Timer   bool
		Child   bool
		Paired  bool
		Attempt int
		Delay   time.Duration
	}
)

// Late messages for a stopped actor are expected; keep them out of the
// dead-letter log.
func (*loaded) IgnoreDeadLetterLogging()        {}
func (*dialed) IgnoreDeadLetterLogging()        {}
func (*frameIn) IgnoreDeadLetterLogging()       {}
func (*readFailed) IgnoreDeadLetterLogging()    {}
func (*written) IgnoreDeadLetterLogging()       {}
func (*retry) IgnoreDeadLetterLogging()         {}
func (*pingDue) IgnoreDeadLetterLogging()       {}
func (*pingTimeout) IgnoreDeadLetterLogging()   {}
func (*logoutTimeout) IgnoreDeadLetterLogging() {}
func (*activeTimeout) IgnoreDeadLetterLogging() {}
func (*preKeysReady) IgnoreDeadLetterLogging()  {}
func (*wiped) IgnoreDeadLetterLogging()         {}
func (*pairSaved) IgnoreDeadLetterLogging()     {}
func (*restored) IgnoreDeadLetterLogging()      {}

// msgGen returns the generation of an internal message, and false for
// messages that carry none.
func msgGen(m any) (uint64, bool) {
	switch m := m.(type) {
	case *loaded:
		return m.gen, true
	case *dialed:
		return m.gen, true
	case *frameIn:
		return m.gen, true
	case *received:
		return m.gen, true
	case *readFailed:
		return m.gen, true
	case *written:
		return m.gen, true
	case *retry:
		return m.gen, true
	case *pingDue:
		return m.gen, true
	case *pingTimeout:
		return m.gen, true
	case *logoutTimeout:
		return m.gen, true
	case *activeTimeout:
		return m.gen, true
	case *preKeysReady:
		return m.gen, true
	case *wiped:
		return m.gen, true
	case *pairSaved:
		return m.gen, true
	case *sendIQ:
		return m.gen, true
	case *sendReady:
		return m.gen, true
	}
	return 0, false
}
