package fleet

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/internal/testkit"
	"github.com/wafleet/wafleet/store/redis"
)

// memLeases is the lease table of one instance in memory: it grants every
// lease it is asked for, except those the test gave to another instance,
// which the next Tick reports lost.
type memLeases struct {
	self string
	ttl  time.Duration
	now  func() time.Time

	mu        sync.Mutex
	held      map[string]redis.Lease
	others    map[string]string // account → the instance holding it
	token     redis.FenceToken
	givenBack []string
	// onAcquire and onTick, when set, run at the start of every Acquire
	// and Tick (a slow Redis: the test's clock advances).
	onAcquire, onTick func()
	ticks             int
}

var _ Leases = (*memLeases)(nil)

func newMemLeases(self string, now func() time.Time) *memLeases {
	return &memLeases{self: self, ttl: 15 * time.Second, now: now, held: map[string]redis.Lease{}, others: map[string]string{}}
}

func (m *memLeases) Instance() string   { return m.self }
func (m *memLeases) TTL() time.Duration { return m.ttl }

func (m *memLeases) Get(acct string) (redis.Lease, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.held[acct]
	if !ok || !m.now().Before(l.ValidUntil) {
		return redis.Lease{}, false
	}
	return l, true
}

func (m *memLeases) Usable(acct string) bool {
	l, ok := m.Get(acct)
	return ok && !m.now().Before(l.NotBefore)
}

func (m *memLeases) Held() []redis.Lease {
	m.mu.Lock()
	defer m.mu.Unlock()
	return sortedLeases(m.held, func(redis.Lease) bool { return true })
}

func (m *memLeases) NextDeadline() time.Time {
	var t time.Time
	for _, l := range m.Held() {
		if t.IsZero() || l.ValidUntil.Before(t) {
			t = l.ValidUntil
		}
	}
	return t
}

func (m *memLeases) Expire() []redis.Lease {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	out := sortedLeases(m.held, func(l redis.Lease) bool { return !now.Before(l.ValidUntil) })
	for _, l := range out {
		delete(m.held, l.Account)
	}
	return out
}

// Tick renews the leases nobody else took and reports the others lost.
func (m *memLeases) Tick(_ context.Context, watch ...string) (redis.TickResult, error) {
	if m.onTick != nil {
		m.onTick()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ticks++
	res := redis.TickResult{Members: []string{m.self}}
	res.Lost = sortedLeases(m.held, func(l redis.Lease) bool { return m.others[l.Account] != "" })
	for _, l := range res.Lost {
		delete(m.held, l.Account)
	}
	for a, l := range m.held {
		l.ValidUntil = m.now().Add(m.ttl * 2 / 3)
		m.held[a] = l
		res.Renewed++
	}
	if len(watch) > 0 {
		res.Holders = map[string]string{}
		for _, a := range watch {
			res.Holders[a] = m.others[a]
		}
	}
	return res, nil
}

func (m *memLeases) Acquire(_ context.Context, accounts ...string) (redis.AcquireResult, error) {
	if m.onAcquire != nil {
		m.onAcquire()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	res := redis.AcquireResult{HeldBy: map[string]string{}}
	for _, a := range accounts {
		l, ok := m.held[a]
		switch {
		case ok:
		case m.others[a] != "":
			res.HeldBy[a] = m.others[a]
			continue
		default:
			m.token++
			l = redis.Lease{Account: a, Value: redis.LeaseValue(fmt.Sprintf("%s:%s.n", m.self, m.token)), Token: m.token, ValidUntil: m.now().Add(m.ttl * 2 / 3)}
			m.held[a] = l
		}
		res.Acquired = append(res.Acquired, l)
	}
	return res, nil
}

func (m *memLeases) Drop(accounts ...string) []redis.Lease {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := sortedLeases(m.held, func(l redis.Lease) bool { return slices.Contains(accounts, l.Account) })
	for _, l := range out {
		delete(m.held, l.Account)
	}
	return out
}

func (m *memLeases) GiveBack(_ context.Context, ls ...redis.Lease) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, l := range ls {
		m.givenBack = append(m.givenBack, l.Account)
	}
	return nil
}

func (m *memLeases) Close(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.held)
	return nil
}

// takeOver gives acct to another instance.
func (m *memLeases) takeOver(acct, by string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.others[acct] = by
}

func sortedLeases(held map[string]redis.Lease, keep func(redis.Lease) bool) []redis.Lease {
	var out []redis.Lease
	for _, l := range held {
		if keep(l) {
			out = append(out, l)
		}
	}
	slices.SortFunc(out, func(a, b redis.Lease) int { return strings.Compare(a.Account, b.Account) })
	return out
}

// callOwner records the Owner's calls, one line per batch, and checks that
// the sockets of disowned accounts were closed first.
type callOwner struct {
	t       *testing.T
	sockets map[string]*closeRecorder

	mu    sync.Mutex
	calls []string
}

func (o *callOwner) record(verb string, accts []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, verb+" "+strings.Join(accts, " "))
}

func (o *callOwner) Own(accts ...string)    { o.record("own", accts) }
func (o *callOwner) Resave(accts ...string) { o.record("resave", accts) }
func (o *callOwner) Disown(accts ...string) {
	for _, a := range accts {
		if s := o.sockets[a]; s != nil && s.when().IsZero() {
			o.t.Errorf("%s disowned before its socket was closed", a)
		}
	}
	o.record("disown", accts)
}

// took returns the calls since the last took.
func (o *callOwner) took() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := o.calls
	o.calls = nil
	return out
}

