package redis

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wafleet/wafleet/internal/testkit"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/redis/redistest"
	"github.com/wafleet/wafleet/store/storetest"
)

func TestLeaseLifecycle(t *testing.T) {
	testLeaseLifecycle(t, sharedTarget)
}

func testLeaseLifecycle(t *testing.T, tg target) {
	c, prefix := tg.open(t)
	ctx := t.Context()
	clk := newClock()
	ttl := 15 * time.Second
	a := newLeases(t, c, prefix, "inst-a", clk, ttl)
	b := newLeases(t, c, prefix, "inst-b", clk, ttl)
	k := a.k

	r, err := a.Acquire(ctx, "x", "y", "x")
	if err != nil || len(r.Acquired) != 2 {
		t.Fatalf("Acquire = %+v, %v", r, err)
	}
	if r.Acquired[0].ValidUntil != clk.Now().Add(ttl-ttl/3) {
		t.Fatalf("ValidUntil = %v, want send time + TTL - margin", r.Acquired[0].ValidUntil)
	}
	// Acquiring again returns the same lease.
	again, err := a.Acquire(ctx, "x")
	if err != nil || len(again.Acquired) != 1 || again.Acquired[0].Value != r.Acquired[0].Value {
		t.Fatalf("re-Acquire = %+v, %v", again, err)
	}
	rb, err := b.Acquire(ctx, "x", "z")
	if err != nil || len(rb.Acquired) != 1 || rb.Acquired[0].Account != "z" || rb.HeldBy["x"] != "inst-a" {
		t.Fatalf("B Acquire = %+v, %v", rb, err)
	}

	// Tick renews: the PTTL goes back up to the TTL. It also reads the
	// holders of the accounts it watches.
	c.PExpire(ctx, k.lease("x"), 2*time.Second)
	clk.Advance(time.Second)
	tr, err := a.Tick(ctx, "x", "z", "none")
	if err != nil || tr.Renewed != 2 || len(tr.Lost) != 0 || tr.EpochChanged {
		t.Fatalf("Tick = %+v, %v", tr, err)
	}
	if h := tr.Holders; h["x"] != "inst-a" || h["z"] != "inst-b" || h["none"] != "" {
		t.Fatalf("Holders = %v", h)
	}
	if pttl := c.PTTL(ctx, k.lease("x")).Val(); pttl < ttl-time.Second {
		t.Fatalf("PTTL after renew = %v", pttl)
	}
	if l, _ := a.Get("x"); l.ValidUntil != clk.Now().Add(ttl-ttl/3) {
		t.Fatalf("ValidUntil after renew = %v", l.ValidUntil)
	}
	if !slices.Equal(tr.Members, []string{"inst-a"}) {
		t.Fatalf("Members = %v", tr.Members)
	}
	if tr, _ := b.Tick(ctx); !slices.Equal(tr.Members, []string{"inst-a", "inst-b"}) {
		t.Fatalf("Members = %v", tr.Members)
	}

	// A lease taken over in Redis is reported lost at the next Tick.
	c.Set(ctx, k.lease("y"), "inst-b:999.ffff", ttl)
	tr, err = a.Tick(ctx)
	if err != nil || len(tr.Lost) != 1 || tr.Lost[0].Account != "y" {
		t.Fatalf("Tick after takeover = %+v, %v", tr, err)
	}
	if _, ok := a.Get("y"); ok {
		t.Fatal("lost lease still held")
	}

	// Without successful renewals a lease expires locally at ValidUntil.
	deadline := a.NextDeadline()
	clk.Advance(deadline.Sub(clk.Now()) - time.Millisecond)
	if exp := a.Expire(); len(exp) != 0 {
		t.Fatalf("expired early: %v", exp)
	}
	if _, ok := a.Get("x"); !ok {
		t.Fatal("lease invalid before its deadline")
	}
	clk.Advance(time.Millisecond)
	if _, ok := a.Get("x"); ok {
		t.Fatal("Get returns a lease past its deadline")
	}
	// A renewal answered once the deadline passed does not revive it.
	if tr, err := a.Tick(ctx); err != nil || tr.Renewed != 0 {
		t.Fatalf("Tick past the deadline = %+v, %v", tr, err)
	}
	if _, ok := a.Get("x"); ok {
		t.Fatal("a late renewal revived a lease past its deadline")
	}
	if exp := a.Expire(); len(exp) != 1 || exp[0].Account != "x" {
		t.Fatalf("Expire = %v", exp)
	}

	// Release deletes only our own lease.
	if err := b.Release(ctx, "z"); err != nil {
		t.Fatal(err)
	}
	if n := c.Exists(ctx, k.lease("z")).Val(); n != 0 {
		t.Fatal("released lease still in Redis")
	}
	r, _ = a.Acquire(ctx, "w")
	c.Set(ctx, k.lease("w"), "inst-c:5.aaaa", ttl) // someone else's now
	if err := a.Release(ctx, "w"); err != nil {
		t.Fatal(err)
	}
	if v := c.Get(ctx, k.lease("w")).Val(); v != "inst-c:5.aaaa" {
		t.Fatalf("Release deleted another instance's lease: %q", v)
	}

	// Close releases everything and leaves the membership.
	r, _ = b.Acquire(ctx, "v1", "v2")
	if len(r.Acquired) != 2 {
		t.Fatal(r)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := c.Exists(ctx, k.lease("v1"), k.lease("v2")).Val(); n != 0 {
		t.Fatalf("%d leases left after Close", n)
	}
	if tr, _ := a.Tick(ctx); !slices.Equal(tr.Members, []string{"inst-a"}) {
		t.Fatalf("Members after B closed = %v", tr.Members)
	}
	if _, err := b.Acquire(ctx, "v3"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Acquire after Close = %v", err)
	}
}

// TestLeaseExpiresInRedis: a lease nobody renews disappears after its TTL
// (Redis's clock) and another instance can take the account.
func TestLeaseExpiresInRedis(t *testing.T) {
	testLeaseExpiresInRedis(t, sharedTarget)
}

func testLeaseExpiresInRedis(t *testing.T, tg target) {
	c, prefix := tg.open(t)
	ctx := t.Context()
	a := newLeases(t, c, prefix, "inst-a", newClock(), 300*time.Millisecond)
	b := newLeases(t, c, prefix, "inst-b", newClock(), 300*time.Millisecond)
	mustAcquire(t, a, "acct")
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, err := b.Acquire(ctx, "acct")
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Acquired) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("lease never expired in Redis")
		}
		<-time.After(20 * time.Millisecond)
	}
}

