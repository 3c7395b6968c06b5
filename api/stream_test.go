package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"image"
	"image/png"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/skip2/go-qrcode"
	"go.uber.org/goleak"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/status"
)

// stream is an open GET /api/events response read line by line.
type stream struct {
	t    *testing.T
	resp *http.Response
	r    *bufio.Reader
}

// openStream connects to /api/events (with query) and reads up to the
// server's ": connected" comment, after which the subscription exists.
func openStream(t *testing.T, ctx context.Context, client *http.Client, base, query string, header ...string) *stream {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/events"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream status %d: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("Content-Type %q", ct)
	}
	s := &stream{t: t, resp: resp, r: bufio.NewReader(resp.Body)}
	for {
		line := s.line()
		if line == ": connected" {
			if s.line() != "" {
				t.Fatal("no blank line after the connected comment")
			}
			return s
		}
	}
}

func (s *stream) line() string {
	s.t.Helper()
	line, err := s.r.ReadString('\n')
	if err != nil {
		s.t.Fatalf("read stream: %v (read %q)", err, line)
	}
	return strings.TrimSuffix(line, "\n")
}

// next returns the data of the next event, as raw JSON and decoded.
func (s *stream) next() (string, map[string]any) {
	s.t.Helper()
	var data string
	for {
		line := s.line()
		switch {
		case line == "" && data != "":
			var m map[string]any
			if err := json.Unmarshal([]byte(data), &m); err != nil {
				s.t.Fatalf("event data is not JSON: %q", data)
			}
			return data, m
		case strings.HasPrefix(line, "data: "):
			data += strings.TrimPrefix(line, "data: ")
		}
	}
}

func TestEventStream(t *testing.T) {
	f := newFixture(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := openStream(t, ctx, f.http.Client(), f.http.URL, "")
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

	tests := []struct {
		name  string
		event events.Event
		want  map[string]any // "time" is checked when given, else only present
	}{
		{
			"qr never carries the code",
			events.Event{Account: "bob", Kind: events.KindQR, State: events.StatePairing, QR: testQR, Time: at},
			map[string]any{"account": "bob", "instance": "test", "kind": "qr", "state": "pairing", "time": "2025-03-01T12:00:00Z"},
		},
		{
			"connected",
			events.Event{Account: "alice", Kind: events.KindConnected, State: events.StateConnected, JID: "1:2@s.whatsapp.net"},
			map[string]any{"account": "alice", "instance": "test", "kind": "connected", "state": "connected", "jid": "1:2@s.whatsapp.net"},
		},
		{
			"backoff",
			events.Event{Account: "carol", Kind: events.KindDisconnected, State: events.StateBackoff, Error: "eof", Delay: 1500 * time.Millisecond, QR: "must-not-leak"},
			map[string]any{"account": "carol", "instance": "test", "kind": "disconnected", "state": "backoff", "error": "eof", "delay_ms": float64(1500)},
		},
		{
			"reconnect attempt",
			events.Event{Account: "carol", Kind: events.KindReconnect, State: events.StateConnecting, Attempt: 3},
			map[string]any{"account": "carol", "instance": "test", "kind": "reconnect", "state": "connecting", "attempt": float64(3)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.bus.Publish(tt.event)
			raw, got := s.next()
			if _, ok := tt.want["time"]; !ok && got["time"] != nil {
				tt.want["time"] = got["time"]
			}
			if len(got) != len(tt.want) || strings.Contains(raw, "must-not-leak") || strings.Contains(raw, testQR) {
				t.Fatalf("event %s, want fields %v", raw, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Fatalf("event %s: %s = %v, want %v", raw, k, got[k], v)
				}
			}
		})
	}
}

func TestEventStreamFilter(t *testing.T) {
	f := newFixture(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := openStream(t, ctx, f.http.Client(), f.http.URL, "?id=bob")
	f.bus.Publish(events.Event{Account: "alice", Kind: events.KindState, State: events.StateConnecting})
	f.bus.Publish(events.Event{Account: "bob", Kind: events.KindState, State: events.StateConnecting})
	if _, got := s.next(); got["account"] != "bob" {
		t.Fatalf("filtered stream delivered %v", got)
	}
}

func TestEventStreamWithToken(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Token = "tok" })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := openStream(t, ctx, f.http.Client(), f.http.URL, "", "Authorization", "Bearer tok")
	f.bus.Publish(events.Event{Account: "a", Kind: events.KindState, State: events.StateStopped})
	if _, got := s.next(); got["state"] != "stopped" {
		t.Fatalf("got %v", got)
	}
}

