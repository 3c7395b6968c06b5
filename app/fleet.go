package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"github.com/wafleet/wafleet/actors/connection"
	"github.com/wafleet/wafleet/actors/supervisor"
	"github.com/wafleet/wafleet/config"
	"github.com/wafleet/wafleet/fleet"
	"github.com/wafleet/wafleet/store"
	wredis "github.com/wafleet/wafleet/store/redis"
)

// redisTimeout bounds each Redis dial, read and write of the client.
const redisTimeout = 2 * time.Second

// fleetMode is what store.kind: redis adds to a process: the Redis client,
// the account leases and the coordinator that decides which accounts run
// here, the fleet-wide connect limiter and the event stream.
type fleetMode struct {
	client  goredis.UniversalClient
	store   store.Store // fenced by the leases
	leases  *wredis.Leases
	limiter *wredis.Limiter
	stream  *wredis.StreamSink
	coord   *fleet.Coordinator

	// mu guards owned and orders every change of the supervisor's account
	// list: the list sent is always computed under it, so a hand-over
	// (stop) can never be overtaken by an older list that still holds the
	// account.
	mu    sync.Mutex
	owned map[string]bool
	// dirty wakes the applier: owned changed. Starting thousands of
	// accounts at once costs a few list updates, not one each.
	dirty chan struct{}
}

// openFleet connects to Redis, warns when Redis would lose the devices on a
// restart, and prepares the leases, the fenced store, the limiter and the
// event stream.
func openFleet(cfg *config.Config, sealer store.Sealer, logger *slog.Logger) (*fleetMode, error) {
	addrs := cfg.Redis.Addrs
	if len(addrs) == 0 {
		addrs = []string{cfg.Redis.Addr}
	}
	opts := &goredis.UniversalOptions{
		Addrs:        addrs,
		Username:     cfg.Redis.Username,
		Password:     cfg.Redis.Password,
		DB:           cfg.Redis.DB,
		DialTimeout:  redisTimeout,
		ReadTimeout:  redisTimeout,
		WriteTimeout: redisTimeout,
	}
	if cfg.Redis.TLS {
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	client := goredis.NewUniversalClient(opts)
	fail := func(err error) (*fleetMode, error) {
		_ = client.Close()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		return fail(fmt.Errorf("app: redis at %v: %w", addrs, err))
	}
	dur, err := wredis.CheckDurability(ctx, client)
	switch {
	case err != nil:
		logger.Warn("cannot tell whether Redis persists data", "error", err)
	case dur.Warning != "":
		logger.Warn("redis persistence: "+dur.Warning, "severe", dur.Severe)
	}
	st, err := wredis.New(client, wredis.Options{Sealer: sealer, Logger: logger.With("component", "redis")})
	if err != nil {
		return fail(fmt.Errorf("app: redis store: %w", err))
	}
	if err := checkKey(ctx, st, sealer); err != nil {
		return fail(err)
	}
	leases, err := wredis.NewLeases(client, wredis.LeaseOptions{Instance: cfg.Fleet.InstanceID, TTL: cfg.Fleet.LeaseTTL})
	if err != nil {
		return fail(fmt.Errorf("app: fleet.instance_id %q: %w", cfg.Fleet.InstanceID, err))
	}
	limiter, err := wredis.NewLimiter(client, wredis.LimiterOptions{Rate: cfg.Connect.Rate, Burst: cfg.Connect.Burst})
	if err != nil {
		return fail(fmt.Errorf("app: connect limiter: %w", err))
	}
	stream, err := wredis.NewStreamSink(client, wredis.StreamOptions{Instance: cfg.Fleet.InstanceID})
	if err != nil {
		return fail(fmt.Errorf("app: event stream: %w", err))
	}
	return &fleetMode{
		client:  client,
		store:   st.Bound(leases),
		leases:  leases,
		limiter: limiter,
		stream:  stream,
		owned:   map[string]bool{},
		dirty:   make(chan struct{}, 1),
	}, nil
}

// checkKey opens a few stored devices so that a wrong store.encryption_key
// (or a missing one for sealed records) fails at start, not account by
// account later.
func checkKey(ctx context.Context, st *wredis.Store, sealer store.Sealer) error {
	ids, err := st.IDs(ctx)
	if err != nil {
		return fmt.Errorf("app: list stored devices: %w", err)
	}
	for _, id := range ids[:min(len(ids), 5)] {
		_, _, err := st.LoadRecord(ctx, id)
		if errors.Is(err, store.ErrWrongKey) || errors.Is(err, store.ErrNoSealer) {
			return fmt.Errorf("app: store.encryption_key: %w", err)
		}
	}
	return nil
}

// fleetOwner runs the accounts whose leases this instance holds; the
// coordinator calls it.
type fleetOwner struct{ a *App }

// Start implements fleet.Owner: the account joins the supervisor's list.
func (o fleetOwner) Start(l wredis.Lease) {
	f := o.a.fleet
	f.mu.Lock()
	f.owned[l.Account] = true
	f.mu.Unlock()
	select {
	case f.dirty <- struct{}{}:
	default: // an update is already due; it will include this account
	}
}

// Stop implements fleet.Owner: the accounts' actors are stopped, all at
// once, and Stop returns once their sockets are closed.
func (o fleetOwner) Stop(ctx context.Context, accounts ...string) {
	if len(accounts) == 0 {
		return
	}
	f := o.a.fleet
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, acct := range accounts {
		delete(f.owned, acct)
	}
	timeout := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	if _, err := o.a.system.Root.RequestFuture(o.a.sup, &supervisor.StopAccounts{IDs: accounts}, timeout).Result(); err != nil {
		o.a.logger.Error("stop accounts for their leases", "accounts", len(accounts), "error", err)
	}
}

// Resave implements fleet.Owner: the account's actor writes its device
// again (Redis lost it).
func (o fleetOwner) Resave(l wredis.Lease) {
	o.a.system.Root.Send(o.a.sup, &supervisor.Forward{ID: l.Account, Message: &connection.Resave{}})
}

// runApplier applies the owned accounts whenever Start marked them dirty,
// until ctx ends.
func (a *App) runApplier(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.fleet.dirty:
			a.applyOwned()
		}
	}
}

