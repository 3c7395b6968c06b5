package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wafleet/wafleet/events"
)

// linkController is a Controller that pairs by phone number: each
// PairByPhone answers a fresh link code and publishes it as the account's
// actor would (or, when silent, says that none came).
type linkController struct {
	fakeController
	bus    *events.Bus
	silent bool

	mu     sync.Mutex
	phones []string
}

func (c *linkController) PairByPhone(ctx context.Context, id, phone string) (LinkCode, error) {
	if err := c.do(ctx, "pair-phone", id); err != nil {
		return LinkCode{}, err
	}
	c.mu.Lock()
	c.phones = append(c.phones, phone)
	n := len(c.phones)
	c.mu.Unlock()
	if c.silent {
		return LinkCode{}, &Unavailable{Reason: "no link code yet: the account is backoff (read: connection reset)"}
	}
	lc := LinkCode{Code: []string{"", "ABCD-EFGH", "JKLM-NPQR"}[n], ExpiresAt: time.Now().Add(time.Duration(n) * time.Minute)}
	c.bus.Publish(events.Event{Account: id, Kind: events.KindLinkCode, State: events.StatePairing, LinkCode: lc.Code, LinkCodeExpires: lc.ExpiresAt})
	return lc, nil
}

func TestPairByPhoneNumber(t *testing.T) {
	lc := &linkController{}
	f := newFixture(t, func(c *Config) { c.Controller = lc })
	lc.bus = f.bus
	f.seed(time.Now())

	for _, tt := range []struct{ body, want string }{
		{`{"phone":"15551234567"}`, "phone: want an E.164 number"},
		{`{"phone":"+0551234567"}`, "phone: want an E.164 number"},
		{`{"phone":"+1555 123 4567"}`, "phone: want an E.164 number"},
		{`{"phone":"+1234567890123456"}`, "phone: want an E.164 number"},
		{`{"phone":15551234567}`, "phone: want a JSON"},
		{`{"number":"+15551234567"}`, "unknown field"},
	} {
		resp, body := f.send(t, http.MethodPost, "/api/accounts/dave/pair", tt.body)
		wantError(t, resp, body, http.StatusBadRequest)
		if !strings.Contains(string(body), tt.want) {
			t.Errorf("%s: %s, want it to say %q", tt.body, body, tt.want)
		}
	}
	if len(lc.phones) != 0 {
		t.Fatalf("a bad number reached the controller: %v", lc.phones)
	}

	resp, body := f.send(t, http.MethodPost, "/api/accounts/dave/pair", `{"phone":"+15551234567"}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("pair by phone: %d %s", resp.StatusCode, body)
	}
	var got linkCodeResult
	if err := json.Unmarshal(body, &got); err != nil || got.Code != "ABCD-EFGH" || got.ID != "dave" || time.Until(got.ExpiresAt) <= 0 {
		t.Fatalf("answer %s (%v)", body, err)
	}
	if lc.phones[0] != "15551234567" {
		t.Errorf("controller got %q, want the digits without +", lc.phones[0])
	}
	// The view shows the code while it is valid.
	_, view := f.do(t, http.MethodGet, "/api/accounts/dave")
	if !strings.Contains(string(view), `"link_code":"ABCD-EFGH"`) || !strings.Contains(string(view), `"link_code_expires_at"`) {
		t.Errorf("view %s", view)
	}
	// A second request answers the new code, not the old one.
	_, body = f.send(t, http.MethodPost, "/api/accounts/dave/pair", `{"phone":"+15551234567"}`)
	if !strings.Contains(string(body), "JKLM-NPQR") {
		t.Errorf("second answer %s", body)
	}
	// Without a phone it is QR pairing, as before.
	if resp, body := f.send(t, http.MethodPost, "/api/accounts/dave/pair", `{}`); resp.StatusCode != http.StatusAccepted {
		t.Errorf("pair {}: %d %s", resp.StatusCode, body)
	}
	// Refusals pass through.
	lc.err = &Refused{Reason: "account is stopped: restart it"}
	resp, body = f.send(t, http.MethodPost, "/api/accounts/dave/pair", `{"phone":"+15551234567"}`)
	wantError(t, resp, body, http.StatusConflict)
	lc.err = nil

	// No code in time: 503 saying what is true.
	lc.silent = true
	resp, body = f.send(t, http.MethodPost, "/api/accounts/carol/pair", `{"phone":"+15551234567"}`)
	wantError(t, resp, body, http.StatusServiceUnavailable)
	if !strings.Contains(string(body), "no link code yet: the account is backoff (read: connection reset)") {
		t.Errorf("timeout answer %s", body)
	}
}

func TestPairByPhoneWithoutLinkPairer(t *testing.T) {
	f := newFixture(t, nil)
	resp, body := f.send(t, http.MethodPost, "/api/accounts/dave/pair", `{"phone":"+15551234567"}`)
	wantError(t, resp, body, http.StatusServiceUnavailable)
}
