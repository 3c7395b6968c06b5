package connection

import (
	"testing"
	"time"
)

func TestBackoffNextCeilings(t *testing.T) {
	b := Backoff{Initial: time.Second, Max: 2 * time.Minute, StableAfter: time.Minute}
	almostOne := func() float64 { return 0.999999999 }
	tests := []struct {
		attempt int
		want    time.Duration // upper bound reached with rnd ~ 1
	}{
		{0, time.Second},
		{1, 2 * time.Second},
		{2, 4 * time.Second},
		{6, 64 * time.Second},
		{7, 2 * time.Minute}, // 128 s capped at 120 s
		{40, 2 * time.Minute},
		{200, 2 * time.Minute}, // no overflow for huge attempts
	}
	for _, tt := range tests {
		got := b.Next(tt.attempt, almostOne)
		if got > tt.want || got < tt.want-time.Millisecond {
			t.Errorf("Next(%d, ~1) = %v, want about %v", tt.attempt, got, tt.want)
		}
		if zero := b.Next(tt.attempt, func() float64 { return 0 }); zero != 0 {
			t.Errorf("Next(%d, 0) = %v, want 0 (full jitter)", tt.attempt, zero)
		}
	}
}

func TestBackoffJitterSpreads(t *testing.T) {
	b := DefaultBackoff
	seen := map[time.Duration]bool{}
	for i := 0; i < 100; i++ {
		d := b.Next(5, defaultRand)
		if d < 0 || d > 32*time.Second {
			t.Fatalf("Next(5) = %v out of [0, 32s]", d)
		}
		seen[d.Round(time.Second)] = true
	}
	if len(seen) < 5 {
		t.Fatalf("100 jittered delays fell on only %d distinct seconds", len(seen))
	}
}

func TestBackoffRetryAfterFloor(t *testing.T) {
	b := DefaultBackoff
	if got := b.NextAtLeast(0, 30*time.Second, func() float64 { return 0.5 }); got != 30*time.Second {
		t.Fatalf("NextAtLeast = %v, want the 30s floor", got)
	}
}

func TestBackoffStable(t *testing.T) {
	b := DefaultBackoff
	if b.Stable(59*time.Second) || !b.Stable(time.Minute) {
		t.Fatal("Stable threshold wrong")
	}
}
