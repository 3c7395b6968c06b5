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

// Owner runs the accounts this instance holds; package app implements it
// with messages to the supervisor. Its connections must go through the
// Coordinator's Sockets. No method may block: the lease loop never waits
// on an actor. Each call carries a batch of accounts.
type Owner interface {
	// Own begins running the accounts (spawn their connection actors).
	// It is called once their leases are usable (past NotBefore).
	Own(accounts ...string)
	// Disown ends the accounts' actors. Their sockets are already closed
	// (Sockets.Close) when it is called: for lost leases, before handing
	// accounts over, and on shutdown. Disowning an account that is not
	// running is a no-op.
	Disown(accounts ...string)
	// Resave is called after Redis lost its data and the leases were
	// taken back: save the accounts' device state again (through the
	// Bound store, which already writes with the new leases).
	Resave(accounts ...string)
}

// Config configures a Coordinator. Leases, Sockets and Owner are required.
type Config struct {
	Leases Leases
	// Sockets registers the connections of the accounts under Leases.
	Sockets *Sockets
	Owner   Owner
	// Events receives lease_acquired and lease_lost. Default none.
	Events events.Publisher
	// Logger. Default slog.Default().
	Logger *slog.Logger
	// Interval between ticks. Default TTL/5 (3 s for the 15 s default),
	// which leaves several renewal attempts before a lease's local deadline.
	Interval time.Duration
	// MaxMoves bounds the hand-overs per tick. Default 20: enough to hand
	// a third of 180 accounts over in three ticks (after an outage that
	// let one instance take them all), few enough not to drop a crowd of
	// connections at once; the new owner connects them at connect.rate.
	MaxMoves int
	// Settle: the member set must have been unchanged this long before
	// accounts are handed over. Default one TTL.
	Settle time.Duration
	// OrphanAfter: an account nobody has held this long is taken, whatever
	// its preference, by the instance ranked second for it (or by the one
	// that handed it over), which watch it. Default two TTLs.
	OrphanAfter time.Duration
	// Warmup: after a tick that failed (Redis unreachable), the instance
	// acquires nothing until its view of the members has been fresh this
	// long, so that the first instance back does not take every account.
	// Default 1.5 Intervals: every live instance heartbeats once meanwhile.
	Warmup time.Duration
	// ReleaseTimeout bounds giving leases back on shutdown. Default 10s.
	ReleaseTimeout time.Duration
	// Now is the clock. Default time.Now; use the same clock as Leases.
	Now func() time.Time
}

// Coordinator runs one instance's part of the fleet: Run calls Step every
// Interval until its context ends, then stops every account and releases
// its leases. Beside it a watchdog closes the sockets of every lease whose
// local deadline passes, whatever Step is doing.
type Coordinator struct {
	cfg     Config
	l       Leases
	sockets *Sockets
	log     *slog.Logger
	wake    chan struct{} // the watchdog: the earliest deadline may have changed
	// owning orders Own against the watchdog: startReady checks a lease
	// and owns its account under it, the watchdog expires leases under it.
	// So an account whose lease expired is never owned after it was
	// disowned (it would run without a lease).
	owning sync.Mutex

	mu          sync.Mutex
	accounts    []string // sorted; replaced, never changed in place
	accountsVer uint64   // counts SetAccounts calls
	health      Health   // what Health reports; Step and closeLost write it

	// Touched only by Step (one goroutine).
	members      []string
	membersSince time.Time
	assign       *Assignment // of accounts (at assignVer) to members
	assignVer    uint64
	unheldSince  map[string]time.Time
	handedOver   map[string]time.Time
	sticky       map[string]bool
	pending      map[string]redis.Lease // acquired, waiting for NotBefore
	ticks        int
	warming      bool      // a tick failed: acquire nothing until warm
	warmSince    time.Time // the first successful tick since
}

// New returns a Coordinator.
func New(cfg Config) (*Coordinator, error) {
	if cfg.Leases == nil || cfg.Sockets == nil || cfg.Owner == nil {
		return nil, fmt.Errorf("%w: Leases, Sockets and Owner are required", ErrConfig)
	}
	ttl := cfg.Leases.TTL()
	if cfg.Interval <= 0 {
		cfg.Interval = ttl / 5
	}
	if cfg.MaxMoves <= 0 {
		cfg.MaxMoves = 20
	}
	if cfg.Settle <= 0 {
		cfg.Settle = ttl
	}
	if cfg.OrphanAfter <= 0 {
		cfg.OrphanAfter = 2 * ttl
	}
	if cfg.Warmup <= 0 {
		cfg.Warmup = cfg.Interval * 3 / 2
	}
	if cfg.ReleaseTimeout <= 0 {
		cfg.ReleaseTimeout = 10 * time.Second
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
		cfg: cfg, l: cfg.Leases, sockets: cfg.Sockets, log: log.With("instance", cfg.Leases.Instance()),
		wake:        make(chan struct{}, 1),
		unheldSince: map[string]time.Time{}, handedOver: map[string]time.Time{}, sticky: map[string]bool{},
		pending: map[string]redis.Lease{},
	}, nil
}

