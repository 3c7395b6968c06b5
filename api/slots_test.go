package api

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/wafleet/wafleet/status"
)

// clientFrom is an HTTP client whose connections come from the loopback
// address ip (any of 127.0.0.0/8), so the server sees distinct clients.
func clientFrom(t *testing.T, ip string) *http.Client {
	t.Helper()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	tr := &http.Transport{DialContext: dialer.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// tryStream opens GET /api/events (with query) and returns its status; a
// stream that opened stays open until the test ends.
func tryStream(t *testing.T, ctx context.Context, client *http.Client, base, query string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/events"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp.StatusCode
}

var streamKeyMeta = regexp.MustCompile(`<meta name="stream-key" content="([A-Z2-7]{26})">`)

// dashboardKey loads the dashboard and returns the stream key of its page.
func (f *fixture) dashboardKey(t *testing.T) string {
	t.Helper()
	_, body := f.do(t, http.MethodGet, "/")
	m := streamKeyMeta.FindSubmatch(body)
	if m == nil {
		t.Fatal("the dashboard page holds no stream key")
	}
	return string(m[1])
}

// TestOneClientCannotTakeEveryStream: a client opening idle streams is
// capped long before the 64 slots are gone, and the dashboard still gets
// its stream from the same address.
func TestOneClientCannotTakeEveryStream(t *testing.T) {
	f := newFixture(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := clientFrom(t, "127.0.0.1")
	opened := 0
	for range DefaultMaxStreams + 1 {
		code := tryStream(t, ctx, client, f.http.URL, "")
		if code != http.StatusOK {
			if code != http.StatusTooManyRequests {
				t.Fatalf("stream %d refused with %d, want 429", opened+1, code)
			}
			break
		}
		opened++
	}
	if opened != DefaultClientStreams {
		t.Fatalf("one client opened %d streams, want %d", opened, DefaultClientStreams)
	}
	key := f.dashboardKey(t)
	for i := range 3 {
		if code := tryStream(t, ctx, client, f.http.URL, "?key="+key); code != http.StatusOK {
			t.Fatalf("dashboard stream %d from the same address: %d", i+1, code)
		}
	}
	if code := tryStream(t, ctx, client, f.http.URL, "?key=WRONGKEYWRONGKEYWRONGKEYWR"); code != http.StatusTooManyRequests {
		t.Fatalf("a stream with a wrong key: %d, want 429 like any other", code)
	}
}

// TestStreamsReservedForTheDashboard: many clients together fill only the
// unreserved slots; the reserved ones go to the dashboard.
func TestStreamsReservedForTheDashboard(t *testing.T) {
	f := newFixture(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	unreserved := DefaultMaxStreams - DefaultMaxStreams/8
	for i := range unreserved {
		ip := net.IPv4(127, 0, 1, byte(1+i/DefaultClientStreams)).String()
		if code := tryStream(t, ctx, clientFrom(t, ip), f.http.URL, ""); code != http.StatusOK {
			t.Fatalf("stream %d from %s: %d", i+1, ip, code)
		}
	}
	if code := tryStream(t, ctx, clientFrom(t, "127.0.2.1"), f.http.URL, ""); code != http.StatusServiceUnavailable {
		t.Fatalf("a new client once the unreserved slots are taken: %d, want 503", code)
	}
	key := f.dashboardKey(t)
	dash := clientFrom(t, "127.0.0.1")
	for i := range DefaultMaxStreams / 8 {
		if code := tryStream(t, ctx, dash, f.http.URL, "?key="+key); code != http.StatusOK {
			t.Fatalf("dashboard stream %d: %d", i+1, code)
		}
	}
	if code := tryStream(t, ctx, dash, f.http.URL, "?key="+key); code != http.StatusServiceUnavailable {
		t.Fatalf("a dashboard stream beyond every slot: %d, want 503", code)
	}
}

// TestStreamLifetime: an idle stream ends after its lifetime and its slot
// is free again.
func TestStreamLifetime(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.MaxStreams = 1
		c.StreamLifetime = 100 * time.Millisecond
		c.Heartbeat = time.Hour // nothing but the lifetime ends the stream
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 2 {
		s := openStream(t, ctx, f.http.Client(), f.http.URL, "")
		if _, err := io.Copy(io.Discard, s.r); err != nil {
			t.Fatalf("stream %d did not end cleanly: %v", i+1, err)
		}
	}
}

func TestReservedStreamsBelowMax(t *testing.T) {
	if _, err := New(Config{Accounts: status.NewBoard(), MaxStreams: 4, ReservedStreams: 4}); !errors.Is(err, ErrReservedStreams) {
		t.Fatalf("New with every slot reserved: %v, want ErrReservedStreams", err)
	}
}
