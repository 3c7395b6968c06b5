package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
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
// here, the fleet-wide connect limiter and the outbox on the Redis event
// stream.
type fleetMode struct {
	client  goredis.UniversalClient
	store   store.Backend // fenced by the leases
	admin   *wredis.Store // unfenced: the account registry, administrative writes
	leases  *wredis.Leases
	sockets *fleet.Sockets // every connection, closed when its lease ends
	limiter *wredis.Limiter
	outbox  store.Outbox // the Redis stream of events, shared by the fleet
	coord   *fleet.Coordinator
	view    *fleetView
}

// openFleet connects to Redis, warns when Redis would lose the devices on a
// restart, and prepares the leases, the fenced store, the limiter and the
// outbox.
func openFleet(cfg *config.Config, sealer store.Sealer, logger *slog.Logger) (*fleetMode, error) {
	// The client's own messages join the JSON stream (go-redis has one
	// logger per process: the latest instance's).
	goredis.SetLogger(redisLogger{logger.With("component", "redis")})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client, err := redisClient(ctx, cfg.Redis)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*fleetMode, error) {
		_ = client.Close()
		return nil, err
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
	return &fleetMode{
		client:  client,
		store:   st.Bound(leases),
		admin:   st,
		leases:  leases,
		sockets: fleet.NewSockets(leases),
		limiter: limiter,
		outbox:  st,
	}, nil
}

// redisClient connects to the Redis that c names and checks that it
// answers: the primary that the Sentinels at redis.addrs follow when
// redis.master_name is set; a Redis Cluster when redis.addrs lists several
// nodes, or when the one address is a node in cluster mode (it seeds the
// Cluster client, which finds the other nodes); otherwise one server.
func redisClient(ctx context.Context, c config.Redis) (goredis.UniversalClient, error) {
	addrs := c.Addrs
	if len(addrs) == 0 {
		addrs = []string{c.Addr}
	}
	opts := &goredis.UniversalOptions{
		Addrs:        addrs,
		MasterName:   c.MasterName,
		Username:     c.Username,
		Password:     c.Password,
		DB:           c.DB,
		DialTimeout:  redisTimeout,
		ReadTimeout:  redisTimeout,
		WriteTimeout: redisTimeout,
	}
	if c.TLS {
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	client := goredis.NewUniversalClient(opts)
	where := fmt.Sprintf("redis at %v", addrs)
	if c.MasterName != "" {
		where = fmt.Sprintf("redis primary %q of the Sentinels at %v", c.MasterName, addrs)
	}
	err := client.Ping(ctx).Err()
	if _, single := client.(*goredis.Client); err == nil && single && c.MasterName == "" && clusterEnabled(ctx, client) {
		_ = client.Close()
		opts.IsClusterMode = true
		client = goredis.NewUniversalClient(opts)
		err = client.Ping(ctx).Err()
	}
	if err != nil {
		_ = client.Close()
		switch msg := err.Error(); {
		case strings.Contains(msg, "SELECT is not allowed in cluster mode"):
			return nil, fmt.Errorf("app: redis.db: must be 0: %s is a Redis Cluster, which has only database 0", where)
		case strings.Contains(msg, "cluster support disabled"):
			return nil, fmt.Errorf("app: %s: several redis.addrs name the nodes of a Redis Cluster, and these are not (for Sentinels set redis.master_name): %w", where, err)
		}
		return nil, fmt.Errorf("app: %s: %w", where, err)
	}
	if cc, ok := client.(*goredis.ClusterClient); ok {
		wredis.FollowFailovers(cc)
	}
	return client, nil
}

// clusterEnabled reports whether the server says it runs in cluster
// mode; a server that does not answer INFO (a managed Redis may refuse
// it) is taken for a single one.
func clusterEnabled(ctx context.Context, c goredis.UniversalClient) bool {
	info, err := c.Info(ctx, "cluster").Result()
	return err == nil && strings.Contains(info, "cluster_enabled:1")
}

// checkKey opens a few stored devices, and the account registry, so that a
// wrong store.encryption_key (or a missing one for sealed records) fails at
// start, not account by account later.
func checkKey(ctx context.Context, st *wredis.Store, sealer store.Sealer) error {
	if _, err := st.Accounts(ctx); errors.Is(err, store.ErrWrongKey) || errors.Is(err, store.ErrNoSealer) {
		return fmt.Errorf("app: store.encryption_key: the account registry: %w", err)
	}
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

// fleetOwner runs the accounts whose leases this instance holds: it hands
// the coordinator's decisions to the supervisor, which merges them with the
// configured accounts, as messages. It never waits on an actor; the
// supervisor's mailbox keeps the decisions in order.
type fleetOwner struct{ a *App }

// Own implements fleet.Owner: the accounts run if they are configured.
func (o fleetOwner) Own(accounts ...string) {
	o.a.system.Root.Send(o.a.sup, &supervisor.Own{IDs: accounts})
}

// Disown implements fleet.Owner: the accounts' actors stop, all at once
// (their sockets are already closed).
func (o fleetOwner) Disown(accounts ...string) {
	o.a.system.Root.Send(o.a.sup, &supervisor.Disown{IDs: accounts})
}

// bindToLease ties an account's connections to its lease: every dial in
// progress and every session is registered with the fleet's Sockets, which
// admit it only while the lease is usable and close it the moment the
// lease ends; every frame is written only after checking that the lease
// is still valid (after a process pause the watchdog may not have run
// yet); and the actor can tell that the lease is gone.
func (f *fleetMode) bindToLease(d *connection.Deps) {
	acct, dial := d.AccountID, d.Dialer
	held := func() bool {
		_, ok := f.leases.Get(acct)
		return ok
	}
	d.LeaseHeld = held
	d.Dialer = func(ctx context.Context, req connection.DialRequest) (connection.Session, error) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		untrackDial, err := f.sockets.Track(acct, cancelCloser(cancel))
		if err != nil {
			return nil, err
		}
		sess, err := dial(ctx, req)
		untrackDial()
		if err != nil {
			return nil, err
		}
		untrack, err := f.sockets.Track(acct, sess) // closes sess when refused
		if err != nil {
			return nil, err
		}
		return &leasedSession{Session: sess, untrack: untrack, held: held}, nil
	}
}

// cancelCloser closes a dial in progress by cancelling its context.
type cancelCloser context.CancelFunc

func (c cancelCloser) Close() error {
	c()
	return nil
}

// leasedSession is a session registered with the fleet's Sockets until it
// is closed, that writes only while its lease is valid.
type leasedSession struct {
	connection.Session
	untrack func()
	held    func() bool
	once    sync.Once
}

// Send writes the frame unless the lease is past its deadline: then the
// session is closed instead.
func (s *leasedSession) Send(frame []byte) error {
	if !s.held() {
		_ = s.Close()
		return fleet.ErrNoLease
	}
	return s.Session.Send(frame)
}

func (s *leasedSession) Close() error {
	s.once.Do(s.untrack)
	return s.Session.Close()
}

// Resave implements fleet.Owner: the accounts' actors write their devices
// again, and their views are published again (Redis lost them).
func (o fleetOwner) Resave(accounts ...string) {
	o.a.fleet.view.publisher.Refresh() // the published views are gone too
	for _, acct := range accounts {
		o.a.system.Root.Send(o.a.sup, &supervisor.Forward{ID: acct, Message: &connection.Resave{}})
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
func (f *fleetMode) close(logger *slog.Logger) {
	if err := f.client.Close(); err != nil {
		logger.Warn("close redis client", "error", err)
	}
}
