package connection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/time/rate"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/waproto"
	"github.com/wafleet/wafleet/wire"
	"github.com/wafleet/wafleet/wire/payload"
	"github.com/wafleet/wafleet/wire/qr"
)

// Server says where to connect.
type Server struct {
	// URL is the WebSocket endpoint. Default wire.DefaultURL.
	URL string
	// RootKey is the public key that signs the server's intermediate
	// certificate. Default crypto.WhatsAppRootKey (the emulator has its own).
	RootKey []byte
}

// DefaultKeepalive is the keepalive used where the configuration sets none
// (the connect.keepalive_* keys default to it).
var DefaultKeepalive = Keepalive{Interval: 25 * time.Second, Timeout: 10 * time.Second, Window: 3 * time.Minute}

// Keepalive configures the pings that prove a connection alive.
type Keepalive struct {
	// Interval is the mean delay between pings; each delay is drawn
	// uniformly from [0.8·Interval, 1.2·Interval). Default 25 s (so 20–30 s).
	Interval time.Duration
	// Timeout bounds the wait for a pong. A missed pong alone does not
	// end the connection (PROTOCOL.md 9.8). Default 10 s.
	Timeout time.Duration
	// Window is how long the connection may go without a successful ping
	// before it is closed and reconnected, as the reference client does.
	// Default 3 min.
	Window time.Duration
}

// VersionSource says which WhatsApp Web version the payload carries and
// learns of the server refusing one as outdated (<failure reason=405>).
// Implementations are safe for concurrent use and never block.
type VersionSource interface {
	// Current is the version to send in the next payload.
	Current() payload.Version
	// Refused reports that the server refused v. The source looks for a
	// newer version in the background and then tells the refused accounts
	// with VersionUpdated or VersionUnavailable.
	Refused(v payload.Version)
}

// FixedVersion is a VersionSource that always offers the same version and
// cannot find a newer one.
type FixedVersion payload.Version

// Current returns v.
func (v FixedVersion) Current() payload.Version { return payload.Version(v) }

// Refused does nothing: there is no newer version to be had.
func (FixedVersion) Refused(payload.Version) {}

// Observer counts what happens on connections for metrics. Implementations
// never block.
type Observer interface {
	// AckSent counts an <ack> sent for an ackable stanza of class (its tag).
	AckSent(class string)
	// StanzaUndecodable counts a frame that did not decode into a stanza;
	// the connection went on.
	StanzaUndecodable()
	// StreamErrorAck counts a <stream:error><ack/></stream:error>: the
	// server ended the stream for a stanza it considers unacknowledged.
	StreamErrorAck()
	// PreKeysUploaded counts an accepted upload of n one-time prekeys.
	PreKeysUploaded(n int)
	// DecryptFailed counts a message that did not decrypt, by reason (one
	// of DecryptFailureReasons).
	DecryptFailed(reason string)
}

// EventWriter makes the outbox records of message events and learns of
// those written (*journal.Journal): the receive path appends a message
// event in the same store write as the Signal state its message changed
// (store.SignalChanges.Events, one transaction on bbolt), and that before
// it acknowledges the stanza; it then calls Written.
type EventWriter interface {
	Record(e events.Event) store.OutboxRecord
	Written(n int)
}

type nopObserver struct{}

func (nopObserver) AckSent(string)       {}
func (nopObserver) StanzaUndecodable()   {}
func (nopObserver) StreamErrorAck()      {}
func (nopObserver) PreKeysUploaded(int)  {}
func (nopObserver) DecryptFailed(string) {}

// Limiter bounds the rate of new connections of a whole instance (or of a
// fleet: store/redis.Limiter). LocalLimiter adapts a *rate.Limiter.
//
// The actor reserves a slot and arms a timer for it: no goroutine waits for
// a slot, so a cold start of many accounts does not leave the runtime one
// goroutine descriptor per account waiting (it keeps every descriptor it
// ever allocated, for reuse).
type Limiter interface {
	// Take reserves the next slot and says how long to wait before using
	// it. It may block for a round trip (a fleet-wide limit) and fails only
	// when ctx ends. cancel, when not nil, gives the slot back; it is
	// called, at most once, when the attempt ends before the slot's time.
	Take(ctx context.Context) (wait time.Duration, cancel func(), err error)
}

// LocalLimiter is a Limiter of one instance on r: a slot given back before
// its time is returned to r's bucket, as rate.Limiter.Wait does when its
// context ends.
func LocalLimiter(r *rate.Limiter) Limiter { return localLimiter{r} }

type localLimiter struct{ r *rate.Limiter }

// errNoBurst: a limiter with a burst of 0 allows nothing.
var errNoBurst = errors.New("the connect limiter's burst is 0")

