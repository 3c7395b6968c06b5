package redisstream

import (
	"context"
	"testing"
	"time"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/store/redis/redistest"
)

func TestSink(t *testing.T) {
	c, prefix := redistest.Shared(t)
	s, err := New(c, Options{Prefix: prefix, Instance: "inst-a", MaxLen: 1000})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	s.Publish(events.Event{Account: "a", Kind: events.KindQR, State: events.StatePairing, QR: "2@SECRET,ADV", Time: at})
	s.Publish(events.Event{Account: "a", Kind: events.KindLeaseAcquired, State: events.StateConnecting, Time: at})
	s.Publish(events.Event{Account: "b", Kind: events.KindDisconnected, State: events.StateBackoff, Error: "read: EOF", Attempt: 3, Delay: 1500 * time.Millisecond, Time: at})
	s.Publish(events.Event{Account: "c", Kind: events.KindAlarm, State: events.StateLoggedOut, Error: "banned", Alarm: events.AlarmBanned, Time: at})
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal("second Close:", err)
	}
	s.Publish(events.Event{Account: "late"}) // after Close: dropped, no panic
	msgs, err := c.XRange(t.Context(), prefix+":events", "-", "+").Result()
	if err != nil || len(msgs) != 4 {
		t.Fatalf("XRANGE = %d entries, %v", len(msgs), err)
	}
	want := []map[string]any{
		{"instance": "inst-a", "account": "a", "kind": "qr", "state": "pairing", "time": "2025-01-02T03:04:05Z"},
		{"instance": "inst-a", "account": "a", "kind": "lease_acquired", "state": "connecting", "time": "2025-01-02T03:04:05Z"},
		{"instance": "inst-a", "account": "b", "kind": "disconnected", "state": "backoff", "error": "read: EOF", "attempt": "3", "delay_ms": "1500", "time": "2025-01-02T03:04:05Z"},
		{"instance": "inst-a", "account": "c", "kind": "alarm", "state": "logged_out", "error": "banned", "alarm": "banned", "time": "2025-01-02T03:04:05Z"},
	}
	for i, m := range msgs {
		if len(m.Values) != len(want[i]) {
			t.Fatalf("entry %d = %v, want %v", i, m.Values, want[i])
		}
		for k, v := range want[i] {
			if m.Values[k] != v {
				t.Fatalf("entry %d field %s = %v, want %v", i, k, m.Values[k], v)
			}
		}
	}
	st := s.Stats()
	if st.Written != 4 || st.Dropped != 1 || st.Failed != 0 {
		t.Fatalf("Stats = %+v", st)
	}
}

// TestSinkNeverBlocks: with Redis gone, Publish returns at once and
// counts what it cannot buffer or write.
func TestSinkNeverBlocks(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	c := srv.Client(t)
	srv.Kill()
	s, err := New(c, Options{Instance: "i", Buffer: 4, Batch: 2, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		for range 1000 {
			s.Publish(events.Event{Account: "a", Kind: events.KindState})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Publish blocked with Redis down")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Written != 0 || st.Dropped+st.Failed != 1000 || st.Dropped == 0 {
		t.Fatalf("Stats = %+v", st)
	}
}