func TestGraceAfterCreatingEpoch(t *testing.T) {
	c, prefix := sharedClient(t)
	clk := newClock()
	m, err := NewLeases(c, LeaseOptions{Prefix: prefix, Instance: "a", TTL: 3 * time.Second, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Acquire(t.Context(), "acct"); !errors.Is(err, ErrEpochChanged) {
		t.Fatalf("Acquire in a new Redis = %v, want ErrEpochChanged (grace)", err)
	}
	clk.Advance(3 * time.Second)
	if r, err := m.Acquire(t.Context(), "acct"); err != nil || len(r.Acquired) != 1 {
		t.Fatalf("Acquire after the grace = %+v, %v", r, err)
	}
	// A second instance finds the epoch and has no grace.
	n, _ := NewLeases(c, LeaseOptions{Prefix: prefix, Instance: "b", TTL: 3 * time.Second, Now: clk.Now})
	if r, err := n.Acquire(t.Context(), "other"); err != nil || len(r.Acquired) != 1 {
		t.Fatalf("second instance Acquire = %+v, %v", r, err)
	}
}

// TestRenewIsOneRoundTrip counts the round trips of a Tick with a go-redis
// hook: heartbeat, epoch check and every renewal travel in one pipeline.
func TestRenewIsOneRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 10, 1200} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			c, prefix := sharedClient(t)
			m := newLeases(t, c, prefix, "inst-a", newClock(), 15*time.Second)
			accts := make([]string, n)
			for i := range accts {
				accts[i] = fmt.Sprintf("acct-%d", i)
			}
			if r, err := m.Acquire(t.Context(), accts...); err != nil || len(r.Acquired) != n {
				t.Fatalf("Acquire got %d, %v", len(r.Acquired), err)
			}
			// Another instance holds some accounts; this one watches them.
			other := newLeases(t, c, prefix, "inst-b", newClock(), 15*time.Second)
			if _, err := other.Acquire(t.Context(), "theirs-1", "theirs-2"); err != nil {
				t.Fatal(err)
			}
			h := &counter{}
			c.AddHook(h)
			tr, err := m.Tick(t.Context(), "theirs-1", "theirs-2", "nobodys")
			if err != nil || tr.Renewed != n {
				t.Fatalf("Tick = %+v, %v", tr, err)
			}
			if rt := h.RoundTrips(); rt != 1 {
				t.Fatalf("Tick of %d leases with 3 watched accounts took %d round trips, want 1", n, rt)
			}
			want := map[string]string{"theirs-1": "inst-b", "theirs-2": "inst-b", "nobodys": ""}
			if !maps.Equal(tr.Holders, want) {
				t.Fatalf("Holders = %v, want %v", tr.Holders, want)
			}
		})
	}
}

