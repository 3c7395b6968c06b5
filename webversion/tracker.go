package webversion

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/wire/payload"
)

// SettingName is the default name under which a Tracker persists the
// version it found ("2.3000.N").
const SettingName = "client_version"

// DefaultRetryEvery is how often a Tracker looks again while no newer
// version than a refused one can be had.
const DefaultRetryEvery = 5 * time.Minute

// renotifyGap spaces the OnUnavailable calls for accounts refused while a
// search already failed: a refused fleet reconnecting at the connect rate
// costs one broadcast a second, not one per account.
const renotifyGap = time.Second

// ErrNoNewerVersion is wrapped by the errors given to OnUnavailable: the
// current version was refused and no newer one can be had for now.
var ErrNoNewerVersion = errors.New("webversion: no newer client version")

// Settings persist small named values. store.Backend implements it; with the
// Redis store every instance of a fleet shares them.
type Settings interface {
	// LoadSetting returns the value stored under name: "" or an error
	// wrapping store.ErrNotFound when there is none.
	LoadSetting(ctx context.Context, name string) (string, error)
	// SaveSetting stores value under name.
	SaveSetting(ctx context.Context, name, value string) error
}

// Options configure a Tracker. Every field documents its default.
type Options struct {
	// Initial is the version used until a newer one is found. Default
	// payload.DefaultVersion() (compiled in).
	Initial payload.Version
	// URL is the service-worker script to fetch (DefaultURL for WhatsApp's).
	// Default "": fetching is off; only Settings can bring a newer version.
	URL string
	// Client makes the requests. Default: a client of its own with the
	// default transport's settings (HTTPS_PROXY is honoured) and no
	// keep-alive: fetches are rare, and no idle connection outlives Close.
	Client *http.Client
	// Settings persist the version found, so that a restarted process and
	// the other instances of a fleet start from it. Default nil: nothing is
	// persisted.
	Settings Settings
	// SettingName names the persisted version. Default SettingName.
	SettingName string
	// RetryEvery is the delay between two searches while no newer version
	// than a refused one can be had. Default DefaultRetryEvery (5 min).
	RetryEvery time.Duration
	// FetchTimeout bounds one fetch. Default DefaultFetchTimeout (30 s).
	FetchTimeout time.Duration
	// SettingsTimeout bounds one LoadSetting or SaveSetting. Default 5 s.
	SettingsTimeout time.Duration
	// Logger logs the versions adopted and failed searches. Default
	// slog.Default().
	Logger *slog.Logger
	// OnUpdated is called when a newer version is current, or when an
	// account was refused a version older than the current one. It must
	// not block (the app sends connection.VersionUpdated to every account).
	// Default: nothing.
	OnUpdated func()
	// OnUnavailable is called when the current version was refused and no
	// newer one can be had; err wraps ErrNoNewerVersion and says why. It
	// must not block (the app sends connection.VersionUnavailable to every
	// account). Default: nothing.
	OnUnavailable func(err error)
	// After is the clock of the retries (tests inject one). Default
	// time.After.
	After func(time.Duration) <-chan time.Time
}

// Tracker owns the WhatsApp Web version of a process: Current is what the
// next payload carries; Refused starts a search for a newer one. It
// implements the connection actor's VersionSource. Create it with
// NewTracker, then Start it; Close stops it.
//
// All the work runs in one goroutine, which calls OnUpdated and
// OnUnavailable; Current and Refused never block. Searches are
// single-flight: accounts refused while a search runs, or right after one
// failed, are answered by its result.
type Tracker struct {
	opts Options
	host string // of opts.URL, for errors
	cur  atomic.Pointer[payload.Version]

	mu      sync.Mutex      // guards refused only: Refused never waits for I/O
	refused payload.Version // highest version refused since the last answer; zero: none

	life    sync.Mutex // guards started, closed and cancel
	started bool
	closed  bool
	cancel  context.CancelFunc

	wake    chan struct{} // cap 1: Refused was called
	stopped chan struct{} // closed when the worker has returned

	// stored is the version last read from or written to Settings; only
	// Start (before the worker runs) and the worker touch it.
	stored payload.Version
}