func TestEventStreamLimit(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxStreams = 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	openStream(t, ctx, f.http.Client(), f.http.URL, "")
	resp, body := f.do(t, http.MethodGet, "/api/events")
	wantError(t, resp, body, http.StatusServiceUnavailable)
}

func TestEventStreamUnavailable(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Events = nil })
	resp, body := f.do(t, http.MethodGet, "/api/events")
	wantError(t, resp, body, http.StatusServiceUnavailable)
}

func TestQRPNG(t *testing.T) {
	f := newFixture(t, nil)
	f.seed(time.Now())

	t.Run("pairing", func(t *testing.T) {
		resp, body := f.do(t, http.MethodGet, "/api/accounts/bob/qr.png")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "image/png" {
			t.Fatalf("Content-Type %q", ct)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
			t.Fatalf("Cache-Control %q", cc)
		}
		img, err := png.Decode(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("not a PNG: %v", err)
		}
		checkQRImage(t, img, testQR)
	})
	for _, tt := range []struct{ name, id string }{
		{"connected", "alice"},
		{"backoff", "carol"},
		{"unpaired", "dave"},
		{"unknown", "zed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := f.do(t, http.MethodGet, "/api/accounts/"+tt.id+"/qr.png")
			wantError(t, resp, body, http.StatusNotFound)
		})
	}
	t.Run("gone after pairing", func(t *testing.T) {
		f.bus.Publish(events.Event{Account: "bob", Kind: events.KindPaired, State: events.StateConnecting, JID: "1:2@s.whatsapp.net"})
		resp, body := f.do(t, http.MethodGet, "/api/accounts/bob/qr.png")
		wantError(t, resp, body, http.StatusNotFound)
	})
}

