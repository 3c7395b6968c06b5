package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"golang.org/x/time/rate"

	"github.com/wafleet/wafleet/actors/connection"
	"github.com/wafleet/wafleet/actors/supervisor"
	"github.com/wafleet/wafleet/api"
	"github.com/wafleet/wafleet/config"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/events/journal"
	"github.com/wafleet/wafleet/fleet"
	"github.com/wafleet/wafleet/internal/buildinfo"
	"github.com/wafleet/wafleet/metrics"
	"github.com/wafleet/wafleet/status"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/waproto"
	"github.com/wafleet/wafleet/webhook"
	"github.com/wafleet/wafleet/webversion"
	"github.com/wafleet/wafleet/wire/payload"
)

// The tracker is every account's source of the client version.
var _ connection.VersionSource = (*webversion.Tracker)(nil)

// shutdownBudget bounds a clean shutdown: sockets closed, store flushed.
const shutdownBudget = 4 * time.Second

// Options are what a process needs besides its configuration.
type Options struct {
	// Logger is the service's JSON logger. Required.
	Logger *slog.Logger
	// Terminal, when not nil, is where QR codes are drawn (only when
	// log.qr_terminal is set). cmd passes stdout when it is a terminal.
	Terminal io.Writer
	// HTTPListener, when not nil, is used instead of listening on
	// http.listen (tests pass a listener on port 0).
	HTTPListener net.Listener
	// Build is what the binary was built from (wafleet_build_info).
	// Default: the running binary's build info.
	Build buildinfo.Info
	// VersionRetry is how often the client version is looked for again
	// while the current one is refused and no newer one was found.
	// Default webversion.DefaultRetryEvery (5 min); tests shorten it.
	VersionRetry time.Duration
	// RegistryCheck is how often a fleet instance checks the account
	// registry for changes it was not told about (registry.go). Default
	// 30 s; tests shorten it.
	RegistryCheck time.Duration
}

// App is a running manager.
type App struct {
	cfg     *config.Config
	opts    Options
	logger  *slog.Logger
	store   store.Backend
	bus     *events.Bus
	board   *status.Board
	metrics *metrics.Metrics
	limiter connection.Limiter
	fleet   *fleetMode // nil unless store.kind is redis
	system  *actor.ActorSystem
	sup     *actor.PID
	httpAPI *api.Server
	drawQR  *terminalQR // nil unless log.qr_terminal
	ready   chan struct{}
	// versions owns the WhatsApp Web version of the process; its news
	// goes to every account through the supervisor.
	versions *webversion.Tracker
	// wipes holds server-initiated wipes when too many accounts are
	// logged out at once (archive.go).
	wipes *connection.WipeGuard
	// storeCalls counts the accounts' store calls under way; the store
	// closes after the last one.
	storeCalls connection.StoreCalls
	platform   waproto.DeviceProps_PlatformType
	// webhooks delivers the outbox to the webhook endpoints (webhooks.go);
	// nil when the store keeps no outbox.
	webhooks *webhook.Engine
	// journal appends every event to the outbox and follows it
	// (journal.go); nil when the store keeps no outbox.
	journal *journal.Journal

	// actions reaches an account's actor for the API's pair, restart and
	// logout, and for DELETE's logout.
	actions api.Controller

	mu       sync.Mutex
	accounts []config.Account // the YAML file's
	// regMu orders the changes of the account registry made here and the
	// syncs of the running accounts with it (registry.go).
	regMu       sync.Mutex
	apiAccounts []config.Account // the registry's API accounts at the latest sync
	running     atomic.Int64     // accounts in the latest sync
	// registrySeen is the registry's change counter read by the latest
	// sync (fleet mode); written under regMu, read by the follow loop.
	registrySeen atomic.Int64

	// created is when New built the app; configErr the error of the
	// latest configuration reload, nil or a nil error when it succeeded;
	// storeCheck the cached store check of GET /readyz (observe.go).
	created    time.Time
	configErr  atomic.Pointer[error]
	storeCheck cachedCheck
}

