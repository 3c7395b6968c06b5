package wire

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// wsURL turns an httptest server URL into a ws:// URL.
func wsURL(srv *httptest.Server) string {
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

// serveFrames starts a server whose handler runs fn on each accepted Conn and
// closes it afterwards.
func serveFrames(t *testing.T, fn func(r *http.Request, c *Conn)) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r, AcceptOptions{})
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		defer c.Close()
		fn(r, c)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// serveRaw starts a server that hands fn the raw gorilla connection.
func serveRaw(t *testing.T, fn func(ws *websocket.Conn)) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			t.Errorf("upgrade: %v", err)
			return
		}
		defer ws.Close()
		fn(ws)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func dialT(t *testing.T, url string, opts DialOptions) *Conn {
	t.Helper()
	c, err := Dial(context.Background(), url, opts)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestDialAcceptEcho(t *testing.T) {
	origin := make(chan string, 1)
	agent := make(chan string, 1)
	srv := serveFrames(t, func(r *http.Request, c *Conn) {
		origin <- r.Header.Get("Origin")
		agent <- r.Header.Get("User-Agent")
		for {
			b, err := c.ReadFrame()
			if err != nil {
				return
			}
			if err := c.WriteFrame(b); err != nil {
				return
			}
		}
	})
	c := dialT(t, wsURL(srv), DialOptions{Header: http.Header{"User-Agent": {"wafleet-test"}}})
	bodies := [][]byte{[]byte("first"), {}, bytes.Repeat([]byte{0xab}, 200_000), []byte("last")}
	for i, b := range bodies {
		if err := c.WriteFrame(b); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		got, err := c.ReadFrame()
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if !bytes.Equal(got, b) {
			t.Fatalf("frame %d: echo differs (len %d, want %d)", i, len(got), len(b))
		}
	}
	if got := <-origin; got != DefaultOrigin {
		t.Errorf("Origin = %q, want %q", got, DefaultOrigin)
	}
	if got := <-agent; got != "wafleet-test" {
		t.Errorf("User-Agent = %q, want wafleet-test", got)
	}
}

func TestClientSendsHeaderOnlyBeforeFirstFrame(t *testing.T) {
	msgs := make(chan []byte, 3)
	srv := serveRaw(t, func(ws *websocket.Conn) {
		for range 3 {
			typ, b, err := ws.ReadMessage()
			if err != nil || typ != websocket.BinaryMessage {
				t.Errorf("read message: type %d, %v", typ, err)
				return
			}
			msgs <- b
		}
	})
	c := dialT(t, wsURL(srv), DialOptions{})
	for _, s := range []string{"one", "two", "three"} {
		if err := c.WriteFrame([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"WA\x06\x03\x00\x00\x03one", "\x00\x00\x03two", "\x00\x00\x05three"}
	for i, w := range want {
		if got := <-msgs; string(got) != w {
			t.Errorf("message %d = %x, want %x", i, got, w)
		}
	}
}

func TestClientReassemblesAcrossMessages(t *testing.T) {
	f1, _ := AppendFrame(nil, []byte("alpha"))
	f2, _ := AppendFrame(nil, []byte("beta"))
	f3, _ := AppendFrame(nil, bytes.Repeat([]byte("g"), 1000))
	srv := serveRaw(t, func(ws *websocket.Conn) {
		send := func(typ int, b []byte) {
			if err := ws.WriteMessage(typ, b); err != nil {
				t.Errorf("write: %v", err)
			}
		}
		send(websocket.TextMessage, []byte("text is ignored"))
		send(websocket.BinaryMessage, append(append(append([]byte{}, f1...), f2...), f3[:2]...)) // two frames and part of a prefix
		send(websocket.BinaryMessage, f3[2:500])
		send(websocket.TextMessage, []byte("ignored too"))
		send(websocket.BinaryMessage, f3[500:])
		ws.ReadMessage() // wait for the client to close
	})
	c := dialT(t, wsURL(srv), DialOptions{})
	for _, want := range [][]byte{f1[3:], f2[3:], f3[3:]} {
		got, err := c.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
}

func TestServerChecksHeader(t *testing.T) {
	tests := []struct {
		name    string
		msg     string
		want    string
		wantErr error
	}{
		{"header and frame", "WA\x06\x03\x00\x00\x02hi", "hi", nil},
		{"edge routing then header", "ED\x00\x01\x00\x00\x01xWA\x06\x03\x00\x00\x02hi", "hi", nil},
		{"wrong header", "WA\x06\x02\x00\x00\x02hi", "", ErrBadHeader},
		{"no header", "\x00\x00\x02hi", "", ErrBadHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			type result struct {
				b   string
				err error
			}
			res := make(chan result, 1)
			srv := serveFrames(t, func(_ *http.Request, c *Conn) {
				b, err := c.ReadFrame()
				res <- result{string(b), err}
			})
			ws, _, err := websocket.DefaultDialer.Dial(wsURL(srv), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ws.Close()
			if err := ws.WriteMessage(websocket.BinaryMessage, []byte(tt.msg)); err != nil {
				t.Fatal(err)
			}
			r := <-res
			if tt.wantErr != nil {
				if !errors.Is(r.err, tt.wantErr) {
					t.Fatalf("got %v, want %v", r.err, tt.wantErr)
				}
				return
			}
			if r.err != nil || r.b != tt.want {
				t.Fatalf("got %q, %v; want %q", r.b, r.err, tt.want)
			}
		})
	}
}

func TestReadLimit(t *testing.T) {
	tests := []struct {
		name string
		msg  []byte
	}{
		{"message above limit, frames within it", bytes.Repeat(append([]byte{0, 0, 100}, make([]byte, 100)...), 20)},
		{"announced length above limit", []byte{0, 0x13, 0x88, 1, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := serveRaw(t, func(ws *websocket.Conn) {
				ws.WriteMessage(websocket.BinaryMessage, tt.msg)
				ws.ReadMessage()
			})
			c := dialT(t, wsURL(srv), DialOptions{ReadLimit: 1000})
			if _, err := c.ReadFrame(); !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("got %v, want ErrFrameTooLarge", err)
			}
		})
	}
}

func TestReadLimitAcceptsFrameOfExactlyTheLimit(t *testing.T) {
	body := bytes.Repeat([]byte{9}, 1000)
	frame, _ := AppendFrame(nil, body)
	srv := serveRaw(t, func(ws *websocket.Conn) {
		ws.WriteMessage(websocket.BinaryMessage, frame)
		ws.ReadMessage()
	})
	c := dialT(t, wsURL(srv), DialOptions{ReadLimit: 1000})
	if got, err := c.ReadFrame(); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("frame of exactly the limit: %d bytes, %v", len(got), err)
	}
}

func TestWriteFrameTooLarge(t *testing.T) {
	srv := serveRaw(t, func(ws *websocket.Conn) { ws.ReadMessage() })
	c := dialT(t, wsURL(srv), DialOptions{})
	if err := c.WriteFrame(make([]byte, 1<<24)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("got %v, want ErrFrameTooLarge", err)
	}
}

func TestCloseUnblocksAndIsIdempotent(t *testing.T) {
	srv := serveRaw(t, func(ws *websocket.Conn) { ws.ReadMessage() })
	c, err := Dial(context.Background(), wsURL(srv), DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.ReadFrame()
		errc <- err
	}()
	if err := c.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("pending read: got %v, want ErrClosed", err)
	}
	c.Close()
	if err := c.WriteFrame([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close: got %v, want ErrClosed", err)
	}
}

func TestPeerCloseIsErrClosed(t *testing.T) {
	srv := serveFrames(t, func(*http.Request, *Conn) {})
	c := dialT(t, wsURL(srv), DialOptions{})
	if _, err := c.ReadFrame(); !errors.Is(err, ErrClosed) {
		t.Fatalf("got %v, want ErrClosed", err)
	}
}

func TestServerSeesHangUpBeforeHeader(t *testing.T) {
	res := make(chan error, 1)
	srv := serveFrames(t, func(_ *http.Request, c *Conn) {
		_, err := c.ReadFrame()
		res <- err
	})
	c, err := Dial(context.Background(), wsURL(srv), DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := <-res; !errors.Is(err, ErrClosed) || errors.Is(err, ErrBadHeader) {
		t.Fatalf("got %v, want ErrClosed (not ErrBadHeader)", err)
	}
}

func TestDialTimeout(t *testing.T) {
	// A listener that accepts TCP but never answers the upgrade.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(io.Discard, conn) // until the client gives up
		conn.Close()
	}()
	_, err = Dial(context.Background(), "ws://"+ln.Addr().String()+"/ws/chat", DialOptions{DialTimeout: 50 * time.Millisecond})
	if err == nil {
		t.Fatal("dial succeeded against a silent server")
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want a timeout", err)
		}
	}
	<-done
}

// connectProxy is an in-test HTTP CONNECT proxy that counts tunnels and
// records the Proxy-Authorization header it saw.
type connectProxy struct {
	ln      net.Listener
	tunnels atomic.Int32
	auth    atomic.Value // string
	refuse  bool
}

func startConnectProxy(t *testing.T, refuse bool) *connectProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &connectProxy{ln: ln, refuse: refuse}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			p.serve(conn)
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return p
}

