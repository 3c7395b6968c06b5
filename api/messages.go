package api

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/wafleet/wafleet/config"
	"github.com/wafleet/wafleet/wire/jid"
)

// Sending. POST /api/accounts/{id}/messages with {"to", "text",
// "idempotency_key"} asks the account to send a text to a user or a group: 202 {"id"} once it is
// queued (the message_sent or message_failed event follows with that id),
// 200 {"id", "duplicate": true} when idempotency_key named an earlier
// message (nothing is sent again, even after a restart or a failover).

// routeMessages is the send route.
const routeMessages = "/api/accounts/{id}/messages"

// maxMessageBody bounds the body of a send request.
const maxMessageBody = 64 << 10

// Sender is the side of a Controller that sends messages; the app's
// controller implements it, and so does the fleet's router (it reaches the
// instance running the account). A Controller without it answers 503.
type Sender interface {
	// SendText queues a text message from account id. Errors as
	// Controller's, plus *BadRequest (the recipient or text refused) and
	// *RateLimited.
	SendText(ctx context.Context, id string, m OutgoingText) (Sent, error)
}

// OutgoingText is a text to send: To is a user JID (phone numbers are
// turned into one here) or a group JID, Key the caller's idempotency key
// ("" none).
type OutgoingText struct {
	To   jid.JID
	Text string
	Key  string
}

// Sent says what a send did: the message's ID, and whether the key named
// an earlier message (nothing sent now).
type Sent struct {
	ID        string
	Duplicate bool
}

// BadRequest: the account refused what it was asked to send (400).
type BadRequest struct{ Reason string }

func (e *BadRequest) Error() string { return "api: bad request: " + e.Reason }

// RateLimited: the account's send rate limit is reached (429 with
// Retry-After).
type RateLimited struct{ RetryAfter time.Duration }

func (e *RateLimited) Error() string { return "api: rate limited for " + e.RetryAfter.String() }

// messageRequest is the body of POST /api/accounts/{id}/messages.
type messageRequest struct {
	To             string `json:"to"`
	Text           string `json:"text"`
	IdempotencyKey string `json:"idempotency_key"`
}

// messageResult answers a send.
type messageResult struct {
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

// recipient reads "to": "+" and digits (a phone number), a phone-number
// user JID ("15551234567@s.whatsapp.net") or a group JID
// ("120363012345678901@g.us", or the older "CREATOR-TIMESTAMP@g.us").
func recipient(to string) (jid.JID, string) {
	if strings.HasPrefix(to, "+") {
		if p := config.PhoneProblem(to); p != "" {
			return jid.JID{}, p
		}
		return jid.New(to[1:], jid.DefaultUserServer), ""
	}
	const want = `want "+" and the number in international form, a user JID like 15551234567@s.whatsapp.net or a group JID like 120363012345678901@g.us`
	j, err := jid.Parse(to)
	if err != nil || j.Device != 0 || j.RawAgent != 0 || j.User == "" {
		return jid.JID{}, want
	}
	switch j.Server {
	case jid.GroupServer:
		if strings.Trim(j.User, "0123456789-") != "" {
			return jid.JID{}, "the group JID's ID is not digits"
		}
	case jid.DefaultUserServer:
		if _, err := j.UserInt(); err != nil {
			return jid.JID{}, "the JID's user is not a phone number"
		}
	default:
		return jid.JID{}, want
	}
	return j, ""
}

func (s *Server) handleMessages(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	var req messageRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxMessageBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "body: want a JSON object with to, text and optionally idempotency_key (at most 64 KiB)")
		return
	}
	to, problem := recipient(req.To)
	switch {
	case problem != "":
		writeError(w, http.StatusBadRequest, "to: "+problem)
		return
	case req.Text == "":
		writeError(w, http.StatusBadRequest, "text: must not be empty")
		return
	}
	sender, ok := s.cfg.Controller.(Sender)
	if s.cfg.Controller == nil || !ok {
		writeError(w, http.StatusServiceUnavailable, "sending is not available here")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ActionTimeout)
	defer cancel()
	sent, err := sender.SendText(ctx, id, OutgoingText{To: to, Text: req.Text, Key: req.IdempotencyKey})
	var bad *BadRequest
	var limited *RateLimited
	switch {
	case errors.As(err, &bad):
		writeError(w, http.StatusBadRequest, "send: "+bad.Reason)
	case errors.As(err, &limited):
		secs := int64(math.Ceil(limited.RetryAfter.Seconds()))
		w.Header().Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
		writeError(w, http.StatusTooManyRequests, "send: the account's send rate limit is reached (messages.send_per_minute, messages.send_burst)")
	case err != nil:
		code, msg := actionStatus(err)
		if code >= 500 {
			s.log.Error("account action failed", "account", id, "action", "send", "error", err)
		}
		writeError(w, code, "send: "+msg)
	case sent.Duplicate:
		writeJSON(w, http.StatusOK, messageResult{ID: sent.ID, Duplicate: true})
	default:
		s.log.Info("account action", "account", id, "action", "send", "status", http.StatusAccepted)
		writeJSON(w, http.StatusAccepted, messageResult{ID: sent.ID})
	}
}
