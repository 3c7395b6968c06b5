package webhook

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wafleet/wafleet/store"
)

// Defaults of Config.
const (
	DefaultPoll        = 10 * time.Second
	DefaultRefresh     = 10 * time.Second
	DefaultLanes       = 4
	DefaultMaxInFlight = 256
	// MaxAccountEndpoints bounds the endpoints one account may define.
	MaxAccountEndpoints = 10
	// storeTries bounds the attempts of one Ack or Bury; an entry whose
	// acknowledgement fails is delivered again later (at least once).
	storeTries = 3
	// deadLetterCountLimit bounds the dead letters counted per endpoint
	// for Endpoints.
	deadLetterCountLimit = 10000
)

// ErrNoOutbox is returned by New without Config.Outbox.
var ErrNoOutbox = errors.New("webhook: Config.Outbox is required")

// Config configures an Engine.
type Config struct {
	// Outbox is the durable log and the endpoints' queues. Required.
	Outbox store.Outbox
	// Instance names this process as the outbox's deliverer. Default:
	// "wafleet".
	Instance string
	// Endpoints are the configured endpoints (webhooks in the YAML file),
	// already validated; names unique.
	Endpoints []Endpoint
	// Registerer receives the engine's metrics. Default: nil, not
	// registered.
	Registerer prometheus.Registerer
	// Logger gets delivery failures and dead letters; never a secret or a
	// URL's query. Default: discard.
	Logger *slog.Logger
	// Client sends the deliveries. Default: a client that never follows
	// redirects.
	Client *http.Client
	// Backoff spaces the attempts of one delivery. Default: DefaultBackoff.
	Backoff Backoff
	// Changed, when not nil, returns a channel closed when the outbox has
	// new entries (the journal's Changed): every queue then asks at once.
	Changed func() <-chan struct{}
	// Poll is how often an idle queue asks the outbox for entries; Notify
	// and Changed wake every queue at once, so polling only catches what
	// they missed; it must stay under the Redis outbox lock TTL, which
	// each poll renews. Default: 10 s.
	Poll time.Duration
	// Refresh is how often the per-account endpoints are read again from
	// the outbox (another instance may have changed them). Default: 10 s.
	Refresh time.Duration
	// Lanes is how many accounts a configured endpoint delivers to in
	// parallel (entries of one account always go in order through one
	// lane). Default: 4.
	Lanes int
	// MaxInFlight bounds the entries one endpoint holds undelivered in
	// this process. Default: 256.
	MaxInFlight int
}

// Engine delivers the outbox's entries to every endpoint: the configured
// ones and those the API stored per account. Each endpoint has its own
// queue and goroutines, so a slow or dead endpoint delays no other; within
// one endpoint the entries of one account are delivered in order.
type Engine struct {
	cfg        Config
	log        *slog.Logger
	metrics    *engineMetrics
	configured []Endpoint
	refresh    chan struct{} // asks Run to reconcile now
	editMu     sync.Mutex    // orders SetAccountEndpoints of this process

	mu     sync.Mutex
	queues map[string]*queue // running, by endpoint name; owned by Run
}

