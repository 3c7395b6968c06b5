package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/wafleet/wafleet/events/journal"
	"github.com/wafleet/wafleet/status"
	"github.com/wafleet/wafleet/store"
)

// Sentinel errors. A Controller returns ErrUnknownAccount (wrapped or not)
// for an account that does not run here, and the API answers 404.
var (
	ErrUnknownAccount  = errors.New("api: unknown account")
	ErrNoAccounts      = errors.New("api: Config.Accounts is required")
	ErrReservedStreams = errors.New("api: Config.ReservedStreams must be below MaxStreams")
	ErrServing         = errors.New("api: server already serving")
	ErrClosed          = errors.New("api: server closed")
)

// Refused is what a Controller returns (wrapped or not) when the account is
// not in a state the action applies to; the API answers 409 with Reason.
// Reason is shown to the caller: it says what to do in an operator's
// words, such as "account is stopped: restart it", and holds no secret.
type Refused struct {
	Reason string
}

func (e *Refused) Error() string { return "api: refused: " + e.Reason }

// Controller acts on one account. The supervisor implements it. Every
// method returns once the request is accepted (the state changes arrive as
// events) and honours ctx.
type Controller interface {
	// Pair re-arms pairing of an account that is unpaired or logged out:
	// it connects again and shows fresh QR codes.
	Pair(ctx context.Context, id string) error
	// Restart resumes a stopped account from its stored device, wiping
	// nothing: a paired account logs in again.
	Restart(ctx context.Context, id string) error
	// Logout unlinks a paired account: it tells the server, wipes the
	// device and goes back to pairing.
	Logout(ctx context.Context, id string) error
}

// Accounts gives the current account views. *status.Board is one.
type Accounts interface {
	List() []status.Account
	Get(id string) (status.Account, bool)
}

// EventLog is the history of account events and its live tail, for GET
// /api/events (sse.go). *journal.Journal, over the store's outbox, is one.
type EventLog interface {
	// Subscribe follows the entries appended from now on.
	Subscribe(buffer int) *journal.Subscription
	// After reads up to n entries after id (store.Outbox.After).
	After(ctx context.Context, id string, n int) ([]store.OutboxEntry, error)
}

// Config configures a Server. Only Accounts is required.
type Config struct {
	// Listen is the address Serve listens on. Default: "127.0.0.1:8080".
	// (config refuses a non-loopback address without Token.)
	Listen string
	// Token, when not empty, is required as "Authorization: Bearer TOKEN"
	// on every route except /healthz and /readyz. Default: none.
	Token string
	// AllowedHosts are the names (or addresses) besides loopback ones, the
	// host of Listen and the address a connection arrived on, that a
	// request's Host may name (http.allowed_hosts). Default: none.
	AllowedHosts []string
	// Accounts gives the account views (the status board). Required.
	Accounts Accounts
	// Events is the event log GET /api/events streams and resumes from.
	// Default: nil, and the route answers 503.
	Events EventLog
	// Controller acts on accounts for the pair, restart and logout routes.
	// Default: nil, and those routes answer 503.
	Controller Controller
	// Fleet, in fleet mode, is the view of every instance: the account
	// routes answer for the whole fleet from it, and GET /api/instances
	// lists the members (fleet.go). Default: nil, the accounts are those
	// of Accounts and /api/instances answers 503.
	Fleet Fleet
	// Admin creates, changes and deletes accounts at runtime
	// (accounts_admin.go). Default: nil, and those routes answer 503.
	Admin AccountAdmin
	// Archive lists and restores archived devices and confirms held wipes
	// (archive.go). Default: nil, and those routes answer 503.
	Archive Archive
	// Webhooks lists webhook endpoints and dead letters, redrives them
	// and keeps the per-account endpoints (webhooks.go). Default: nil, and
	// those routes answer 503.
	Webhooks Webhooks
	// Ready returns why this instance cannot do its job now (nil: it
	// can), for GET /readyz: 503 {"ready":false,"reasons":[…]} or 200
	// {"ready":true}. It must be cheap (probes call it every few seconds).
	// Default: nil, always ready.
	Ready func(ctx context.Context) []string
	// Metrics serves GET /metrics (metrics.Metrics.Handler). Default: nil,
	// and the route answers 404.
	Metrics http.Handler
	// Logger receives request failures and account actions; never QR
	// contents. Default: discard.
	Logger *slog.Logger
	// ActionTimeout bounds one Controller call. Default: 10 s.
	ActionTimeout time.Duration
	// LinkCodeWait bounds POST /api/accounts/{id}/pair with a phone: the
	// request and the wait for the link code to show (connect, register,
	// ask the server). Default: 30 s.
	LinkCodeWait time.Duration
	// MaxStreams bounds concurrent GET /api/events streams. Default: 64.
	MaxStreams int
	// ReservedStreams of MaxStreams are kept for the dashboard's own
	// streams (those that present the stream key of its page). Default:
	// MaxStreams/8; it must be below MaxStreams.
	ReservedStreams int
	// MaxStreamsPerClient bounds the concurrent streams of one client IP
	// address, the dashboard's streams excepted. Default: 8.
	MaxStreamsPerClient int
	// StreamLifetime ends every stream after this long, so an abandoned
	// one frees its slot; clients reconnect by themselves (the stream
	// tells them to retry after 3 s). Default: 10 min.
	StreamLifetime time.Duration
	// StreamBuffer is how many events a slow stream may fall behind before
	// it loses some. Default: 256.
	StreamBuffer int
	// Heartbeat is the interval of SSE comment lines that keep proxies
	// from closing an idle stream. Default: 15 s.
	Heartbeat time.Duration
}

