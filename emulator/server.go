package emulator

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/wire/qr"
)

// Defaults of Options.
const (
	DefaultAddr             = "127.0.0.1:0"
	DefaultRefCount         = 6
	DefaultHandshakeTimeout = 20 * time.Second
	DefaultScanTimeout      = 30 * time.Second
	DefaultPlatform         = "android"
	DefaultMaxViolations    = 1000
)

// ChatPath is the WebSocket path of the chat endpoint.
const ChatPath = "/ws/chat"

// Options configures a Server. The zero value is a well-behaved server on a
// free loopback port with fresh keys; every field documents its default.
type Options struct {
	// Addr is the TCP address Start listens on. Default DefaultAddr
	// ("127.0.0.1:0": a free port on loopback).
	Addr string
	// Faults are the faults injected from the start (SetFaults changes
	// them later). Default none.
	Faults Faults
	// RootKey is the test root that signs the intermediate certificate;
	// clients must be configured with its public key. Default: a fresh key
	// per server.
	RootKey *crypto.KeyPair
	// StaticKey is the server's Noise static key, certified by the leaf.
	// Default: a fresh key per server.
	StaticKey *crypto.KeyPair
	// RefCount is the number of refs in pair-device. Default 6.
	RefCount int
	// FirstRefTTL and NextRefTTL are the lifetimes of the first ref and of
	// each later one (PROTOCOL.md 8.4); a registration connection is closed
	// when all have passed without a scan. Defaults 60 s and 20 s (160 s in
	// all with 6 refs).
	FirstRefTTL, NextRefTTL time.Duration
	// HandshakeTimeout bounds each wait for a client handshake message.
	// Default 20 s.
	HandshakeTimeout time.Duration
	// ScanTimeout bounds how long Scan waits for the companion's
	// pair-device-sign after sending pair-success. Default 30 s.
	ScanTimeout time.Duration
	// Platform is the phone's platform name in pair-success. Default
	// "android".
	Platform string
	// BusinessName, when set, is sent as <biz name> in pair-success (a
	// business account). Default "" (no <biz>).
	BusinessName string
	// MaxViolations caps the violations list of Stats. Default 1000.
	MaxViolations int
	// DayOne makes the server behave like the real one from a device's
	// first login (pushes, acks, redelivery, server pings, prekey use).
	// Default off (the zero value). SetDayOne and POST /dayone change it.
	DayOne DayOne
	// MinVersion is the oldest client appVersion accepted
	// ("primary.secondary.tertiary", e.g. "2.3000.1040000000"); older
	// registrations and logins get <failure reason="405"/>. Default "":
	// accept all.
	MinVersion string
	// LatestVersion is the version GET /sw.js advertises. Default:
	// MinVersion, or payload.DefaultVersion when MinVersion is "".
	LatestVersion string
	// Provisioning enables Provision and POST /provision: devices
	// recorded as paired without a scan, a shortcut for load runs
	// (provision.go). Default off.
	Provisioning bool
	// ReceiptDeadline is how long a message an emulated contact sent waits
	// for its delivery receipt from each recipient device before it counts
	// in receipts_overdue. Default DefaultReceiptDeadline (60 s); negative:
	// never overdue.
	ReceiptDeadline time.Duration
	// Logger receives the server's logs. It never gets QR contents, refs or
	// keys. Default: discard.
	Logger *slog.Logger
}

// Server is an emulated WhatsApp Web server with its phone. Build it with New,
// serve with Start (or mount Handler), stop with Close.
type Server struct {
	opts   Options
	log    *slog.Logger
	root   *crypto.KeyPair
	inter  *crypto.KeyPair
	static *crypto.KeyPair

	faults   atomic.Pointer[faultState]
	dayOne   atomic.Pointer[dayOneState]
	dayOneMu sync.Mutex // serializes SetDayOne
	versions atomic.Pointer[versionState]
	reg      *registry
	contacts contactBook
	d1pool   dayOnePool // day-one's contacts (dayonemsg.go)
	stats    *stats
	phone    *Phone
	ids      atomic.Uint64 // IQ ids
	conns    atomic.Uint64 // connection numbers for logs
	idBase   uint64

	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	closed   bool
	sessions map[*session]struct{}
	wg       sync.WaitGroup
	ln       net.Listener
	httpSrv  *http.Server
	stopCtx  func() bool

	handler   http.Handler
	closeOnce sync.Once
}

