package fleet

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/wafleet/wafleet/internal/testkit"
	"github.com/wafleet/wafleet/store/redis/redistest"
)

// TestRebalanceAfterOutage: Redis is down for longer than the TTL, so every
// instance drops every lease; when it is back, the fleet converges to the
// rendezvous shares within a few ticks instead of the first instance back
// taking everything.
func TestRebalanceAfterOutage(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{AOF: true})
	c := srv.Client(t)
	prefix := redistest.Prefix()
	w := newWorld(t)
	clk := testkit.NewClock(time.Unix(1_700_000_000, 0))
	ttl := 15 * time.Second
	interval := ttl / 5
	accts := accounts(120)
	names := []string{"inst-a", "inst-b", "inst-c"}
	var nodes []node
	for _, n := range names {
		nodes = append(nodes, startNode(t, w, c, prefix, n, clk, ttl, 0, accts, nil))
	}
	clk.Advance(ttl) // past the grace of a new epoch
	round := func(order []int) {
		for _, i := range order {
			nodes[i].c.Step(t.Context())
		}
		clk.Advance(interval)
	}
	target := want(accts, names)
	converged := func() bool { return maps.EqualFunc(w.byOwner(), target, slices.Equal) }
	for i := 0; !converged(); i++ {
		if i == 60 {
			t.Fatalf("never converged before the outage: %v", shares(w.byOwner()))
		}
		round([]int{0, 1, 2})
	}

	outage := func() {
		t.Helper()
		before := nodes[0].c.Health()
		if before.LastRenewal.IsZero() || before.Warming || before.Held == 0 {
			t.Fatalf("health of a converged instance: %+v", before)
		}
		// Redis goes away for two TTLs: every lease runs out locally.
		srv.Kill()
		for range 10 {
			round([]int{0, 1, 2})
		}
		if got := w.byOwner(); len(got) != 0 {
			t.Fatalf("accounts still running with Redis down past the TTL: %v", shares(got))
		}
		// The lease loop tells: no renewal since, warming, every lease lost.
		h := nodes[0].c.Health()
		if h.LastRenewal != before.LastRenewal || !h.Warming || h.Held != 0 || h.Lost < before.Lost+uint64(before.Held) {
			t.Fatalf("health during the outage %+v, before %+v", h, before)
		}
		srv.Restart()
		// The client reconnects by itself, within a second or so.
		for deadline := time.Now().Add(20 * time.Second); c.Ping(t.Context()).Err() != nil; {
			if time.Now().After(deadline) {
				t.Fatal("no connection to the restarted Redis")
			}
			time.Sleep(50 * time.Millisecond)
		}
		// Its own clock would have expired the leases and heartbeats
		// meanwhile.
		leases, err := c.Keys(t.Context(), prefix+":{*}:lease").Result()
		if err != nil {
			t.Fatalf("lease keys after the restart: %v", err)
		}
		c.Del(t.Context(), append(leases, prefix+":members")...)
	}
	converge := func(within int, what string) {
		t.Helper()
		rounds := 0
		for ; !converged(); rounds++ {
			if rounds == within {
				t.Fatalf("%s: shares after %d ticks: %v, want %v", what, rounds, shares(w.byOwner()), shares(target))
			}
			round([]int{0, 1, 2})
		}
		t.Logf("%s: converged in %d ticks: %v", what, rounds, shares(w.byOwner()))
	}

	// All instances reach Redis again at the same time: each waits for a
	// fresh view of the members, then takes its own share.
	outage()
	converge(4, "all back together")

	// A reaches Redis well before B and C and takes every account (those
	// B and C held after its guard interval: it cannot know when they last
	// renewed); once B and C are back and the membership settled, A hands
	// their shares over at MaxMoves a tick.
	outage()
	for range 10 {
		round([]int{0})
	}
	if got := len(w.byOwner()["inst-a"]); got != len(accts) {
		t.Fatalf("inst-a alone runs %d accounts, want all %d", got, len(accts))
	}
	excess := len(accts) - len(target["inst-a"])
	settle := int(ttl / interval)
	converge(settle+(excess+19)/20+3, "A back first")
}
