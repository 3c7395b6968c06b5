package view

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wafleet/wafleet/status"
	wredis "github.com/wafleet/wafleet/store/redis"
	redistestpkg "github.com/wafleet/wafleet/store/redis/redistest"
)

// holdings are leases held in memory: account -> fencing token.
type holdings struct {
	mu sync.Mutex
	m  map[string]wredis.FenceToken
}

func newHoldings() *holdings { return &holdings{m: map[string]wredis.FenceToken{}} }

func (h *holdings) set(acct string, tok wredis.FenceToken) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if tok == 0 {
		delete(h.m, acct)
		return
	}
	h.m[acct] = tok
}

func (h *holdings) Get(acct string) (wredis.Lease, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	tok, ok := h.m[acct]
	return wredis.Lease{Account: acct, Token: tok}, ok
}

func (h *holdings) Held() []wredis.Lease {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []wredis.Lease
	for a, tok := range h.m {
		out = append(out, wredis.Lease{Account: a, Token: tok})
	}
	return out
}

func (h *holdings) holds(acct string) bool {
	_, ok := h.Get(acct)
	return ok
}

// recorder is a client hook that records every command sent and counts
// round trips (a command or a whole pipeline).
type recorder struct {
	mu    sync.Mutex
	trips int
	args  []string
}

func (r *recorder) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (r *recorder) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		r.note(cmd)
		return next(ctx, cmd)
	}
}

func (r *recorder) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		r.note(cmds...)
		return next(ctx, cmds)
	}
}

func (r *recorder) note(cmds ...goredis.Cmder) {
	if n := cmds[0].Name(); n == "hello" || n == "client" {
		return // a new connection's set-up
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.trips++
	for _, c := range cmds {
		r.args = append(r.args, fmt.Sprint(c.Args()...))
	}
}

func (r *recorder) roundTrips() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.trips
}

// sent reports whether any command carried s.
func (r *recorder) sent(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range r.args {
		if strings.Contains(a, s) {
			return true
		}
	}
	return false
}

// client returns a new client of c's server with a recorder.
func client(t testing.TB, c *goredis.Client) (*goredis.Client, *recorder) {
	t.Helper()
	nc := goredis.NewClient(c.Options())
	t.Cleanup(func() { _ = nc.Close() })
	// The script's first load is not what the tests count.
	if err := publishScript.Load(t.Context(), nc).Err(); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	nc.AddHook(rec)
	return nc, rec
}

func viewKeys(t testing.TB, prefix string) wredis.ViewKeys {
	t.Helper()
	k, err := wredis.NewViewKeys(prefix)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// join makes instance a live member for ttl, as its heartbeat would.
func join(t *testing.T, c *goredis.Client, k wredis.ViewKeys, instance string, ttl time.Duration) {
	t.Helper()
	now, err := c.Time(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ZAdd(t.Context(), k.Members(), goredis.Z{Score: float64(now.Add(ttl).UnixMilli()), Member: instance}).Err(); err != nil {
		t.Fatal(err)
	}
}

func newPublisher(t *testing.T, c goredis.UniversalClient, k wredis.ViewKeys, instance string, b Board, h Holdings) *Publisher {
	t.Helper()
	p, err := NewPublisher(PublisherConfig{Client: c, Keys: k, Instance: instance, LeaseTTL: 15 * time.Second, Board: b, Leases: h})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustFlush(t *testing.T, p *Publisher) {
	t.Helper()
	if err := p.flush(t.Context()); err != nil {
		t.Fatal(err)
	}
}

var _ Board = (*status.Board)(nil)

// redistest returns a client of the shared test Redis and a fresh prefix.
func redistest(t testing.TB) (*goredis.Client, string) {
	return redistestpkg.Shared(t)
}
