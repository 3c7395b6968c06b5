package fleet

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/wafleet/wafleet/internal/testkit"
	"github.com/wafleet/wafleet/store/redis/redistest"
)

func shares(m map[string][]string) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		out[k] = len(v)
	}
	return out
}

// TestClockJump: Redis's clock jumps past the TTL, so every lease and
// heartbeat vanishes at once while the instances still hold them locally.
// B, ticking first, sees itself alone and takes A's accounts, but connects
// none before A has closed its socket (the world fails the test on a second
// connection); A learns of the loss at its next renewal. Then the fleet
// rebalances to the rendezvous shares.
func TestClockJump(t *testing.T) {
	c, prefix := redistest.Shared(t)
	w := newWorld(t)
	clk := testkit.NewClock(time.Unix(1_700_000_000, 0))
	ttl := 15 * time.Second
	interval := ttl / 5
	accts := accounts(60)
	names := []string{"inst-a", "inst-b"}
	a := startNode(t, w, c, prefix, names[0], clk, ttl, 0, accts, nil)
	b := startNode(t, w, c, prefix, names[1], clk, ttl, 0, accts, nil)
	clk.Advance(ttl)
	round := func(nodes ...node) {
		for _, n := range nodes {
			n.c.Step(t.Context())
		}
		clk.Advance(interval)
	}
	target := want(accts, names)
	converged := func() bool { return maps.EqualFunc(w.byOwner(), target, slices.Equal) }
	for i := 0; !converged(); i++ {
		if i == 40 {
			t.Fatalf("never converged: %v", shares(w.byOwner()))
		}
		round(a, b)
	}

	keys, err := c.Keys(t.Context(), prefix+":{*}:lease").Result()
	if err != nil || len(keys) != len(accts) {
		t.Fatalf("lease keys: %d, %v", len(keys), err)
	}
	c.Del(t.Context(), append(keys, prefix+":members")...)
	b.c.Step(t.Context())
	if held := len(b.l.Held()); held != len(accts) {
		t.Fatalf("after the jump B holds %d leases, want all %d", held, len(accts))
	}
	round(a)
	if n := len(w.byOwner()["inst-a"]); n != 0 {
		t.Fatalf("A still has %d accounts connected after its renewal was refused", n)
	}
	for i := 0; !converged(); i++ {
		if i == 30 {
			t.Fatalf("not converged after the jump: %v", shares(w.byOwner()))
		}
		round(b, a)
	}
}
