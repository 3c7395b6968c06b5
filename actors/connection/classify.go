package connection

import (
	"fmt"
	"strconv"
	"strings"
	"time"

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
	// AckClass and AckID name the stanza of an <ack> child: the server
	// ended the stream because it considers that stanza unacknowledged.
	AckClass, AckID string
	// BanCode is the reason of a temporary ban (failure 402 code=…).
	BanCode int
	// Expire is how long a temporary ban lasts (failure 402 expire=…,
	// seconds); 0 when absent.
	Expire time.Duration
	// LogoutHeader and LogoutSubtext are what the server says to show
	// the user with a lock or ban (failure 403 logout_message_header and
	// logout_message_subtext).
	LogoutHeader, LogoutSubtext string
	// Class is the sentinel the error matches (ErrLoggedOut, …).
	Class error
}

// Error names the stanza, code, conflict and what they mean, with the
// server's details.
func (e *ServerError) Error() string {
	var b strings.Builder
	b.WriteString(e.Stanza)
	if e.Code != 0 {
		b.WriteString(" " + strconv.Itoa(e.Code))
		if m := codeMeaning(e.Stanza, e.Code); m != "" {
			b.WriteString(" (" + m + ")")
		}
	}
	if e.Conflict != "" {
		b.WriteString(" conflict " + e.Conflict)
	}
	if e.AckClass != "" || e.AckID != "" {
		fmt.Fprintf(&b, " ack class=%q id=%q", e.AckClass, e.AckID)
	}
	if e.BanCode != 0 {
		b.WriteString(" code " + strconv.Itoa(e.BanCode))
		if m := banMeaning(e.BanCode); m != "" {
			b.WriteString(" (" + m + ")")
		}
	}
	if e.Expire > 0 {
		b.WriteString(" for " + e.Expire.String())
	}
	for _, s := range []string{e.LogoutHeader, e.LogoutSubtext} {
		if s != "" {
			b.WriteString(": " + strconv.Quote(s))
		}
	}
	return fmt.Sprintf("%v: server sent %s", e.Class, b.String())
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
	outBanned                      // wipe the device, raise the banned alarm; pair again only with auto-repair
	outTempBanned                  // wait until the ban expires, then reconnect
	outOutdated                    // wait for a newer client version
	outHandedOver                  // the lease is gone: stop quietly, another instance runs the account
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
	case outBanned:
		return "banned"
	case outTempBanned:
		return "temporarily-banned"
	case outOutdated:
		return "outdated"
	case outHandedOver:
		return "handed-over"
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// classify maps a <failure> or <stream:error> node to its outcome: the
// failure policy of README's table (PROTOCOL.md 9.3, 9.4, 9.8, and the
// reference client's connectionevents.go).
func classify(n node.Node) (outcome, *ServerError) {
	e := &ServerError{Stanza: n.Tag}
	attr := "code"
	if n.Tag == "failure" {
		attr = "reason"
	}
	if v, ok := n.AttrInt(attr); ok && v > 0 && v < 1000 {
		e.Code = int(v)
	}
	if c, ok := n.Child("conflict"); ok {
		e.Conflict, _ = c.Attr("type")
		if e.Conflict == "" {
			e.Conflict = "unknown"
		}
	}
	if n.Tag == "failure" {
		return classifyFailure(n, e)
	}
	if a, ok := n.Child("ack"); ok {
		e.AckClass, _ = a.Attr("class")
		e.AckID, _ = a.Attr("id")
		e.Class = ErrUnacked
		return outBackoff, e
	}
	switch {
	case e.Conflict == "replaced":
		e.Class = ErrReplaced
		return outStop, e
	case e.Conflict == "device_removed":
		e.Class = ErrLoggedOut
		return outLoggedOut, e
	case e.Code == 515:
		e.Class = ErrRestart
		return outReconnectNow, e
	default:
		// Including code 401 without device_removed: the reference client
		// reconnects and lets the login decide; it is never a wipe.
		e.Class = ErrServer
		return outBackoff, e
	}
}

// classifyFailure maps a <failure reason=…> after the handshake.
func classifyFailure(n node.Node, e *ServerError) (outcome, *ServerError) {
	switch c := e.Code; {
	case c == 401:
		e.Class = ErrLoggedOut
		return outLoggedOut, e
	case c == 402:
		if v, ok := n.AttrInt("code"); ok && v > 0 && v < 1e6 {
			e.BanCode = int(v)
		}
		if v, ok := n.AttrInt("expire"); ok && v > 0 {
			e.Expire = time.Duration(min(v, maxBanSeconds)) * time.Second
		}
		e.Class = ErrTemporarilyBanned
		return outTempBanned, e
	case c == 403 || c == 406:
		e.LogoutHeader = boundedAttr(n, "logout_message_header")
		e.LogoutSubtext = boundedAttr(n, "logout_message_subtext")
		e.Class = ErrBanned
		return outBanned, e
	case c == 405:
		e.Class = ErrOutdated
		return outOutdated, e
	case c == 500 || (c > 501 && c < 600):
		e.Class = ErrServer
		return outBackoff, e
	default: // 400, 409, 415, 418, 501 (experimental), other 4xx, and anything unexpected
		e.Class = ErrRefused
		return outStop, e
	}
}

// maxBanSeconds caps a temporary ban's expire attribute (a year).
const maxBanSeconds = 365 * 24 * 3600

// maxServerText bounds a text the server asks us to show, in runes.
const maxServerText = 200

// boundedAttr returns a string attribute cut to maxServerText runes.
func boundedAttr(n node.Node, key string) string {
	v, _ := n.Attr(key)
	if r := []rune(v); len(r) > maxServerText {
		v = string(r[:maxServerText]) + "…"
	}
	return v
}

// banMeaning names the reasons of a temporary ban the reference client
// knows (PROTOCOL.md 9.3).
func banMeaning(code int) string {
	switch code {
	case 101:
		return "sent to too many people"
	case 102:
		return "blocked by too many people"
	case 103:
		return "created too many groups with people who don't have you in their address books"
	case 104:
		return "sent the same message to too many people"
	case 106:
		return "sent too many messages to a broadcast list"
	}
	return ""
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