// Health is how the coordinator's lease loop fares, for readiness and
// metrics.
type Health struct {
	// FirstRenewal and LastRenewal are the times of the first and the
	// latest tick whose round trip to Redis succeeded (zero: none yet).
	FirstRenewal, LastRenewal time.Time
	// Interval is the time between ticks; Settle how long the member set
	// must stay unchanged before accounts are handed over (an instance
	// that joins gets its share no sooner).
	Interval, Settle time.Duration
	// Warming: a tick failed; the instance acquires nothing until its view
	// of the members is fresh again.
	Warming bool
	// Held is the number of leases held now.
	Held int
	// Lost counts the leases lost without being given back: taken over
	// or expired (hand-overs and removals are not losses).
	Lost uint64
}

// Health reports the lease loop's state. It is safe at any time.
func (c *Coordinator) Health() Health {
	c.mu.Lock()
	h := c.health
	c.mu.Unlock()
	h.Interval, h.Settle, h.Held = c.cfg.Interval, c.cfg.Settle, len(c.l.Held())
	return h
}

// SetAccounts replaces the configured accounts (safe at any time); the
// next Step acts on it.
func (c *Coordinator) SetAccounts(ids []string) {
	sorted := slices.Compact(slices.Sorted(slices.Values(ids)))
	c.mu.Lock()
	c.accounts = sorted
	c.accountsVer++
	c.mu.Unlock()
}

// Accounts returns the configured accounts, those the fleet runs.
func (c *Coordinator) Accounts() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.accounts)
}

// Runs reports whether acct is one of the configured accounts, without
// copying them (a binary search of the sorted list).
func (c *Coordinator) Runs(acct string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, found := slices.BinarySearch(c.accounts, acct)
	return found
}

// Run ticks every Interval until ctx ends, then shuts down gracefully:
// every account is stopped, then every lease released and the membership
// left. The watchdog runs until then.
func (c *Coordinator) Run(ctx context.Context) error {
	wctx, stopWatchdog := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { c.watchdog(wctx) })
	defer wg.Wait()
	defer stopWatchdog()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return c.shutdown()
		case <-t.C:
		}
		// Ticks keep their rate: the next one is due an Interval after
		// this one began, however long it took (a slow Redis, a starved
		// process), so that the time between two renewals stays near
		// Interval instead of growing by each tick's own duration.
		began := c.cfg.Now()
		c.Step(ctx)
		next := max(c.cfg.Interval-c.cfg.Now().Sub(began), time.Millisecond)
		for _, l := range c.pending {
			next = min(next, max(l.NotBefore.Sub(c.cfg.Now()), time.Millisecond))
		}
		t.Reset(next)
	}
}

