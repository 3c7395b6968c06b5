package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/internal/testkit"
)

// TestLogsNeverCarryQR drives every route that touches a QR code, plus a
// failing action, with a debug-level JSON logger and checks the log.
func TestLogsNeverCarryQR(t *testing.T) {
	var logs testkit.LogBuffer
	f := newFixture(t, func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	f.seed(time.Now())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := openStream(t, ctx, f.http.Client(), f.http.URL, "")
	f.bus.Publish(events.Event{Account: "bob", Kind: events.KindQR, State: events.StatePairing, QR: testQR})
	for { // the seeded events may come first: the journal appends them in the background
		_, got := s.next()
		if got["qr"] != nil {
			t.Fatalf("stream event %v", got)
		}
		if got["kind"] == "qr" {
			break
		}
	}
	for _, path := range []string{"/api/accounts", "/api/accounts/bob", "/api/accounts/bob/qr.png"} {
		if resp, _ := f.do(t, http.MethodGet, path); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
	f.ctrl.err = errors.New("supervisor: broke")
	if resp, _ := f.do(t, http.MethodPost, "/api/accounts/bob/pair"); resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("pair: %d", resp.StatusCode)
	}
	out := logs.String()
	if !strings.Contains(out, `"account":"bob"`) {
		t.Fatalf("the failed action was not logged: %s", out)
	}
	for _, part := range strings.Split(testQR, ",")[:4] {
		if strings.Contains(out, part) {
			t.Fatalf("log carries QR content %q: %s", part, out)
		}
	}
}
