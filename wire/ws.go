package wire

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
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

// Writes copy a frame into a buffer borrowed from a shared pool only while
// it is being written (a client masks it there), writeBufferSize bytes per
// socket write: an idle connection holds no write buffer at all. Reads go
// through the connection's own buffer (wsReader).
const writeBufferSize = 4096

var writeBuffers = sync.Pool{New: func() any {
	b := make([]byte, 0, writeBufferSize)
	return &b
}}

// closeGrace bounds how long Close waits to send a WebSocket close message
// (it waits only if a write is in progress).
const closeGrace = 100 * time.Millisecond

// controlTimeout bounds the answer to a ping or a close from the peer,
// waiting for a write in progress included.
const controlTimeout = time.Second

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
// messages are ignored, pings answered, a close echoed.
//
// One goroutine may call ReadFrame while another calls WriteFrame; Close may
// be called from any goroutine, any number of times.
type Conn struct {
	nc      net.Conn
	pc      *pollConn // the socket under nc, when it can be watched (client only)
	server  bool
	timeout time.Duration // per write

	// Reader side.
	r          frameReader
	headerRead bool

	// Writer side. wmu is the write lock, a token taken by whoever writes a
	// WebSocket frame: the writer, the reader answering a ping or a close,
	// Close. closeSent is under it.
	wmu        chan struct{}
	closeSent  bool
	headerSent bool

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
	w         atomic.Pointer[watch] // set once the transport is watched
}

var _ FrameConn = (*Conn)(nil)

// Dial opens a WebSocket to rawURL (DefaultURL for WhatsApp) and returns a client
// frame connection. It sends nothing yet: the connection header goes out with
// the first frame.
func Dial(ctx context.Context, rawURL string, opts DialOptions) (*Conn, error) {
	timeout := opts.DialTimeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	// gobwas/ws bounds the upgrade by the context, not by Dialer.Timeout.
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	h := http.Header{}
	for k, v := range opts.Header {
		h[k] = append([]string(nil), v...)
	}
	origin := opts.Origin
	if origin == "" {
		origin = DefaultOrigin
	}
	h.Set("Origin", origin)
	var status string
	d := ws.Dialer{
		Header:    ws.HandshakeHeaderHTTP(h),
		TLSConfig: opts.TLSConfig,
		OnStatusError: func(_ int, reason []byte, _ io.Reader) {
			status = string(reason)
		},
	}
	// Every way to the server starts with a TCP connection dialed here, so
	// that the socket under TLS and a proxy's tunnel can be watched.
	var pc *pollConn
	socket := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var nd net.Dialer
		nc, err := nd.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if pc = newPollConn(nc); pc != nil {
			return pc, nil
		}
		return nc, nil
	}
	d.NetDial = socket
	if opts.Proxy != "" {
		dial, err := proxyDialer(opts.Proxy, opts.TLSConfig, socket)
		if err != nil {
			return nil, err
		}
		d.NetDial = dial
	}
	nc, br, _, err := d.Dial(ctx, rawURL)
	if err != nil {
		if status != "" {
			return nil, fmt.Errorf("wire: dial websocket: %w (%s)", err, status)
		}
		return nil, fmt.Errorf("wire: dial websocket: %w", err)
	}
	c := newConn(nc, false, opts.ReadLimit, opts.WriteTimeout)
	c.pc = pc
	if br != nil {
		c.r.in.preload(br)
		ws.PutReader(br)
	}
	return c, nil
}

// Accept upgrades an HTTP request to a WebSocket and returns the server side
// of a frame connection (for the emulator). On failure the request has
// already been answered with an HTTP error.
func Accept(w http.ResponseWriter, r *http.Request, opts AcceptOptions) (*Conn, error) {
	if opts.CheckOrigin != nil && !opts.CheckOrigin(r) {
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return nil, errors.New("wire: accept websocket: origin not allowed")
	}
	nc, rw, _, err := ws.HTTPUpgrader{}.Upgrade(r, w)
	if err != nil {
		if nc != nil {
			nc.Close()
		}
		return nil, fmt.Errorf("wire: accept websocket: %w", err)
	}
	c := newConn(nc, true, opts.ReadLimit, opts.WriteTimeout)
	c.r.in.preload(rw.Reader)
	return c, nil
}

func newConn(nc net.Conn, server bool, readLimit int, writeTimeout time.Duration) *Conn {
	if readLimit <= 0 {
		readLimit = DefaultReadLimit
	}
	if writeTimeout <= 0 {
		writeTimeout = DefaultWriteTimeout
	}
	c := &Conn{nc: nc, server: server, timeout: writeTimeout, wmu: make(chan struct{}, 1)}
	c.r.init(readLimit)
	c.r.in = wsReader{
		conn:   nc,
		server: server,
		// A message may carry a whole frame of readLimit bytes plus its
		// prefix (and, from a client, the connection header in front).
		limit:   int64(readLimit) + FramePrefixLen + int64(len(ConnHeader)),
		control: c.control,
	}
	return c
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
	case errors.Is(err, ErrFrameTooLarge), errors.Is(err, ErrBadHeader), errors.Is(err, errWouldBlock):
		return err
	case c.closed.Load():
		return ErrClosed
	default:
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
}

// WriteFrame sends body as one frame in one binary message (a client's first
// message carries ConnHeader in front). It copies body into a buffer of its
// own, kept only for the write: the frames written here are the handshake's
// (a Transport writes through writePrefixed), and an established connection
// keeps none of their bytes. A body above MaxFrameSize is ErrFrameTooLarge
// and nothing is sent.
func (c *Conn) WriteFrame(body []byte) error {
	b := make([]byte, 0, len(ConnHeader)+FramePrefixLen+len(body))
	if !c.server && !c.headerSent {
		b = append(b, ConnHeader...)
	}
	b, err := AppendFrame(b, body)
	if err != nil {
		return err
	}
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
		return c.writeMessage(append(append(make([]byte, 0, len(ConnHeader)+len(msg)), ConnHeader...), msg...))
	}
	return c.writeMessage(msg)
}