// checkQRImage checks that img is the QR symbol of content, drawn with
// square modules of qrModulePixels and a quiet zone: the three finder
// patterns sit in the corners (an independent structural check), and every
// module's centre pixel matches the encoder's matrix.
func checkQRImage(t *testing.T, img image.Image, content string) {
	t.Helper()
	q, err := qrcode.New(content, qrcode.Medium)
	if err != nil {
		t.Fatal(err)
	}
	bitmap := q.Bitmap()
	n := len(bitmap)
	b := img.Bounds()
	if b.Dx() != n*qrModulePixels || b.Dy() != n*qrModulePixels {
		t.Fatalf("image %v, want %d px square", b, n*qrModulePixels)
	}
	dark := func(mx, my int) bool {
		r, g, bl, _ := img.At(b.Min.X+mx*qrModulePixels+qrModulePixels/2, b.Min.Y+my*qrModulePixels+qrModulePixels/2).RGBA()
		return r+g+bl < 3*0x8000
	}
	const quiet = 4
	for my := 0; my < n; my++ {
		for mx := 0; mx < n; mx++ {
			if dark(mx, my) != bitmap[my][mx] {
				t.Fatalf("module (%d,%d) differs from the encoder's matrix", mx, my)
			}
		}
	}
	for y := 0; y < quiet; y++ {
		for x := 0; x < n; x++ {
			if dark(x, y) || dark(y, x) || dark(x, n-1-y) || dark(n-1-y, x) {
				t.Fatal("quiet zone is not blank")
			}
		}
	}
	size := n - 2*quiet
	for _, corner := range [][2]int{{quiet, quiet}, {quiet + size - 7, quiet}, {quiet, quiet + size - 7}} {
		for dy := 0; dy < 7; dy++ {
			for dx := 0; dx < 7; dx++ {
				ring := max(abs(dx-3), abs(dy-3)) // 3: outer dark, 2: light, 0-1: dark core
				if want := ring != 2; dark(corner[0]+dx, corner[1]+dy) != want {
					t.Fatalf("finder pattern at %v wrong at (%d,%d)", corner, dx, dy)
				}
			}
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func TestQRPNGErrors(t *testing.T) {
	if _, err := qrPNG(strings.Repeat("x", maxQRContent+1)); !errors.Is(err, errQRTooLong) {
		t.Fatalf("oversized content: %v", err)
	}
	if _, err := qrPNG(""); err == nil {
		t.Fatal("empty content rendered")
	}
	big := strings.Repeat("Z", maxQRContent) // the largest accepted renders
	img, err := qrPNG(big)
	if err != nil {
		t.Fatalf("content of %d bytes: %v", len(big), err)
	}
	if _, err := png.Decode(bytes.NewReader(img)); err != nil {
		t.Fatal(err)
	}
}

var externalRef = regexp.MustCompile(`(?i)(https?:|wss?:|ftp:|data:|src\s*=\s*["']?//|href\s*=\s*["']?//|\burl\(|@import|<link|<script[^>]+src)`)

func TestDashboard(t *testing.T) {
	f := newFixture(t, nil)
	resp, body := f.do(t, http.MethodGet, "/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("Content-Type %q", ct)
	}
	page := string(body)
	if m := externalRef.FindString(page); m != "" {
		t.Fatalf("dashboard refers to something external: %q", m)
	}
	for _, want := range []string{"<title>wafleet</title>", "api/accounts", "api/events", "/qr.png", "EventSource", "last_error", "connected_since", "reconnects", "restarts", "jid",
		`const STATES = ["connecting", "pairing", "unpaired", "connected", "backoff", "logged_out", "stopped"];`} {
		if !strings.Contains(page, want) {
			t.Errorf("dashboard lacks %q", want)
		}
	}
	if resp, _ := f.do(t, http.MethodGet, "/favicon.ico"); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("favicon: %d, want 204", resp.StatusCode)
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") {
		t.Fatalf("CSP %q", csp)
	}
	// The CSP must allow exactly the inline script and style the page has.
	for _, tag := range []string{"script", "style"} {
		_, rest, _ := strings.Cut(page, "<"+tag+">")
		inline, _, ok := strings.Cut(rest, "</"+tag+">")
		if !ok {
			t.Fatalf("no inline %s", tag)
		}
		sum := sha256.Sum256([]byte(inline))
		if src := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"; !strings.Contains(csp, tag+"-src "+src) {
			t.Fatalf("CSP %q does not allow the inline %s (%s)", csp, tag, src)
		}
		if strings.Count(page, "<"+tag) != 1 {
			t.Fatalf("more than one %s element: the CSP allows only the first", tag)
		}
	}
}

func TestInlineHashWithoutElement(t *testing.T) {
	if got := inlineHash([]byte("<p>"), "<script>", "</script>"); got != "'none'" {
		t.Fatalf("got %q", got)
	}
	if got := inlineHash([]byte("<script>x"), "<script>", "</script>"); got != "'none'" {
		t.Fatalf("unterminated: got %q", got)
	}
}

func TestServeListenerLifecycle(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	board := status.NewBoard()
	_, log := newEventLog(t)
	defer log.Close(context.Background()) // before the leak check
	srv, err := New(Config{Accounts: board, Events: log})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.ServeListener(ctx, ln) }()

	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz %d", resp.StatusCode)
	}

	// A second Serve is refused while the first runs.
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.ServeListener(ctx, ln2); !errors.Is(err, ErrServing) {
		t.Fatalf("second ServeListener: %v, want ErrServing", err)
	}

	// An open event stream must not hold the shutdown up.
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	s := openStream(t, sctx, client, base, "")
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("ServeListener after cancel: %v", err)
		}
	case <-sctx.Done():
		t.Fatal("ServeListener did not return after its context was cancelled")
	}
	if _, err := s.r.ReadString('\n'); err == nil {
		t.Fatal("event stream still open after shutdown")
	}
	s.resp.Body.Close()
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	ln3, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.ServeListener(context.Background(), ln3); !errors.Is(err, ErrClosed) {
		t.Fatalf("ServeListener after Shutdown: %v, want ErrClosed", err)
	}
	client.CloseIdleConnections()
}

func TestShutdownBeforeServe(t *testing.T) {
	srv, err := New(Config{Accounts: status.NewBoard()})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Serve after Shutdown: %v, want ErrClosed", err)
	}
}

func TestServeBadAddress(t *testing.T) {
	srv, err := New(Config{Accounts: status.NewBoard(), Listen: "nonsense"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(context.Background()); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("Serve on a bad address: %v", err)
	}
}

func TestDefaults(t *testing.T) {
	srv, err := New(Config{Accounts: status.NewBoard()})
	if err != nil {
		t.Fatal(err)
	}
	c := srv.cfg
	if c.Listen != DefaultListen || c.ActionTimeout != DefaultActionTimeout || c.MaxStreams != DefaultMaxStreams || c.StreamBuffer != DefaultStreamBuffer || c.Heartbeat != DefaultHeartbeat {
		t.Fatalf("defaults not applied: %+v", c)
	}
	// Handler works without a listener (for embedding and httptest).
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("healthz via Handler: %d", rec.Code)
	}
}