// watchdog closes the sockets of every lease whose local deadline passes
// without a confirmed renewal, on a timer of its own: a Step waiting on
// Redis cannot delay it.
func (c *Coordinator) watchdog(ctx context.Context) {
	for {
		var fire <-chan time.Time
		var t *time.Timer
		if d := c.l.NextDeadline(); !d.IsZero() {
			t = time.NewTimer(max(d.Sub(c.cfg.Now()), 0))
			fire = t.C
		}
		select {
		case <-ctx.Done():
		case <-c.wake:
		case <-fire:
			c.expire()
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// poke tells the watchdog that leases were acquired or renewed.
func (c *Coordinator) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// expire closes the sockets of the leases past their local deadline.
func (c *Coordinator) expire() {
	c.owning.Lock()
	lost := c.l.Expire()
	c.owning.Unlock()
	c.closeLost(lost, "lease not renewed in time")
}

func (c *Coordinator) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.ReleaseTimeout)
	defer cancel()
	c.stop(ctx, accountsOf(c.l.Held()), "instance shutting down")
	if err := c.l.Close(ctx); err != nil {
		return fmt.Errorf("fleet: release leases on shutdown: %w", err)
	}
	return nil
}

// Step runs one tick: heartbeat and renew (one round trip per 10,000
// leases), close lost or expiring accounts, start those whose guard
// interval ended, then hand over, drop and acquire as Decide says. The accounts are assigned to the
// members again only when either changed; otherwise a tick costs in
// proportion to this instance's share of the accounts.
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
	accounts, accountsVer := c.accounts, c.accountsVer
	c.mu.Unlock()
	// Every few ticks the same round trip also reads who holds the accounts
	// this instance backs up, and those it handed over, to find orphans.
	c.ticks++
	var watch []string
	if c.ticks%3 == 1 {
		watch = c.watch()
	}
	tr, err := c.l.Tick(tctx, watch...)
	if err != nil {
		c.log.Warn("fleet: lease renewal failed", "error", err, "held", len(c.l.Held()))
	}
	c.closeLost(tr.Lost, "lease taken over or expired in Redis")
	c.expire()
	c.poke()
	if tr.EpochChanged {
		c.log.Error("fleet: Redis lost its data; leases reasserted, devices re-saved", "reasserted", len(tr.Reasserted), "lost", len(tr.Lost))
	}
	if len(tr.Reasserted) > 0 {
		c.cfg.Owner.Resave(accountsOf(tr.Reasserted)...)
	}
	if err != nil {
		c.warming, c.warmSince = true, time.Time{}
		c.mu.Lock()
		c.health.Warming = true
		c.mu.Unlock()
		return // no fresh view of the members: decide nothing
	}
	c.mu.Lock()
	if c.health.FirstRenewal.IsZero() {
		c.health.FirstRenewal = now
	}
	c.health.LastRenewal = now
	c.mu.Unlock()

	if !slices.Equal(tr.Members, c.members) {
		c.members, c.membersSince = tr.Members, now
		clear(c.sticky) // the preferred members changed
		c.assign = nil
	}
	if c.assign == nil || c.assignVer != accountsVer {
		c.assign, c.assignVer = Assign(c.l.Instance(), c.members, accounts), accountsVer
	}
	held := map[string]bool{}
	for _, l := range c.l.Held() {
		held[l.Account] = true
	}
	for a := range c.sticky {
		if !held[a] {
			delete(c.sticky, a)
		}
	}
	for a, at := range c.handedOver {
		if now.Sub(at) > 10*c.l.TTL() {
			delete(c.handedOver, a)
		}
	}
	c.startReady(now)
	if c.warming {
		if c.warmSince.IsZero() {
			c.warmSince = now
		}
		if now.Sub(c.warmSince) < c.cfg.Warmup {
			return
		}
		c.warming = false
		c.mu.Lock()
		c.health.Warming = false
		c.mu.Unlock()
	}
	p := Decide(PlanInput{
		Assignment: c.assign, Held: held,
		Stable: now.Sub(c.membersSince) >= c.cfg.Settle, Sticky: c.sticky,
		Orphans: c.orphans(held, tr.Holders, now), MaxMoves: c.cfg.MaxMoves,
	})

	c.stop(ctx, p.Drop, "account removed from the configuration")
	for _, a := range p.HandOver {
		c.handedOver[a] = now
	}
	c.stop(ctx, p.HandOver, "handed over")
	c.acquire(ctx, p.Acquire, held, now)
}

// acquire takes the leases of accounts in batches (one round trip each)
// and queues them to start, until half an Interval has passed since the
// tick began at now: every lease held must be renewed by the next tick,
// which a long run of acquisitions would delay past the deadlines of the
// first leases it took. The first batch always goes; the rest waits for
// the next tick.
func (c *Coordinator) acquire(ctx context.Context, accounts []string, held map[string]bool, now time.Time) {
	const batch = redis.DefaultAcquireBatch
	for i := 0; i < len(accounts); i += batch {
		if i > 0 && !c.cfg.Now().Before(now.Add(c.cfg.Interval/2)) {
			return
		}
		if !c.take(ctx, accounts[i:min(i+batch, len(accounts))], held) {
			return
		}
	}
}

