package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wafleet/wafleet/events"
)

// sse is one server-sent event as read from a stream.
type sse struct {
	id, name string
	data     map[string]any
}

// event returns the next event with its id and name.
func (s *stream) event() sse {
	s.t.Helper()
	var e sse
	var data string
	for {
		line := s.line()
		switch {
		case line == "" && data != "":
			if err := json.Unmarshal([]byte(data), &e.data); err != nil {
				s.t.Fatalf("event data is not JSON: %q", data)
			}
			return e
		case strings.HasPrefix(line, "id: "):
			e.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			e.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data += strings.TrimPrefix(line, "data: ")
		}
	}
}

// attempt is the attempt number the tests use to tell events apart.
func (e sse) attempt() int {
	n, _ := e.data["attempt"].(float64)
	return int(n)
}

func (f *fixture) publishAttempts(from, to int) {
	for i := from; i <= to; i++ {
		f.bus.Publish(events.Event{Account: "acct", Kind: events.KindReconnect, State: events.StateConnecting, Attempt: i})
	}
}

// waitAppended waits until the journal has written n events.
func (f *fixture) waitAppended(t *testing.T, n uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for f.journal.Stats().Appended < n {
		if time.Now().After(deadline) {
			t.Fatalf("the journal appended %d events, want %d", f.journal.Stats().Appended, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// wantAttempts reads events and checks their attempt numbers and that
// their ids increase.
func wantAttempts(t *testing.T, s *stream, from, to int) string {
	t.Helper()
	var last string
	for i := from; i <= to; i++ {
		e := s.event()
		if e.name != "" || e.attempt() != i {
			t.Fatalf("event %q %v, want attempt %d", e.name, e.data, i)
		}
		if e.id == "" || e.id <= last {
			t.Fatalf("event id %q after %q: want increasing ids", e.id, last)
		}
		last = e.id
	}
	return last
}

// A client that reconnects with Last-Event-ID gets exactly the events it
// missed, in order, then the live ones.
func TestEventStreamResumes(t *testing.T) {
	f := newFixture(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first, stop := context.WithCancel(ctx)
	s := openStream(t, first, f.http.Client(), f.http.URL, "")
	f.publishAttempts(1, 3)
	seen := wantAttempts(t, s, 1, 3)
	stop() // the client goes away
	s.resp.Body.Close()

	f.publishAttempts(4, 7) // meanwhile
	f.waitAppended(t, 7)

	s = openStream(t, ctx, f.http.Client(), f.http.URL, "", "Last-Event-ID", seen)
	f.publishAttempts(8, 9) // live, perhaps while the history is being sent
	wantAttempts(t, s, 4, 9)

	// The query parameter does the same for clients without the header.
	s = openStream(t, ctx, f.http.Client(), f.http.URL, "?id=acct&last_event_id="+seen)
	wantAttempts(t, s, 4, 9)
}

// Events the history no longer holds are announced by a "missed" event
// that carries the id to resume from; the live ones follow.
func TestEventStreamSaysWhatItMissed(t *testing.T) {
	f := newFixture(t, nil) // a history of 50 entries
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f.publishAttempts(1, 1)
	f.waitAppended(t, 1)
	first, err := f.outbox.Last(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f.publishAttempts(2, 80)
	f.waitAppended(t, 80)
	last, err := f.outbox.Last(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := openStream(t, ctx, f.http.Client(), f.http.URL, "", "Last-Event-ID", first)
	e := s.event()
	if e.name != "missed" || e.data["kind"] != "missed" || e.id != last || e.data["after"] != last {
		t.Fatalf("first event %q id %q %v, want a missed event resuming after %s", e.name, e.id, e.data, last)
	}
	f.publishAttempts(81, 81)
	wantAttempts(t, s, 81, 81)
}

// A stream that cannot keep up with the live events reads them back from
// the outbox: the client sees every one, in order.
func TestEventStreamCatchesUpAfterLagging(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.StreamBuffer = 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := openStream(t, ctx, f.http.Client(), f.http.URL, "")
	f.publishAttempts(1, 1)
	wantAttempts(t, s, 1, 1) // the stream has sent an entry: it can resume
	f.publishAttempts(2, 40)
	wantAttempts(t, s, 2, 40)
}

func TestEventStreamRefusesABadLastEventID(t *testing.T) {
	f := newFixture(t, nil)
	for _, tt := range []struct{ header, query, field string }{
		{"not-an-id", "", "Last-Event-ID"},
		{"", "?last_event_id=12-x", "last_event_id"},
		{strings.Repeat("9", 65), "", "Last-Event-ID"},
	} {
		resp, body := f.do(t, http.MethodGet, "/api/events"+tt.query, "Last-Event-ID", tt.header)
		wantError(t, resp, body, http.StatusBadRequest)
		if !strings.Contains(string(body), tt.field) {
			t.Fatalf("error %s does not name %s", body, tt.field)
		}
	}
}
