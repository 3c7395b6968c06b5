package fleet

import (
	"context"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/internal/testkit"
	"github.com/wafleet/wafleet/store/redis"
	"github.com/wafleet/wafleet/store/redis/redistest"
)

// world records which instance has a socket open for each account (as the
// server would see it) and fails the test on a second concurrent one.
type world struct {
	t       *testing.T
	mu      sync.Mutex
	running map[string]string
	resaved map[string]int
}

func newWorld(t *testing.T) *world {
	return &world{t: t, running: map[string]string{}, resaved: map[string]int{}}
}

// owner "connects" an account the moment it starts: it opens a fake socket
// through the instance's Sockets.
type owner struct {
	w       *world
	name    string
	sockets *Sockets
}

func (o owner) Own(accts ...string) {
	for _, acct := range accts {
		o.connect(acct)
	}
}

func (o owner) connect(acct string) {
	if _, err := o.sockets.Track(acct, socket{o.w, acct, o.name}); err != nil {
		o.w.t.Errorf("%s: start %s: %v", o.name, acct, err)
		return
	}
	o.w.mu.Lock()
	defer o.w.mu.Unlock()
	if cur, ok := o.w.running[acct]; ok {
		o.w.t.Errorf("%s connects %s while %s has it connected", o.name, acct, cur)
	}
	o.w.running[acct] = o.name
}

func (o owner) Disown(accts ...string) {
	o.w.mu.Lock()
	defer o.w.mu.Unlock()
	for _, acct := range accts {
		if o.w.running[acct] == o.name {
			o.w.t.Errorf("%s: the actor of %s is stopped before its socket was closed", o.name, acct)
		}
	}
}

// socket is an account's connection as the server sees it.
type socket struct {
	w          *world
	acct, name string
}

func (s socket) Close() error {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	if s.w.running[s.acct] == s.name {
		delete(s.w.running, s.acct)
	}
	return nil
}

func (o owner) Resave(accts ...string) {
	o.w.mu.Lock()
	for _, acct := range accts {
		o.w.resaved[acct]++
	}
	o.w.mu.Unlock()
}

func (w *world) byOwner() map[string][]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string][]string{}
	for a, o := range w.running {
		out[o] = append(out[o], a)
	}
	for _, v := range out {
		slices.Sort(v)
	}
	return out
}

type node struct {
	c *Coordinator
	l *redis.Leases
}

