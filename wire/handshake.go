package wire

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/waproto"
)

// DefaultHandshakeTimeout bounds a handshake when the config leaves Timeout 0.
const DefaultHandshakeTimeout = 20 * time.Second

// keyLen is the length of an X25519 public key.
const keyLen = 32

// handshakeLimiter is implemented by frame connections that can hold their
// reads to the handshake's limits (MaxHandshakeMessageSize,
// HandshakeReadBudget), refusing a frame whose announced length is too
// large before reading or allocating its body. *Conn implements it.
type handshakeLimiter interface {
	beginHandshake()
	endHandshake()
}

// limitHandshakeReads holds conn's reads to the handshake's limits, if conn
// can, and returns the function that lifts them.
func limitHandshakeReads(conn FrameConn) (lift func()) {
	l, ok := conn.(handshakeLimiter)
	if !ok {
		return func() {}
	}
	l.beginHandshake()
	return l.endHandshake
}

// readHandshakeFrame reads one handshake frame. A connection that is not a
// handshakeLimiter has already read the whole frame; one above
// MaxHandshakeMessageSize is still refused, so every FrameConn gives the
// same answer.
func readHandshakeFrame(conn FrameConn) ([]byte, error) {
	frame, err := conn.ReadFrame()
	if err != nil {
		return nil, err
	}
	if len(frame) > MaxHandshakeMessageSize {
		return nil, fmt.Errorf("%w: handshake message of %d bytes, limit %d", ErrFrameTooLarge, len(frame), MaxHandshakeMessageSize)
	}
	return frame, nil
}

// ClientHandshakeConfig configures ClientHandshake.
type ClientHandshakeConfig struct {
	// NoiseKey is the device's persistent noise key pair (required).
	NoiseKey *crypto.KeyPair
	// Payload is the serialized ClientPayload sent in ClientFinish (required).
	Payload []byte
	// RootKey is the public key that must sign the server's intermediate
	// certificate. Default crypto.WhatsAppRootKey; the emulator's test root
	// for emulator connections.
	RootKey []byte
	// Timeout bounds the whole handshake, from ClientHello to ClientFinish.
	// Default DefaultHandshakeTimeout (20 s).
	Timeout time.Duration
	// Now is the clock for certificate validity. Default time.Now.
	Now func() time.Time

	// newEphemeral is for tests only: it replaces crypto.GenerateKeyPair as
	// the source of the ephemeral key (vectors and benchmarks fix it). A fixed
	// ephemeral key destroys forward secrecy, hence unexported.
	newEphemeral func() (*crypto.KeyPair, error)
}