// TestTickRenewsInBatches: a Tick renews RenewBatch leases per round trip,
// its heartbeat then in a round trip of its own, and reads the watched
// lease keys as many per round trip; when a renewal's round trip fails,
// the leases of the others are renewed all the same, the failed ones run
// to their deadline and Tick reports the failure; the reads whose round
// trip failed are left out of Holders; when the heartbeat's fails, nothing
// is renewed.
func TestTickRenewsInBatches(t *testing.T) {
	c, prefix := sharedClient(t)
	clk := newClock()
	m, _ := batchedLeases(t, c, prefix, clk)
	if _, err := m.Tick(t.Context()); err != nil { // loads the scripts
		t.Fatal(err)
	}
	trips := &leaseTrips{}
	c.AddHook(trips)

	// The heartbeat, 12 renewals and 5 reads, 4 to a round trip.
	watch := []string{"acct-0", "w-1", "w-2", "w-3", "w-4"}
	clk.Advance(time.Second)
	tr, err := m.Tick(t.Context(), watch...)
	if err != nil || tr.Renewed != 12 || len(tr.Lost) != 0 {
		t.Fatalf("Tick = %+v, %v", tr, err)
	}
	if rt := trips.n.Load(); rt != 6 {
		t.Fatalf("Tick of 12 leases and 5 reads, 4 per round trip, took %d round trips, want 6", rt)
	}
	want := map[string]string{"acct-0": "inst-a", "w-1": "", "w-2": "", "w-3": "", "w-4": ""}
	if !maps.Equal(tr.Holders, want) {
		t.Fatalf("Holders = %v, want %v", tr.Holders, want)
	}
	renewedAt := clk.Now()

	// The round trips renewing acct-1 (with 3 other leases) and reading
	// w-4 (alone) fail.
	clk.Advance(time.Second)
	trips.failOn(m.k.lease("acct-1"), m.k.lease("w-4"))
	tr, err = m.Tick(t.Context(), watch...)
	if err == nil || tr.Renewed != 8 || len(tr.Lost) != 0 || !slices.Equal(tr.Members, []string{"inst-a"}) {
		t.Fatalf("Tick with a renewal's round trip failing = %+v, %v", tr, err)
	}
	if _, ok := tr.Holders["w-4"]; ok || len(tr.Holders) != 4 {
		t.Fatalf("Holders = %v, want the 4 watched accounts but w-4", tr.Holders)
	}
	clk.Advance(renewedAt.Add(m.o.TTL - m.o.Margin).Sub(clk.Now()))
	if lost := m.Expire(); len(lost) != 4 || len(m.Held()) != 8 {
		t.Fatalf("at the first renewal's deadline %d expired and %d held, want 4 and 8", len(lost), len(m.Held()))
	}

	// The heartbeat's round trip fails: nothing is renewed.
	trips.failOn(m.k.epoch())
	tr, err = m.Tick(t.Context())
	if err == nil || tr.Renewed != 0 {
		t.Fatalf("Tick without its heartbeat = %+v, %v", tr, err)
	}
	clk.Advance(time.Second)
	if lost := m.Expire(); len(lost) != 8 || len(m.Held()) != 0 {
		t.Fatalf("at the second renewal's deadline %d expired and %d held, want 8 and 0", len(lost), len(m.Held()))
	}
}

