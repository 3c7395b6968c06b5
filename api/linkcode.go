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
// app's controller implements it; a Controller without it answers 503.
type LinkPairer interface {
	// PairByPhone re-arms pairing of an unpaired, logged-out or pairing
	// account by link code for phone (E.164 digits without the +).
	PairByPhone(ctx context.Context, id, phone string) error
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
	if s.cfg.Controller == nil || !ok || s.cfg.Accounts == nil {
		writeError(w, http.StatusServiceUnavailable, "pairing by phone number is not available here")
		return
	}
	var before *time.Time
	if a, ok := s.cfg.Accounts.Get(id); ok && a.LinkCodeExpiresAt != nil {
		before = a.LinkCodeExpiresAt
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ActionTimeout)
	err := lp.PairByPhone(ctx, id, phone[1:])
	cancel()
	if err != nil {
		code, msg := actionStatus(err)
		if code >= 500 {
			s.log.Error("account action failed", "account", id, "action", "pair", "error", err)
		}
		writeError(w, code, "pair: "+msg)
		return
	}
	s.log.Info("account action", "account", id, "action", "pair by phone number", "status", http.StatusOK)
	res, problem := s.waitLinkCode(r.Context(), id, before)
	if problem != "" {
		writeError(w, http.StatusGatewayTimeout, "pair: "+problem)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// waitLinkCode waits (up to LinkCodeWait) for a link code newer than
// before on the account's view. The problem says what is true when none
// comes.
func (s *Server) waitLinkCode(ctx context.Context, id string, before *time.Time) (linkCodeResult, string) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.LinkCodeWait)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		a, _ := s.cfg.Accounts.Get(id)
		if a.LinkCode != nil && a.LinkCodeExpiresAt != nil && (before == nil || !a.LinkCodeExpiresAt.Equal(*before)) {
			return linkCodeResult{ID: id, Code: *a.LinkCode, ExpiresAt: a.LinkCodeExpiresAt.UTC()}, ""
		}
		select {
		case <-ctx.Done():
			problem := "no link code yet: the account is " + string(a.State)
			if a.LastError != "" {
				problem += " (" + a.LastError + ")"
			}
			return linkCodeResult{}, problem + "; GET /api/accounts/" + id + " shows the code once it is ready"
		case <-tick.C:
		}
	}
}
