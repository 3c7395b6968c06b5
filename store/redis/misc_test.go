package redis

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

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
	const interval = 100 * time.Millisecond // 1/Rate
	// The limiter spaces reservations on a schedule that starts at the
	// first one: reservation k may go at (k-2)·interval after it (a burst of
	// 3). A slow caller reaches a later reservation closer to its time, so
	// its wait shrinks; the checks hold however slowly the calls return:
	// no reservation may go before its time (returned at + wait, from a
	// start taken before the first call), none waits past it, and the
	// burst never waits.
	checkSchedule := func(name string, reserve func(i int) time.Duration) {
		t.Helper()
		start := time.Now()
		for i := range 5 {
			wait := reserve(i)
			goesAt := time.Since(start) + wait
			due := time.Duration(i-2) * interval
			switch {
			case i < 3 && wait != 0:
				t.Fatalf("%s: reservation %d in the burst waits %v", name, i, wait)
			case i >= 3 && goesAt < due-5*time.Millisecond:
				t.Fatalf("%s: reservation %d may go %v after the first, before its time %v", name, i, goesAt, due)
			case wait > max(due, 0)+time.Millisecond:
				t.Fatalf("%s: reservation %d waits %v, past its time %v", name, i, wait, due)
			}
		}
	}
	// Both clients share one schedule.
	checkSchedule("redis", func(i int) time.Duration {
		l := l1
		if i%2 == 1 {
			l = l2
		}
		d, err := l.Reserve(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return d
	})
	// Redis down: the local fallback still spaces the callers.
	srv.Kill()
	if _, err := l1.Reserve(t.Context()); err == nil {
		t.Fatal("Reserve with Redis down returned no error")
	}
	fresh, _ := NewLimiter(srv.Client(t), o)
	checkSchedule("local fallback", func(int) time.Duration { return fresh.reserveLocal() })
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