// New builds the process from cfg: it opens the store and prepares the
// actors and the API, but starts nothing until Run.
func New(cfg *config.Config, opts Options) (*App, error) {
	if opts.Logger == nil {
		return nil, errors.New("app: no logger")
	}
	a := &App{
		cfg:     cfg,
		opts:    opts,
		logger:  opts.Logger,
		board:   status.NewBoard(),
		ready:   make(chan struct{}),
		created: time.Now(),
	}
	if cfg.Store.Kind == "redis" {
		sealer, err := sealerFor(cfg)
		if err != nil {
			return nil, err
		}
		if a.fleet, err = openFleet(cfg, sealer, opts.Logger); err != nil {
			return nil, err
		}
		a.store, a.limiter = a.fleet.store, a.fleet.limiter
	} else {
		st, err := openStore(cfg, opts.Logger)
		if err != nil {
			return nil, err
		}
		a.store = st
		a.limiter = connection.LocalLimiter(rate.NewLimiter(rate.Limit(cfg.Connect.Rate), cfg.Connect.Burst))
	}
	if err := a.newJournal(); err != nil {
		a.closeStorage()
		return nil, err
	}
	a.metrics = metrics.New(a.board)
	sinks := []events.Publisher{a.board, a.metrics, events.PublisherFunc(a.logEvent)}
	if a.journal != nil {
		sinks = append(sinks, a.journal)
	}
	if a.fleet != nil {
		var err error
		if a.fleet.view, err = a.newFleetView(); err != nil {
			a.closeStorage()
			return nil, err
		}
		sinks = append(sinks, a.fleet.view.publisher)
	}
	if cfg.Log.QRTerminal && opts.Terminal != nil {
		a.drawQR = newTerminalQR(opts.Terminal, opts.Logger)
		sinks = append(sinks, a.drawQR)
	}
	a.bus = events.NewBus(sinks...)
	if err := a.metrics.CountDropped(a.bus.Dropped); err != nil {
		a.closeStorage()
		return nil, fmt.Errorf("app: %w", err) // "metrics: register …"
	}
	if err := a.registerJournal(); err != nil {
		a.closeStorage()
		return nil, err
	}
	if a.fleet != nil {
		if err := a.fleet.countRoundTrips(a.metrics.Registry()); err != nil {
			a.closeStorage()
			return nil, fmt.Errorf("app: metrics: %w", err)
		}
		coord, err := fleet.New(fleet.Config{Leases: a.fleet.leases, Sockets: a.fleet.sockets, Owner: fleetOwner{a}, Events: a.bus, Logger: opts.Logger})
		if err != nil {
			a.closeStorage()
			return nil, fmt.Errorf("app: %w", err) // "fleet: …"
		}
		a.fleet.coord = coord
	}
	if err := a.exportMetrics(); err != nil {
		a.closeStorage()
		return nil, err
	}
	if err := a.newWipeGuard(); err != nil {
		a.closeStorage()
		return nil, err
	}
	if err := a.newWebhooks(); err != nil {
		a.closeStorage()
		return nil, err
	}
	a.actions = a.accountControl()
	var err error
	a.httpAPI, err = api.New(api.Config{
		Listen:       cfg.HTTP.Listen,
		Token:        cfg.HTTP.Token,
		AllowedHosts: cfg.HTTP.AllowedHosts,
		Accounts:     a.board,
		Events:       a.eventLog(),
		Controller:   a.actions,
		Fleet:        a.fleetAPI(),
		Admin:        accountAdmin{a},
		Archive:      archiveControl{a},
		Webhooks:     a.webhookAPI(),
		Ready:        a.notReady,
		Metrics:      a.metrics.Handler(),
		Logger:       opts.Logger,
	})
	if err != nil {
		a.closeStorage()
		return nil, fmt.Errorf("app: http api: %w", err)
	}
	if err := a.newTracker(); err != nil {
		a.closeStorage()
		return nil, err
	}
	a.accounts = cfg.Accounts
	return a, nil
}

// newTracker prepares the client version tracker: client.version (or the
// built-in one) at first, client.version_url to look for newer ones, the
// store to share what it finds (through Redis in fleet mode).
func (a *App) newTracker() error {
	initial, err := a.cfg.Client.ParsedVersion()
	if err != nil {
		return err
	}
	if a.platform, err = a.cfg.Client.PlatformType(); err != nil {
		return err
	}
	a.versions, err = webversion.NewTracker(webversion.Options{
		Initial:    initial,
		URL:        a.cfg.Client.VersionURL,
		Settings:   a.store,
		RetryEvery: a.opts.VersionRetry,
		Logger:     a.logger.With("component", "webversion"),
		OnUpdated: func() {
			a.broadcast(&connection.VersionUpdated{})
		},
		OnUnavailable: func(err error) {
			a.broadcast(&connection.VersionUnavailable{Err: err})
		},
	})
	if err != nil {
		return fmt.Errorf("app: client.version_url: %w", err)
	}
	return nil
}