// batchedLeases returns leases of 2 per script and 4 per round trip,
// past their grace, holding 12 accounts, which it returns.
func batchedLeases(t *testing.T, c *goredis.Client, prefix string, clk *testkit.Clock) (*Leases, []string) {
	t.Helper()
	m, err := NewLeases(c, LeaseOptions{Prefix: prefix, Instance: "inst-a", ChunkSize: 2, RenewBatch: 4, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if grace, until := m.InGrace(); grace {
		clk.Advance(until.Sub(clk.Now()))
	}
	accts := make([]string, 12)
	for i := range accts {
		accts[i] = fmt.Sprintf("acct-%d", i)
	}
	if r, err := m.Acquire(t.Context(), accts...); err != nil || len(r.Acquired) != len(accts) {
		t.Fatalf("Acquire got %d, %v", len(r.Acquired), err)
	}
	return m, accts
}

// TestCloseReleasesInBatches: Close releases RenewBatch leases per round
// trip, in parallel, and leaves the membership.
func TestCloseReleasesInBatches(t *testing.T) {
	c, prefix := sharedClient(t)
	clk := newClock()
	m, accts := batchedLeases(t, c, prefix, clk)
	if _, err := m.Tick(t.Context()); err != nil { // loads the heartbeat script
		t.Fatal(err)
	}
	if err := m.GiveBack(t.Context(), m.Drop("acct-0")...); err != nil { // loads the release script
		t.Fatal(err)
	}
	h := &leaseTrips{}
	c.AddHook(h)
	if err := m.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if rt := h.n.Load(); rt != 3 {
		t.Fatalf("Close of 11 leases, 4 per round trip, took %d round trips, want 3", rt)
	}
	for _, a := range accts {
		if n := c.Exists(t.Context(), m.k.lease(a), m.k.holder(a)).Val(); n != 0 {
			t.Fatalf("%s: %d of its lease and holder keys left after Close", a, n)
		}
	}
	if ms := c.ZRange(t.Context(), m.k.members(), 0, -1).Val(); slices.Contains(ms, "inst-a") {
		t.Fatalf("members after Close = %v", ms)
	}
}

// leaseTrips is a go-redis hook that counts the pipelines of scripts and
// reads (not those of a new connection's handshake) and fails those that
// name one of the keys failOn set (the epoch key: a Tick's heartbeat).
type leaseTrips struct {
	n    atomic.Int64
	mu   sync.Mutex
	fail []string
}

func (h *leaseTrips) failOn(keys ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fail = keys
}

func (h *leaseTrips) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h *leaseTrips) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook { return next }

func (h *leaseTrips) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		if slices.ContainsFunc(cmds, func(c goredis.Cmder) bool { return c.Name() == "evalsha" || c.Name() == "get" }) {
			h.n.Add(1)
		}
		h.mu.Lock()
		fail := slices.ContainsFunc(cmds, func(c goredis.Cmder) bool {
			return slices.ContainsFunc(c.Args(), func(a any) bool { return slices.Contains(h.fail, fmt.Sprint(a)) })
		})
		h.mu.Unlock()
		if fail {
			err := errors.New("injected failure")
			for _, c := range cmds {
				c.SetErr(err)
			}
			return err
		}
		return next(ctx, cmds)
	}
}

// TestAcquireInBatches: Acquire sends at most AcquireBatch acquisitions
// per round trip, so that no pipeline outlasts its timeout, and still
// takes every lease it can.
func TestAcquireInBatches(t *testing.T) {
	c, prefix := sharedClient(t)
	m := newLeases(t, c, prefix, "inst-a", newClock(), 15*time.Second)
	other := newLeases(t, c, prefix, "inst-b", newClock(), 15*time.Second)
	mustAcquire(t, other, "acct-7")
	accts := make([]string, 2*DefaultAcquireBatch+500)
	for i := range accts {
		accts[i] = fmt.Sprintf("acct-%d", i)
	}
	h := &counter{}
	c.AddHook(h)
	r, err := m.Acquire(t.Context(), accts...)
	if err != nil || len(r.Acquired) != len(accts)-1 {
		t.Fatalf("Acquire got %d of %d, %v", len(r.Acquired), len(accts)-1, err)
	}
	if !maps.Equal(r.HeldBy, map[string]string{"acct-7": "inst-b"}) {
		t.Fatalf("HeldBy = %v", r.HeldBy)
	}
	if rt := h.RoundTrips(); rt != 3 {
		t.Fatalf("Acquire of %d accounts took %d round trips, want 3", len(accts), rt)
	}
	if got := len(m.Held()); got != len(accts)-1 {
		t.Fatalf("holds %d leases, want %d", got, len(accts)-1)
	}
}

// TestRenewAfterScriptFlush: after SCRIPT FLUSH (as after a restart) the
// scripts are sent again and the renewal still succeeds.
func TestRenewAfterScriptFlush(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	c := srv.Client(t)
	m := newLeases(t, c, redistest.Prefix(), "inst-a", newClock(), 15*time.Second)
	if _, err := m.Acquire(t.Context(), "a", "b"); err != nil {
		t.Fatal(err)
	}
	c.ScriptFlush(t.Context())
	if tr, err := m.Tick(t.Context()); err != nil || tr.Renewed != 2 {
		t.Fatalf("Tick after SCRIPT FLUSH = %+v, %v", tr, err)
	}
}

