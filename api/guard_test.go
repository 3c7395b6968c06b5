package api

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// call runs one request through the server's handler with the given Host
// and headers (name, value pairs), and returns the recorder.
func call(srv *Server, method, path, host string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	req.Host = host
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, req)
	return rec
}

func wantRecorded(t *testing.T, rec *httptest.ResponseRecorder, code int, what string) {
	t.Helper()
	if rec.Code != code {
		t.Fatalf("%s: status %d, want %d (body %s)", what, rec.Code, code, rec.Body)
	}
}

func TestCrossSiteLogoutIsRefused(t *testing.T) {
	f := newFixture(t, nil)
	f.seed(time.Now())
	for _, h := range [][]string{
		{"Origin", "http://evil.example"},
		{"Origin", "null"},
		{"Origin", "http://127.0.0.1:9999"}, // another port is another site
		{"Sec-Fetch-Site", "cross-site"},
		{"Sec-Fetch-Site", "same-site"},
		{"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate"}, // a form post
	} {
		for _, action := range []string{"logout", "pair"} {
			rec := call(f.srv, http.MethodPost, "/api/accounts/alice/"+action, "127.0.0.1:8080", h...)
			wantRecorded(t, rec, http.StatusForbidden, action+" with "+strings.Join(h, ": "))
			if !strings.Contains(rec.Body.String(), "cross-site request refused") {
				t.Fatalf("%s with %v: body %s does not say why", action, h, rec.Body)
			}
		}
	}
	if calls := f.ctrl.Calls(); len(calls) != 0 {
		t.Fatalf("the controller was called for cross-site requests: %v", calls)
	}
}

func TestSameOriginActionsAreAccepted(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.AllowedHosts = []string{"wafleet.lan"} })
	for _, tt := range []struct {
		host   string
		header []string
	}{
		{"127.0.0.1:8080", []string{"Origin", "http://127.0.0.1:8080", "Sec-Fetch-Site", "same-origin"}},
		{"localhost:8080", []string{"Origin", "http://LOCALHOST:8080"}},
		{"[::1]:8080", []string{"Origin", "http://[::1]:8080"}},
		{"wafleet.lan:8080", []string{"Origin", "http://wafleet.lan:8080", "Sec-Fetch-Site", "same-origin"}},
		{"127.0.0.1:8080", nil}, // curl: neither header
		{"127.0.0.1:8080", []string{"Sec-Fetch-Site", "none"}},
	} {
		rec := call(f.srv, http.MethodPost, "/api/accounts/alice/logout", tt.host, tt.header...)
		wantRecorded(t, rec, http.StatusAccepted, tt.host+" "+strings.Join(tt.header, " "))
	}
	if n := len(f.ctrl.Calls()); n != 6 {
		t.Fatalf("controller called %d times, want 6", n)
	}
}

func TestForeignHostIsRefused(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.AllowedHosts = []string{"wafleet.lan"} })
	f.seed(time.Now())
	for _, host := range []string{"evil.example", "evil.example:8080", "wafleet.lan.evil.example", "", "0.0.0.0:8080", "192.0.2.7"} {
		for _, path := range []string{"/api/accounts", "/api/accounts/bob", "/api/accounts/bob/qr.png", "/api/events", "/", "/metrics"} {
			rec := call(f.srv, http.MethodGet, path, host)
			wantRecorded(t, rec, http.StatusForbidden, "GET "+path+" Host "+host)
			if strings.Contains(rec.Body.String(), testQR) {
				t.Fatalf("GET %s with Host %q leaked the QR code", path, host)
			}
		}
	}
	// The probes tell nothing and answer under any name.
	wantRecorded(t, call(f.srv, http.MethodGet, "/healthz", "evil.example"), http.StatusOK, "healthz")
}

func TestAllowedHosts(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.Listen = "wafleet.internal:8080"
		c.AllowedHosts = []string{"wafleet.lan", "OPS.example.com.", "[2001:db8::7]"}
	})
	for _, host := range []string{
		"localhost", "localhost:1234", "LocalHost.", "127.0.0.1", "127.1.2.3:80", "[::1]", "[::1]:8080", "[::ffff:127.0.0.1]:8080",
		"wafleet.lan", "wafleet.lan:8080", "WAFLEET.LAN.", "ops.example.com", "[2001:db8::7]:8080",
		"wafleet.internal:8080", // the host of the listen address
	} {
		wantRecorded(t, call(f.srv, http.MethodGet, "/api/accounts", host), http.StatusOK, "Host "+host)
	}
	// A cross-site link to the dashboard opens it.
	rec := call(f.srv, http.MethodGet, "/", "wafleet.lan", "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate")
	wantRecorded(t, rec, http.StatusOK, "navigation")
	// but a page elsewhere cannot read the accounts, nor open the stream.
	rec = call(f.srv, http.MethodGet, "/api/accounts", "wafleet.lan", "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "cors", "Origin", "http://evil.example")
	wantRecorded(t, rec, http.StatusForbidden, "cross-site fetch")
}

func TestHostOfTheConnectionIsAllowed(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Listen = "0.0.0.0:8080" })
	at := func(local, host string) int {
		req := httptest.NewRequest(http.MethodGet, "/api/accounts", nil)
		req.Host = host
		addr := &net.TCPAddr{IP: net.ParseIP(local), Port: 8080}
		req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, net.Addr(addr)))
		rec := httptest.NewRecorder()
		f.srv.Handler().ServeHTTP(rec, req)
		return rec.Code
	}
	if code := at("192.0.2.7", "192.0.2.7:8080"); code != http.StatusOK {
		t.Fatalf("the address the connection arrived on: %d, want 200", code)
	}
	if code := at("192.0.2.7", "192.0.2.8:8080"); code != http.StatusForbidden {
		t.Fatalf("another address: %d, want 403", code)
	}
	if code := at("192.0.2.7", "0.0.0.0:8080"); code != http.StatusForbidden {
		t.Fatalf("the unspecified listen address: %d, want 403", code)
	}
}

func TestHostCheckComesBeforeTheToken(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Token = "tok" })
	rec := call(f.srv, http.MethodGet, "/api/accounts", "evil.example", "Authorization", "Bearer tok")
	wantRecorded(t, rec, http.StatusForbidden, "foreign Host with the token")
	rec = call(f.srv, http.MethodPost, "/api/accounts/a/logout", "127.0.0.1", "Authorization", "Bearer tok", "Origin", "http://evil.example")
	wantRecorded(t, rec, http.StatusForbidden, "cross-site with the token")
	rec = call(f.srv, http.MethodGet, "/api/accounts", "127.0.0.1")
	wantRecorded(t, rec, http.StatusUnauthorized, "no token")
}
