package redis

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wafleet/wafleet/internal/testkit"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/redis/redistest"
	"github.com/wafleet/wafleet/store/storetest"
)

// newClock returns a manual clock for the local side of leases (Redis
// keeps its own time for PX).
func newClock() *testkit.Clock { return testkit.NewClock(time.Unix(1_700_000_000, 0)) }

// counter is a go-redis hook counting round trips: one per command sent
// alone, one per pipeline.
type counter struct {
	cmds, pipes atomic.Int64
}

func (h *counter) DialHook(next goredis.DialHook) goredis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

func (h *counter) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		h.cmds.Add(1)
		return next(ctx, cmd)
	}
}

func (h *counter) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		h.pipes.Add(1)
		return next(ctx, cmds)
	}
}

func (h *counter) RoundTrips() int64 { return h.cmds.Load() + h.pipes.Load() }

func (h *counter) Reset() { h.cmds.Store(0); h.pipes.Store(0) }

// newLeases returns a lease manager past its initial grace period.
func newLeases(t testing.TB, c goredis.UniversalClient, prefix, instance string, clk *testkit.Clock, ttl time.Duration) *Leases {
	t.Helper()
	m, err := NewLeases(c, LeaseOptions{Prefix: prefix, Instance: instance, TTL: ttl, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if grace, until := m.InGrace(); grace {
		clk.Advance(until.Sub(clk.Now()))
	}
	return m
}

// mustAcquire takes the lease of account through l, failing the test when it
// is not granted.
func mustAcquire(t testing.TB, l *Leases, account string) Lease {
	t.Helper()
	r, err := l.Acquire(t.Context(), account)
	if err != nil || len(r.Acquired) != 1 {
		t.Fatalf("%s: acquire %s = %+v, %v", l.Instance(), account, r, err)
	}
	return r.Acquired[0]
}

// testSealer returns a Sealer whose key is 32 bytes, the first one seed.
func testSealer(t testing.TB, seed byte) store.Sealer {
	t.Helper()
	key := make([]byte, 32)
	key[0] = seed
	s, err := store.NewAESSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sharedClient(t testing.TB) (*goredis.Client, string) {
	t.Helper()
	return redistest.Shared(t)
}

func boolp(b bool) *bool { return &b }

func pairedDeviceForBench(b *testing.B) *store.Device {
	return storetest.PairedDevice(b, "acct", "15551234567", "123456789012345", 5)
}

// target is a Redis deployment tests run against: the shared server by
// default; a private Cluster or Sentinel set in topology_test.go.
type target struct {
	// open returns a client and a key prefix of the test's own.
	open    func(t testing.TB) (goredis.UniversalClient, string)
	cluster bool
}

var sharedTarget = target{open: func(t testing.TB) (goredis.UniversalClient, string) { return sharedClient(t) }}

// modes are the write modes a Store can run in on the target: a Cluster
// cannot run the atomic one (its script spans slots).
func (tg target) modes() []struct {
	name  string
	split bool
} {
	if tg.cluster {
		return modes[1:]
	}
	return modes
}