// NewTracker checks opts and returns a Tracker that is not started.
func NewTracker(opts Options) (*Tracker, error) {
	if opts.Initial.IsZero() {
		opts.Initial = payload.DefaultVersion()
	}
	if opts.Initial.Primary == 0 {
		return nil, fmt.Errorf("%w: initial version %s", payload.ErrBadVersion, opts.Initial)
	}
	var host string
	if opts.URL != "" {
		u, err := url.Parse(opts.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, ErrBadURL
		}
		host = u.Host
	}
	if opts.SettingName == "" {
		opts.SettingName = SettingName
	}
	if opts.RetryEvery <= 0 {
		opts.RetryEvery = DefaultRetryEvery
	}
	if opts.FetchTimeout <= 0 {
		opts.FetchTimeout = DefaultFetchTimeout
	}
	if opts.SettingsTimeout <= 0 {
		opts.SettingsTimeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.OnUpdated == nil {
		opts.OnUpdated = func() {}
	}
	if opts.OnUnavailable == nil {
		opts.OnUnavailable = func(error) {}
	}
	if opts.After == nil {
		opts.After = time.After
	}
	if opts.Client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.DisableKeepAlives = true
		opts.Client = &http.Client{Transport: tr}
	}
	t := &Tracker{
		opts:    opts,
		host:    host,
		wake:    make(chan struct{}, 1),
		stopped: make(chan struct{}),
	}
	initial := opts.Initial
	t.cur.Store(&initial)
	return t, nil
}

// Current returns the version to send in the next payload. It is one
// atomic load.
func (t *Tracker) Current() payload.Version { return *t.cur.Load() }

// Refused reports that the server refused v (<failure reason=405>). It
// returns at once; the Tracker answers every account through OnUpdated
// (a version newer than v is current, maybe already) or OnUnavailable.
// While the current version is itself known to be refused (a search
// failed and nothing newer has appeared since), a refusal of an older v is
// answered with OnUnavailable too: reconnecting with the current version
// would only bring another 405. Answers to refusals that come while a
// search failed are spaced by at least a second, each reaching every
// account refused until then.
func (t *Tracker) Refused(v payload.Version) {
	t.mu.Lock()
	if t.refused.IsZero() || v.Compare(t.refused) > 0 {
		t.refused = v
	}
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default: // the worker is already due to look
	}
}

// Start reads the persisted version (taken when newer than the current
// one; ctx bounds the read, at most Options.SettingsTimeout) and starts the
// worker, which fetches the published version once (taken and persisted
// when newer). Start does not wait for the fetch. Calling it again, or
// after Close, does nothing.
func (t *Tracker) Start(ctx context.Context) {
	t.life.Lock()
	defer t.life.Unlock()
	if t.started || t.closed {
		return
	}
	t.started = true
	if v, ok := t.loadStored(ctx); ok && v.Compare(t.Current()) > 0 {
		t.adopt(v, "stored")
	}
	wctx, cancel := context.WithCancel(context.Background())
	t.cancel = cancel
	go t.run(wctx)
}

// Close stops the worker, cutting a fetch or a wait short, and returns once
// it has exited. It is idempotent. Current keeps answering.
func (t *Tracker) Close() {
	t.life.Lock()
	if t.closed {
		t.life.Unlock()
		return
	}
	t.closed = true
	started, cancel := t.started, t.cancel
	t.life.Unlock()
	if started {
		cancel()
		<-t.stopped
	}
}

// run is the worker: the first fetch, then the answers to refusals and the
// retries, until ctx ends.
func (t *Tracker) run(ctx context.Context) {
	defer close(t.stopped)
	if t.opts.URL != "" {
		if err := t.fetchAtStart(ctx); err != nil && ctx.Err() == nil {
			t.opts.Logger.Warn("cannot fetch the current WhatsApp Web version; keeping this one", "version", t.Current().String(), "error", err)
		}
	}
	var (
		// searching: the current version is refused and a search for a
		// newer one failed; lastErr says why.
		searching bool
		lastErr   error
		retry     <-chan time.Time
		// quiet, while not nil, holds back OnUnavailable for accounts
		// refused since the last one; notifyDue says one is waiting.
		quiet     <-chan time.Time
		notifyDue bool
	)
	search := func() {
		found, err := t.search(ctx)
		if ctx.Err() != nil {
			return
		}
		if found {
			searching, lastErr, retry, quiet, notifyDue = false, nil, nil, nil, false
			t.updated()
			return
		}
		retry = t.opts.After(t.opts.RetryEvery)
		if searching && t.pending().IsZero() {
			// Still nothing: the accounts know already.
			t.opts.Logger.Warn("still no newer WhatsApp Web version", "version", t.Current().String(), "retry_in", t.opts.RetryEvery.String(), "error", err)
			lastErr = err
			return
		}
		searching, lastErr = true, err
		t.opts.Logger.Error("WhatsApp Web version refused and no newer one found", "version", t.Current().String(), "retry_in", t.opts.RetryEvery.String(), "error", err)
		t.unavailable(err)
		quiet, notifyDue = t.opts.After(renotifyGap), false
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.wake:
			r := t.pending()
			switch {
			case r.IsZero():
				// Answered already.
			case searching && quiet != nil:
				notifyDue = true
			case searching:
				t.unavailable(lastErr)
				quiet = t.opts.After(renotifyGap)
			case t.Current().Compare(r) > 0:
				// Refused an older version: the current one is not
				// known to be refused; try it.
				t.updated()
			default:
				search()
			}
		case <-retry:
			retry = nil
			search()
		case <-quiet:
			quiet = nil
			if notifyDue && searching && !t.pending().IsZero() {
				t.unavailable(lastErr)
				quiet = t.opts.After(renotifyGap)
			}
			notifyDue = false
		}
	}
}