// serve handles one client synchronously (tests make one connection at a
// time), so no goroutine outlives the test.
func (p *connectProxy) serve(conn net.Conn) {
	defer conn.Close()
	br := bufio.NewReader(conn)
	req, err := http.ReadRequest(br)
	if err != nil || req.Method != http.MethodConnect {
		return
	}
	p.auth.Store(req.Header.Get("Proxy-Authorization"))
	if p.refuse {
		io.WriteString(conn, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
		return
	}
	up, err := net.Dial("tcp", req.Host)
	if err != nil {
		io.WriteString(conn, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	defer up.Close()
	p.tunnels.Add(1)
	io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n")
	pipe(conn, br, up)
}

// pipe copies both ways until either side ends.
func pipe(client net.Conn, clientR io.Reader, up net.Conn) {
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, clientR); up.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { io.Copy(client, up); client.Close(); done <- struct{}{} }()
	<-done
	client.Close()
	up.Close()
	<-done
}

// socks5Proxy is a minimal in-test SOCKS5 server (no auth, CONNECT only).
func startSOCKS5(t *testing.T) (addr string, tunnels *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tunnels = new(atomic.Int32)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			serveSOCKS5(conn, tunnels)
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String(), tunnels
}

func serveSOCKS5(conn net.Conn, tunnels *atomic.Int32) {
	defer conn.Close()
	br := bufio.NewReader(conn)
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil || hdr[0] != 5 {
		return
	}
	if _, err := io.ReadFull(br, make([]byte, hdr[1])); err != nil {
		return
	}
	conn.Write([]byte{5, 0}) // no authentication
	var req [4]byte
	if _, err := io.ReadFull(br, req[:]); err != nil || req[1] != 1 {
		return
	}
	var host string
	switch req[3] {
	case 1:
		ip := make([]byte, 4)
		io.ReadFull(br, ip)
		host = net.IP(ip).String()
	case 3:
		n, _ := br.ReadByte()
		name := make([]byte, n)
		io.ReadFull(br, name)
		host = string(name)
	default:
		return
	}
	var port [2]byte
	if _, err := io.ReadFull(br, port[:]); err != nil {
		return
	}
	up, err := net.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(port[:])))))
	if err != nil {
		conn.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0})
		return
	}
	defer up.Close()
	tunnels.Add(1)
	conn.Write([]byte{5, 0, 0, 1, 127, 0, 0, 1, 0, 0})
	pipe(conn, br, up)
}

