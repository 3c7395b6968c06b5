package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/status"
)

// fakeFleet is a fleet of two instances: inst-a (answering) and inst-b.
type fakeFleet struct {
	down bool // Redis unreachable
}

func (f *fakeFleet) Accounts(ctx context.Context) ([]status.Account, error) {
	if f.down {
		return nil, context.DeadlineExceeded
	}
	yes := true
	return []status.Account{
		{ID: "local", State: events.StateConnected, Instance: "inst-a", InstanceAlive: &yes},
		{ID: "remote", State: events.StatePairing, Instance: "inst-b", InstanceAlive: &yes, QRShowing: true},
	}, nil
}

func (f *fakeFleet) Account(ctx context.Context, id string) (status.Account, error) {
	list, err := f.Accounts(ctx)
	if err != nil {
		return status.Account{}, err
	}
	for _, a := range list {
		if a.ID == id {
			return a, nil // the owner did not send the QR code
		}
	}
	return status.Account{}, ErrUnknownAccount
}

func (f *fakeFleet) Instances(ctx context.Context) ([]Instance, error) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return []Instance{
		{ID: "inst-a", Accounts: 1, LeaseTTLSeconds: 15, LastRenewal: at, ExpiresAt: at.Add(15 * time.Second), Self: true},
		{ID: "inst-b", Accounts: 1, LeaseTTLSeconds: 15, LastRenewal: at, ExpiresAt: at.Add(15 * time.Second)},
	}, nil
}

// TestFleetRoutes: with a Fleet the account routes answer from it (each
// view naming its instance), a QR code showing on an instance that did not
// send it is 503, and GET /api/instances lists the members; without one,
// /api/instances is 503.
func TestFleetRoutes(t *testing.T) {
	ff := &fakeFleet{}
	f := newFixture(t, func(c *Config) { c.Fleet = ff })
	f.seed(time.Now()) // the board: not what a fleet answers from

	resp, body := f.do(t, http.MethodGet, "/api/accounts")
	var list []map[string]any
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &list) != nil || len(list) != 2 {
		t.Fatalf("GET /api/accounts: %d %s", resp.StatusCode, body)
	}
	if list[1]["instance"] != "inst-b" || list[1]["instance_alive"] != true || list[1]["qr_showing"] != true || list[1]["qr"] != nil {
		t.Fatalf("the remote account's view: %v", list[1])
	}
	resp, body = f.do(t, http.MethodGet, "/api/accounts/local")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"instance":"inst-a"`) {
		t.Fatalf("GET /api/accounts/local: %d %s", resp.StatusCode, body)
	}
	resp, body = f.do(t, http.MethodGet, "/api/accounts/alice")
	wantError(t, resp, body, http.StatusNotFound)
	resp, body = f.do(t, http.MethodGet, "/api/accounts/remote/qr.png")
	wantError(t, resp, body, http.StatusServiceUnavailable)
	if !strings.Contains(string(body), "inst-b") {
		t.Fatalf("503 without the instance's name: %s", body)
	}

	resp, body = f.do(t, http.MethodGet, "/api/instances")
	var insts []map[string]any
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &insts) != nil || len(insts) != 2 {
		t.Fatalf("GET /api/instances: %d %s", resp.StatusCode, body)
	}
	for _, k := range []string{"id", "accounts", "lease_ttl_seconds", "last_renewal", "expires_at", "self"} {
		if _, ok := insts[0][k]; !ok {
			t.Errorf("an instance lacks %q: %s", k, body)
		}
	}
	if insts[0]["self"] != true || insts[1]["self"] != false {
		t.Fatalf("self marks: %s", body)
	}

	ff.down = true
	resp, body = f.do(t, http.MethodGet, "/api/accounts")
	wantError(t, resp, body, http.StatusServiceUnavailable)

	plain := newFixture(t, nil)
	resp, body = plain.do(t, http.MethodGet, "/api/instances")
	wantError(t, resp, body, http.StatusServiceUnavailable)
}

// TestActionUnavailable: a Controller's Unavailable (an owner that did not
// answer) is 503 with its reason.
func TestActionUnavailable(t *testing.T) {
	f := newFixture(t, nil)
	f.ctrl.err = &Unavailable{Reason: "instance inst-b, which holds account bob, did not answer"}
	resp, body := f.do(t, http.MethodPost, "/api/accounts/bob/logout")
	wantError(t, resp, body, http.StatusServiceUnavailable)
	if !strings.Contains(string(body), "inst-b") {
		t.Fatalf("503 without the owner's name: %s", body)
	}
}
