package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/events/journal"
	"github.com/wafleet/wafleet/metrics"
	"github.com/wafleet/wafleet/status"
	"github.com/wafleet/wafleet/store"
)

// testQR looks like a WhatsApp QR code; its content is made up.
const testQR = "2@Qk9HVVNSRUZCT0dVU1JFRkJPR1VTUkVG,aGVsbG8gbm9pc2Uga2V5IGZvciB0ZXN0cyEhISE=,aWRlbnRpdHkga2V5IGZvciB0ZXN0cyBoZXJlIQ==,YWR2IHNlY3JldCBmb3IgdGVzdHMgb25seSEhISE=,1"

// fakeController records calls and answers with err, or waits for the
// context when block is set.
type fakeController struct {
	mu    sync.Mutex
	calls []string
	err   error
	block bool
}

func (f *fakeController) do(ctx context.Context, action, id string) error {
	f.mu.Lock()
	f.calls = append(f.calls, action+" "+id)
	err, block := f.err, f.block
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return fmt.Errorf("controller: %s %s: %w", action, id, ctx.Err())
	}
	return err
}

func (f *fakeController) Pair(ctx context.Context, id string) error {
	return f.do(ctx, "pair", id)
}

func (f *fakeController) Restart(ctx context.Context, id string) error {
	return f.do(ctx, "restart", id)
}

func (f *fakeController) Logout(ctx context.Context, id string) error {
	return f.do(ctx, "logout", id)
}

func (f *fakeController) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// fixture is a server over a board fed by a bus, with metrics and a
// journal that keeps the events in a bbolt outbox.
type fixture struct {
	board   *status.Board
	bus     *events.Bus
	journal *journal.Journal
	outbox  *store.BoltStore
	metrics *metrics.Metrics
	ctrl    *fakeController
	srv     *Server
	http    *httptest.Server
}

func newFixture(t *testing.T, edit func(*Config)) *fixture {
	t.Helper()
	f := &fixture{board: status.NewBoard(), ctrl: &fakeController{}}
	f.metrics = metrics.New(f.board)
	f.outbox, f.journal = newEventLog(t)
	f.bus = events.NewBus(f.board, f.metrics, f.journal)
	cfg := Config{
		Accounts:   f.board,
		Events:     f.journal,
		Controller: f.ctrl,
		Metrics:    f.metrics.Handler(),
	}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	f.srv = srv
	f.http = httptest.NewServer(conform(t, srv.Handler()))
	t.Cleanup(func() {
		srv.Shutdown(context.Background()) // ends open event streams
		f.http.Close()
	})
	return f
}

// newEventLog opens a bbolt outbox and a journal over it, closed in that
// order at the end of the test.
func newEventLog(t *testing.T) (*store.BoltStore, *journal.Journal) {
	t.Helper()
	ob, err := store.OpenBolt(filepath.Join(t.TempDir(), "store.db"), store.BoltOptions{OutboxHistory: 50})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ob.Close() })
	j, err := journal.New(ob, journal.Options{Instance: "test", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close(context.Background()) })
	return ob, j
}

// seed publishes a fleet of four accounts in different states.
func (f *fixture) seed(now time.Time) {
	f.bus.Publish(events.Event{Account: "alice", Kind: events.KindConnected, State: events.StateConnected, JID: "15550001:3@s.whatsapp.net", Time: now})
	f.bus.Publish(events.Event{Account: "bob", Kind: events.KindQR, State: events.StatePairing, QR: testQR, Time: now})
	f.bus.Publish(events.Event{Account: "carol", Kind: events.KindReconnect, State: events.StateConnecting, Attempt: 1, Time: now})
	f.bus.Publish(events.Event{Account: "carol", Kind: events.KindDisconnected, State: events.StateBackoff, Error: "read: connection reset", Time: now})
	f.bus.Publish(events.Event{Account: "dave", Kind: events.KindState, State: events.StateUnpaired, Time: now})
	f.bus.Publish(events.Event{Account: "dave", Kind: events.KindRestart, State: events.StateUnpaired, Time: now})
}

func (f *fixture) do(t *testing.T, method, path string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, f.http.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := f.http.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, body
}