// broadcast sends msg to every account actor; it never blocks. The tracker
// is started after the supervisor and closed before it stops.
func (a *App) broadcast(msg any) {
	a.system.Root.Send(a.sup, &supervisor.Broadcast{Message: msg})
}

// ClientVersion is the WhatsApp Web version the next connection sends.
func (a *App) ClientVersion() payload.Version { return a.versions.Current() }

// openStore opens the configured store. With an encryption key, records
// written before the key was set are sealed now (and the file rewritten
// without their plaintext, see store.BoltStore.Reseal), and a wrong key
// fails here, at start.
func openStore(cfg *config.Config, logger *slog.Logger) (store.Backend, error) {
	sealer, err := sealerFor(cfg)
	if err != nil {
		return nil, err
	}
	opts := store.BoltOptions{Sealer: sealer}
	switch cfg.Store.Kind {
	case "embedded":
		st, err := store.OpenBolt(cfg.Store.Path, opts)
		if err != nil {
			return nil, fmt.Errorf("app: store.path: %w", err) // the error names the file
		}
		if opts.Sealer != nil {
			n, err := st.Reseal(context.Background())
			if err != nil {
				_ = st.Close()
				return nil, fmt.Errorf("app: seal stored devices with store.encryption_key: %w", err)
			}
			if n > 0 {
				logger.Info("sealed the records written before store.encryption_key was set and rewrote the store file without them", "records", n)
			}
		}
		return st, nil
	default:
		return nil, fmt.Errorf("app: store.kind %q is not supported by this build yet", cfg.Store.Kind)
	}
}

// closeStorage closes the store and, in fleet mode, the Redis side, when
// New fails half-way.
func (a *App) closeStorage() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	a.closeJournal(ctx)
	_ = a.store.Close()
	if a.fleet != nil {
		a.fleet.close(a.logger)
	}
}

// sealerFor returns the sealer of store.encryption_key, or nil.
func sealerFor(cfg *config.Config) (store.Sealer, error) {
	key, err := cfg.Store.Key()
	if err != nil || key == nil {
		return nil, err
	}
	sealer, err := store.NewAESSealer(key)
	if err != nil {
		return nil, fmt.Errorf("app: store.encryption_key: %w", err)
	}
	return sealer, nil
}

// Board is the live view of every account.
func (a *App) Board() *status.Board { return a.board }

// Events is the event bus; tests subscribe to it.
func (a *App) Events() *events.Bus { return a.bus }

