package testkit

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wafleet/wafleet/events"
)

// WaitTimeout bounds every wait of a Recorder: long enough for a loaded
// two-core machine, short enough to report a hang.
const WaitTimeout = 30 * time.Second

// Recorder is an events.Publisher that keeps every event it is given and
// lets a test wait for the ones it expects. Its methods are safe for
// concurrent use.
type Recorder struct {
	mu      sync.Mutex
	events  []events.Event
	changed chan struct{} // closed and replaced at every Publish
}

var _ events.Publisher = (*Recorder)(nil)

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder { return &Recorder{changed: make(chan struct{})} }

// Publish records e.
func (r *Recorder) Publish(e events.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// Events returns a copy of the events recorded so far, oldest first.
func (r *Recorder) Events() []events.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]events.Event(nil), r.events...)
}

// WaitFor waits until an event matches and returns the first that does;
// it fails the test, naming what and listing the events, after
// WaitTimeout.
func (r *Recorder) WaitFor(t testing.TB, what string, match func(events.Event) bool) events.Event {
	t.Helper()
	got := r.WaitForN(t, 1, what, match)
	return got[0]
}

// WaitFrom waits for the first event at index from or later (in the order
// of Events) that matches, and returns it with its index, so that a test
// can wait for events in sequence. It fails the test after WaitTimeout.
func (r *Recorder) WaitFrom(t testing.TB, from int, what string, match func(events.Event) bool) (events.Event, int) {
	t.Helper()
	deadline := time.NewTimer(WaitTimeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		evs, changed := r.events, r.changed
		r.mu.Unlock()
		for i := from; i < len(evs); i++ {
			if match(evs[i]) {
				return evs[i], i
			}
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("no %s within %v (from event %d); events:\n%s", what, WaitTimeout, from, Describe(r.Events()))
		}
	}
}

// WaitForN waits until n events match and returns the first n that do; it
// fails the test after WaitTimeout.
func (r *Recorder) WaitForN(t testing.TB, n int, what string, match func(events.Event) bool) []events.Event {
	t.Helper()
	deadline := time.NewTimer(WaitTimeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		var got []events.Event
		for _, e := range r.events {
			if match(e) {
				got = append(got, e)
			}
		}
		changed := r.changed
		r.mu.Unlock()
		if len(got) >= n {
			return got[:n]
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("no %s within %v (%d of %d); events:\n%s", what, WaitTimeout, len(got), n, Describe(r.Events()))
		}
	}
}

// Describe lists events one a line, for failure messages; a QR code is
// only said to be there, never shown.
func Describe(evs []events.Event) string {
	var b strings.Builder
	for i, e := range evs {
		fmt.Fprintf(&b, "  %d %s %s state=%s jid=%q err=%q attempt=%d delay=%v qr=%t\n",
			i, e.Account, e.Kind, e.State, e.JID, e.Error, e.Attempt, e.Delay, e.QR != "")
	}
	return b.String()
}