// tickUntilOK retries a Tick while the client reconnects after a restart.
func tickUntilOK(t *testing.T, m *Leases) TickResult {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		tr, err := m.Tick(t.Context())
		if err == nil {
			return tr
		}
		if time.Now().After(deadline) {
			t.Fatalf("Tick never succeeded after the restart: %v", err)
		}
	}
}

func acquireUntilAnswered(t *testing.T, m *Leases, accts ...string) (AcquireResult, error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, err := m.Acquire(t.Context(), accts...)
		if err == nil || errors.Is(err, ErrEpochChanged) || time.Now().After(deadline) {
			return r, err
		}
	}
}

// TestRedisRestartWithDataLoss: Redis restarts empty. The instance that
// held the accounts reasserts them (and re-saves their devices); another
// instance acquires none of them meanwhile — no account has two owners —
// and the old lease values can no longer write.
func TestRedisRestartWithDataLoss(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	ca, cb := srv.Client(t), srv.Client(t)
	prefix := redistest.Prefix()
	ctx := t.Context()
	clkA, clkB := newClock(), newClock()
	ttl := 15 * time.Second
	a := newLeases(t, ca, prefix, "inst-a", clkA, ttl)
	b := newLeases(t, cb, prefix, "inst-b", clkB, ttl)
	sa := newStore(t, ca, prefix, false, nil)

	var accts []string
	devices := map[string]*store.Device{}
	for i := range 10 {
		id := fmt.Sprintf("acct-%d", i)
		accts = append(accts, id)
		devices[id] = storetest.PairedDevice(t, id, fmt.Sprintf("1555000%04d", i), fmt.Sprintf("9000000%08d", i), 2)
	}
	r, err := a.Acquire(ctx, accts...)
	if err != nil || len(r.Acquired) != 10 {
		t.Fatal(r, err)
	}
	old := r.Acquired
	bound := sa.Bound(a)
	for _, id := range accts {
		if err := bound.Save(ctx, devices[id]); err != nil {
			t.Fatal(err)
		}
	}

	srv.Restart() // no persistence: everything is gone

	// B tries first: its acquisitions carry the old epoch and are refused;
	// B waits out the grace period.
	if r, err := acquireUntilAnswered(t, b, accts...); !errors.Is(err, ErrEpochChanged) || len(r.Acquired) != 0 {
		t.Fatalf("B Acquire after data loss = %+v, %v; want ErrEpochChanged", r, err)
	}
	// A's next Tick sees the new epoch and takes its accounts back.
	tr := tickUntilOK(t, a)
	if !tr.EpochChanged || len(tr.Reasserted) != 10 || len(tr.Lost) != 0 {
		t.Fatalf("A Tick after data loss = changed %v, reasserted %d, lost %d", tr.EpochChanged, len(tr.Reasserted), len(tr.Lost))
	}
	// The hook: re-save the device state A holds.
	for _, l := range tr.Reasserted {
		if err := sa.Fenced(l).Save(ctx, devices[l.Account]); err != nil {
			t.Fatalf("re-save %s: %v", l.Account, err)
		}
	}
	// After B's grace, B still gets nothing: A owns every account.
	clkB.Advance(ttl)
	r, err = b.Acquire(ctx, accts...)
	if err != nil || len(r.Acquired) != 0 || len(r.HeldBy) != 10 {
		t.Fatalf("B Acquire after grace = %d acquired, %d held by others, %v", len(r.Acquired), len(r.HeldBy), err)
	}
	for _, id := range accts {
		if r.HeldBy[id] != "inst-a" {
			t.Fatalf("%s held by %q", id, r.HeldBy[id])
		}
		got, err := sa.Load(ctx, id)
		if err != nil || storetest.Diff(devices[id], got) != nil {
			t.Fatalf("device %s after re-save: %v", id, err)
		}
	}
	// The pre-restart lease values can no longer write.
	if err := sa.Fenced(old[0]).Save(ctx, devices[old[0].Account]); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("Save with a pre-restart lease = %v, want ErrLeaseLost", err)
	}
}