// Run starts the actors and the API and blocks until ctx ends; then it
// stops every connection cleanly, closes the store and returns. A failure
// to start (the HTTP address taken, say) is returned at once.
func (a *App) Run(ctx context.Context) error {
	a.system = actor.NewActorSystemWithConfig(actor.Configure(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return a.logger.With("component", "actor")
	})))
	sup, err := a.system.Root.SpawnNamed(supervisor.Props(supervisor.Deps{
		Props:          a.connectionProps,
		Events:         a.bus,
		Board:          a.board,
		Logger:         a.logger,
		HealthInterval: a.cfg.Log.HealthInterval,
		Leased:         a.fleet != nil,
	}), "accounts")
	if err != nil {
		a.system.Shutdown()
		a.closeStorage()
		return fmt.Errorf("app: start supervisor: %w", err)
	}
	a.sup = sup
	// The stored version is read before any account dials; the fetch runs
	// in the background.
	a.versions.Start(ctx)

	httpErr := make(chan error, 1)
	httpCtx, stopHTTP := context.WithCancel(context.Background())
	go func() {
		if a.opts.HTTPListener != nil {
			httpErr <- a.httpAPI.ServeListener(httpCtx, a.opts.HTTPListener)
		} else {
			httpErr <- a.httpAPI.Serve(httpCtx)
		}
	}()

	// The YAML list seeds the account registry; the accounts to run are
	// its accounts. In fleet mode the supervisor runs one once the
	// coordinator owns it (wins its lease).
	// A fleet instance subscribes to the registry's changes first, so that
	// it misses none made meanwhile.
	var background sync.WaitGroup
	bgCtx, stopBackground := context.WithCancel(context.Background())
	var follow func()
	if a.fleet != nil {
		follow = a.followRegistry(bgCtx)
	}
	startCtx, cancelStart := context.WithTimeout(ctx, 10*time.Second)
	a.openConfiguredEndpoints(startCtx)
	if err := a.refreshAccounts(startCtx); err != nil {
		a.logger.Error("start accounts", "error", err)
	}
	cancelStart()
	if a.fleet != nil {
		background.Go(func() {
			if err := a.fleet.coord.Run(bgCtx); err != nil {
				a.logger.Error("fleet coordinator", "error", err)
			}
		})
		a.fleet.view.start()
		background.Go(follow)
	}
	background.Go(func() { a.runPruning(bgCtx) })
	background.Go(func() { a.runWebhooks(bgCtx) })
	close(a.ready)
	a.logger.Info("manager started", "accounts", a.running.Load(), "http", a.cfg.HTTP.Listen, "server", a.cfg.Server.URL)

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-httpErr:
		if err != nil {
			runErr = fmt.Errorf("app: http api: %w", err)
		}
		httpErr <- nil // shutdown waits for the server's end: it is over
	}
	// In fleet mode the coordinator stops every account and then releases
	// its leases, so another instance can take them over at once.
	stopBackground()
	background.Wait()
	if a.fleet != nil {
		a.fleet.view.close(a.logger)
	}
	a.shutdown(stopHTTP, httpErr)
	return runErr
}

// shutdown stops the accounts (closing their sockets), the API and the
// store, within shutdownBudget.
func (a *App) shutdown(stopHTTP context.CancelFunc, httpErr <-chan error) {
	deadline := time.Now().Add(shutdownBudget)
	a.versions.Close() // no broadcast once the accounts stop
	if err := a.system.Root.StopFuture(a.sup).Wait(); err != nil {
		a.logger.Warn("stop accounts", "error", err)
	}
	stopHTTP()
	shutdownCtx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	_ = a.httpAPI.Shutdown(shutdownCtx)
	select {
	case <-httpErr:
	case <-shutdownCtx.Done():
	}
	a.system.Shutdown()
	if a.drawQR != nil {
		a.drawQR.Close()
	}
	// A save once begun completes (and an undo queued behind it runs)
	// even though its actor has stopped: the store closes after them.
	if err := a.storeCalls.Wait(shutdownCtx); err != nil {
		a.logger.Warn("store calls still running at shutdown", "error", err)
	}
	a.closeJournal(shutdownCtx) // the last events, before the store goes
	if err := a.store.Close(); err != nil {
		a.logger.Error("close store", "error", err)
	}
	if a.fleet != nil {
		a.fleet.close(a.logger)
	}
	a.logger.Info("manager stopped")
}

