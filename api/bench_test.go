package api

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/status"
)

func BenchmarkQRPNG(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := qrPNG(testQR); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkList5000(b *testing.B) { benchmarkGet(b, 5000, "/api/accounts") }

func BenchmarkAuthorized(b *testing.B) {
	srv, err := New(Config{Accounts: status.NewBoard(), Token: "a-long-enough-operator-token"})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/api/accounts", nil)
	req.Header.Set("Authorization", "Bearer a-long-enough-operator-token")
	b.ReportAllocs()
	for b.Loop() {
		if !srv.authorized(req) {
			b.Fatal("refused")
		}
	}
}

// BenchmarkPage10000 is the console's read: one page of 50 of 10,000
// accounts, with the counts per state, naturally sorted.
func BenchmarkPage10000(b *testing.B) { benchmarkGet(b, 10000, "/api/accounts?page=100&limit=50") }

// benchmarkGet serves GET target from a board of n connected accounts.
func benchmarkGet(b *testing.B, n int, target string) {
	board := status.NewBoard()
	for i := range n {
		board.Publish(events.Event{Account: "acct-" + strconv.Itoa(i), Kind: events.KindConnected, State: events.StateConnected, JID: "1555" + strconv.Itoa(i) + ":1@s.whatsapp.net"})
	}
	srv, err := New(Config{Accounts: board})
	if err != nil {
		b.Fatal(err)
	}
	h := srv.Handler()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.Host = "127.0.0.1:8080"
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
}
