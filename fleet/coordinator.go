package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/store/redis"
)

// Errors of this package.
var (
	// ErrConfig: a required dependency is missing or an option is invalid.
	ErrConfig = errors.New("fleet: invalid configuration")
)

// Owner runs the accounts this instance holds; cmd/manager implements it
// on the supervisor.
type Owner interface {
	// Start begins running the account under lease l (spawn its
	// connection actor). It must not block.
	Start(l redis.Lease)
	// Stop stops the accounts' connections, all at once, and returns once
	// they are closed, or when ctx ends. It is called for lost leases (ctx
	// then ends before the leases can expire in Redis), before handing
	// accounts over, and on shutdown. Stopping an account that is not
	// running is a no-op.
	Stop(ctx context.Context, accounts ...string)
	// Resave is called after Redis lost its data and the lease was taken
	// back: save the account's device state again (through the Bound
	// store, which already writes with the new lease). Must not block.
	Resave(l redis.Lease)
}

// Config configures a Coordinator. Leases and Owner are required.
type Config struct {
	Leases *redis.Leases
	Owner  Owner
	// Events receives lease_acquired and lease_lost. Default none.
	Events events.Publisher
	// Logger. Default slog.Default().
	Logger *slog.Logger
	// Interval between ticks. Default TTL/5 (3 s for the 15 s default),
	// which leaves several renewal attempts before a lease's local deadline.
	Interval time.Duration
	// MaxMoves bounds the hand-overs per tick. Default 5.
	MaxMoves int
	// Settle: the member set must have been unchanged this long before
	// accounts are handed over. Default one TTL.
	Settle time.Duration
	// OrphanAfter: an account nobody has held this long is taken by any
	// instance, whatever its preference. Default two TTLs.
	OrphanAfter time.Duration
	// StopTimeout bounds Owner.Stop on shutdown and hand-over. Default 10s.
	StopTimeout time.Duration
	// Now is the clock. Default time.Now; use the same clock as Leases.
	Now func() time.Time
}

// Coordinator runs one instance's part of the fleet: Run calls Step every
// Interval until its context ends, then stops every account and releases
// its leases.
type Coordinator struct {
	cfg Config
	l   *redis.Leases
	log *slog.Logger

	mu       sync.Mutex
	accounts []string

	// Touched only by Step (one goroutine).
	members      []string
	membersSince time.Time
	unheldSince  map[string]time.Time
	handedOver   map[string]time.Time
	sticky       map[string]bool
	ticks        int
}

// New returns a Coordinator.
func New(cfg Config) (*Coordinator, error) {
	if cfg.Leases == nil || cfg.Owner == nil {
		return nil, fmt.Errorf("%w: Leases and Owner are required", ErrConfig)
	}
	ttl := cfg.Leases.TTL()
	if cfg.Interval <= 0 {
		cfg.Interval = ttl / 5
	}
	if cfg.MaxMoves <= 0 {
		cfg.MaxMoves = 5
	}
	if cfg.Settle <= 0 {
		cfg.Settle = ttl
	}
	if cfg.OrphanAfter <= 0 {
		cfg.OrphanAfter = 2 * ttl
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Events == nil {
		cfg.Events = events.PublisherFunc(func(events.Event) {})
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Coordinator{
		cfg: cfg, l: cfg.Leases, log: log.With("instance", cfg.Leases.Instance()),
		unheldSince: map[string]time.Time{}, handedOver: map[string]time.Time{}, sticky: map[string]bool{},
	}, nil
}

// SetAccounts replaces the configured accounts (safe at any time); the
// next Step acts on it.
func (c *Coordinator) SetAccounts(ids []string) {
	c.mu.Lock()
	c.accounts = slices.Clone(ids)
	c.mu.Unlock()
}

// Run ticks until ctx ends, then shuts down gracefully: every account is
// stopped, then every lease released and the membership left.
func (c *Coordinator) Run(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return c.shutdown()
		case <-t.C:
		}
		c.Step(ctx)
		next := c.cfg.Interval
		if d := c.l.NextDeadline(); !d.IsZero() {
			next = min(next, max(d.Sub(c.cfg.Now()), time.Millisecond))
		}
		t.Reset(next)
	}
}

func (c *Coordinator) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.StopTimeout)
	defer cancel()
	held := c.l.Held()
	accounts := make([]string, len(held))
	for i, l := range held {
		accounts[i] = l.Account
	}
	c.cfg.Owner.Stop(ctx, accounts...)
	for _, a := range accounts {
		c.lost(a, "instance shutting down")
	}
	if err := c.l.Close(ctx); err != nil {
		return fmt.Errorf("fleet: release leases on shutdown: %w", err)
	}
	return nil
}