// applyOwned sends the supervisor the configured accounts this instance
// owns.
func (a *App) applyOwned() {
	f := a.fleet
	f.mu.Lock()
	defer f.mu.Unlock()
	a.mu.Lock()
	var run []config.Account
	for _, acct := range a.accounts {
		if f.owned[acct.ID] {
			run = append(run, acct)
		}
	}
	a.mu.Unlock()
	if err := a.apply(run); err != nil {
		a.logger.Error("apply owned accounts", "error", err)
	}
}

func accountIDs(accounts []config.Account) []string {
	ids := make([]string, len(accounts))
	for i, acct := range accounts {
		ids[i] = acct.ID
	}
	return ids
}

// countRoundTrips counts every round trip the client makes to Redis (a
// command or a whole pipeline) in wafleet_redis_round_trips_total.
func (f *fleetMode) countRoundTrips(reg prometheus.Registerer) error {
	c := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "wafleet",
		Name:      "redis_round_trips_total",
		Help:      "Round trips to Redis: single commands and whole pipelines.",
	})
	if err := reg.Register(c); err != nil {
		return err
	}
	f.client.AddHook(roundTripHook{c})
	return nil
}

type roundTripHook struct{ count prometheus.Counter }

func (h roundTripHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h roundTripHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		h.count.Inc()
		return next(ctx, cmd)
	}
}

func (h roundTripHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		h.count.Inc()
		return next(ctx, cmds)
	}
}

// close releases the Redis side once the coordinator has stopped.
func (f *fleetMode) close(ctx context.Context, logger *slog.Logger) {
	if err := f.stream.Close(ctx); err != nil {
		logger.Warn("flush event stream", "error", err)
	}
	if err := f.client.Close(); err != nil {
		logger.Warn("close redis client", "error", err)
	}
}
