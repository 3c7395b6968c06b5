package fleet

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/internal/testkit"
	"github.com/wafleet/wafleet/store/redis"
	"github.com/wafleet/wafleet/store/redis/redistest"
)

// closeRecorder is a socket that records when it was closed.
type closeRecorder struct {
	mu       sync.Mutex
	closedAt time.Time
}

func (r *closeRecorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closedAt.IsZero() {
		r.closedAt = time.Now()
	}
	return nil
}

func (r *closeRecorder) when() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closedAt
}

// stopRecorder is an Owner that records the accounts it was asked to stop
// and checks that their sockets were closed first.
type stopRecorder struct {
	t       *testing.T
	mu      sync.Mutex
	stopped []string
	sockets map[string]*closeRecorder
}

func (o *stopRecorder) Own(...string)    {}
func (o *stopRecorder) Resave(...string) {}
func (o *stopRecorder) Disown(accts ...string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, a := range accts {
		if s := o.sockets[a]; s != nil && s.when().IsZero() {
			o.t.Errorf("%s stopped before its socket was closed", a)
		}
	}
	o.stopped = append(o.stopped, accts...)
}

// TestWatchdogClosesAtDeadline: with no Step running at all (as when it
// waits on Redis), the watchdog closes an account's socket when its lease's
// local deadline passes — not before — and only then ends its actor.
func TestWatchdogClosesAtDeadline(t *testing.T) {
	c, prefix := redistest.Shared(t)
	synctest.Test(t, func(t *testing.T) {
		ttl := 15 * time.Second
		l, err := redis.NewLeases(c, redis.LeaseOptions{Prefix: prefix, Instance: "inst-a", TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		if grace, until := l.InGrace(); grace {
			time.Sleep(time.Until(until))
		}
		r, err := l.Acquire(t.Context(), "acct")
		if err != nil || len(r.Acquired) != 1 {
			t.Fatalf("Acquire = %+v, %v", r, err)
		}
		deadline := r.Acquired[0].ValidUntil
		socks := NewSockets(l)
		sock := &closeRecorder{}
		if _, err := socks.Track("acct", sock); err != nil {
			t.Fatal(err)
		}
		owner := &stopRecorder{t: t, sockets: map[string]*closeRecorder{"acct": sock}}
		rec := testkit.NewRecorder()
		co, err := New(Config{Leases: l, Sockets: socks, Owner: owner, Events: rec})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { co.watchdog(ctx); close(done) }()

		time.Sleep(time.Until(deadline) - time.Millisecond)
		synctest.Wait()
		if !sock.when().IsZero() {
			t.Fatalf("socket closed %v before the lease's deadline", deadline.Sub(sock.when()))
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if at := sock.when(); !at.Equal(deadline) {
			t.Fatalf("socket closed at %v, want at the deadline %v", at, deadline)
		}
		owner.mu.Lock()
		if len(owner.stopped) != 1 || owner.stopped[0] != "acct" {
			t.Errorf("actors stopped: %v", owner.stopped)
		}
		owner.mu.Unlock()
		if lost := rec.Events(); len(lost) != 1 || lost[0].Kind != events.KindLeaseLost {
			t.Errorf("events %+v", lost)
		}
		// A connection opened now is refused and closed at once.
		late := &closeRecorder{}
		if _, err := socks.Track("acct", late); err == nil || late.when().IsZero() {
			t.Fatalf("Track after the deadline = %v, closed %v", err, !late.when().IsZero())
		}
		cancel()
		<-done
	})
}
