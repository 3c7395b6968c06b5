package connection

import (
	"slices"
	"testing"
	"time"

	"github.com/wafleet/wafleet/internal/testkit"
)

func newTestGuard(t *testing.T, accounts int, clk *testkit.Clock) *WipeGuard {
	t.Helper()
	g, err := NewWipeGuard(WipeGuardConfig{Share: 0.2, Min: 3, Window: 10 * time.Minute,
		Accounts: func() int { return accounts }, Logger: quietLogger(), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestWipeGuardPausesAtTheShare(t *testing.T) {
	clk := testkit.NewClock(time.Unix(1_700_000_000, 0))
	g := newTestGuard(t, 10, clk)
	for _, id := range []string{"a", "b"} {
		if !g.Allow(id) {
			t.Fatalf("logout of %s (at most 20%% of 10) held", id)
		}
	}
	if g.Allow("c") {
		t.Fatal("the third logout of 10 accounts within the window went ahead")
	}
	clk.Advance(time.Hour) // the pause outlives the window
	if g.Allow("d") {
		t.Fatal("a logout while paused went ahead")
	}
	if got := g.Held(); !slices.Equal(got, []string{"c", "d"}) || !g.Paused() {
		t.Fatalf("held %v, paused %v; want [c d], true", got, g.Paused())
	}
	if got := g.Confirm(); !slices.Equal(got, []string{"c", "d"}) {
		t.Fatalf("Confirm = %v; want [c d]", got)
	}
	if g.Paused() || len(g.Held()) != 0 {
		t.Fatal("still paused after Confirm")
	}
	for _, id := range []string{"e", "f"} { // a new window starts
		if !g.Allow(id) {
			t.Fatalf("logout of %s after Confirm held", id)
		}
	}
}

func TestWipeGuardWindowAndSmallInstalls(t *testing.T) {
	clk := testkit.NewClock(time.Unix(1_700_000_000, 0))
	g := newTestGuard(t, 10, clk)
	g.Allow("a")
	g.Allow("b")
	clk.Advance(10 * time.Minute) // a and b leave the window
	if !g.Allow("c") {
		t.Fatal("a logout after the window was counted with older ones")
	}
	small := newTestGuard(t, 2, clk) // 2 accounts: both logouts are 100%, but under Min
	if !small.Allow("x") || !small.Allow("y") {
		t.Fatal("a 2-account install had a wipe held")
	}
	if _, err := NewWipeGuard(WipeGuardConfig{Share: 1.5, Accounts: func() int { return 1 }}); err == nil {
		t.Fatal("share 1.5 accepted")
	}
	if _, err := NewWipeGuard(WipeGuardConfig{}); err == nil {
		t.Fatal("a guard without an account count accepted")
	}
}