// faultState is the current faults with the certificate chain they imply
// and, for login-failure-402, when the ban ends.
type faultState struct {
	f        Faults
	chain    []byte
	banUntil time.Time
}

// New builds a server. It does not listen yet.
func New(opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = DefaultAddr
	}
	if opts.RefCount == 0 {
		opts.RefCount = DefaultRefCount
	}
	if opts.FirstRefTTL == 0 {
		opts.FirstRefTTL = qr.FirstTTL
	}
	if opts.NextRefTTL == 0 {
		opts.NextRefTTL = qr.NextTTL
	}
	if opts.HandshakeTimeout == 0 {
		opts.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if opts.ScanTimeout == 0 {
		opts.ScanTimeout = DefaultScanTimeout
	}
	if opts.Platform == "" {
		opts.Platform = DefaultPlatform
	}
	if opts.ReceiptDeadline == 0 {
		opts.ReceiptDeadline = DefaultReceiptDeadline
	}
	if opts.MaxViolations == 0 {
		opts.MaxViolations = DefaultMaxViolations
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	switch {
	case opts.RefCount < 1 || opts.RefCount > 100:
		return nil, fmt.Errorf("%w: RefCount %d not in 1..100", ErrBadOptions, opts.RefCount)
	case opts.FirstRefTTL < 0 || opts.NextRefTTL < 0 || opts.HandshakeTimeout < 0 || opts.ScanTimeout < 0:
		return nil, fmt.Errorf("%w: negative duration", ErrBadOptions)
	case opts.MaxViolations < 0:
		return nil, fmt.Errorf("%w: negative MaxViolations", ErrBadOptions)
	}
	versions, err := parseVersions(Versions{Min: opts.MinVersion, Latest: opts.LatestVersion})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadOptions, err)
	}
	s := &Server{
		opts:     opts,
		log:      opts.Logger,
		root:     opts.RootKey,
		static:   opts.StaticKey,
		reg:      newRegistry(),
		stats:    newStats(opts.MaxViolations),
		sessions: make(map[*session]struct{}),
	}
	s.versions.Store(versions)
	if err := s.SetDayOne(opts.DayOne); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadOptions, err)
	}
	if s.root == nil {
		if s.root, err = crypto.GenerateKeyPair(); err != nil {
			return nil, fmt.Errorf("emulator: root key: %w", err)
		}
	}
	if s.static == nil {
		if s.static, err = crypto.GenerateKeyPair(); err != nil {
			return nil, fmt.Errorf("emulator: static key: %w", err)
		}
	}
	if s.inter, err = crypto.GenerateKeyPair(); err != nil {
		return nil, fmt.Errorf("emulator: intermediate key: %w", err)
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("emulator: random: %w", err)
	}
	s.idBase = 1_000_000_000 + binary.BigEndian.Uint64(b[:])%1_000_000_000
	if err := s.SetFaults(opts.Faults); err != nil {
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.phone = &Phone{s: s}
	s.handler = s.routes()
	return s, nil
}

// Start listens on Options.Addr and serves in the background until Close or
// until ctx ends. It returns once the listener is open, so URL works.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.ln != nil {
		return ErrStarted
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("emulator: listen: %w", err)
	}
	s.ln = ln
	s.httpSrv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return s.ctx },
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serve", "err", err)
		}
	}()
	s.stopCtx = context.AfterFunc(ctx, func() { s.Close() })
	s.log.Info("emulator listening", "addr", ln.Addr().String(), "faults", s.Faults().Specs())
	return nil
}

// Handler returns the server's HTTP handler: the chat WebSocket at ChatPath
// and the control API (control.go). It serves without Start too, e.g. under
// httptest.Server; Close still ends its connections.
func (s *Server) Handler() http.Handler { return s.handler }

// Addr returns the listening address ("" before Start).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// URL returns the chat endpoint, ws://HOST:PORT/ws/chat ("" before Start).
func (s *Server) URL() string {
	a := s.Addr()
	if a == "" {
		return ""
	}
	return "ws://" + a + ChatPath
}