// wantError checks an error response: status, JSON content type and a body
// of exactly {"error": "..."}.
func wantError(t *testing.T, resp *http.Response, body []byte, code int) {
	t.Helper()
	if resp.StatusCode != code {
		t.Fatalf("status %d, want %d (body %s)", resp.StatusCode, code, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q, want JSON", ct)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("error body is not JSON: %s", body)
	}
	if msg, ok := m["error"].(string); !ok || msg == "" || len(m) != 1 {
		t.Fatalf("error body %s, want {\"error\":\"...\"}", body)
	}
}

var accountFields = []string{"connected_since", "id", "jid", "last_error", "last_error_at", "qr", "qr_count", "qr_expires_at", "qr_index", "reconnects", "restarts", "state"}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestNewNeedsAccounts(t *testing.T) {
	if _, err := New(Config{}); !errors.Is(err, ErrNoAccounts) {
		t.Fatalf("New without accounts: %v, want ErrNoAccounts", err)
	}
}

func TestListJSONShape(t *testing.T) {
	f := newFixture(t, nil)
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	f.seed(now)

	resp, body := f.do(t, http.MethodGet, "/api/accounts")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q", ct)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("Cache-Control %q, want no-store (the list carries QR codes)", cc)
	}
	var list []map[string]any
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatalf("decode: %v: %s", err, body)
	}
	if len(list) != 4 {
		t.Fatalf("got %d accounts, want 4: %s", len(list), body)
	}
	byID := map[string]map[string]any{}
	for _, a := range list {
		if got := keys(a); strings.Join(got, ",") != strings.Join(accountFields, ",") {
			t.Fatalf("fields %v, want exactly %v", got, accountFields)
		}
		byID[a["id"].(string)] = a
	}
	tests := []struct {
		id, state, jid, lastError string
		qr                        any
		restarts, reconnects      float64
		connected                 bool
	}{
		{"alice", "connected", "15550001:3@s.whatsapp.net", "", nil, 0, 0, true},
		{"bob", "pairing", "", "", testQR, 0, 0, false},
		{"carol", "backoff", "", "read: connection reset", nil, 0, 1, false},
		{"dave", "unpaired", "", "", nil, 1, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			a := byID[tt.id]
			if a == nil {
				t.Fatalf("missing")
			}
			if a["state"] != tt.state || a["jid"] != tt.jid || a["last_error"] != tt.lastError || a["qr"] != tt.qr {
				t.Errorf("got %v", a)
			}
			if a["restarts"] != tt.restarts || a["reconnects"] != tt.reconnects {
				t.Errorf("counters: got restarts %v reconnects %v", a["restarts"], a["reconnects"])
			}
			if tt.connected {
				if s, _ := a["connected_since"].(string); s != now.Format(time.RFC3339) {
					t.Errorf("connected_since %v, want %s", a["connected_since"], now.Format(time.RFC3339))
				}
			} else if a["connected_since"] != nil {
				t.Errorf("connected_since %v, want null", a["connected_since"])
			}
		})
	}
}

func TestEmptyListIsArray(t *testing.T) {
	f := newFixture(t, nil)
	resp, body := f.do(t, http.MethodGet, "/api/accounts")
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "[]" {
		t.Fatalf("status %d body %q, want 200 []", resp.StatusCode, body)
	}
}

func TestGetAccount(t *testing.T) {
	f := newFixture(t, nil)
	f.seed(time.Now())
	tests := []struct {
		name, path string
		code       int
		state      string
	}{
		{"connected", "/api/accounts/alice", http.StatusOK, "connected"},
		{"pairing", "/api/accounts/bob", http.StatusOK, "pairing"},
		{"unknown", "/api/accounts/zed", http.StatusNotFound, ""},
		{"head", "/api/accounts/alice", http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := http.MethodGet
			if tt.name == "head" {
				method = http.MethodHead
			}
			resp, body := f.do(t, method, tt.path)
			if tt.code != http.StatusOK {
				wantError(t, resp, body, tt.code)
				return
			}
			if resp.StatusCode != tt.code {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if method == http.MethodHead {
				if len(body) != 0 {
					t.Fatalf("HEAD returned a body")
				}
				return
			}
			var a map[string]any
			if err := json.Unmarshal(body, &a); err != nil {
				t.Fatal(err)
			}
			if got := keys(a); strings.Join(got, ",") != strings.Join(accountFields, ",") {
				t.Fatalf("fields %v", got)
			}
			if a["state"] != tt.state {
				t.Fatalf("state %v, want %s", a["state"], tt.state)
			}
		})
	}
}

