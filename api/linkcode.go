package api

import (
	"context"
	"net/http"
	"time"

	"github.com/wafleet/wafleet/config"
)

// Pairing by phone number (link codes). POST /api/accounts/{id}/pair with
// {"phone":"+15551234567"} asks the account to pair by link code instead of
// QR: the account's actor starts over (unpaired, logged out or already
// showing QR codes), and the answer waits until the code shows:
// {"id","code":"ABCD-EFGH","expires_at"}. The operator types it on the
// phone under Linked devices → Link a device → Link with phone number
// instead. An empty body (or one without phone) re-arms QR pairing as
// before.

// LinkPairer is the side of a Controller that pairs by phone number. The
// app's controller and the fleet's router implement it; a Controller
// without it answers 503.
type LinkPairer interface {
	// PairByPhone re-arms pairing of an unpaired, logged-out or pairing
	// account by link code for phone (E.164 digits without the +) and
	// returns the code once it shows, or an error as Controller's methods
	// do (*Unavailable saying the account's state when no code came before
	// ctx ends).
	PairByPhone(ctx context.Context, id, phone string) (LinkCode, error)
}

// LinkCode is a link code showing: the code as the phone asks for it
// ("ABCD-EFGH") and when it stops working. It is a secret.
type LinkCode struct {
	Code      string
	ExpiresAt time.Time
}

// pairRequest is the optional body of POST /api/accounts/{id}/pair.
type pairRequest struct {
	Phone *string `json:"phone"`
}

// linkCodeResult is the answer of a pairing by phone number.
type linkCodeResult struct {
	ID        string    `json:"id"`
	Code      string    `json:"code"`
	ExpiresAt time.Time `json:"expires_at"`
}

// handlePair serves POST /api/accounts/{id}/pair: QR pairing without a
// phone, link-code pairing with one.
func (s *Server) handlePair(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength == 0 {
		s.handleAction("pair", Controller.Pair)(w, r)
		return
	}
	var req pairRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Phone == nil {
		s.handleAction("pair", Controller.Pair)(w, r)
		return
	}
	phone := *req.Phone
	if p := config.PhoneProblem(phone); p != "" {
		writeError(w, http.StatusBadRequest, "phone: "+p)
		return
	}
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	lp, ok := s.cfg.Controller.(LinkPairer)
	if s.cfg.Controller == nil || !ok {
		writeError(w, http.StatusServiceUnavailable, "pairing by phone number is not available here")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.LinkCodeWait)
	lc, err := lp.PairByPhone(ctx, id, phone[1:])
	cancel()
	if err != nil {
		code, msg := actionStatus(err)
		if code >= 500 && code != http.StatusServiceUnavailable {
			s.log.Error("account action failed", "account", id, "action", "pair", "error", err)
		} else {
			s.log.Info("account action", "account", id, "action", "pair by phone number", "status", code)
		}
		writeError(w, code, "pair: "+msg)
		return
	}
	s.log.Info("account action", "account", id, "action", "pair by phone number", "status", http.StatusOK)
	writeJSON(w, http.StatusOK, linkCodeResult{ID: id, Code: lc.Code, ExpiresAt: lc.ExpiresAt.UTC()})
}