// New checks cfg, fills in defaults and registers the metrics. Nothing is
// delivered until Run.
func New(cfg Config) (*Engine, error) {
	if cfg.Outbox == nil {
		return nil, ErrNoOutbox
	}
	if cfg.Instance == "" {
		cfg.Instance = "wafleet"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Client == nil {
		cfg.Client = newClient()
	}
	if cfg.Backoff.Initial <= 0 {
		cfg.Backoff.Initial = DefaultBackoff.Initial
	}
	if cfg.Backoff.Max < cfg.Backoff.Initial {
		cfg.Backoff.Max = max(DefaultBackoff.Max, cfg.Backoff.Initial)
	}
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = DefaultRefresh
	}
	if cfg.Lanes <= 0 {
		cfg.Lanes = DefaultLanes
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	seen := make(map[string]bool, len(cfg.Endpoints))
	configured := make([]Endpoint, len(cfg.Endpoints))
	for i, ep := range cfg.Endpoints {
		ep = ep.WithDefaults()
		if !ValidName(ep.Name) || seen[ep.Name] {
			return nil, fmt.Errorf("webhook: endpoint %d: name %q is invalid or not unique", i, ep.Name)
		}
		if err := ep.Validate(); err != nil {
			return nil, fmt.Errorf("webhook: endpoint %s: %w", ep.Name, err)
		}
		seen[ep.Name] = true
		configured[i] = ep
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Engine{
		cfg:        cfg,
		log:        cfg.Logger,
		metrics:    m,
		configured: configured,
		refresh:    make(chan struct{}, 1),
		queues:     make(map[string]*queue),
	}, nil
}

// Run delivers until ctx ends, then stops every queue and returns. An
// entry being delivered when ctx ends stays queued, and is delivered
// again at the next start (or by another instance).
func (e *Engine) Run(ctx context.Context) {
	tick := time.NewTicker(e.cfg.Refresh)
	defer tick.Stop()
	if e.cfg.Changed != nil {
		watching := make(chan struct{})
		defer func() { <-watching }()
		go func() {
			defer close(watching)
			changed := e.cfg.Changed()
			for {
				select {
				case <-changed:
					// The next signal's channel first, then the wake:
					// no change between the two goes unnoticed.
					changed = e.cfg.Changed()
					e.Notify()
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	pruned := false
	for {
		if e.reconcile(ctx) && !pruned {
			e.prune(ctx)
			pruned = true
		}
		select {
		case <-ctx.Done():
			e.mu.Lock()
			queues := e.queues
			e.queues = make(map[string]*queue)
			e.mu.Unlock()
			for _, q := range queues {
				q.stop()
			}
			e.cfg.Client.CloseIdleConnections() // no keep-alive goroutine outlives Run
			return
		case <-tick.C:
		case <-e.refresh:
		}
	}
}

// Notify wakes every queue to ask the outbox for new entries at once. It
// never blocks; Config.Changed's signal and Redrive call it.
func (e *Engine) Notify() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, q := range e.queues {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// reconcile runs a queue for every configured and stored endpoint and
// stops the queues of endpoints no longer stored. It reports whether it
// could read the stored ones.
func (e *Engine) reconcile(ctx context.Context) bool {
	want := make(map[string]Endpoint)
	for _, ep := range e.configured {
		want[ep.Name] = ep
	}
	stored, err := e.cfg.Outbox.Endpoints(ctx)
	if err != nil && ctx.Err() == nil {
		e.log.Warn("webhook: read the per-account endpoints", "error", err)
	}
	for _, s := range stored {
		want[s.Name] = fromStore(s)
	}
	var stopping []*queue
	var starting []Endpoint
	e.mu.Lock()
	for name, q := range e.queues {
		if ep, ok := want[name]; ok {
			q.def.Store(&ep)
		} else if err == nil {
			stopping = append(stopping, q)
			delete(e.queues, name)
		}
	}
	for name, ep := range want {
		if _, ok := e.queues[name]; !ok {
			starting = append(starting, ep)
		}
	}
	e.mu.Unlock()
	for _, q := range stopping {
		q.stop()
		e.metrics.forget(q.name)
	}
	for _, ep := range starting {
		if ctx.Err() != nil {
			return false
		}
		if err := e.cfg.Outbox.OpenEndpoint(ctx, ep.Name); err != nil {
			e.log.Warn("webhook: open the endpoint's queue", "endpoint", ep, "error", err)
			continue // the next reconcile tries again
		}
		q := e.startQueue(ctx, ep)
		e.mu.Lock()
		e.queues[ep.Name] = q
		e.mu.Unlock()
	}
	return err == nil
}

// prune closes the queues of endpoints that are neither configured nor
// stored (an endpoint removed from the file): nobody serves them, and the
// outbox would keep their entries forever. It runs once, at start, after
// the first reconcile: the queues it keeps are those that run.
func (e *Engine) prune(ctx context.Context) {
	queues, err := e.cfg.Outbox.Queues(ctx)
	if err != nil {
		e.log.Warn("webhook: list the outbox's queues", "error", err)
		return
	}
	for _, name := range queues {
		e.mu.Lock()
		_, running := e.queues[name]
		e.mu.Unlock()
		if running || slices.ContainsFunc(e.configured, func(ep Endpoint) bool { return ep.Name == name }) {
			continue
		}
		// Stored since the reconcile (SetAccountEndpoints stores an
		// endpoint before it opens its queue)?
		if e.stored(ctx, name) {
			continue
		}
		if err := e.cfg.Outbox.CloseEndpoint(ctx, name); err != nil {
			e.log.Warn("webhook: close the queue of a removed endpoint", "endpoint", name, "error", err)
			continue
		}
		e.log.Info("webhook: closed the queue of an endpoint no longer defined, with its dead letters", "endpoint", name)
	}
}

// stored reports whether the outbox keeps an endpoint named name (true
// when it cannot tell).
func (e *Engine) stored(ctx context.Context, name string) bool {
	list, err := e.cfg.Outbox.Endpoints(ctx)
	if err != nil {
		return true
	}
	return slices.ContainsFunc(list, func(s store.Endpoint) bool { return s.Name == name })
}

// queue delivers one endpoint's entries.
type queue struct {
	e      *Engine
	name   string
	lanes  int
	def    atomic.Pointer[Endpoint]
	wake   chan struct{} // Notify: ask the outbox now
	freed  chan struct{} // an entry left the in-flight set
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	inflight map[string]bool // entry ids taken and not yet settled
}

// startQueue starts delivering to ep until parent ends or stop.
func (e *Engine) startQueue(parent context.Context, ep Endpoint) *queue {
	ctx, cancel := context.WithCancel(parent)
	q := &queue{
		e:        e,
		name:     ep.Name,
		lanes:    e.cfg.Lanes,
		wake:     make(chan struct{}, 1),
		freed:    make(chan struct{}, 1),
		done:     make(chan struct{}),
		inflight: make(map[string]bool),
		cancel:   cancel,
	}
	if ep.Account != "" {
		q.lanes = 1 // one account: one order
	}
	q.def.Store(&ep)
	go q.run(ctx)
	return q
}

// stop ends the queue's goroutines and waits for them.
func (q *queue) stop() {
	q.cancel()
	<-q.done
}

// run takes entries from the outbox and hands them to the lanes, the
// entries of one account always to the same lane, until ctx ends.
func (q *queue) run(ctx context.Context) {
	defer close(q.done)

	lanes := make([]chan store.OutboxEntry, q.lanes)
	var wg sync.WaitGroup
	for i := range lanes {
		lanes[i] = make(chan store.OutboxEntry, q.e.cfg.MaxInFlight)
		wg.Go(func() {
			for entry := range lanes[i] {
				q.deliver(ctx, entry)
			}
		})
	}
	defer func() {
		for _, l := range lanes {
			close(l)
		}
		wg.Wait()
	}()

	failing := false
	for ctx.Err() == nil {
		free := q.e.cfg.MaxInFlight - q.count()
		if free <= 0 {
			// Full: wait for a slot, asking for no entries at each poll,
			// which tells a shared outbox this deliverer still serves
			// the endpoint (the Redis one's lock).
			t := time.NewTimer(q.e.cfg.Poll)
			select {
			case <-q.freed:
			case <-t.C:
				if _, err := q.e.cfg.Outbox.Next(ctx, q.name, q.e.cfg.Instance, 0); err != nil && ctx.Err() == nil {
					q.e.log.Warn("webhook: renew the endpoint's queue", "endpoint", q.def.Load(), "error", err)
				}
			case <-ctx.Done():
			}
			t.Stop()
			continue
		}
		entries, err := q.e.cfg.Outbox.Next(ctx, q.name, q.e.cfg.Instance, free)
		if err != nil {
			if !failing && ctx.Err() == nil {
				q.e.log.Warn("webhook: read the endpoint's queue", "endpoint", q.def.Load(), "error", err)
			}
			failing = true
			q.sleep(ctx)
			continue
		}
		failing = false
		fresh := 0
		var skipped []string
		def := q.def.Load()
		for _, entry := range entries {
			if !q.take(entry.ID) {
				continue // already being delivered here
			}
			fresh++
			if !def.wants(entry.Kind, entry.Account) {
				skipped = append(skipped, entry.ID)
				continue
			}
			lanes[laneOf(entry.Account, len(lanes))] <- entry
		}
		if len(skipped) > 0 {
			q.settle(ctx, "acknowledge filtered entries", func(ctx context.Context) error {
				return q.e.cfg.Outbox.Ack(ctx, q.name, skipped...)
			})
			q.release(skipped...)
		}
		if fresh == 0 {
			q.sleep(ctx)
		}
	}
}

// sleep waits for Notify, the poll interval or the end of ctx.
func (q *queue) sleep(ctx context.Context) {
	t := time.NewTimer(q.e.cfg.Poll)
	defer t.Stop()
	select {
	case <-q.wake:
	case <-t.C:
	case <-ctx.Done():
	}
}

func laneOf(account string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(account))
	return int(h.Sum32() % uint32(n))
}

func (q *queue) take(id string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.inflight[id] {
		return false
	}
	q.inflight[id] = true
	q.e.metrics.pending.WithLabelValues(q.name).Set(float64(len(q.inflight)))
	return true
}

func (q *queue) release(ids ...string) {
	q.mu.Lock()
	for _, id := range ids {
		delete(q.inflight, id)
	}
	q.e.metrics.pending.WithLabelValues(q.name).Set(float64(len(q.inflight)))
	q.mu.Unlock()
	select {
	case q.freed <- struct{}{}:
	default:
	}
}

func (q *queue) count() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.inflight)
}

// deliver posts one entry until it is delivered, rejected or its attempts
// are spent; then acknowledges it or makes it a dead letter. When ctx
// ends first, the entry stays queued.
func (q *queue) deliver(ctx context.Context, entry store.OutboxEntry) {
	defer q.release(entry.ID)
	if ctx.Err() != nil {
		return
	}
	body, id, err := newDelivery(q.name, entry)
	if err != nil {
		q.bury(ctx, entry, 0, err.Error())
		return
	}
	for attempt := 1; ; attempt++ {
		def := q.def.Load()
		start := time.Now()
		res := post(ctx, q.e.cfg.Client, def, id, entry.Kind, body, start)
		if ctx.Err() != nil {
			return // stopping: not an attempt that counts
		}
		q.e.metrics.latency.WithLabelValues(q.name).Observe(time.Since(start).Seconds())
		switch {
		case res.outcome == delivered:
			q.e.metrics.deliveries.WithLabelValues(q.name, outcomeDelivered).Inc()
			q.settle(ctx, "acknowledge a delivered entry", func(ctx context.Context) error {
				return q.e.cfg.Outbox.Ack(ctx, q.name, entry.ID)
			})
			return
		case res.outcome == reject:
			q.bury(ctx, entry, attempt, res.reason)
			return
		case attempt >= def.MaxAttempts:
			q.bury(ctx, entry, attempt, fmt.Sprintf("%s (after %d attempts)", res.reason, attempt))
			return
		}
		q.e.metrics.deliveries.WithLabelValues(q.name, outcomeRetried).Inc()
		wait := q.e.cfg.Backoff.delay(attempt, res.retryAfter, jitter)
		q.e.log.Info("webhook: delivery failed; retrying", "endpoint", def, "entry", entry.ID, "account", entry.Account, "attempt", attempt, "reason", res.reason, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

// bury makes entry a dead letter of the queue.
func (q *queue) bury(ctx context.Context, entry store.OutboxEntry, attempts int, reason string) {
	q.e.metrics.deliveries.WithLabelValues(q.name, outcomeDeadLettered).Inc()
	q.e.log.Warn("webhook: delivery dead-lettered", "endpoint", q.def.Load(), "entry", entry.ID, "account", entry.Account, "kind", entry.Kind, "attempts", attempts, "reason", reason)
	d := store.DeadLetter{Endpoint: q.name, Entry: entry, Attempts: attempts, Reason: reason, At: time.Now().UTC()}
	q.settle(ctx, "keep a dead letter", func(ctx context.Context) error {
		return q.e.cfg.Outbox.Bury(ctx, d)
	})
}

// settle runs an acknowledgement (Ack or Bury), trying again a few times
// when the store fails; an entry left unacknowledged is delivered again.
func (q *queue) settle(ctx context.Context, what string, f func(context.Context) error) {
	for try := 1; ; try++ {
		err := f(ctx)
		if err == nil || ctx.Err() != nil {
			return
		}
		if try == storeTries {
			q.e.log.Error("webhook: "+what+" failed; the entry will be delivered again", "endpoint", q.def.Load(), "error", err)
			return
		}
		t := time.NewTimer(q.e.cfg.Poll)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

// Status is one endpoint as GET /api/webhooks shows it: no secret, the
// URL without its query.
type Status struct {
	Name        string   `json:"name"`
	Source      string   `json:"source"`            // "config" or "api"
	Account     string   `json:"account,omitempty"` // of a per-account endpoint
	URL         string   `json:"url"`
	Events      []string `json:"events"`
	Accounts    []string `json:"accounts"`
	Timeout     string   `json:"timeout"`
	MaxAttempts int      `json:"max_attempts"`
	// Running says whether this instance runs the endpoint's queue (in
	// fleet mode every instance does; one at a time delivers).
	Running bool `json:"running"`
	// Pending counts the entries this instance holds undelivered.
	Pending int `json:"pending"`
	// DeadLetters counts the endpoint's dead letters (up to 10000).
	DeadLetters int `json:"dead_letters"`
}

// Endpoints returns every endpoint, configured first, with its queue's
// figures.
func (e *Engine) Endpoints(ctx context.Context) ([]Status, error) {
	stored, err := e.cfg.Outbox.Endpoints(ctx)
	if err != nil {
		return nil, fmt.Errorf("webhook: list endpoints: %w", err)
	}
	list := make([]Status, 0, len(e.configured)+len(stored))
	add := func(ep Endpoint, source string) error {
		dead, err := e.cfg.Outbox.DeadLetters(ctx, ep.Name, deadLetterCountLimit)
		if err != nil {
			return fmt.Errorf("webhook: count the dead letters of %s: %w", ep.Name, err)
		}
		s := Status{
			Name: ep.Name, Source: source, Account: ep.Account, URL: RedactURL(ep.URL),
			Events: nonNil(ep.Events), Accounts: nonNil(ep.Accounts),
			Timeout: ep.Timeout.String(), MaxAttempts: ep.MaxAttempts, DeadLetters: len(dead),
		}
		e.mu.Lock()
		q := e.queues[ep.Name]
		e.mu.Unlock()
		if q != nil {
			s.Running, s.Pending = true, q.count()
		}
		list = append(list, s)
		return nil
	}
	for _, ep := range e.configured {
		if err := add(ep, "config"); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(stored, func(a, b store.Endpoint) int { return cmp.Compare(a.Name, b.Name) })
	for _, s := range stored {
		if err := add(fromStore(s), "api"); err != nil {
			return nil, err
		}
	}
	return list, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// AccountEndpoints returns the endpoints the API stored for account, with
// their secrets (the caller shows none).
func (e *Engine) AccountEndpoints(ctx context.Context, account string) ([]Endpoint, error) {
	stored, err := e.cfg.Outbox.Endpoints(ctx)
	if err != nil {
		return nil, fmt.Errorf("webhook: list endpoints: %w", err)
	}
	var list []Endpoint
	for _, s := range stored {
		if s.Account == account {
			list = append(list, fromStore(s))
		}
	}
	slices.SortFunc(list, func(a, b Endpoint) int { return cmp.Compare(a.Name, b.Name) })
	return list, nil
}

// SetAccountEndpoints replaces the endpoints of account with eps (nil
// removes them all) and returns them as stored, named. A bad setting is a
// *FieldError naming it as webhooks[i].field; nothing is changed then. A
// URL the account already had keeps its queue (pending entries and dead
// letters); a URL no longer listed loses them.
func (e *Engine) SetAccountEndpoints(ctx context.Context, account string, eps []Endpoint) ([]Endpoint, error) {
	if !validAccount(account) {
		return nil, &FieldError{"account", fmt.Sprintf("%q is not an account id", shorten(account))}
	}
	if len(eps) > MaxAccountEndpoints {
		return nil, &FieldError{"webhooks", fmt.Sprintf("lists %d endpoints; an account may have at most %d", len(eps), MaxAccountEndpoints)}
	}
	named := make([]Endpoint, len(eps))
	names := make(map[string]bool, len(eps))
	for i, ep := range eps {
		ep = ep.WithDefaults()
		ep.Account, ep.Accounts = account, nil
		if err := ep.Validate(); err != nil {
			var fe *FieldError
			if errors.As(err, &fe) {
				return nil, &FieldError{fmt.Sprintf("webhooks[%d].%s", i, fe.Field), fe.Problem}
			}
			return nil, err
		}
		ep.Name = AccountEndpointName(account, ep.URL)
		if names[ep.Name] {
			return nil, &FieldError{fmt.Sprintf("webhooks[%d].url", i), "is listed twice"}
		}
		names[ep.Name] = true
		ep.Accounts = []string{account}
		named[i] = ep
	}
	e.editMu.Lock()
	defer e.editMu.Unlock()
	old, err := e.AccountEndpoints(ctx, account)
	if err != nil {
		return nil, err
	}
	for _, ep := range named {
		// Stored first: an instance pruning queues at its start never
		// takes this one for a removed endpoint's.
		if err := e.cfg.Outbox.SaveEndpoint(ctx, ep.toStore()); err != nil {
			return nil, fmt.Errorf("webhook: save endpoint %s: %w", ep.Name, err)
		}
		if err := e.cfg.Outbox.OpenEndpoint(ctx, ep.Name); err != nil {
			return nil, fmt.Errorf("webhook: open the queue of %s: %w", ep.Name, err)
		}
	}
	for _, ep := range old {
		if names[ep.Name] {
			continue
		}
		if err := e.cfg.Outbox.DeleteEndpoint(ctx, ep.Name); err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("webhook: delete endpoint %s: %w", ep.Name, err)
		}
		if err := e.cfg.Outbox.CloseEndpoint(ctx, ep.Name); err != nil {
			return nil, fmt.Errorf("webhook: close the queue of %s: %w", ep.Name, err)
		}
	}
	select {
	case e.refresh <- struct{}{}:
	default:
	}
	return named, nil
}

// DeadLetters lists up to n dead letters of endpoint ("" for all).
func (e *Engine) DeadLetters(ctx context.Context, endpoint string, n int) ([]store.DeadLetter, error) {
	list, err := e.cfg.Outbox.DeadLetters(ctx, endpoint, n)
	if err != nil {
		return nil, fmt.Errorf("webhook: list dead letters: %w", err)
	}
	return list, nil
}

// Redrive queues a dead letter's entry again (after the entries already
// queued) and wakes the queues. An unknown id wraps store.ErrNotFound.
func (e *Engine) Redrive(ctx context.Context, id string) error {
	if err := e.cfg.Outbox.Redrive(ctx, id); err != nil {
		return fmt.Errorf("webhook: %w", err) // the store's error names the redrive and the id
	}
	e.Notify()
	return nil
}