func TestBadIDs(t *testing.T) {
	f := newFixture(t, nil)
	long := strings.Repeat("a", 65)
	for _, id := range []string{long, "a%2Fb", "a%20b", "%C3%A4", "a%00", "a:b", "a%40b", "*"} {
		for _, route := range []struct{ method, tail string }{
			{http.MethodGet, ""},
			{http.MethodGet, "/qr.png"},
			{http.MethodPost, "/pair"},
			{http.MethodPost, "/logout"},
		} {
			t.Run(route.method+" "+id+route.tail, func(t *testing.T) {
				resp, body := f.do(t, route.method, "/api/accounts/"+id+route.tail)
				wantError(t, resp, body, http.StatusBadRequest)
			})
		}
	}
	if calls := f.ctrl.Calls(); len(calls) != 0 {
		t.Fatalf("controller called with bad ids: %v", calls)
	}
	t.Run("longest valid id", func(t *testing.T) {
		resp, body := f.do(t, http.MethodGet, "/api/accounts/"+long[:64])
		wantError(t, resp, body, http.StatusNotFound)
	})
	t.Run("events filter", func(t *testing.T) {
		resp, body := f.do(t, http.MethodGet, "/api/events?id=a%2Fb")
		wantError(t, resp, body, http.StatusBadRequest)
	})
}

func TestMethodNotAllowed(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		method, path, allow string
	}{
		{http.MethodPut, "/api/accounts", "GET, HEAD, POST"},
		{http.MethodPost, "/api/accounts/alice", "GET, HEAD, PATCH, DELETE"},
		{http.MethodPut, "/api/accounts/alice", "GET, HEAD, PATCH, DELETE"},
		{http.MethodGet, "/api/accounts/alice/pair", "POST"},
		{http.MethodDelete, "/api/accounts/alice/pair", "POST"},
		{http.MethodGet, "/api/accounts/alice/logout", "POST"},
		{http.MethodPost, "/api/accounts/alice/qr.png", "GET, HEAD"},
		{http.MethodPost, "/api/events", "GET, HEAD"},
		{http.MethodPost, "/", "GET, HEAD"},
		{http.MethodPost, "/healthz", "GET, HEAD"},
		{http.MethodPost, "/readyz", "GET, HEAD"},
		{http.MethodPost, "/metrics", "GET, HEAD"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			resp, body := f.do(t, tt.method, tt.path)
			wantError(t, resp, body, http.StatusMethodNotAllowed)
			if got := resp.Header.Get("Allow"); got != tt.allow {
				t.Fatalf("Allow %q, want %q", got, tt.allow)
			}
		})
	}
}

func TestUnknownRoutes(t *testing.T) {
	f := newFixture(t, nil)
	for _, path := range []string{"/nope", "/api", "/api/accounts/", "/api/accounts/alice/other", "/api/accounts/alice/qr.png/x", "/index.html"} {
		t.Run(path, func(t *testing.T) {
			resp, body := f.do(t, http.MethodGet, path)
			wantError(t, resp, body, http.StatusNotFound)
		})
	}
}