func (c *Conn) writeMessage(b []byte) error {
	if c.closed.Load() {
		return ErrClosed
	}
	c.wmu <- struct{}{}
	err := errCloseSent
	if !c.closeSent {
		err = c.writeFrame(ws.OpBinary, b, time.Now().Add(c.timeout))
	}
	<-c.wmu
	if err != nil {
		return c.writeErr(err)
	}
	c.headerSent = true
	return nil
}

// errCloseSent: a write after this side sent its close frame.
var errCloseSent = fmt.Errorf("%w: websocket close frame sent", ErrClosed)

func (c *Conn) writeErr(err error) error {
	switch {
	case c.closed.Load():
		return ErrClosed
	case errors.Is(err, ErrClosed):
		return err
	}
	return fmt.Errorf("wire: write frame: %w", err)
}

// writeFrame writes p as one WebSocket frame (FIN set) by deadline; the
// caller holds the write lock. The frame goes through a pooled buffer,
// writeBufferSize bytes per socket write; a client masks it there.
func (c *Conn) writeFrame(op ws.OpCode, p []byte, deadline time.Time) error {
	if err := c.nc.SetWriteDeadline(deadline); err != nil {
		return err
	}
	bp := writeBuffers.Get().(*[]byte)
	defer writeBuffers.Put(bp)
	buf := appendHeader((*bp)[:0], op, len(p), !c.server)
	var mask [4]byte
	if !c.server {
		rand.Read(mask[:])
		buf = append(buf, mask[:]...)
	}
	for off := 0; ; {
		k := min(len(p)-off, cap(buf)-len(buf))
		start := len(buf)
		buf = append(buf, p[off:off+k]...)
		if !c.server {
			ws.Cipher(buf[start:], mask, off)
		}
		off += k
		if _, err := c.nc.Write(buf); err != nil {
			return err
		}
		if off == len(p) {
			return nil
		}
		buf = buf[:0]
	}
}

// appendHeader appends the header of a final WebSocket frame of n payload
// bytes, without its masking key.
func appendHeader(b []byte, op ws.OpCode, n int, masked bool) []byte {
	b0, b1 := 0x80|byte(op), byte(0)
	if masked {
		b1 = 0x80
	}
	switch {
	case n <= 125:
		return append(b, b0, b1|byte(n))
	case n <= 0xffff:
		return append(b, b0, b1|126, byte(n>>8), byte(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, b0, b1|127), uint64(n))
	}
}

// lockUntil takes the write lock, giving up at deadline.
func (c *Conn) lockUntil(deadline time.Time) bool {
	select {
	case c.wmu <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case c.wmu <- struct{}{}:
		return true
	case <-t.C:
		return false
	}
}

// control sends a control frame for the reader: a pong, or a close that
// answers the peer's or says why the reader gives up. Nothing is sent after
// a close. Failures are left to the reader, which sees the connection end.
func (c *Conn) control(op ws.OpCode, payload []byte) {
	deadline := time.Now().Add(controlTimeout)
	if !c.lockUntil(deadline) {
		return
	}
	if !c.closeSent {
		c.closeSent = op == ws.OpClose
		_ = c.writeFrame(op, payload, deadline)
	}
	<-c.wmu
}

// normalClosure is the payload of the close frame Close sends.
var normalClosure = []byte{byte(ws.StatusNormalClosure >> 8), byte(ws.StatusNormalClosure & 0xff)}

// Close sends a WebSocket close message (best effort, briefly) and closes the
// connection, unblocking a pending ReadFrame or WriteFrame. It is idempotent.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		deadline := time.Now().Add(closeGrace)
		if c.lockUntil(deadline) {
			if !c.closeSent {
				c.closeSent = true
				_ = c.writeFrame(ws.OpClose, normalClosure, deadline)
			}
			<-c.wmu
		}
		c.closeErr = c.nc.Close()
		c.wakeWatch()
	})
	return c.closeErr
}

// RemoteAddr returns the peer's network address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// NetConn returns the network connection under the WebSocket, for what only
// the transport can tell (the emulator asks whether a client has closed its
// end). Reading or writing it directly corrupts the stream.
func (c *Conn) NetConn() net.Conn { return c.nc }

// dialFunc dials a network address.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// DialContext makes a dialFunc a proxy.ContextDialer.
func (f dialFunc) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return f(ctx, network, addr)
}

// Dial makes a dialFunc a proxy.Dialer.
func (f dialFunc) Dial(network, addr string) (net.Conn, error) {
	return f(context.Background(), network, addr)
}

// proxyDialer returns a dial function that reaches addresses through the
// proxy at raw, reaching the proxy with socket. Errors never show the
// proxy password.
func proxyDialer(raw string, tlsConfig *tls.Config, socket dialFunc) (dialFunc, error) {
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
			return dialHTTPProxy(ctx, u, tlsConfig, socket, addr)
		}, nil
	case "socks5", "socks5h":
		d, err := proxy.FromURL(u, socket)
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
func dialHTTPProxy(ctx context.Context, u *url.URL, tlsConfig *tls.Config, socket dialFunc, addr string) (_ net.Conn, err error) {
	host := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		host = net.JoinHostPort(u.Hostname(), port)
	}
	conn, err := socket(ctx, "tcp", host)
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
