package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/status"
)

var idPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// FuzzValidID checks validID against the contract's regular expression,
// less the two path segments "." and "..".
func FuzzValidID(f *testing.F) {
	for _, s := range []string{"", "a", "acct-1", "a.b_c-D9", strings.Repeat("x", 64), strings.Repeat("x", 65), "a/b", "ä", "a\x00", " a", "a\n", ".", "..", "..."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if got, want := validID(id), idPattern.MatchString(id) && id != "." && id != ".."; got != want {
			t.Fatalf("validID(%q) = %v, regexp says %v", id, got, want)
		}
	})
}

// FuzzRoutes sends arbitrary methods and paths to the API: it never panics,
// never answers 5xx, and every error is a JSON {"error":...}.
func FuzzRoutes(f *testing.F) {
	for _, seed := range [][2]string{
		{"GET", "/api/accounts"}, {"GET", "/api/accounts/bob"}, {"GET", "/api/accounts/bob/qr.png"},
		{"POST", "/api/accounts/bob/pair"}, {"POST", "/api/accounts/a%2Fb/logout"}, {"DELETE", "/api/accounts/x"},
		{"GET", "/"}, {"GET", "/healthz"}, {"PATCH", "/readyz"}, {"GET", "/api/accounts/../x"}, {"GET", "/%zz"},
	} {
		f.Add(seed[0], seed[1])
	}
	board := status.NewBoard()
	board.Publish(events.Event{Account: "bob", Kind: events.KindQR, State: events.StatePairing, QR: testQR, Time: time.Now()})
	srv, err := New(Config{Accounts: board, Controller: &fakeController{}})
	if err != nil {
		f.Fatal(err)
	}
	h := srv.Handler()
	methods := map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "DELETE": true, "PATCH": true, "OPTIONS": true}
	f.Fuzz(func(t *testing.T, method, path string) {
		if !methods[method] || path == "/api/events" || len(path) > 2048 {
			return // streams do not end by themselves
		}
		u, err := url.ParseRequestURI(path)
		if err != nil || u.Path == "/api/events" {
			return
		}
		req := &http.Request{Method: method, URL: u, Header: http.Header{}, Host: "example.test", RequestURI: path}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %q: status %d", method, path, rec.Code)
		}
		if rec.Code >= 400 && method != http.MethodHead {
			var body map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body["error"] == "" {
				t.Fatalf("%s %q: %d with body %q", method, path, rec.Code, rec.Body.String())
			}
		}
	})
}