func (l localLimiter) Take(context.Context) (time.Duration, func(), error) {
	res := l.r.Reserve()
	if !res.OK() {
		return 0, nil, errNoBurst
	}
	return res.Delay(), res.Cancel, nil
}

// Session is an established, encrypted connection: *wire.Transport.
// Watch, called once, hands each received frame to onFrame, in order (the
// slice is valid only until onFrame returns), then the error that ends
// receiving to onEnd, once; both must not block. Send may run while
// frames are handed over; Close may be called from any goroutine, any
// number of times, and ends both (onEnd follows).
type Session interface {
	Send(plaintext []byte) error
	Watch(onFrame func([]byte), onEnd func(error))
	Close() error
}

// DialRequest is what a Dialer needs for one connection.
type DialRequest struct {
	URL      string
	Proxy    string
	RootKey  []byte
	NoiseKey *crypto.KeyPair
	// Payload is the serialized ClientPayload (registration or login).
	Payload []byte
	// HandshakeTimeout bounds the Noise handshake; WriteTimeout bounds
	// each frame write (the writer's deadline).
	HandshakeTimeout, WriteTimeout time.Duration
}

// Dialer opens a connection and runs the Noise handshake. It must return
// when ctx ends. The default is WireDialer.
type Dialer func(ctx context.Context, req DialRequest) (Session, error)

// WireDialer dials a WebSocket with wire.Dial (through req.Proxy, if any) and
// runs wire.ClientHandshake over it. Errors say which of the two failed.
func WireDialer(ctx context.Context, req DialRequest) (Session, error) {
	conn, err := wire.Dial(ctx, req.URL, wire.DialOptions{Proxy: req.Proxy, WriteTimeout: req.WriteTimeout})
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	t, err := wire.ClientHandshake(ctx, conn, wire.ClientHandshakeConfig{
		NoiseKey: req.NoiseKey,
		Payload:  req.Payload,
		RootKey:  req.RootKey,
		Timeout:  req.HandshakeTimeout,
	})
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	return t, nil
}

// QRSchedule is how long each QR code is shown (PROTOCOL.md 8.4).
type QRSchedule struct {
	// First is the lifetime of the first code. Default 60 s.
	First time.Duration
	// Next is the lifetime of every later code. Default 20 s.
	Next time.Duration
}

