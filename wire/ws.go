package wire

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/net/proxy"
)

// Defaults of DialOptions and AcceptOptions.
const (
	// DefaultURL is the WhatsApp Web WebSocket endpoint, the default of the
	// connection actor's Server.URL and of the server.url configuration key.
	DefaultURL = "wss://web.whatsapp.com/ws/chat"
	// DefaultOrigin is the Origin header the client sends.
	DefaultOrigin = "https://web.whatsapp.com"
	// DefaultDialTimeout bounds TCP connect, proxy, TLS and WebSocket upgrade.
	DefaultDialTimeout = 20 * time.Second
	// DefaultWriteTimeout bounds one frame write.
	DefaultWriteTimeout = 10 * time.Second
)

// Buffer sizes of every WebSocket connection. A fleet keeps thousands of
// mostly idle connections: reads go through a small per-connection buffer,
// and write buffers are borrowed from a shared pool only while a message is
// being written, so an idle connection holds no write buffer at all.
const (
	readBufferSize  = 1024
	writeBufferSize = 4096
)

var writeBuffers = &sync.Pool{}

// closeGrace bounds how long Close waits to send a WebSocket close message
// (it waits only if a write is in progress).
const closeGrace = 100 * time.Millisecond

// FrameConn is a connection that carries whole frames. Implementations must
// allow one goroutine reading and one goroutine writing at the same time, and
// Close from any goroutine at any time (idempotent; it unblocks a pending
// ReadFrame or WriteFrame). [*Conn] is the WebSocket implementation.
type FrameConn interface {
	// ReadFrame returns the next frame body, valid until the next ReadFrame.
	ReadFrame() ([]byte, error)
	// WriteFrame sends one frame (body without length prefix).
	WriteFrame(body []byte) error
	// Close closes the connection.
	Close() error
}

// prefixedWriter is implemented by frame connections that can send a buffer
// that already starts with its 3-byte length prefix, saving the transport a
// copy per frame.
type prefixedWriter interface {
	writePrefixed(msg []byte) error
}

// DialOptions configures Dial. The zero value is valid: every field documents
// its default.
type DialOptions struct {
	// Origin is the Origin request header. Default DefaultOrigin.
	Origin string
	// Header holds extra request headers (e.g. User-Agent). Default none.
	Header http.Header
	// Proxy is a proxy URL for this connection: http://, https:// (TLS to the
	// proxy, then CONNECT) or socks5:// / socks5h://, with optional
	// user:password. Default "": connect directly; proxy environment
	// variables are never consulted.
	Proxy string
	// DialTimeout bounds the whole dial: TCP, proxy, TLS and the WebSocket
	// upgrade; the context passed to Dial may end it earlier. Default
	// DefaultDialTimeout (20 s).
	DialTimeout time.Duration
	// ReadLimit bounds one frame body and, plus the 7 bytes of prefix and
	// header, one received WebSocket message (a frame body is also capped at
	// MaxFrameSize). Default DefaultReadLimit (16 MiB).
	ReadLimit int
	// WriteTimeout bounds each frame write. Default DefaultWriteTimeout (10 s).
	WriteTimeout time.Duration
	// TLSConfig is used for wss:// and for an https:// proxy. Default nil: the
	// system roots and the URL's host name.
	TLSConfig *tls.Config
}

// AcceptOptions configures Accept. The zero value is valid.
type AcceptOptions struct {
	// ReadLimit bounds one frame body and, plus 7 bytes, one received
	// WebSocket message. Default DefaultReadLimit (16 MiB).
	ReadLimit int
	// WriteTimeout bounds each frame write. Default DefaultWriteTimeout (10 s).
	WriteTimeout time.Duration
	// CheckOrigin decides whether to accept a request's Origin. Default nil:
	// accept every origin (the emulator serves local test clients).
	CheckOrigin func(r *http.Request) bool
}