func TestActions(t *testing.T) {
	tests := []struct {
		name    string
		action  string
		err     error
		block   bool
		noCtrl  bool
		code    int
		errText string // must not appear in the body
		reason  string // the whole error message
	}{
		{name: "pair accepted", action: "pair", code: http.StatusAccepted},
		{name: "logout accepted", action: "logout", code: http.StatusAccepted},
		{name: "pair unknown", action: "pair", err: fmt.Errorf("supervisor: %w", ErrUnknownAccount), code: http.StatusNotFound},
		{name: "logout unknown", action: "logout", err: ErrUnknownAccount, code: http.StatusNotFound},
		{name: "restart accepted", action: "restart", code: http.StatusAccepted},
		{name: "restart unknown", action: "restart", err: ErrUnknownAccount, code: http.StatusNotFound},
		{name: "restart running", action: "restart", err: fmt.Errorf("app: %w", &Refused{Reason: "account is connected, not stopped"}), code: http.StatusConflict, reason: "restart: account is connected, not stopped"},
		{name: "logout unpaired", action: "logout", err: fmt.Errorf("supervisor: %w", &Refused{Reason: "account is not paired"}), code: http.StatusConflict, reason: "logout: account is not paired"},
		{name: "pair stopped", action: "pair", err: &Refused{Reason: "account is stopped: restart it"}, code: http.StatusConflict, reason: "pair: account is stopped: restart it"},
		{name: "internal error hidden", action: "pair", err: errors.New("store: disk on fire at /secret/path"), code: http.StatusInternalServerError, errText: "/secret/path"},
		{name: "timeout", action: "logout", block: true, code: http.StatusGatewayTimeout},
		{name: "no controller", action: "pair", noCtrl: true, code: http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(c *Config) {
				c.ActionTimeout = time.Millisecond
				if tt.noCtrl {
					c.Controller = nil
				}
			})
			f.ctrl.err, f.ctrl.block = tt.err, tt.block
			resp, body := f.do(t, http.MethodPost, "/api/accounts/acct-1/"+tt.action)
			if tt.code >= 400 {
				wantError(t, resp, body, tt.code)
				if tt.errText != "" && strings.Contains(string(body), tt.errText) {
					t.Fatalf("error body leaks the internal error: %s", body)
				}
				var got errorBody
				if err := json.Unmarshal(body, &got); err != nil || (tt.reason != "" && got.Error != tt.reason) {
					t.Fatalf("error %q, want %q", got.Error, tt.reason)
				}
			} else {
				if resp.StatusCode != tt.code {
					t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.code, body)
				}
				var got map[string]any
				if err := json.Unmarshal(body, &got); err != nil {
					t.Fatal(err)
				}
				if got["id"] != "acct-1" || got["action"] != tt.action || got["status"] != "accepted" {
					t.Fatalf("body %s", body)
				}
			}
			if !tt.noCtrl {
				if calls := f.ctrl.Calls(); len(calls) != 1 || calls[0] != tt.action+" acct-1" {
					t.Fatalf("controller calls %v", calls)
				}
			}
		})
	}
}

func TestHealthAndReadiness(t *testing.T) {
	var mu sync.Mutex
	reasons := []string{"store unreachable: dial tcp: refused"}
	f := newFixture(t, func(c *Config) {
		c.Ready = func(context.Context) []string { mu.Lock(); defer mu.Unlock(); return reasons }
	})
	resp, body := f.do(t, http.MethodGet, "/healthz")
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Fatalf("healthz: %d %q", resp.StatusCode, body)
	}
	resp, body = f.do(t, http.MethodGet, "/readyz")
	var got struct {
		Ready   bool     `json:"ready"`
		Reasons []string `json:"reasons"`
	}
	if err := json.Unmarshal(body, &got); err != nil || resp.StatusCode != http.StatusServiceUnavailable || got.Ready ||
		len(got.Reasons) != 1 || got.Reasons[0] != reasons[0] {
		t.Fatalf("readyz when not ready: %d %s (%v)", resp.StatusCode, body, err)
	}

	mu.Lock()
	reasons = nil
	mu.Unlock()
	resp, body = f.do(t, http.MethodGet, "/readyz")
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != `{"ready":true}` {
		t.Fatalf("readyz when ready: %d %s", resp.StatusCode, body)
	}
	// /healthz stays liveness only: it answers ok whatever readiness says.
	mu.Lock()
	reasons = []string{"lease loop stalled"}
	mu.Unlock()
	if resp, body := f.do(t, http.MethodGet, "/healthz"); resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz while not ready: %d %s", resp.StatusCode, body)
	}
}

func TestReadyWithoutFunc(t *testing.T) {
	f := newFixture(t, nil)
	if resp, body := f.do(t, http.MethodGet, "/readyz"); resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz: %d %s", resp.StatusCode, body)
	}
}

