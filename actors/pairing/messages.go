package pairing

import (
	"errors"
	"fmt"

	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// Sentinel errors of the package.
var (
	// ErrExpired: every ref was shown and no phone scanned a code.
	ErrExpired = errors.New("pairing: QR codes expired without a scan")
	// ErrNoRefs: a pair-device stanza carried no usable ref.
	ErrNoRefs = errors.New("pairing: pair-device without refs")
	// ErrMalformed: a pair-success stanza lacks a required part.
	ErrMalformed = errors.New("pairing: malformed pair-success")
	// ErrSave: the paired device could not be saved.
	ErrSave = errors.New("pairing: saving the paired device failed")
)

// Error is a pairing failure answered to the server with an error IQ:
// Code and Text are the <error code text> sent (PROTOCOL.md 8.7).
type Error struct {
	Code int
	Text string
	Err  error
}

// Error describes the failure without secrets.
func (e *Error) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("pairing: %s (%d)", e.Text, e.Code)
	}
	return fmt.Sprintf("pairing: %s (%d): %v", e.Text, e.Code, e.Err)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Messages from the parent (the connection actor).

// PairDevice is the server's <iq><pair-device> stanza, forwarded verbatim.
// A second PairDevice replaces the refs and restarts the schedule.
type PairDevice struct{ Node node.Node }

// PairSuccess is the server's <iq><pair-success> stanza, forwarded verbatim.
type PairSuccess struct{ Node node.Node }

// Messages to the parent. Gen echoes Deps.Gen so the parent can drop the
// messages of a child that belonged to an older connection.

// Send asks the parent to write a stanza (the ack of pair-device).
type Send struct {
	Gen  uint64
	Node node.Node
}

// Finish ends the attempt. The pairing actor has written nothing: the
// parent, the one writer of the account's store, owns what follows.
//
//   - If Err is nil, Paired is the verified, paired Device and Reply the
//     pair-device-sign answer. The parent saves Paired, then writes Reply
//     (the reference client's order: verify, save, reply); once it is
//     written the account is paired and the server's 515 that follows is
//     expected. If the save fails, the parent writes SaveFailed's error
//     answer instead; if the reply cannot be written, it undoes the save
//     with Restore.
//   - If Err is not nil (a *Error), Reply is the error IQ; the parent closes
//     the connection after writing it and reports Err.
type Finish struct {
	Gen    uint64
	Reply  node.Node
	Paired *store.Device
	Err    error
}

// SaveFailed is the Finish that answers the same pair-success when saving
// Paired failed with err: a 500 internal-error wrapping ErrSave.
func (f *Finish) SaveFailed(err error) *Finish {
	id, _ := f.Reply.Attr("id")
	to, ok := f.Reply.AttrJID("to")
	if !ok {
		to = jid.ServerJID
	}
	pe := &Error{Code: 500, Text: "internal-error", Err: fmt.Errorf("%w: %w", ErrSave, err)}
	return &Finish{Gen: f.Gen, Reply: errorIQ(id, to, pe), Err: pe}
}

// LastCode says that the last ref is showing: if the server closes the
// socket from now on, the refs are spent and the account should wait for
// an operator rather than reconnect.
type LastCode struct{ Gen uint64 }

// Expired says that every ref was shown and none was scanned (ErrExpired).
type Expired struct{ Gen uint64 }