// TestCoordinatorOnMemoryLeases: without Redis, the coordinator owns the
// accounts it acquires in one batch, closes the socket of a lease taken
// over before disowning it, and drops and gives back an account removed
// from the configuration.
func TestCoordinatorOnMemoryLeases(t *testing.T) {
	clk := testkit.NewClock(time.Unix(1_700_000_000, 0))
	leases := newMemLeases("solo", clk.Now)
	socks := NewSockets(leases)
	sockB := &closeRecorder{}
	owner := &callOwner{t: t, sockets: map[string]*closeRecorder{"b": sockB}}
	rec := testkit.NewRecorder()
	co, err := New(Config{Leases: leases, Sockets: socks, Owner: owner, Now: clk.Now, Events: rec})
	if err != nil {
		t.Fatal(err)
	}
	co.SetAccounts([]string{"a", "b", "c"})

	co.Step(t.Context())
	if got := owner.took(); !slices.Equal(got, []string{"own a b c"}) {
		t.Fatalf("first tick: owner calls %q, want one batch owning a, b and c", got)
	}
	if _, err := socks.Track("b", sockB); err != nil {
		t.Fatal(err)
	}

	leases.takeOver("b", "other")
	clk.Advance(3 * time.Second)
	co.Step(t.Context())
	if got := owner.took(); !slices.Equal(got, []string{"disown b"}) {
		t.Fatalf("after a take-over: owner calls %q, want b disowned", got)
	}
	if sockB.when().IsZero() {
		t.Fatal("the socket of the lost lease is open")
	}
	if !slices.ContainsFunc(rec.Events(), func(e events.Event) bool { return e.Account == "b" && e.Kind == events.KindLeaseLost }) {
		t.Fatalf("no lease_lost event for b: %s", testkit.Describe(rec.Events()))
	}

	co.SetAccounts([]string{"a"})
	clk.Advance(3 * time.Second)
	co.Step(t.Context())
	if got := owner.took(); !slices.Equal(got, []string{"disown c"}) {
		t.Fatalf("after c left the configuration: owner calls %q, want c disowned", got)
	}
	if held := leases.Held(); len(held) != 1 || held[0].Account != "a" {
		t.Fatalf("held %+v, want only a", held)
	}
	leases.mu.Lock()
	defer leases.mu.Unlock()
	if !slices.Equal(leases.givenBack, []string{"c"}) {
		t.Fatalf("given back %v, want c", leases.givenBack)
	}
}

// TestAcquisitionsLeaveRoomForRenewals: a tick acquires in batches only
// until half an interval has passed, so that the leases it took are
// renewed by the next tick; the other accounts wait for the next ticks.
func TestAcquisitionsLeaveRoomForRenewals(t *testing.T) {
	clk := testkit.NewClock(time.Unix(1_700_000_000, 0))
	leases := newMemLeases("solo", clk.Now)
	interval := 3 * time.Second
	leases.onAcquire = func() { clk.Advance(interval / 3) } // a batch takes a third of an interval
	socks := NewSockets(leases)
	co, err := New(Config{Leases: leases, Sockets: socks, Owner: &callOwner{t: t}, Now: clk.Now, Interval: interval})
	if err != nil {
		t.Fatal(err)
	}
	n := 5*redis.DefaultAcquireBatch + 1
	accts := make([]string, n)
	for i := range accts {
		accts[i] = fmt.Sprintf("acct-%05d", i)
	}
	co.SetAccounts(accts)
	b := redis.DefaultAcquireBatch
	for i, want := range []int{2 * b, 4 * b, n} {
		co.Step(t.Context())
		if got := len(leases.Held()); got != want {
			t.Fatalf("after tick %d: %d leases held, want %d", i+1, got, want)
		}
		clk.Advance(interval)
	}
}

// TestTicksKeepTheirRate: when each tick takes half an interval (a slow
// Redis), the next one still starts an interval after the previous one
// began, not an interval after it ended: the time between two renewals
// does not grow with the ticks' own duration.
func TestTicksKeepTheirRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		leases := newMemLeases("solo", time.Now)
		interval := 3 * time.Second
		leases.onTick = func() { time.Sleep(interval / 2) }
		co, err := New(Config{Leases: leases, Sockets: NewSockets(leases), Owner: &callOwner{t: t}, Interval: interval})
		if err != nil {
			t.Fatal(err)
		}
		co.SetAccounts([]string{"a"})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- co.Run(ctx) }()
		time.Sleep(10*interval + interval*3/4) // the tick begun at 30 s has counted
		leases.mu.Lock()
		ticks := leases.ticks
		leases.mu.Unlock()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		// Ticks begin at 0, 3 s, …, 30 s: 11. Spaced by 4.5 s they would be 7.
		if ticks != 11 {
			t.Fatalf("%d ticks in 10 intervals, want 11 (one every interval)", ticks)
		}
	})
}

// Runs says which accounts the fleet runs, as SetAccounts last set them.
func TestCoordinatorRuns(t *testing.T) {
	leases := newMemLeases("solo", time.Now)
	co, err := New(Config{Leases: leases, Sockets: NewSockets(leases), Owner: &callOwner{t: t}})
	if err != nil {
		t.Fatal(err)
	}
	co.SetAccounts([]string{"c", "a", "b", "a"})
	for acct, want := range map[string]bool{"a": true, "b": true, "c": true, "d": false, "": false} {
		if got := co.Runs(acct); got != want {
			t.Errorf("Runs(%q) = %v, want %v", acct, got, want)
		}
	}
	co.SetAccounts([]string{"d"})
	if co.Runs("a") || !co.Runs("d") {
		t.Error("Runs does not follow SetAccounts")
	}
}