// Conn is a frame connection over a WebSocket. Each frame is written as one
// binary message; a client Conn puts ConnHeader in front of its first frame,
// and a server Conn reads and checks ConnHeader before its first frame.
// Received frames are reassembled independently of message boundaries; text
// messages are ignored.
//
// One goroutine may call ReadFrame while another calls WriteFrame; Close may
// be called from any goroutine, any number of times.
type Conn struct {
	ws      *websocket.Conn
	r       *FrameReader
	server  bool
	timeout time.Duration // per write

	// Reader side.
	headerRead bool

	// Writer side.
	headerSent bool
	wbuf       []byte

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

var _ FrameConn = (*Conn)(nil)

// Dial opens a WebSocket to rawURL (DefaultURL for WhatsApp) and returns a client
// frame connection. It sends nothing yet: the connection header goes out with
// the first frame.
func Dial(ctx context.Context, rawURL string, opts DialOptions) (*Conn, error) {
	d := websocket.Dialer{
		HandshakeTimeout: opts.DialTimeout,
		TLSClientConfig:  opts.TLSConfig,
		ReadBufferSize:   readBufferSize,
		WriteBufferSize:  writeBufferSize,
		WriteBufferPool:  writeBuffers,
	}
	if d.HandshakeTimeout <= 0 {
		d.HandshakeTimeout = DefaultDialTimeout
	}
	if opts.Proxy != "" {
		dial, err := proxyDialer(opts.Proxy, opts.TLSConfig)
		if err != nil {
			return nil, err
		}
		d.NetDialContext = dial
	}
	h := http.Header{}
	for k, v := range opts.Header {
		h[k] = append([]string(nil), v...)
	}
	origin := opts.Origin
	if origin == "" {
		origin = DefaultOrigin
	}
	h.Set("Origin", origin)
	ws, resp, err := d.DialContext(ctx, rawURL, h)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("wire: dial websocket: %w (HTTP status %s)", err, resp.Status)
		}
		return nil, fmt.Errorf("wire: dial websocket: %w", err)
	}
	return newConn(ws, false, opts.ReadLimit, opts.WriteTimeout), nil
}

// Accept upgrades an HTTP request to a WebSocket and returns the server side
// of a frame connection (for the emulator). On failure the upgrader has
// already answered the request with an HTTP error.
func Accept(w http.ResponseWriter, r *http.Request, opts AcceptOptions) (*Conn, error) {
	up := websocket.Upgrader{
		CheckOrigin:     opts.CheckOrigin,
		ReadBufferSize:  readBufferSize,
		WriteBufferSize: writeBufferSize,
		WriteBufferPool: writeBuffers,
	}
	if up.CheckOrigin == nil {
		up.CheckOrigin = func(*http.Request) bool { return true }
	}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return nil, fmt.Errorf("wire: accept websocket: %w", err)
	}
	return newConn(ws, true, opts.ReadLimit, opts.WriteTimeout), nil
}

func newConn(ws *websocket.Conn, server bool, readLimit int, writeTimeout time.Duration) *Conn {
	if readLimit <= 0 {
		readLimit = DefaultReadLimit
	}
	if writeTimeout <= 0 {
		writeTimeout = DefaultWriteTimeout
	}
	// A message may carry a whole frame of readLimit bytes plus its prefix
	// (and, from a client, the connection header in front).
	ws.SetReadLimit(int64(readLimit) + FramePrefixLen + int64(len(ConnHeader)))
	c := &Conn{ws: ws, server: server, timeout: writeTimeout}
	c.r = NewFrameReader(c.nextMessage, readLimit)
	return c
}

// nextMessage returns the reader of the next binary message, skipping text.
func (c *Conn) nextMessage() (io.Reader, error) {
	for {
		typ, rd, err := c.ws.NextReader()
		if err != nil {
			return nil, err
		}
		if typ == websocket.BinaryMessage {
			return rd, nil
		}
	}
}

// ReadFrame returns the next frame body. The slice is valid until the next
// ReadFrame; the caller may modify it in place. A server Conn first consumes
// and checks the client's ConnHeader (ErrBadHeader if wrong). Errors:
// ErrFrameTooLarge for a frame or message above the read limit, ErrClosed
// (wrapping the cause) once the connection is closed or broken.
func (c *Conn) ReadFrame() ([]byte, error) {
	if c.server && !c.headerRead {
		if err := c.r.readConnHeader(); err != nil {
			return nil, c.readErr(err)
		}
		c.headerRead = true
	}
	b, err := c.r.ReadFrame()
	if err != nil {
		return nil, c.readErr(err)
	}
	return b, nil
}

func (c *Conn) readErr(err error) error {
	switch {
	case errors.Is(err, ErrFrameTooLarge), errors.Is(err, ErrBadHeader):
		return err
	case errors.Is(err, websocket.ErrReadLimit):
		return fmt.Errorf("%w: %w", ErrFrameTooLarge, err)
	case c.closed.Load():
		return ErrClosed
	default:
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
}

// WriteFrame sends body as one frame in one binary message (a client's first
// message carries ConnHeader in front). It copies body into a reused buffer.
// A body above MaxFrameSize is ErrFrameTooLarge and nothing is sent.
func (c *Conn) WriteFrame(body []byte) error {
	b := c.wbuf[:0]
	if !c.server && !c.headerSent {
		b = append(b, ConnHeader...)
	}
	b, err := AppendFrame(b, body)
	if err != nil {
		return err
	}
	c.wbuf = b
	return c.writeMessage(b)
}

// WriteRaw sends b as one binary message exactly as given: no length prefix
// and no connection header are added. It is for a peer that misbehaves on
// purpose, such as the emulator's faults: a frame announced by one message
// and continued, or never finished, by later ones.
func (c *Conn) WriteRaw(b []byte) error { return c.writeMessage(b) }

// beginHandshake and endHandshake hold reads to the handshake's limits
// (handshakeLimiter). Handshakes call them from the reading goroutine.
func (c *Conn) beginHandshake() { c.r.beginHandshake() }
func (c *Conn) endHandshake()   { c.r.endHandshake() }

// writePrefixed sends msg, which already starts with its length prefix.
func (c *Conn) writePrefixed(msg []byte) error {
	if !c.server && !c.headerSent {
		c.wbuf = append(append(c.wbuf[:0], ConnHeader...), msg...)
		return c.writeMessage(c.wbuf)
	}
	return c.writeMessage(msg)
}

func (c *Conn) writeMessage(b []byte) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if err := c.ws.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return c.writeErr(err)
	}
	if err := c.ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
		return c.writeErr(err)
	}
	c.headerSent = true
	return nil
}