// Step runs one tick: heartbeat and renew (one round trip), stop lost or
// expiring accounts, then hand over, drop and acquire as Decide says.
func (c *Coordinator) Step(ctx context.Context) {
	now := c.cfg.Now()
	// A renewal must not outlive the earliest local deadline.
	tctx := ctx
	if d := c.l.NextDeadline(); !d.IsZero() {
		var cancel context.CancelFunc
		tctx, cancel = context.WithDeadline(ctx, time.Now().Add(max(d.Sub(now), 0)))
		defer cancel()
	}
	c.mu.Lock()
	accounts := slices.Clone(c.accounts)
	c.mu.Unlock()
	// Every few ticks the same round trip also reads who holds the accounts
	// this instance does not, to find orphans.
	c.ticks++
	var watch []string
	if c.ticks%3 == 1 {
		for _, a := range accounts {
			if _, mine := c.l.Get(a); !mine {
				watch = append(watch, a)
			}
		}
	}
	tr, err := c.l.Tick(tctx, watch...)
	if err != nil {
		c.log.Warn("fleet: lease renewal failed", "error", err, "held", len(c.l.Held()))
	}
	c.stopLost(ctx, tr.Lost, "lease taken over or expired in Redis")
	c.stopLost(ctx, c.l.Expire(), "lease not renewed in time")
	if tr.EpochChanged {
		c.log.Error("fleet: Redis lost its data; leases reasserted, devices re-saved", "reasserted", len(tr.Reasserted), "lost", len(tr.Lost))
	}
	for _, l := range tr.Reasserted {
		c.cfg.Owner.Resave(l)
	}
	if err != nil {
		return // no fresh view of the members: decide nothing
	}

	if !slices.Equal(tr.Members, c.members) {
		c.members, c.membersSince = tr.Members, now
	}
	held := map[string]bool{}
	for _, l := range c.l.Held() {
		held[l.Account] = true
	}
	for a, at := range c.handedOver {
		if now.Sub(at) > 10*c.l.TTL() {
			delete(c.handedOver, a)
		}
	}
	p := Decide(PlanInput{
		Self: c.l.Instance(), Members: c.members, Accounts: accounts, Held: held,
		Stable: now.Sub(c.membersSince) >= c.cfg.Settle, Sticky: c.sticky,
		Orphans: c.orphans(accounts, held, tr.Holders, now), MaxMoves: c.cfg.MaxMoves,
	})

	for _, a := range p.Drop {
		c.handOver(ctx, a, "account removed from the configuration")
		delete(c.sticky, a)
	}
	for _, a := range p.HandOver {
		c.handOver(ctx, a, "handed over to "+Preferred(a, c.members))
		c.handedOver[a] = now
	}
	if len(p.Acquire) == 0 {
		return
	}
	res, err := c.l.Acquire(ctx, p.Acquire...)
	if err != nil {
		c.log.Warn("fleet: acquire leases", "error", err, "wanted", len(p.Acquire))
	}
	for _, l := range res.Acquired {
		if held[l.Account] {
			continue
		}
		if _, ok := c.handedOver[l.Account]; ok {
			c.sticky[l.Account] = true // came back: its preferred member does not take it
		}
		delete(c.unheldSince, l.Account)
		c.cfg.Owner.Start(l)
		c.cfg.Events.Publish(events.Event{Account: l.Account, Kind: events.KindLeaseAcquired, State: events.StateConnecting, Time: time.Now()})
	}
}

// orphans returns the configured, unheld accounts nobody has held for
// OrphanAfter. holders, read by the tick every few ticks, is nil on the
// other ticks: then nothing is decided about orphans.
func (c *Coordinator) orphans(accounts []string, held map[string]bool, holders map[string]string, now time.Time) []string {
	if holders == nil {
		return nil
	}
	var out []string
	unheld := 0
	for _, a := range accounts {
		if held[a] {
			continue
		}
		unheld++
		if holders[a] != "" {
			delete(c.unheldSince, a)
			continue
		}
		since, ok := c.unheldSince[a]
		if !ok {
			c.unheldSince[a] = now
			continue
		}
		if now.Sub(since) >= c.cfg.OrphanAfter {
			out = append(out, a)
		}
	}
	if unheld == 0 {
		clear(c.unheldSince)
	}
	return out
}

// stopLost stops the accounts whose leases are gone, all at once: the stop
// must complete before the leases could be taken elsewhere.
func (c *Coordinator) stopLost(ctx context.Context, leases []redis.Lease, reason string) {
	if len(leases) == 0 {
		return
	}
	accounts := make([]string, len(leases))
	for i, l := range leases {
		accounts[i] = l.Account
	}
	sctx, cancel := context.WithTimeout(ctx, c.cfg.StopTimeout)
	defer cancel()
	c.cfg.Owner.Stop(sctx, accounts...)
	for _, a := range accounts {
		c.log.Warn("fleet: lease lost, account stopped", "account", a, "reason", reason)
		c.lost(a, reason)
	}
}

// handOver stops the account, then releases its lease so that the
// preferred member can take it.
func (c *Coordinator) handOver(ctx context.Context, acct, reason string) {
	sctx, cancel := context.WithTimeout(ctx, c.cfg.StopTimeout)
	defer cancel()
	c.cfg.Owner.Stop(sctx, acct)
	if err := c.l.Release(ctx, acct); err != nil {
		c.log.Warn("fleet: release lease", "account", acct, "error", err)
	}
	c.lost(acct, reason)
}

func (c *Coordinator) lost(acct, reason string) {
	c.cfg.Events.Publish(events.Event{Account: acct, Kind: events.KindLeaseLost, State: events.StateStopped, Error: reason, Time: time.Now()})
}