// Default values of Config.
const (
	DefaultListen        = "127.0.0.1:8080"
	DefaultActionTimeout = 10 * time.Second
	DefaultMaxStreams    = 64
	DefaultClientStreams = 8
	DefaultLifetime      = 10 * time.Minute
	DefaultStreamBuffer  = 256
	DefaultHeartbeat     = 15 * time.Second
)

// HTTP server timeouts. WriteTimeout is lifted per event stream, which
// instead sets a deadline before every write.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 15 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 16 << 10
	shutdownGrace     = 5 * time.Second
	streamWriteWait   = 10 * time.Second
	// maxRenders bounds concurrent QR renderings (a few ms of CPU each),
	// so a dashboard of many pairing accounts cannot starve the fleet.
	maxRenders = 2
)

// Server is the HTTP API. Build it with New, run it with Serve.
type Server struct {
	cfg       Config
	log       *slog.Logger
	tokenHash [sha256.Size]byte
	hosts     hostPolicy
	streams   *streamSlots
	streamKey string        // in the dashboard's page: marks its event streams
	dashboard []byte        // the page, with streamKey
	renders   chan struct{} // one slot per QR code being rendered
	sessions  *sessions     // the console's logins (session.go)
	handler   http.Handler
	// routeTable lists every registered route, for the test that holds
	// the OpenAPI document to them.
	routeTable []route

	closeOnce sync.Once
	closing   chan struct{} // closed by Shutdown: ends event streams

	mu  sync.Mutex
	srv *http.Server
}

// New checks cfg, fills in defaults and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Accounts == nil {
		return nil, ErrNoAccounts
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.ActionTimeout <= 0 {
		cfg.ActionTimeout = DefaultActionTimeout
	}
	if cfg.LinkCodeWait <= 0 {
		cfg.LinkCodeWait = 30 * time.Second
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = DefaultMaxStreams
	}
	if cfg.ReservedStreams <= 0 {
		cfg.ReservedStreams = cfg.MaxStreams / 8
	}
	if cfg.ReservedStreams >= cfg.MaxStreams {
		return nil, ErrReservedStreams
	}
	if cfg.MaxStreamsPerClient <= 0 {
		cfg.MaxStreamsPerClient = DefaultClientStreams
	}
	if cfg.StreamLifetime <= 0 {
		cfg.StreamLifetime = DefaultLifetime
	}
	if cfg.StreamBuffer <= 0 {
		cfg.StreamBuffer = DefaultStreamBuffer
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{
		cfg:      cfg,
		log:      log,
		streams:  newStreamSlots(cfg.MaxStreams, cfg.ReservedStreams, cfg.MaxStreamsPerClient),
		renders:  make(chan struct{}, maxRenders),
		sessions: newSessions(),
		closing:  make(chan struct{}),
		hosts:    newHostPolicy(cfg.Listen, cfg.AllowedHosts),
	}
	if cfg.Token != "" {
		s.tokenHash = sha256.Sum256([]byte(cfg.Token))
	}
	s.streamKey = rand.Text()
	s.dashboard = bytes.Replace(dashboardHTML, []byte(streamKeyMark), []byte(s.streamKey), 1)
	s.handler = s.secure(s.routes())
	return s, nil
}

// Handler returns the API as an http.Handler (with authentication), for
// tests and for embedding in another server.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve listens on Config.Listen and serves until ctx is done or Shutdown
// is called, then shuts down gracefully (at most 5 s) and returns nil. It
// returns an error when it cannot listen.
func (s *Server) Serve(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("api: listen on %s: %w", s.cfg.Listen, err)
	}
	return s.ServeListener(ctx, ln)
}

// ServeListener is Serve on a listener of the caller's; it closes ln.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener) error {
	s.mu.Lock()
	switch {
	case s.isClosing():
		s.mu.Unlock()
		ln.Close()
		return ErrClosed
	case s.srv != nil:
		s.mu.Unlock()
		ln.Close()
		return ErrServing
	}
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.srv = srv
	s.mu.Unlock()

	s.log.Info("http api listening", "addr", ln.Addr().String(), "auth", s.cfg.Token != "")
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		if errors.Is(err, http.ErrServerClosed) {
			return nil // Shutdown was called
		}
		return fmt.Errorf("api: serve: %w", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
		defer cancel()
		err := s.Shutdown(sctx)
		<-served
		return err
	}
}

// Shutdown ends event streams, stops accepting connections and waits for
// requests in flight until ctx is done, then closes what is left. It is
// idempotent and may be called before, during or after Serve.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeOnce.Do(func() { close(s.closing) })
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	if err := srv.Shutdown(ctx); err != nil {
		srv.Close()
		return fmt.Errorf("api: shutdown: %w", err)
	}
	return nil
}

func (s *Server) isClosing() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}
