package connection

import (
	"fmt"
	"strconv"

	"github.com/wafleet/wafleet/wire/node"
)

// ServerError is a <failure> or <stream:error> from the server.
type ServerError struct {
	// Stanza is "failure" or "stream:error".
	Stanza string
	// Code is the reason (failure) or code (stream error); 0 when absent.
	Code int
	// Conflict is the type of a <conflict> child, "" when none.
	Conflict string
	// Class is the sentinel the error matches (ErrLoggedOut, …).
	Class error
}

// Error names the stanza, code, conflict and what they mean.
func (e *ServerError) Error() string {
	s := e.Stanza
	if e.Code != 0 {
		s += " " + strconv.Itoa(e.Code)
		if m := codeMeaning(e.Stanza, e.Code); m != "" {
			s += " (" + m + ")"
		}
	}
	if e.Conflict != "" {
		s += " conflict " + e.Conflict
	}
	return fmt.Sprintf("%v: server sent %s", e.Class, s)
}

// Unwrap returns the class sentinel.
func (e *ServerError) Unwrap() error { return e.Class }

// outcome is what the state machine does after a connection ends.
type outcome int

const (
	outBackoff      outcome = iota // reconnect after a backoff delay
	outReconnectNow                // reconnect at once (515)
	outLoggedOut                   // wipe the device, pair again
	outStop                        // stop the account and raise an alarm
	outUnpaired                    // pairing ran out of codes: wait for POST /pair
)

func (o outcome) String() string {
	switch o {
	case outBackoff:
		return "backoff"
	case outReconnectNow:
		return "reconnect-now"
	case outLoggedOut:
		return "logged-out"
	case outStop:
		return "stop"
	case outUnpaired:
		return "unpaired"
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// classify maps a <failure> or <stream:error> node to its outcome
// (PROTOCOL.md 9.3, 9.4).
func classify(n node.Node) (outcome, *ServerError) {
	e := &ServerError{Stanza: n.Tag}
	attr := "code"
	if n.Tag == "failure" {
		attr = "reason"
	}
	if v, ok := n.Attr(attr); ok {
		e.Code, _ = strconv.Atoi(v)
	}
	if c, ok := n.Child("conflict"); ok {
		e.Conflict, _ = c.Attr("type")
		if e.Conflict == "" {
			e.Conflict = "unknown"
		}
	}
	if n.Tag == "failure" {
		switch c := e.Code; {
		case c == 401 || c == 403 || c == 406:
			e.Class = ErrLoggedOut
			return outLoggedOut, e
		case c >= 500 && c < 600:
			e.Class = ErrServer
			return outBackoff, e
		default: // 402, 405, 409, other 4xx, and anything unexpected
			e.Class = ErrRefused
			return outStop, e
		}
	}
	switch {
	case e.Conflict == "replaced":
		e.Class = ErrReplaced
		return outStop, e
	case e.Conflict == "device_removed" || e.Code == 401:
		e.Class = ErrLoggedOut
		return outLoggedOut, e
	case e.Code == 515:
		e.Class = ErrRestart
		return outReconnectNow, e
	default:
		e.Class = ErrServer
		return outBackoff, e
	}
}

func codeMeaning(stanza string, code int) string {
	if stanza != "failure" {
		switch code {
		case 401:
			return "unauthorized"
		case 503:
			return "service unavailable"
		case 515:
			return "restart required"
		}
		return ""
	}
	switch code {
	case 400:
		return "generic"
	case 401:
		return "logged out"
	case 402:
		return "temporarily banned"
	case 403:
		return "main device gone"
	case 405:
		return "client outdated"
	case 406:
		return "banned"
	case 409:
		return "bad user agent"
	case 415:
		return "not found"
	case 418:
		return "client unknown"
	case 500:
		return "internal server error"
	case 501:
		return "experimental"
	case 503:
		return "service unavailable"
	}
	return ""
}