// take acquires one batch of leases and starts those ready; it reports
// whether the acquisition succeeded.
func (c *Coordinator) take(ctx context.Context, accounts []string, held map[string]bool) bool {
	res, err := c.l.Acquire(ctx, accounts...)
	if err != nil {
		c.log.Warn("fleet: acquire leases", "error", err, "wanted", len(accounts))
	}
	c.poke()
	for _, l := range res.Acquired {
		if held[l.Account] {
			continue
		}
		if _, ok := c.handedOver[l.Account]; ok {
			c.sticky[l.Account] = true // came back: its preferred member does not take it
		}
		delete(c.unheldSince, l.Account)
		c.cfg.Events.Publish(events.Event{Account: l.Account, Kind: events.KindLeaseAcquired, State: events.StateConnecting, Time: time.Now()})
		c.pending[l.Account] = l
	}
	c.startReady(c.cfg.Now())
	return err == nil
}

// startReady starts the acquired accounts whose guard interval is over,
// in one batch, and forgets those whose lease was lost meanwhile.
func (c *Coordinator) startReady(now time.Time) {
	c.owning.Lock()
	defer c.owning.Unlock()
	var ready []string
	for a, l := range c.pending {
		cur, ok := c.l.Get(a)
		switch {
		case !ok || cur.Value != l.Value:
			delete(c.pending, a)
		case !now.Before(l.NotBefore):
			delete(c.pending, a)
			ready = append(ready, a)
		}
	}
	if len(ready) > 0 {
		slices.Sort(ready)
		c.cfg.Owner.Own(ready...)
	}
}

// watch returns the accounts whose holders the tick reads to find
// orphans: those this instance backs up (it ranks second for them) and
// those it handed over, unless it holds them. Each account thus has one
// watcher besides its preferred member, so the fleet reads about one
// lease key per account every three ticks, however many instances it has.
func (c *Coordinator) watch() []string {
	if c.assign == nil {
		return nil
	}
	var out []string
	for _, a := range c.assign.Backup() {
		if _, mine := c.l.Get(a); !mine {
			out = append(out, a)
		}
	}
	for a := range c.handedOver {
		if _, mine := c.l.Get(a); !mine && c.assign.Configured(a) && !c.assign.Backs(a) {
			out = append(out, a)
		}
	}
	return out
}

// orphans returns the watched, unheld accounts nobody has held for
// OrphanAfter. holders, read by the tick every few ticks, is nil on the
// other ticks: then nothing is decided about orphans.
func (c *Coordinator) orphans(held map[string]bool, holders map[string]string, now time.Time) []string {
	if holders == nil {
		return nil
	}
	var out []string
	since := make(map[string]time.Time, len(c.unheldSince))
	for a, h := range holders {
		if h != "" || held[a] {
			continue
		}
		t, ok := c.unheldSince[a]
		if !ok {
			t = now
		}
		since[a] = t
		if now.Sub(t) >= c.cfg.OrphanAfter {
			out = append(out, a)
		}
	}
	c.unheldSince = since
	slices.Sort(out)
	return out
}

// closeLost closes the sockets of leases that are gone, then ends their
// actors. It runs on the watchdog as well as in Step.
func (c *Coordinator) closeLost(leases []redis.Lease, reason string) {
	if len(leases) == 0 {
		return
	}
	accounts := accountsOf(leases)
	c.sockets.Close(accounts...)
	c.cfg.Owner.Disown(accounts...)
	c.mu.Lock()
	c.health.Lost += uint64(len(accounts))
	c.mu.Unlock()
	for _, a := range accounts {
		c.log.Warn("fleet: lease lost, connection closed", "account", a, "reason", reason)
		c.lost(a, reason)
	}
}

// stop drops the accounts' leases locally, closes their sockets, ends
// their actors, then gives the leases back (one round trip per 10,000) so
// that another member can take them at once.
func (c *Coordinator) stop(ctx context.Context, accounts []string, reason string) {
	if len(accounts) == 0 {
		return
	}
	ls := c.l.Drop(accounts...)
	c.sockets.Close(accounts...)
	c.cfg.Owner.Disown(accounts...)
	for _, a := range accounts {
		delete(c.pending, a)
		c.lost(a, reason)
	}
	if err := c.l.GiveBack(ctx, ls...); err != nil {
		c.log.Warn("fleet: release leases", "accounts", len(ls), "error", err)
	}
}

func (c *Coordinator) lost(acct, reason string) {
	c.cfg.Events.Publish(events.Event{Account: acct, Kind: events.KindLeaseLost, State: events.StateStopped, Error: reason, Time: time.Now()})
}

// accountsOf returns the accounts of leases, in their order.
func accountsOf(leases []redis.Lease) []string {
	accounts := make([]string, len(leases))
	for i, l := range leases {
		accounts[i] = l.Account
	}
	return accounts
}