func echoServer(t *testing.T) *httptest.Server {
	return serveFrames(t, func(_ *http.Request, c *Conn) {
		for {
			b, err := c.ReadFrame()
			if err != nil {
				return
			}
			if c.WriteFrame(b) != nil {
				return
			}
		}
	})
}

func roundTrip(t *testing.T, c *Conn) {
	t.Helper()
	if err := c.WriteFrame([]byte("via proxy")); err != nil {
		t.Fatal(err)
	}
	got, err := c.ReadFrame()
	if err != nil || string(got) != "via proxy" {
		t.Fatalf("echo: %q, %v", got, err)
	}
}

func TestDialThroughHTTPProxy(t *testing.T) {
	srv := echoServer(t)
	p := startConnectProxy(t, false)
	c := dialT(t, wsURL(srv), DialOptions{Proxy: "http://alice:s3cret@" + p.ln.Addr().String()})
	roundTrip(t, c)
	c.Close()
	if n := p.tunnels.Load(); n != 1 {
		t.Fatalf("proxy opened %d tunnels, want 1", n)
	}
	if got, want := p.auth.Load(), "Basic YWxpY2U6czNjcmV0"; got != want {
		t.Fatalf("Proxy-Authorization = %v, want %q", got, want)
	}
}

func TestDialThroughSOCKS5Proxy(t *testing.T) {
	srv := echoServer(t)
	addr, tunnels := startSOCKS5(t)
	c := dialT(t, wsURL(srv), DialOptions{Proxy: "socks5://" + addr})
	roundTrip(t, c)
	c.Close()
	if n := tunnels.Load(); n != 1 {
		t.Fatalf("proxy opened %d tunnels, want 1", n)
	}
}

func TestDialProxyErrors(t *testing.T) {
	srv := echoServer(t)
	refusing := startConnectProxy(t, true)
	tests := []struct {
		name    string
		proxy   string
		wantErr error
		wantMsg string
	}{
		{"unsupported scheme", "ftp://127.0.0.1:21", ErrBadProxy, "unsupported scheme"},
		{"no host", "http://", ErrBadProxy, "no host"},
		{"refused CONNECT", "http://bob:hunter2@" + refusing.ln.Addr().String(), nil, "403"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Dial(context.Background(), wsURL(srv), DialOptions{Proxy: tt.proxy})
			if err == nil {
				t.Fatal("dial succeeded")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("error %q does not mention %q", err, tt.wantMsg)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error leaks the proxy password: %v", err)
			}
		})
	}
}