func (c *Conn) writeErr(err error) error {
	if c.closed.Load() {
		return ErrClosed
	}
	return fmt.Errorf("wire: write frame: %w", err)
}

// Close sends a WebSocket close message (best effort, briefly) and closes the
// connection, unblocking a pending ReadFrame or WriteFrame. It is idempotent.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
		_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(closeGrace))
		c.closeErr = c.ws.Close()
	})
	return c.closeErr
}

// RemoteAddr returns the peer's network address.
func (c *Conn) RemoteAddr() net.Addr { return c.ws.RemoteAddr() }

// NetConn returns the network connection under the WebSocket, for what only
// the transport can tell (the emulator asks whether a client has closed its
// end). Reading or writing it directly corrupts the stream.
func (c *Conn) NetConn() net.Conn { return c.ws.NetConn() }

// proxyDialer returns a dial function that reaches addresses through the
// proxy at raw. Errors never show the proxy password.
func proxyDialer(raw string, tlsConfig *tls.Config) (func(ctx context.Context, network, addr string) (net.Conn, error), error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot parse", ErrBadProxy)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%w: %s has no host", ErrBadProxy, u.Redacted())
	}
	switch u.Scheme {
	case "http", "https":
		return func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialHTTPProxy(ctx, u, tlsConfig, addr)
		}, nil
	case "socks5", "socks5h":
		d, err := proxy.FromURL(u, &net.Dialer{})
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrBadProxy, u.Redacted(), err)
		}
		cd, ok := d.(proxy.ContextDialer)
		if !ok {
			return nil, fmt.Errorf("%w: %s: no context dialer", ErrBadProxy, u.Redacted())
		}
		return func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := cd.DialContext(ctx, network, addr)
			if err != nil {
				return nil, fmt.Errorf("wire: socks5 proxy %s: %w", u.Redacted(), err)
			}
			return conn, nil
		}, nil
	default:
		return nil, fmt.Errorf("%w: unsupported scheme %q", ErrBadProxy, u.Scheme)
	}
}

// dialHTTPProxy opens a tunnel to addr with an HTTP CONNECT request.
func dialHTTPProxy(ctx context.Context, u *url.URL, tlsConfig *tls.Config, addr string) (_ net.Conn, err error) {
	host := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		host = net.JoinHostPort(u.Hostname(), port)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, fmt.Errorf("wire: http proxy %s: %w", u.Redacted(), err)
	}
	defer func() {
		if err != nil {
			conn.Close()
		}
	}()
	// Bound the TLS handshake and the CONNECT exchange by ctx.
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if u.Scheme == "https" {
		cfg := &tls.Config{}
		if tlsConfig != nil {
			cfg = tlsConfig.Clone()
		}
		cfg.ServerName = u.Hostname()
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("wire: https proxy %s: %w", u.Redacted(), err)
		}
		conn = tc
	}

	req := &http.Request{
		Method: http.MethodConnect,
		URL:    &url.URL{Opaque: addr},
		Host:   addr,
		Header: http.Header{},
	}
	if u.User != nil {
		pass, _ := u.User.Password()
		cred := base64.StdEncoding.EncodeToString([]byte(u.User.Username() + ":" + pass))
		req.Header.Set("Proxy-Authorization", "Basic "+cred)
	}
	if err := req.Write(conn); err != nil {
		return nil, fmt.Errorf("wire: http proxy %s: %w", u.Redacted(), err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, fmt.Errorf("wire: http proxy %s: %w", u.Redacted(), err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("wire: http proxy %s refused CONNECT: %s", u.Redacted(), resp.Status)
	}
	if !stop() {
		return nil, fmt.Errorf("wire: http proxy %s: %w", u.Redacted(), ctx.Err())
	}
	conn.SetDeadline(time.Time{})
	if br.Buffered() > 0 {
		return &bufferedConn{Conn: conn, r: br}, nil
	}
	return conn, nil
}

// bufferedConn returns bytes the proxy sent right after its CONNECT answer.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