// TestAcquireRetryIsOurs: an acquisition answered twice (a client retry
// after a network error) is recognised as ours, not as held by another.
func TestAcquireRetryIsOurs(t *testing.T) {
	c, prefix := sharedClient(t)
	m := newLeases(t, c, prefix, "inst-a", newClock(), 15*time.Second)
	m.nonce = func() string { return "n1" }
	c.Set(t.Context(), m.k.lease("acct"), "inst-a:5.n1", time.Minute) // the first, lost answer
	r, err := m.Acquire(t.Context(), "acct")
	if err != nil || len(r.Acquired) != 1 || r.Acquired[0].Token != 5 {
		t.Fatalf("Acquire = %+v, %v", r, err)
	}
	// Another nonce of ours is not this call's: held.
	c.Set(t.Context(), m.k.lease("acct2"), "inst-a:6.n0", time.Minute)
	if r, err := m.Acquire(t.Context(), "acct2"); err != nil || len(r.Acquired) != 0 {
		t.Fatalf("Acquire of a stale own lease = %+v, %v", r, err)
	}
}

// TestAcquireGuard: an account whose previous holder let its lease expire
// (it did not release it) may connect only once that holder's local
// deadline has surely passed; released leases, and holders silent for
// longer than that, need no guard.
func TestAcquireGuard(t *testing.T) {
	c, prefix := sharedClient(t)
	ctx := t.Context()
	clk := newClock()
	ttl := 15 * time.Second
	guard := ttl - ttl/3/2 // TTL - Margin/2
	a := newLeases(t, c, prefix, "inst-a", clk, ttl)
	b := newLeases(t, c, prefix, "inst-b", clk, ttl)
	k := a.k
	if _, err := a.Acquire(ctx, "jump", "released", "silent", "alive"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Tick(ctx); err != nil { // B sees A's beat count now
		t.Fatal(err)
	}
	seen := clk.Now()

	// Redis's clock jumps: the lease vanishes while A still counts on it.
	clk.Advance(time.Second)
	c.Del(ctx, k.lease("jump"))
	r, err := b.Acquire(ctx, "jump")
	if err != nil || len(r.Acquired) != 1 {
		t.Fatalf("Acquire = %+v, %v", r, err)
	}
	if got, want := r.Acquired[0].NotBefore, seen.Add(guard); !got.Equal(want) {
		t.Fatalf("NotBefore after an expired lease = %v, want %v (A's count last seen + TTL - margin/2)", got, want)
	}

	// A released lease connects at once, and its holder record is gone.
	if err := a.Release(ctx, "released"); err != nil {
		t.Fatal(err)
	}
	if n := c.Exists(ctx, k.holder("released")).Val(); n != 0 {
		t.Fatal("holder record left after release")
	}
	if r, err := b.Acquire(ctx, "released"); err != nil || len(r.Acquired) != 1 || !r.Acquired[0].NotBefore.IsZero() {
		t.Fatalf("Acquire of a released lease = %+v, %v", r, err)
	}

	// A renews again: B has not seen that count, so it guards from the
	// moment its acquisition is answered.
	if _, err := a.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	c.Del(ctx, k.lease("alive"))
	r, err = b.Acquire(ctx, "alive")
	if err != nil || len(r.Acquired) != 1 || !r.Acquired[0].NotBefore.Equal(clk.Now().Add(guard)) {
		t.Fatalf("Acquire after a renewal B did not see = %+v, %v; want NotBefore %v", r, err, clk.Now().Add(guard))
	}

	// A goes silent (crash or pause); B keeps ticking and sees its count
	// unchanged for longer than A's deadline could be: no guard.
	if _, err := b.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	clk.Advance(ttl)
	if _, err := b.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	c.Del(ctx, k.lease("silent"))
	if r, err := b.Acquire(ctx, "silent"); err != nil || len(r.Acquired) != 1 || !r.Acquired[0].NotBefore.IsZero() {
		t.Fatalf("Acquire from a holder silent for a TTL = %+v, %v", r, err)
	}

	// A new instance has seen nobody's count: it guards.
	n := newLeases(t, c, prefix, "inst-n", clk, ttl)
	c.Del(ctx, k.lease("silent"))
	if r, err := n.Acquire(ctx, "silent"); err != nil || len(r.Acquired) != 1 || !r.Acquired[0].NotBefore.Equal(clk.Now().Add(guard)) {
		t.Fatalf("Acquire by a new instance = %+v, %v; want NotBefore %v", r, err, clk.Now().Add(guard))
	}
}