// ControlURL returns the base URL of the control API, http://HOST:PORT
// ("" before Start).
func (s *Server) ControlURL() string {
	a := s.Addr()
	if a == "" {
		return ""
	}
	return "http://" + a
}

// RootPublicKey returns the public key of the test root that clients must
// trust instead of crypto.WhatsAppRootKey.
func (s *Server) RootPublicKey() [32]byte { return s.root.Pub }

// RootPublicKeyHex returns RootPublicKey as 64 lowercase hex characters.
func (s *Server) RootPublicKeyHex() string { return hex.EncodeToString(s.root.Pub[:]) }

// Phone returns the emulated primary phone that scans codes and manages
// linked devices.
func (s *Server) Phone() *Phone { return s.phone }

// Devices returns the paired devices, sorted by JID.
func (s *Server) Devices() []Device { return s.reg.devicesList() }

// Faults returns the faults currently injected.
func (s *Server) Faults() Faults { return s.faults.Load().f }

// SetFaults replaces the injected faults. It affects connections and scans
// that start afterwards (and the random disconnects of later logins);
// drop-pongs also affects live connections. A login-failure-402 ban starts
// now, unless the faults being replaced had the same ban duration (then
// the running ban, spent or not, continues).
func (s *Server) SetFaults(f Faults) error {
	chain, err := s.buildChain(f)
	if err != nil {
		return fmt.Errorf("emulator: certificate chain: %w", err)
	}
	st := &faultState{f: f, chain: chain}
	if f.LoginFailure402 > 0 {
		if old := s.faults.Load(); old != nil && old.f.LoginFailure402 == f.LoginFailure402 {
			st.banUntil = old.banUntil
		} else {
			st.banUntil = time.Now().Add(f.LoginFailure402)
		}
	}
	s.faults.Store(st)
	return nil
}

// Serial numbers of the emulator's certificates.
const (
	intermediateSerial = 1
	leafSerial         = 2
)

// buildChain issues the ServerHello certificate chain, broken as f asks.
func (s *Server) buildChain(f Faults) ([]byte, error) {
	now := time.Now()
	root := s.root
	if f.BadRootSignature {
		other, err := crypto.GenerateKeyPair()
		if err != nil {
			return nil, err
		}
		root = other
	}
	inter := crypto.CertSpec{
		Serial: intermediateSerial, IssuerSerial: 0,
		NotBefore: now.Add(-24 * time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour),
	}
	leaf := crypto.CertSpec{
		Serial: leafSerial, IssuerSerial: intermediateSerial, Key: s.static.Pub[:],
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
	}
	if f.WrongLeafKey {
		other, err := crypto.GenerateKeyPair()
		if err != nil {
			return nil, err
		}
		leaf.Key = other.Pub[:]
	}
	if f.ExpiredCertificate {
		leaf.NotBefore, leaf.NotAfter = now.Add(-48*time.Hour), now.Add(-time.Hour)
	}
	if f.WrongIssuerSerial {
		leaf.IssuerSerial = intermediateSerial + 6
	}
	return crypto.IssueCertChain(root, s.inter, inter, leaf)
}

// Close stops the server: it closes the listener and every connection and
// waits for the goroutines it started. Scans in progress fail. It is
// idempotent and safe to call from any goroutine.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.mu.Lock()
		s.closed = true
		if s.stopCtx != nil {
			s.stopCtx()
		}
		sessions := make([]*session, 0, len(s.sessions))
		for sess := range s.sessions {
			sessions = append(sessions, sess)
		}
		srv := s.httpSrv
		s.mu.Unlock()
		if srv != nil {
			srv.Close()
		}
		for _, sess := range sessions {
			sess.close()
		}
		s.wg.Wait()
		s.contacts.stopTimers()
		s.log.Info("emulator closed")
	})
	return nil
}

// enter registers a goroutine that serves a request; it fails once the
// server is closed. The caller must call s.wg.Done.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// addSession tracks a connection so Close can end it.
func (s *Server) addSession(sess *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.sessions[sess] = struct{}{}
	return true
}

func (s *Server) removeSession(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, sess)
}

// newID returns a fresh IQ id (a decimal string, nibble-packed on the wire).
func (s *Server) newID() string {
	return strconv.FormatUint(s.idBase+s.ids.Add(1), 10)
}
