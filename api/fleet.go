package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/wafleet/wafleet/status"
)

// routeInstances lists the live instances of a fleet.
const routeInstances = "/api/instances"

// fleetTimeout bounds one read of the fleet-wide view.
const fleetTimeout = 5 * time.Second

// Unavailable is what a Controller or a Fleet returns (wrapped or not)
// when the instance that must answer cannot, such as the owner of an
// account that did not answer a routed action; the API answers 503 with
// Reason, which names the instance and holds no secret.
type Unavailable struct {
	Reason string
}

func (e *Unavailable) Error() string { return "api: unavailable: " + e.Reason }

// Fleet is the view of every instance sharing the store (fleet mode;
// package fleet/view implements it). When Config.Fleet is set, GET
// /api/accounts[/{id}] and /qr.png answer from it instead of
// Config.Accounts, and GET /api/instances lists the members.
type Fleet interface {
	// Accounts returns the view of every account of the fleet, sorted by
	// id, each with the instance that runs it.
	Accounts(ctx context.Context) ([]status.Account, error)
	// Account returns one account's view, with the QR code showing when
	// it is pairing (fetched from its instance); ErrUnknownAccount for an
	// account the fleet does not run.
	Account(ctx context.Context, id string) (status.Account, error)
	// Instances returns the live members, sorted by id.
	Instances(ctx context.Context) ([]Instance, error)
}

// Instance is one live member of the fleet, as GET /api/instances shows
// it.
type Instance struct {
	ID string `json:"id"`
	// Accounts is how many account leases it holds.
	Accounts int `json:"accounts"`
	// LeaseTTLSeconds is its fleet.lease_ttl.
	LeaseTTLSeconds float64 `json:"lease_ttl_seconds"`
	// LastRenewal is its last heartbeat (its leases are renewed in the
	// same round trip), on Redis's clock; ExpiresAt is when it stops
	// counting as a member without another one.
	LastRenewal time.Time `json:"last_renewal"`
	ExpiresAt   time.Time `json:"expires_at"`
	// Self marks the instance that answered.
	Self bool `json:"self"`
}

func (s *Server) handleInstances(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Fleet == nil {
		writeError(w, http.StatusServiceUnavailable, "not a fleet: instances are listed only with store.kind redis")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), fleetTimeout)
	defer cancel()
	list, err := s.cfg.Fleet.Instances(ctx)
	if err != nil {
		s.fleetError(w, "list instances", err)
		return
	}
	if list == nil {
		list = []Instance{}
	}
	writeJSON(w, http.StatusOK, list)
}

// accounts returns every account's view: the fleet's in fleet mode, else
// the board's. It writes the error and returns false when it cannot.
func (s *Server) accounts(w http.ResponseWriter, r *http.Request) ([]status.Account, bool) {
	if s.cfg.Fleet == nil {
		return s.cfg.Accounts.List(), true
	}
	ctx, cancel := context.WithTimeout(r.Context(), fleetTimeout)
	defer cancel()
	list, err := s.cfg.Fleet.Accounts(ctx)
	if err != nil {
		s.fleetError(w, "list accounts", err)
		return nil, false
	}
	return list, true
}

// account returns the view of account id, or writes the error (404 for
// an unknown account) and returns false.
func (s *Server) account(w http.ResponseWriter, r *http.Request, id string) (status.Account, bool) {
	if s.cfg.Fleet == nil {
		a, ok := s.cfg.Accounts.Get(id)
		if !ok {
			writeError(w, http.StatusNotFound, "unknown account")
		}
		return a, ok
	}
	ctx, cancel := context.WithTimeout(r.Context(), fleetTimeout)
	defer cancel()
	a, err := s.cfg.Fleet.Account(ctx, id)
	if err != nil {
		s.fleetError(w, "read account "+id, err)
		return status.Account{}, false
	}
	return a, true
}

// fleetError answers a failed read of the fleet-wide view.
func (s *Server) fleetError(w http.ResponseWriter, what string, err error) {
	var unavailable *Unavailable
	switch {
	case errors.Is(err, ErrUnknownAccount):
		writeError(w, http.StatusNotFound, "unknown account")
	case errors.As(err, &unavailable):
		writeError(w, http.StatusServiceUnavailable, unavailable.Reason)
	default:
		s.log.Error("fleet view", "what", what, "error", err)
		writeError(w, http.StatusServiceUnavailable, "the fleet-wide view is unavailable (Redis): see the service log")
	}
}