// ClientHandshake runs the client (initiator) side of the Noise handshake over
// conn, which must not have carried frames yet: it sends ClientHello, reads and
// checks ServerHello (the server's static key and certificate chain), sends
// ClientFinish with cfg.Payload, and returns the encrypted transport.
//
// Each failure names its step ("read server hello: …", "verify certificate:
// …") and wraps the cause: ErrHandshakeTimeout when cfg.Timeout elapses,
// ctx.Err() when ctx ends, ErrHandshakeMessage for a malformed ServerHello,
// crypto.ErrNoiseDecrypt and the crypto.ErrCert… sentinels, ErrClosed when the
// server hangs up, ErrFrameTooLarge when the ServerHello announces more than
// MaxHandshakeMessageSize bytes (refused before its body is read). On any
// error conn has been closed.
func ClientHandshake(ctx context.Context, conn FrameConn, cfg ClientHandshakeConfig) (*Transport, error) {
	g := newGuard(ctx, cfg.Timeout, conn, "client handshake")
	defer g.cancel()
	defer limitHandshakeReads(conn)()
	if cfg.NoiseKey == nil {
		return nil, g.fail("config", errors.New("no noise key"))
	}
	rootKey := cfg.RootKey
	if rootKey == nil {
		rootKey = crypto.WhatsAppRootKey[:]
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	newEphemeral := cfg.newEphemeral
	if newEphemeral == nil {
		newEphemeral = crypto.GenerateKeyPair
	}

	eph, err := newEphemeral()
	if err != nil {
		return nil, g.fail("generate ephemeral key", err)
	}
	ini := crypto.NewInitiator(cfg.NoiseKey, eph, []byte(ConnHeader))
	hello, err := proto.Marshal(&waproto.HandshakeMessage{
		ClientHello: &waproto.HandshakeMessage_ClientHello{Ephemeral: eph.Pub[:]},
	})
	if err != nil {
		return nil, g.fail("encode client hello", err)
	}
	if err := conn.WriteFrame(hello); err != nil {
		return nil, g.fail("write client hello", err)
	}

	frame, err := readHandshakeFrame(conn)
	if err != nil {
		return nil, g.fail("read server hello", err)
	}
	serverStatic, certChain, err := readServerHello(ini, frame)
	if err != nil {
		return nil, g.fail("server hello", err)
	}
	if err := crypto.VerifyCertChain(certChain, rootKey, serverStatic[:], now()); err != nil {
		return nil, g.fail("verify certificate", err)
	}

	staticCT, payloadCT, err := ini.WriteClientFinish(cfg.Payload)
	if err != nil {
		return nil, g.fail("encrypt client finish", err)
	}
	finish, err := proto.Marshal(&waproto.HandshakeMessage{
		ClientFinish: &waproto.HandshakeMessage_ClientFinish{Static: staticCT, Payload: payloadCT},
	})
	if err != nil {
		return nil, g.fail("encode client finish", err)
	}
	if err := conn.WriteFrame(finish); err != nil {
		return nil, g.fail("write client finish", err)
	}
	if err := g.done(); err != nil {
		return nil, g.fail("client finish", err)
	}
	send, recv := ini.Split()
	return NewTransport(conn, send, recv), nil
}

// readServerHello parses a ServerHello frame and runs the initiator over it,
// returning the server's static key and the decrypted certificate chain.
func readServerHello(ini *crypto.Initiator, frame []byte) (static [32]byte, certChain []byte, err error) {
	var msg waproto.HandshakeMessage
	if err := proto.Unmarshal(frame, &msg); err != nil {
		return static, nil, fmt.Errorf("parse: %w: %w", ErrHandshakeMessage, err)
	}
	sh := msg.GetServerHello()
	switch {
	case sh == nil:
		return static, nil, fmt.Errorf("parse: %w: no serverHello", ErrHandshakeMessage)
	case len(sh.GetEphemeral()) != keyLen:
		return static, nil, fmt.Errorf("parse: %w: ephemeral key of %d bytes", ErrHandshakeMessage, len(sh.GetEphemeral()))
	case len(sh.GetStatic()) == 0:
		return static, nil, fmt.Errorf("parse: %w: no static key", ErrHandshakeMessage)
	case len(sh.GetPayload()) == 0:
		return static, nil, fmt.Errorf("parse: %w: no payload", ErrHandshakeMessage)
	}
	static, certChain, err = ini.ReadServerHello(sh.GetEphemeral(), sh.GetStatic(), sh.GetPayload())
	if err != nil {
		return static, nil, fmt.Errorf("decrypt: %w", err)
	}
	return static, certChain, nil
}

// ServerHandshakeConfig configures AcceptHandshake.
type ServerHandshakeConfig struct {
	// Timeout bounds each wait for a client message: ClientHello in
	// AcceptHandshake, ClientFinish in Finish. Default DefaultHandshakeTimeout
	// (20 s).
	Timeout time.Duration

	// ephemeral is for tests only: a fixed server ephemeral key. Default a
	// fresh key per handshake.
	ephemeral *crypto.KeyPair
}

// ServerHandshake is the server (responder) side of a handshake in progress,
// for the emulator. Its steps are separate calls so the caller can stall,
// delay, drop the connection or write its own frames between them:
//
//	hs, err := wire.AcceptHandshake(ctx, conn, cfg) // read ClientHello
//	err = hs.Respond(certChain, staticKey)           // send ServerHello
//	res, err := hs.Finish(ctx)                       // read ClientFinish
//
// Any failing step closes the connection. A ServerHandshake is not safe for
// concurrent use.
type ServerHandshake struct {
	conn       FrameConn
	cfg        ServerHandshakeConfig
	liftLimits func() // ends the handshake's read limits, in Finish
	clientEph  [32]byte
	resp       *crypto.Responder
}

// ServerResult is what a finished server handshake learned.
type ServerResult struct {
	// ClientStatic is the client's noise public key.
	ClientStatic [32]byte
	// ClientPayload is the serialized ClientPayload (owned by the caller).
	ClientPayload []byte
	// Transport is the server side of the encrypted transport.
	Transport *Transport
}

// AcceptHandshake reads and checks the client's ClientHello from conn (a
// server Conn from Accept, which checks ConnHeader on this first read).
// From here until Finish returns, conn's reads are held to the handshake's
// limits (MaxHandshakeMessageSize, HandshakeReadBudget).
func AcceptHandshake(ctx context.Context, conn FrameConn, cfg ServerHandshakeConfig) (*ServerHandshake, error) {
	g := newGuard(ctx, cfg.Timeout, conn, "server handshake")
	defer g.cancel()
	lift := limitHandshakeReads(conn)
	frame, err := readHandshakeFrame(conn)
	if err != nil {
		return nil, g.fail("read client hello", err)
	}
	var msg waproto.HandshakeMessage
	if err := proto.Unmarshal(frame, &msg); err != nil {
		return nil, g.fail("parse client hello", fmt.Errorf("%w: %w", ErrHandshakeMessage, err))
	}
	eph := msg.GetClientHello().GetEphemeral()
	if len(eph) != keyLen {
		return nil, g.fail("parse client hello", fmt.Errorf("%w: ephemeral key of %d bytes", ErrHandshakeMessage, len(eph)))
	}
	if err := g.done(); err != nil {
		return nil, g.fail("read client hello", err)
	}
	s := &ServerHandshake{conn: conn, cfg: cfg, liftLimits: lift}
	copy(s.clientEph[:], eph)
	return s, nil
}

// ClientEphemeral returns the client's ephemeral public key from ClientHello.
func (s *ServerHandshake) ClientEphemeral() [32]byte { return s.clientEph }

// Respond sends ServerHello: a fresh ephemeral key, the encrypted static key
// and the encrypted certChain (a serialized CertChain, e.g. from
// crypto.IssueCertChain). The write is bounded by the connection's write
// timeout.
func (s *ServerHandshake) Respond(certChain []byte, static *crypto.KeyPair) error {
	if s.resp != nil {
		return s.fail("respond", fmt.Errorf("%w: server hello already sent", crypto.ErrNoiseState))
	}
	if static == nil {
		return s.fail("respond", fmt.Errorf("%w: no static key", crypto.ErrKeyLength))
	}
	eph := s.cfg.ephemeral
	if eph == nil {
		var err error
		if eph, err = crypto.GenerateKeyPair(); err != nil {
			return s.fail("generate ephemeral key", err)
		}
	}
	s.resp = crypto.NewResponder(static, eph, []byte(ConnHeader))
	if err := s.resp.ReadClientHello(s.clientEph[:]); err != nil {
		return s.fail("client hello", err)
	}
	ephPub, staticCT, payloadCT, err := s.resp.WriteServerHello(certChain)
	if err != nil {
		return s.fail("encrypt server hello", err)
	}
	hello, err := proto.Marshal(&waproto.HandshakeMessage{
		ServerHello: &waproto.HandshakeMessage_ServerHello{Ephemeral: ephPub, Static: staticCT, Payload: payloadCT},
	})
	if err != nil {
		return s.fail("encode server hello", err)
	}
	if err := s.conn.WriteFrame(hello); err != nil {
		return s.fail("write server hello", err)
	}
	return nil
}

// Finish reads ClientFinish, decrypts the client's static key and payload, and
// returns them with the server transport. It must follow a successful Respond.
func (s *ServerHandshake) Finish(ctx context.Context) (*ServerResult, error) {
	if s.resp == nil {
		return nil, s.fail("finish", fmt.Errorf("%w: server hello not sent", crypto.ErrNoiseState))
	}
	g := newGuard(ctx, s.cfg.Timeout, s.conn, "server handshake")
	defer g.cancel()
	defer s.liftLimits()
	frame, err := readHandshakeFrame(s.conn)
	if err != nil {
		return nil, g.fail("read client finish", err)
	}
	var msg waproto.HandshakeMessage
	if err := proto.Unmarshal(frame, &msg); err != nil {
		return nil, g.fail("parse client finish", fmt.Errorf("%w: %w", ErrHandshakeMessage, err))
	}
	cf := msg.GetClientFinish()
	if cf == nil || len(cf.GetStatic()) == 0 || len(cf.GetPayload()) == 0 {
		return nil, g.fail("parse client finish", fmt.Errorf("%w: missing clientFinish static or payload", ErrHandshakeMessage))
	}
	clientStatic, payload, err := s.resp.ReadClientFinish(cf.GetStatic(), cf.GetPayload())
	if err != nil {
		return nil, g.fail("decrypt client finish", err)
	}
	if err := g.done(); err != nil {
		return nil, g.fail("read client finish", err)
	}
	send, recv := s.resp.Split()
	return &ServerResult{ClientStatic: clientStatic, ClientPayload: payload, Transport: NewTransport(s.conn, send, recv)}, nil
}

func (s *ServerHandshake) fail(step string, err error) error {
	s.conn.Close()
	return fmt.Errorf("wire: server handshake: %s: %w", step, err)
}

// guard bounds handshake steps: when ctx ends or the timeout elapses it closes
// the connection, which unblocks a pending read or write, and fail then
// reports the timeout or cancellation instead of the resulting I/O error.
type guard struct {
	parent context.Context
	ctx    context.Context
	cancel context.CancelFunc
	stop   func() bool
	conn   FrameConn
	who    string // "client handshake" or "server handshake"
}

func newGuard(ctx context.Context, timeout time.Duration, conn FrameConn, who string) *guard {
	if timeout <= 0 {
		timeout = DefaultHandshakeTimeout
	}
	g := &guard{parent: ctx, conn: conn, who: who}
	g.ctx, g.cancel = context.WithTimeout(ctx, timeout)
	g.stop = context.AfterFunc(g.ctx, func() { conn.Close() })
	return g
}

// done disarms the guard; it fails if the guard already fired.
func (g *guard) done() error {
	if g.stop() {
		return nil
	}
	return g.cause()
}

func (g *guard) cause() error {
	if err := g.parent.Err(); err != nil {
		return err
	}
	return ErrHandshakeTimeout
}

// fail closes the connection and wraps err with the step that failed. If the
// guard fired, the timeout or cancellation is reported rather than the I/O
// error it caused.
func (g *guard) fail(step string, err error) error {
	if g.ctx.Err() != nil {
		err = g.cause()
	}
	g.stop()
	g.conn.Close()
	return fmt.Errorf("wire: %s: %s: %w", g.who, step, err)
}
