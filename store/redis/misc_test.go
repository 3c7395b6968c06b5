package redis

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/store/redis/redistest"
)

// TestLimiterSharedAcrossClients: two instances (two clients) draw from one
// budget, so the reservations of both together are spaced by the interval.
func TestLimiterSharedAcrossClients(t *testing.T) {
	c1, prefix := sharedClient(t)
	c2 := goredis.NewClient(c1.Options()) // the same server through a second client
	defer c2.Close()
	// One slot a second: reservations do not wait, so the test is quick,
	// and a loaded machine's delays between calls stay small beside it.
	const interval = time.Second
	o := LimiterOptions{Prefix: prefix, Rate: 1, Burst: 1}
	l1, err := NewLimiter(c1, o)
	if err != nil {
		t.Fatal(err)
	}
	l2, _ := NewLimiter(c2, o)
	const n = 10
	var (
		last       time.Duration
		lastBefore time.Time
		start      = time.Now()
	)
	for i := range n {
		l := l1
		if i%2 == 1 {
			l = l2
		}
		before := time.Now()
		d, err := l.Reserve(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		after := time.Now()
		// Slot i is at least one interval after slot i-1 (a later slot
		// when the limit was idle in between): with the server's clock
		// at now(i) when it answered, d(i) - d(i-1) >= interval -
		// (now(i) - now(i-1)), and the server's clock moved no more than
		// ours did from before call i-1 to after call i. A limit per
		// client would give the second client's first call no wait.
		if i > 0 {
			if min := interval - after.Sub(lastBefore) - time.Millisecond; d-last < min {
				t.Fatalf("reservation %d waits %v after the previous %v: slots closer than %v", i, d, last, interval)
			}
		}
		last, lastBefore = d, before
	}
	elapsed := time.Since(start)
	want := time.Duration(n-1) * interval
	if last > want || last < want-elapsed-time.Millisecond {
		t.Fatalf("last of %d reservations waits %v, want about %v (elapsed %v)", n, last, want, elapsed)
	}
	// Wait honours the context.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := l1.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with a cancelled context = %v", err)
	}
	if _, err := NewLimiter(c1, LimiterOptions{Rate: -1}); !errors.Is(err, ErrConfig) {
		t.Fatalf("negative rate = %v", err)
	}
}

func TestLimiterSecondClient(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	o := LimiterOptions{Rate: 10, Burst: 3}
	l1, _ := NewLimiter(srv.Client(t), o)
	l2, _ := NewLimiter(srv.Client(t), o)
	var waits []time.Duration
	for i := range 5 {
		l := l1
		if i%2 == 1 {
			l = l2
		}
		d, err := l.Reserve(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		waits = append(waits, d)
	}
	// A burst of 3, then 100 ms apart across both clients.
	for i, d := range waits[:3] {
		if d != 0 {
			t.Fatalf("reservation %d in the burst waits %v", i, d)
		}
	}
	if waits[3] < 50*time.Millisecond || waits[3] > 100*time.Millisecond || waits[4] < 150*time.Millisecond {
		t.Fatalf("waits after the burst = %v", waits[3:])
	}
	// Redis down: the local fallback still spaces the callers.
	srv.Kill()
	if _, err := l1.Reserve(t.Context()); err == nil {
		t.Fatal("Reserve with Redis down returned no error")
	}
	fresh, _ := NewLimiter(srv.Client(t), o)
	var local []time.Duration
	for range 4 {
		local = append(local, fresh.reserveLocal())
	}
	if local[2] != 0 || local[3] < 50*time.Millisecond {
		t.Fatalf("local fallback waits %v, want a burst of 3 then ~100ms", local)
	}
}

func TestDurabilityAssessment(t *testing.T) {
	tests := []struct {
		name     string
		cfg      map[string]string
		info     string
		severe   bool
		warn     string
		aof, rdb bool
	}{
		{"neither", map[string]string{"appendonly": "no", "save": ""}, "", true, "neither AOF nor RDB", false, false},
		{"rdb only", map[string]string{"appendonly": "no", "save": "3600 1 300 100"}, "", false, "only RDB", false, true},
		{"aof everysec", map[string]string{"appendonly": "yes", "appendfsync": "everysec", "save": ""}, "", false, "", true, false},
		{"aof fsync no", map[string]string{"appendonly": "yes", "appendfsync": "no", "save": "60 1"}, "", false, "appendfsync no", true, true},
		{"no CONFIG, aof on", nil, "# Persistence\r\naof_enabled:1\r\n", false, "", true, false},
		{"no CONFIG, aof off", nil, "# Persistence\r\naof_enabled:0\r\n", false, "cannot be read", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := assessDurability(tt.cfg, tt.info)
			if d.Severe != tt.severe || d.AOF != tt.aof || d.RDB != tt.rdb {
				t.Fatalf("got %+v", d)
			}
			if tt.warn == "" && d.Warning != "" || tt.warn != "" && !strings.Contains(d.Warning, tt.warn) {
				t.Fatalf("warning %q, want one containing %q", d.Warning, tt.warn)
			}
			if d.Warning != "" && !strings.Contains(d.Warning, "appendonly yes") {
				t.Fatalf("warning does not say the recommended setting: %q", d.Warning)
			}
		})
	}
}

func TestCheckDurabilityOnServer(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{}) // started with no AOF and no RDB
	c := srv.Client(t)
	d, err := CheckDurability(t.Context(), c)
	if err != nil || !d.Severe {
		t.Fatalf("CheckDurability = %+v, %v; want severe", d, err)
	}
	if err := c.ConfigSet(t.Context(), "appendonly", "yes").Err(); err != nil {
		t.Fatal(err)
	}
	c.ConfigSet(t.Context(), "appendfsync", "everysec")
	d, err = CheckDurability(t.Context(), c)
	if err != nil || d.Warning != "" || !d.AOF {
		t.Fatalf("CheckDurability with AOF = %+v, %v", d, err)
	}
}

func TestStreamSink(t *testing.T) {
	c, prefix := sharedClient(t)
	s, err := NewStreamSink(c, StreamOptions{Prefix: prefix, Instance: "inst-a", MaxLen: 1000})
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

// TestStreamSinkNeverBlocks: with Redis gone, Publish returns at once and
// counts what it cannot buffer or write.
func TestStreamSinkNeverBlocks(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	c := srv.Client(t)
	srv.Kill()
	s, err := NewStreamSink(c, StreamOptions{Instance: "i", Buffer: 4, Batch: 2, Timeout: 200 * time.Millisecond})
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