// Deps are the dependencies and settings of one connection actor. Only
// AccountID, Store and Events are required; every other field documents its
// default.
type Deps struct {
	// AccountID names the account (and its Device in the Store).
	AccountID string
	// Proxy is the proxy URL for this account (see wire.DialOptions.Proxy).
	// Default "": direct.
	Proxy string
	// Store keeps the account's Device.
	Store store.Store
	// Signal keeps the account's Signal state (sessions, identities, sender
	// keys), read and written by the receive path. Default: Store, when it
	// is a store.SignalStore too (the stores are); without one, messages
	// are acknowledged undecrypted.
	Signal store.SignalStore
	// Journal makes the outbox records of the message events, which the
	// receive path writes with the state their messages changed, through
	// Signal: its outbox must be the one Signal's ApplySignal appends to
	// (the events are then published with Journaled set). Default nil:
	// they are only published, and a crash may lose an event whose state
	// was written.
	Journal EventWriter
	// RawMessages adds the serialized Message protobuf to message events
	// (config messages.raw). It carries the plaintext. Default false.
	RawMessages bool
	// Events receives every state change. Publishing must not block.
	Events events.Publisher
	// Logger is the service's JSON logger. Default slog.Default().
	Logger *slog.Logger
	// Server is the endpoint and its root key.
	Server Server
	// Limiter gives every dial its slot first. Default none (the caller
	// shares one LocalLimiter of 20/s across the instance).
	Limiter Limiter
	// Backoff is the reconnect policy. Zero fields take DefaultBackoff's.
	Backoff Backoff
	// Keepalive configures pings. Zero fields take the defaults.
	Keepalive Keepalive
	// Versions gives the WhatsApp Web version sent in the payload and
	// learns of refusals. Default FixedVersion(payload.DefaultVersion()).
	Versions VersionSource
	// DeviceProps describe the companion to the phone at registration
	// (the name and platform it shows in Linked devices).
	DeviceProps payload.DeviceProps
	// AutoRepair lets an account whose device was wiped after a lock or
	// ban (failure 403 or 406) register again by itself. Default false:
	// it stops with the banned alarm until an operator re-arms pairing.
	AutoRepair bool
	// WipeGuard, shared by the accounts of the instance, holds the wipes
	// of server-initiated logouts when too many accounts are logged out at
	// once. Default nil: every such wipe goes ahead (and archives).
	WipeGuard *WipeGuard
	// Observer counts acks, undecodable stanzas and prekey uploads.
	// Default: counts nothing.
	Observer Observer
	// QR is the QR rotation schedule. Default 60 s, then 20 s.
	QR QRSchedule
	// LinkPhone makes an unpaired account pair by link code for this
	// number (digits, international, no leading 0) from the start, instead
	// of by QR (config accounts[].phone). Default "": QR.
	LinkPhone string
	// Dialer opens connections. Default WireDialer.
	Dialer Dialer
	// LeaseHeld reports whether this instance still holds the account's
	// lease (fleet mode; the fleet closes the socket the moment it ends).
	// A connection that ends while it does not is a hand-over: the account
	// stops quietly, without reconnecting or raising an alarm — not even
	// for a conflict "replaced", which then only means that the new holder
	// logged in. Default nil: the lease is always held.
	LeaseHeld func() bool
	// HandshakeTimeout bounds the Noise handshake. Default 20 s
	// (wire.DefaultHandshakeTimeout).
	HandshakeTimeout time.Duration
	// WriteTimeout is the write deadline of every frame. Default 10 s
	// (wire.DefaultWriteTimeout).
	WriteTimeout time.Duration
	// StoreTimeout bounds every store call. Default store.DefaultTimeout.
	StoreTimeout time.Duration
	// StoreCalls, shared by the accounts of the process, counts the store
	// calls under way, which outlive a stopped actor: the process waits
	// for them before it closes the store. Default nil: not counted.
	StoreCalls *StoreCalls
	// WriteQueue bounds the frames waiting to be written; more closes the
	// connection. Every stanza the server pushes is answered with an ack,
	// and after a long offline period it pushes hundreds at once, so the
	// bound is generous: the queue costs nothing while it is empty.
	// Default 4096.
	WriteQueue int
	// SendLog keeps the idempotency keys of sends. Default: Store, when it
	// is a store.SendLog too (the stores are). Without it, or without
	// Signal, the account cannot send (SendText answers ErrNoSignalStore).
	SendLog store.SendLog
	// SendRate limits the messages the account sends. Zero fields take
	// DefaultSendRate's.
	SendRate SendRate
	// Rand is the jitter source, returning [0, 1). Default math/rand/v2.
	Rand func() float64
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (d *Deps) defaults() {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Signal == nil {
		d.Signal, _ = d.Store.(store.SignalStore)
	}
	if d.SendLog == nil {
		d.SendLog, _ = d.Store.(store.SendLog)
	}
	if d.Events == nil {
		d.Events = events.PublisherFunc(func(events.Event) {})
	}
	if d.Server.URL == "" {
		d.Server.URL = wire.DefaultURL
	}
	if d.Server.RootKey == nil {
		d.Server.RootKey = crypto.WhatsAppRootKey[:]
	}
	if d.Backoff.Initial <= 0 {
		d.Backoff.Initial = DefaultBackoff.Initial
	}
	if d.Backoff.Max <= 0 {
		d.Backoff.Max = DefaultBackoff.Max
	}
	if d.Backoff.StableAfter <= 0 {
		d.Backoff.StableAfter = DefaultBackoff.StableAfter
	}
	if d.Keepalive.Interval <= 0 {
		d.Keepalive.Interval = DefaultKeepalive.Interval
	}
	if d.Keepalive.Timeout <= 0 {
		d.Keepalive.Timeout = DefaultKeepalive.Timeout
	}
	if d.Keepalive.Window <= 0 {
		d.Keepalive.Window = DefaultKeepalive.Window
	}
	if d.Versions == nil {
		d.Versions = FixedVersion(payload.DefaultVersion())
	}
	if d.Observer == nil {
		d.Observer = nopObserver{}
	}
	if d.QR.First <= 0 {
		d.QR.First = qr.FirstTTL
	}
	if d.QR.Next <= 0 {
		d.QR.Next = qr.NextTTL
	}
	if d.Dialer == nil {
		d.Dialer = WireDialer
	}
	if d.HandshakeTimeout <= 0 {
		d.HandshakeTimeout = wire.DefaultHandshakeTimeout
	}
	if d.WriteTimeout <= 0 {
		d.WriteTimeout = wire.DefaultWriteTimeout
	}
	if d.StoreTimeout <= 0 {
		d.StoreTimeout = store.DefaultTimeout
	}
	if d.WriteQueue <= 0 {
		d.WriteQueue = 4096
	}
	if d.SendRate.PerMinute <= 0 {
		d.SendRate.PerMinute = DefaultSendRate.PerMinute
	}
	if d.SendRate.Burst <= 0 {
		d.SendRate.Burst = DefaultSendRate.Burst
	}
	if d.Rand == nil {
		d.Rand = defaultRand
	}
	if d.Now == nil {
		d.Now = time.Now
	}
}

// clientType is the QR code's TYPE field for the configured device props.
func (d *Deps) clientType() qr.ClientType {
	return qr.ClientTypeFor(d.DeviceProps.PlatformType, waproto.ClientPayload_UserAgent_WEB)
}
