package main

import (
	"testing"
	"time"

	"github.com/wafleet/wafleet/fleet"
	"github.com/wafleet/wafleet/store/redis"
)

// TestSimulate runs the simulated fleet at small scale on a private Redis:
// 3 instances converge over 3,000 accounts, a fourth joins, the first dies
// without releasing its leases; each time every account ends on its
// preferred member, and no account is ever owned twice.
func TestSimulate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a simulated fleet for about 15 s")
	}
	addr, stop, err := startRedis(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	const n = 3000
	cfg := simConfig{redisAddr: addr, instances: 3, accounts: n, ttl: 1500 * time.Millisecond, window: time.Second, timeout: 2 * time.Minute}
	r, err := simulate(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.violations != 0 {
		t.Fatalf("%d violations: %v", r.violations, r.firstViolations)
	}
	all := []string{"sim-00", "sim-01", "sim-02", "sim-03"}
	joined, died := 0, 0
	for i := range n {
		a := simAccount(i)
		if fleet.Preferred(a, all) == "sim-03" {
			joined++
		}
		if fleet.Preferred(a, all) == "sim-00" {
			died++
		}
	}
	// Every account the newcomer prefers came from another instance; after
	// the death those the dead one ran went elsewhere. Few more moved.
	if r.join.moved < int64(joined) || r.join.moved > int64(joined)+n/20 {
		t.Errorf("join moved %d accounts, want %d (the newcomer's share)", r.join.moved, joined)
	}
	if r.death.moved < int64(died) || r.death.moved > int64(died)+n/20 {
		t.Errorf("death moved %d accounts, want %d (the dead instance's)", r.death.moved, died)
	}
	if len(r.steady.roundTripsPerSecond) != 3 || r.steady.ticksPerSecond == 0 {
		t.Errorf("steady state %+v", r.steady)
	}
	// Leases, fences and holder records: three keys an account.
	if r.redisKeys < 3*n {
		t.Errorf("%d keys in Redis, want at least %d", r.redisKeys, 3*n)
	}
	t.Logf("initial %v, join %v (%d moved, at most %d an interval), death %v (%d moved); %.0f Redis commands/s",
		r.initial.took, r.join.took, r.join.moved, r.join.maxMoves, r.death.took, r.death.moved, r.steady.commandsPerSecond)
}

// TestSimWorldCountsViolations: the world the simulation checks against
// catches an account owned twice and a fencing token that did not grow.
func TestSimWorldCountsViolations(t *testing.T) {
	w := newSimWorld(3)
	w.newPhase([]int32{1, 1, 0})
	w.mu.Lock()
	w.run(0, 0, redis.FenceToken(1))
	w.mu.Unlock()
	w.closed(0, 0)
	w.mu.Lock()
	w.run(1, 0, redis.FenceToken(2)) // a clean move: 0 closed first
	w.run(0, 0, redis.FenceToken(3)) // owned twice
	w.mu.Unlock()
	w.closed(1, 0)
	w.closed(0, 0)
	w.mu.Lock()
	w.run(1, 0, redis.FenceToken(3)) // a stale token
	w.run(1, 1, redis.FenceToken(1))
	w.run(0, 2, redis.FenceToken(1))
	w.mu.Unlock()
	v, first := w.violationCount()
	if v != 2 {
		t.Fatalf("%d violations, want 2: %v", v, first)
	}
	done, moved, _ := w.progress()
	if !done || moved != 2 {
		t.Fatalf("done %v, moved %d; want true, 2", done, moved)
	}
}