// pending returns the highest version refused since the last answer.
func (t *Tracker) pending() payload.Version {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.refused
}

// updated answers every refusal so far with OnUpdated. The refusals are
// cleared first: the callback reaches every account, including those
// refused until now.
func (t *Tracker) updated() {
	t.mu.Lock()
	t.refused = payload.Version{}
	t.mu.Unlock()
	t.opts.OnUpdated()
}

// unavailable answers every refusal so far with OnUnavailable(err).
func (t *Tracker) unavailable(err error) {
	t.mu.Lock()
	t.refused = payload.Version{}
	t.mu.Unlock()
	t.opts.OnUnavailable(err)
}

// search looks for a version newer than the current, refused one: first
// in Settings (another instance may have found one), then on the web. It
// adopts and persists what it finds and returns true; otherwise the error
// says why there is none.
func (t *Tracker) search(ctx context.Context) (bool, error) {
	cur := t.Current()
	if v, ok := t.loadStored(ctx); ok && v.Compare(cur) > 0 {
		t.adopt(v, "stored")
		return true, nil
	}
	if t.opts.URL == "" {
		return false, fmt.Errorf("%w: %s is refused, fetching is off (no version URL) and no newer one is stored", ErrNoNewerVersion, cur)
	}
	v, err := t.fetch(ctx)
	if err != nil {
		return false, fmt.Errorf("%w: %s is refused and fetching the published one failed: %w", ErrNoNewerVersion, cur, err)
	}
	switch c := v.Compare(cur); {
	case c == 0:
		return false, fmt.Errorf("%w: the newest version published at %s, %s, is still refused", ErrNoNewerVersion, t.host, v)
	case c < 0:
		return false, fmt.Errorf("%w: the newest version published at %s, %s, is older than the refused %s", ErrNoNewerVersion, t.host, v, cur)
	}
	t.adopt(v, "fetched")
	t.save(ctx, v)
	return true, nil
}

// fetchAtStart fetches the published version once and adopts it, and
// persists it, when it is newer than the current one (which is at least
// the stored one: a version not newer is never written, so that a stale
// fetch cannot undo another instance's newer find).
func (t *Tracker) fetchAtStart(ctx context.Context) error {
	v, err := t.fetch(ctx)
	if err != nil {
		return err
	}
	if v.Compare(t.Current()) > 0 {
		t.adopt(v, "fetched")
		t.save(ctx, v)
	}
	return nil
}

func (t *Tracker) fetch(ctx context.Context) (payload.Version, error) {
	ctx, cancel := context.WithTimeout(ctx, t.opts.FetchTimeout)
	defer cancel()
	return Fetch(ctx, t.opts.Client, t.opts.URL)
}

// adopt makes v current.
func (t *Tracker) adopt(v payload.Version, source string) {
	old := t.Current()
	t.cur.Store(&v)
	t.opts.Logger.Info("WhatsApp Web version updated", "from", old.String(), "to", v.String(), "source", source)
}

// loadStored reads the persisted version. A missing, unreadable or invalid
// one is reported as absent (the last two are logged).
func (t *Tracker) loadStored(ctx context.Context) (payload.Version, bool) {
	if t.opts.Settings == nil {
		return payload.Version{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, t.opts.SettingsTimeout)
	defer cancel()
	raw, err := t.opts.Settings.LoadSetting(ctx, t.opts.SettingName)
	if errors.Is(err, store.ErrNotFound) || (err == nil && raw == "") {
		return payload.Version{}, false
	}
	if err != nil {
		t.opts.Logger.Warn("cannot read the stored WhatsApp Web version", "setting", t.opts.SettingName, "error", err)
		return payload.Version{}, false
	}
	v, err := payload.ParseVersion(raw)
	if err != nil {
		t.opts.Logger.Warn("ignoring the stored WhatsApp Web version", "setting", t.opts.SettingName, "error", err)
		return payload.Version{}, false
	}
	if v.Compare(t.stored) > 0 {
		t.stored = v
	}
	return v, true
}

// save persists v when it is newer than the version known stored.
func (t *Tracker) save(ctx context.Context, v payload.Version) {
	if t.opts.Settings == nil || v.Compare(t.stored) <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, t.opts.SettingsTimeout)
	defer cancel()
	if err := t.opts.Settings.SaveSetting(ctx, t.opts.SettingName, v.String()); err != nil {
		t.opts.Logger.Warn("cannot store the WhatsApp Web version", "setting", t.opts.SettingName, "version", v.String(), "error", err)
		return
	}
	t.stored = v
}