func TestTokenAuth(t *testing.T) {
	const token = "s3cret-token"
	f := newFixture(t, func(c *Config) { c.Token = token })
	f.seed(time.Now())
	tests := []struct {
		name, method, path, auth string
		code                     int
	}{
		{"list without token", "GET", "/api/accounts", "", 401},
		{"list wrong token", "GET", "/api/accounts", "Bearer nope", 401},
		{"list token prefix", "GET", "/api/accounts", "Bearer s3cret", 401},
		{"list token longer", "GET", "/api/accounts", "Bearer s3cret-token2", 401},
		{"list basic scheme", "GET", "/api/accounts", "Basic " + token, 401},
		{"list bare token", "GET", "/api/accounts", token, 401},
		{"list right token", "GET", "/api/accounts", "Bearer " + token, 200},
		{"scheme case-insensitive", "GET", "/api/accounts", "bearer " + token, 200},
		{"account", "GET", "/api/accounts/alice", "Bearer " + token, 200},
		{"qr without token", "GET", "/api/accounts/bob/qr.png", "", 401},
		{"qr with token", "GET", "/api/accounts/bob/qr.png", "Bearer " + token, 200},
		{"pair without token", "POST", "/api/accounts/dave/pair", "", 401},
		{"pair with token", "POST", "/api/accounts/dave/pair", "Bearer " + token, 202},
		{"dashboard without token: the login form", "GET", "/", "", 200},
		{"dashboard with token", "GET", "/", "Bearer " + token, 200},
		{"metrics without token", "GET", "/metrics", "", 401},
		{"metrics with token", "GET", "/metrics", "Bearer " + token, 200},
		{"events without token", "GET", "/api/events", "", 401},
		{"unknown route without token", "GET", "/nope", "", 401},
		{"healthz without token", "GET", "/healthz", "", 200},
		{"readyz without token", "GET", "/readyz", "", 200},
		{"healthz with wrong token", "GET", "/healthz", "Bearer nope", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdr []string
			if tt.auth != "" {
				hdr = []string{"Authorization", tt.auth}
			}
			resp, body := f.do(t, tt.method, tt.path, hdr...)
			if tt.code == 401 {
				wantError(t, resp, body, 401)
				if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Fatalf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
				}
				return
			}
			if resp.StatusCode != tt.code {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.code, body)
			}
		})
	}
}

func TestMetricsEndpointFollowsEvents(t *testing.T) {
	f := newFixture(t, nil)
	scrape := func() string {
		resp, body := f.do(t, http.MethodGet, "/metrics")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("metrics: %d", resp.StatusCode)
		}
		return string(body)
	}
	before := scrape()
	for _, want := range []string{"wafleet_reconnects_total 0", "wafleet_pairings_total 0", "wafleet_restarts_total 0", `wafleet_accounts{state="connected"} 0`, `wafleet_handshakes_total{result="ok"} 0`, "wafleet_handshake_duration_seconds_count 0"} {
		if !strings.Contains(before, want+"\n") {
			t.Errorf("before: missing %q", want)
		}
	}
	f.seed(time.Now())
	f.bus.Publish(events.Event{Account: "bob", Kind: events.KindPaired, State: events.StateConnecting, JID: "15550002:4@s.whatsapp.net"})
	f.metrics.ObserveHandshake(40*time.Millisecond, nil)
	f.metrics.ObserveHandshake(2*time.Second, errors.New("eof"))
	after := scrape()
	for _, want := range []string{"wafleet_reconnects_total 1", "wafleet_pairings_total 1", "wafleet_restarts_total 1", `wafleet_accounts{state="connected"} 1`, `wafleet_accounts{state="backoff"} 1`, `wafleet_accounts{state="connecting"} 1`, `wafleet_handshakes_total{result="ok"} 1`, `wafleet_handshakes_total{result="error"} 1`, "wafleet_handshake_duration_seconds_count 2"} {
		if !strings.Contains(after, want+"\n") {
			t.Errorf("after: missing %q", want)
		}
	}
}

func TestMetricsDisabled(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Metrics = nil })
	resp, body := f.do(t, http.MethodGet, "/metrics")
	wantError(t, resp, body, http.StatusNotFound)
}

func TestSecurityHeaders(t *testing.T) {
	f := newFixture(t, nil)
	for _, path := range []string{"/", "/api/accounts", "/api/accounts/nobody", "/healthz"} {
		t.Run(path, func(t *testing.T) {
			resp, _ := f.do(t, http.MethodGet, path)
			if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Cache-Control") != "no-store" {
				t.Fatalf("headers %v", resp.Header)
			}
		})
	}
}