// Reload replaces the YAML account list (SIGHUP or a changed config file):
// it seeds the account registry again (accounts created through the API
// stay) and restarts the listed accounts that are stopped, from their
// stored device.
func (a *App) Reload(accounts []config.Account) error {
	a.ConfigRejected(nil)
	a.mu.Lock()
	a.accounts = accounts
	a.mu.Unlock()
	select {
	case <-a.ready:
	default:
		return nil // Run applies the latest list when it starts
	}
	defer a.resumeStopped(accounts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return a.refreshAccounts(ctx)
}

// resumeStopped asks every listed account the board shows stopped to
// restart (connection.Resume); one that moved on meanwhile refuses.
func (a *App) resumeStopped(accounts []config.Account) {
	listed := make(map[string]bool, len(accounts))
	for _, acct := range accounts {
		listed[acct.ID] = true
	}
	for _, acct := range a.board.List() {
		if acct.State == events.StateStopped && listed[acct.ID] {
			a.logger.Info("restarting a stopped account on reload", "account", acct.ID)
			a.system.Root.Send(a.sup, &supervisor.Forward{ID: acct.ID, Message: &connection.Resume{}})
		}
	}
}

// apply gives the supervisor the accounts to run and waits until it
// has started and stopped actors accordingly (it logs what changed).
func (a *App) apply(accounts []config.Account) error {
	list := a.supervisorAccounts(accounts)
	if _, err := a.system.Root.RequestFuture(a.sup, &supervisor.SetAccounts{Accounts: list}, 10*time.Second).Result(); err != nil {
		return fmt.Errorf("app: apply accounts: %w", err)
	}
	return nil
}

// supervisorAccounts turns configured accounts into the supervisor's, with
// the device name resolved (device_name, else client.os_name).
func (a *App) supervisorAccounts(accounts []config.Account) []supervisor.Account {
	list := make([]supervisor.Account, len(accounts))
	for i, acct := range accounts {
		list[i] = supervisor.Account{ID: acct.ID, Proxy: acct.Proxy, DeviceName: a.cfg.DeviceName(acct), LinkPhone: acct.LinkPhone()}
	}
	return list
}

func (a *App) isReady() bool {
	select {
	case <-a.ready:
		return true
	default:
		return false
	}
}

func (a *App) connectionProps(acct supervisor.Account) *actor.Props {
	return connection.Props(a.connectionDeps(acct))
}

// connectionDeps are the settings of one account's connection actor.
func (a *App) connectionDeps(acct supervisor.Account) connection.Deps {
	rootKey, _ := a.cfg.Server.RootKey() // validated at load
	deps := connection.Deps{
		AccountID: acct.ID,
		Proxy:     acct.Proxy,
		Store:     a.store,
		Events:    a.bus,
		Logger:    a.logger,
		Server:    connection.Server{URL: a.cfg.Server.URL, RootKey: rootKey},
		Limiter:   a.limiter,
		Backoff: connection.Backoff{
			Initial:     a.cfg.Connect.BackoffInitial,
			Max:         a.cfg.Connect.BackoffMax,
			StableAfter: a.cfg.Connect.StableAfter,
		},
		Keepalive: connection.Keepalive{
			Interval: a.cfg.Connect.KeepaliveInterval,
			Timeout:  a.cfg.Connect.KeepaliveTimeout,
			Window:   a.cfg.Connect.KeepaliveWindow,
		},
		Versions: a.versions,
		DeviceProps: payload.DeviceProps{
			OS:           acct.DeviceName,
			PlatformType: a.platform,
		},
		LinkPhone:  acct.LinkPhone,
		AutoRepair: a.cfg.Pairing.AutoRepair,
		WipeGuard:  a.wipes,
		StoreCalls: &a.storeCalls,
		Observer:   a.metrics,
		Dialer:     a.observedDialer,
	}
	deps.RawMessages = a.cfg.Messages.Raw
	deps.SendRate = connection.SendRate{PerMinute: a.cfg.Messages.SendPerMinute, Burst: a.cfg.Messages.SendBurst}
	if a.journal != nil {
		deps.Journal = a.journal // message events are durable before their Signal state
	}
	if a.fleet != nil {
		a.fleet.bindToLease(&deps)
	}
	return deps
}

// observedDialer is connection.WireDialer with its duration and outcome
// reported to the handshake metrics.
func (a *App) observedDialer(ctx context.Context, req connection.DialRequest) (connection.Session, error) {
	start := time.Now()
	s, err := connection.WireDialer(ctx, req)
	a.metrics.ObserveHandshake(time.Since(start), err)
	return s, err
}

// controller turns API actions into requests to the account's actor.
type controller struct{ a *App }

func (c controller) Pair(ctx context.Context, id string) error {
	return c.request(ctx, id, &connection.Pair{})
}

func (c controller) Restart(ctx context.Context, id string) error {
	return c.request(ctx, id, &connection.Resume{})
}

func (c controller) Logout(ctx context.Context, id string) error {
	return c.request(ctx, id, &connection.Logout{})
}

// request asks the account's actor (through the supervisor) and maps a
// refusal to *api.Refused, with the actor's reason.
func (c controller) request(ctx context.Context, id string, msg any) error {
	res, err := c.a.askAccount(ctx, id, msg)
	if err != nil {
		return err
	}
	r, ok := res.(*connection.Result)
	if !ok {
		return fmt.Errorf("app: account %s answered %T", id, res)
	}
	if !r.OK {
		return &api.Refused{Reason: r.Reason}
	}
	return nil
}
