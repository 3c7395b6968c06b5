package testkit

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wafleet/wafleet/events"
)

func TestRecorderWaitsForEventsPublishedLater(t *testing.T) {
	r := NewRecorder()
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() { r.Publish(events.Event{Account: fmt.Sprint("a", i), Kind: events.KindConnected}) })
	}
	got := r.WaitForN(t, 3, "three connected", func(e events.Event) bool { return e.Kind == events.KindConnected })
	wg.Wait()
	if len(got) != 3 {
		t.Fatalf("WaitForN returned %d events", len(got))
	}
	e := r.WaitFor(t, "a1", func(e events.Event) bool { return e.Account == "a1" })
	if e.Account != "a1" {
		t.Fatalf("WaitFor returned %+v", e)
	}
	evs := r.Events()
	evs[0].Account = "changed"
	if r.Events()[0].Account == "changed" {
		t.Fatal("Events returned the recorder's own slice")
	}
}

func TestRecorderWaitsFromAnIndex(t *testing.T) {
	r := NewRecorder()
	r.Publish(events.Event{Account: "a", Kind: events.KindConnected})
	go r.Publish(events.Event{Account: "b", Kind: events.KindConnected})
	isConnected := func(e events.Event) bool { return e.Kind == events.KindConnected }
	first, i := r.WaitFrom(t, 0, "first connected", isConnected)
	second, j := r.WaitFrom(t, i+1, "second connected", isConnected)
	if first.Account != "a" || i != 0 || second.Account != "b" || j != 1 {
		t.Fatalf("WaitFrom returned %s at %d, then %s at %d", first.Account, i, second.Account, j)
	}
}

func TestDescribeNeverShowsTheQR(t *testing.T) {
	d := Describe([]events.Event{{Account: "a", Kind: events.KindQR, State: events.StatePairing, QR: "2@SECRET"}})
	if strings.Contains(d, "SECRET") || !strings.Contains(d, "qr=true") {
		t.Fatalf("Describe = %q", d)
	}
}

func TestClockMovesOnlyWhenAdvanced(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	c := NewClock(start)
	if !c.Now().Equal(start) {
		t.Fatalf("Now = %v, want %v", c.Now(), start)
	}
	c.Advance(time.Minute)
	if got := c.Now().Sub(start); got != time.Minute {
		t.Fatalf("after Advance(1m) the clock moved %v", got)
	}
}

func TestLogBufferTakesConcurrentLogs(t *testing.T) {
	var b LogBuffer
	log := slog.New(slog.NewTextHandler(&b, nil))
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() { log.Info("line", "n", i) })
	}
	wg.Wait()
	if n := strings.Count(b.String(), "msg=line"); n != 10 {
		t.Fatalf("%d lines logged, want 10:\n%s", n, b.String())
	}
}