func startNode(t *testing.T, w *world, c goredis.UniversalClient, prefix, name string, clk *testkit.Clock, ttl time.Duration, maxMoves int, accts []string, ev events.Publisher) node {
	t.Helper()
	l, err := redis.NewLeases(c, redis.LeaseOptions{Prefix: prefix, Instance: name, TTL: ttl, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	socks := NewSockets(l)
	co, err := New(Config{Leases: l, Sockets: socks, Owner: owner{w, name, socks}, MaxMoves: maxMoves, Now: clk.Now, Events: ev})
	if err != nil {
		t.Fatal(err)
	}
	co.SetAccounts(accts)
	return node{co, l}
}

// want returns the preferred owner's accounts.
func want(accts, members []string) map[string][]string {
	out := map[string][]string{}
	for _, a := range accts {
		p := Preferred(a, members)
		out[p] = append(out[p], a)
	}
	for _, v := range out {
		slices.Sort(v)
	}
	return out
}

// TestJoinRebalanceLeave: one instance owns everything; a second joins and
// takes its share at most MaxMoves per tick once the membership settled;
// it leaves gracefully and the first takes everything back. No account
// ever runs twice.
func TestJoinRebalanceLeave(t *testing.T) {
	c, prefix := redistest.Shared(t)
	w := newWorld(t)
	clk := testkit.NewClock(time.Unix(1_700_000_000, 0))
	ttl := 15 * time.Second
	accts := accounts(60)
	rec := testkit.NewRecorder()

	a := startNode(t, w, c, prefix, "inst-a", clk, ttl, 3, accts, rec)
	clk.Advance(ttl) // past the grace of a new epoch
	interval := ttl / 5
	round := func(nodes ...node) {
		for _, n := range nodes {
			n.c.Step(t.Context())
		}
		clk.Advance(interval)
	}
	round(a)
	if got := len(w.byOwner()["inst-a"]); got != 60 {
		t.Fatalf("inst-a runs %d accounts, want 60", got)
	}

	b := startNode(t, w, c, prefix, "inst-b", clk, ttl, 3, accts, rec)
	members := []string{"inst-a", "inst-b"}
	target := want(accts, members)
	prev := len(w.byOwner()["inst-a"])
	rounds := 0
	for ; rounds < 40; rounds++ {
		if slices.Equal(w.byOwner()["inst-b"], target["inst-b"]) && slices.Equal(w.byOwner()["inst-a"], target["inst-a"]) {
			break
		}
		round(a, b)
		now := len(w.byOwner()["inst-a"])
		if prev-now > 3 {
			t.Fatalf("inst-a handed over %d accounts in one tick, max 3", prev-now)
		}
		prev = now
	}
	if !slices.Equal(w.byOwner()["inst-b"], target["inst-b"]) {
		t.Fatalf("not converged after %d rounds: b runs %d, wants %d", rounds, len(w.byOwner()["inst-b"]), len(target["inst-b"]))
	}
	minRounds := len(target["inst-b"]) / 3
	if rounds < minRounds {
		t.Fatalf("converged in %d rounds, faster than 3 moves per tick allows (%d)", rounds, minRounds)
	}
	// Stable: further rounds move nothing.
	before := w.byOwner()
	for range 5 {
		round(a, b)
	}
	if !maps.EqualFunc(before, w.byOwner(), slices.Equal) {
		t.Fatal("accounts moved with a stable membership")
	}

	// B shuts down gracefully; A takes everything back.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := b.c.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if len(w.byOwner()["inst-b"]) != 0 {
		t.Fatal("inst-b still runs accounts after shutdown")
	}
	for range 2 {
		round(a)
	}
	if got := len(w.byOwner()["inst-a"]); got != 60 {
		t.Fatalf("after inst-b left, inst-a runs %d, want 60", got)
	}
	kinds := map[events.Kind]int{}
	for _, e := range rec.Events() {
		kinds[e.Kind]++
	}
	if kinds[events.KindLeaseAcquired] < 60+len(target["inst-b"]) || kinds[events.KindLeaseLost] < 2*len(target["inst-b"]) {
		t.Fatalf("events %v", kinds)
	}
}

// TestCrashFailover: an instance stops renewing (crash); its leases expire
// in Redis after the TTL and the survivor takes its accounts, never while
// the crashed one could still hold them.
func TestCrashFailover(t *testing.T) {
	c, prefix := redistest.Shared(t)
	w := newWorld(t)
	ttl := 1500 * time.Millisecond
	accts := accounts(30)
	mk := func(name string) node {
		l, err := redis.NewLeases(c, redis.LeaseOptions{Prefix: prefix, Instance: name, TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		socks := NewSockets(l)
		co, err := New(Config{Leases: l, Sockets: socks, Owner: owner{w, name, socks}, MaxMoves: 100, Settle: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		co.SetAccounts(accts)
		return node{co, l}
	}
	a, b := mk("inst-a"), mk("inst-b")
	// Wait out the grace period of the new epoch (real time: Redis expiry
	// is real time too).
	deadline := time.Now().Add(10 * time.Second)
	for len(w.byOwner()["inst-a"])+len(w.byOwner()["inst-b"]) < 30 {
		if time.Now().After(deadline) {
			t.Fatalf("accounts never all running: %v", w.byOwner())
		}
		a.c.Step(t.Context())
		b.c.Step(t.Context())
		<-time.After(50 * time.Millisecond)
	}
	crashed := slices.Clone(w.byOwner()["inst-b"])
	if len(crashed) == 0 {
		t.Fatal("inst-b runs nothing")
	}
	// inst-b crashes: no more Steps, its fake connections keep "running"
	// until its leases would have been dropped — remove them as a kill -9
	// would, and check A takes them only after Redis expired the leases.
	crashAt := time.Now()
	w.mu.Lock()
	for _, a := range crashed {
		delete(w.running, a)
	}
	w.mu.Unlock()
	for len(w.byOwner()["inst-a"]) < 30 {
		if time.Now().After(crashAt.Add(10 * time.Second)) {
			t.Fatalf("failover incomplete: %v", w.byOwner())
		}
		a.c.Step(t.Context())
		<-time.After(50 * time.Millisecond)
	}
	if took := time.Since(crashAt); took < ttl-ttl/3 {
		t.Fatalf("accounts taken over %v after the crash, before the lease could expire", took)
	}
}
