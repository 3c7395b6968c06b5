package wire

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/waproto"
)

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// trickle returns a client Conn whose socket serves first as one message,
// then 16-byte messages up to twice the largest frame.
func trickle(first []byte) (*Conn, *fakeSocket) {
	msgs := [][]byte{wsFrame(0x2, true, first, false)}
	small := wsFrame(0x2, true, make([]byte, 16), false)
	for range 2 * (MaxHandshakeMessageSize + HandshakeReadBudget) / 16 {
		msgs = append(msgs, small)
	}
	return socketConn(false, 0, msgs...)
}

func TestHandshakeFrameLimit(t *testing.T) {
	for _, tt := range []struct {
		name     string
		announce int
		ok       bool
	}{
		{"largest a prefix can say", MaxFrameSize, false},
		{"one above the handshake limit", MaxHandshakeMessageSize + 1, false},
		{"exactly the handshake limit", MaxHandshakeMessageSize, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, sock := trickle([]byte{byte(tt.announce >> 16), byte(tt.announce >> 8), byte(tt.announce)})
			r := &c.r
			r.beginHandshake()
			body, err := r.ReadFrame()
			if tt.ok {
				if err != nil || len(body) != tt.announce {
					t.Fatalf("frame of %d bytes: %d bytes, %v", tt.announce, len(body), err)
				}
				return
			}
			if !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("announced %d bytes: got %v, want ErrFrameTooLarge", tt.announce, err)
			}
			// The socket serves a message per read: the refusal came from
			// the first, the prefix alone, before the buffer grew.
			if got := sock.read.Load(); got != 2+FramePrefixLen {
				t.Fatalf("read %d bytes of the trickle, want only the message of the prefix", got)
			}
			if r.in.buf != nil {
				t.Fatalf("a %d-byte buffer is kept after the error", len(r.in.buf))
			}
		})
	}
}

func TestHandshakeRefusesHugeFrameWithoutAllocating(t *testing.T) {
	msgs := [][]byte{wsFrame(0x2, true, []byte{0xff, 0xff, 0xff}, false)}
	got := bytesAllocated(func() {
		c, _ := socketConn(false, 0, msgs...)
		c.beginHandshake()
		if _, err := c.ReadFrame(); !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("got %v, want ErrFrameTooLarge", err)
		}
	})
	// The Conn with its first read buffer, the socket and the error: a few
	// KiB, nothing near the announced 16 MiB or even the 8 KiB handshake
	// limit.
	if got > 4096 {
		t.Fatalf("refusing a 16 MiB announcement allocated %d bytes", got)
	}
}

func TestHandshakeReadBudget(t *testing.T) {
	// Frames each within the per-message limit, back to back: the budget
	// stops the reader before it reads past HandshakeReadBudget bytes.
	body := bytes.Repeat([]byte{7}, MaxHandshakeMessageSize)
	var stream []byte
	for range 3 {
		stream, _ = AppendFrame(stream, body)
	}
	c, sock := socketConn(false, 0, wsFrame(0x2, true, stream, false))
	r := &c.r
	r.beginHandshake()
	frames := 0
	var err error
	for err == nil && frames < 10 {
		if _, err = r.ReadFrame(); err == nil {
			frames++
		}
	}
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("after %d frames: got %v, want ErrFrameTooLarge", frames, err)
	}
	if frames != HandshakeReadBudget/(FramePrefixLen+MaxHandshakeMessageSize) {
		t.Fatalf("%d frames read within the budget", frames)
	}
	if got := sock.read.Load(); got > HandshakeReadBudget {
		t.Fatalf("read %d bytes, budget %d", got, HandshakeReadBudget)
	}
}

func TestEndHandshakeRestoresLimitAndReleasesBuffer(t *testing.T) {
	hello, _ := AppendFrame(nil, bytes.Repeat([]byte{1}, 5000))
	big, _ := AppendFrame(nil, bytes.Repeat([]byte{2}, 100_000))
	r, _ := newChunkReader(0, hello, big)
	r.beginHandshake()
	if b, err := r.ReadFrame(); err != nil || len(b) != 5000 {
		t.Fatalf("handshake frame: %d bytes, %v", len(b), err)
	}
	if len(r.in.buf) <= readBufferSize {
		t.Fatalf("the buffer did not grow for a 5000-byte frame: %d bytes", len(r.in.buf))
	}
	r.endHandshake()
	if len(r.in.buf) > readBufferSize {
		t.Fatalf("the handshake's %d-byte buffer is kept after it", len(r.in.buf))
	}
	if b, err := r.ReadFrame(); err != nil || len(b) != 100_000 {
		t.Fatalf("frame after the handshake: %d bytes, %v", len(b), err)
	}
}

func TestEndHandshakeKeepsTheBytesThatFollow(t *testing.T) {
	// The last handshake frame and the first frames after it in one
	// message: the handshake's buffer is given back, those bytes are kept.
	hello, _ := AppendFrame(nil, bytes.Repeat([]byte{1}, 5000))
	next, _ := AppendFrame(nil, []byte("first after the handshake"))
	msg := append(append(hello, next...), next[:7]...)
	r, _ := newChunkReader(0, msg, next[7:])
	r.beginHandshake()
	if b, err := r.ReadFrame(); err != nil || len(b) != 5000 {
		t.Fatalf("handshake frame: %d bytes, %v", len(b), err)
	}
	r.endHandshake()
	if len(r.in.buf) > readBufferSize {
		t.Fatalf("the handshake's %d-byte buffer is kept after it", len(r.in.buf))
	}
	for range 2 {
		if b, err := r.ReadFrame(); err != nil || string(b) != "first after the handshake" {
			t.Fatalf("frame after the handshake: %q, %v", b, err)
		}
	}
}

func TestServerHandshakeBudgetCountsEdgeRouting(t *testing.T) {
	// The connection header, a 4 KiB edge-routing prefix and the
	// ClientHello all count against the server's budget.
	routing := append([]byte(edgeRoutingMagic), 0x00, 0x10, 0x00)
	routing = append(routing, make([]byte, maxEdgeRouting)...)
	stream := append(routing, ConnHeader...)
	frame := bytes.Repeat([]byte{3}, MaxHandshakeMessageSize)
	stream, _ = AppendFrame(stream, frame)
	stream, _ = AppendFrame(stream, frame)
	c, sock := socketConn(true, 0, wsFrame(0x2, true, stream, true))
	r := &c.r
	r.beginHandshake()
	if err := r.readConnHeader(); err != nil {
		t.Fatalf("header with edge routing: %v", err)
	}
	if _, err := r.ReadFrame(); err != nil {
		t.Fatalf("first frame: %v", err)
	}
	if _, err := r.ReadFrame(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("second 8 KiB frame after 4 KiB of routing: got %v, want ErrFrameTooLarge", err)
	}
	if got := sock.read.Load(); got > HandshakeReadBudget {
		t.Fatalf("read %d bytes, budget %d", got, HandshakeReadBudget)
	}
}

// trickleHugeHello plays a hostile server: after the ClientHello it
// announces a ServerHello of MaxFrameSize bytes and sends the body 16 KiB
// per message until the client hangs up or all of it is sent.
func trickleHugeHello(ws *websocket.Conn) {
	if _, _, err := ws.ReadMessage(); err != nil {
		return
	}
	chunk := make([]byte, 16<<10)
	msg := append([]byte{0xff, 0xff, 0xff}, chunk...)
	for sent := 0; sent < MaxFrameSize; sent += len(chunk) {
		if err := ws.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			return
		}
		msg = chunk
	}
	ws.ReadMessage() // hold the socket until the client closes it
}

func TestClientHandshakeRefusesHugeServerHello(t *testing.T) {
	srv := serveRaw(t, trickleHugeHello)
	c := dialT(t, wsURL(srv), DialOptions{})
	var read atomic.Int64
	c.r.in.conn = &countingReader{r: c.r.in.conn, n: &read}
	cfg := newTestPKI(t).clientConfig(t)
	cfg.Timeout = time.Minute // the limit must end it, not the timeout

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := ClientHandshake(context.Background(), c, cfg)
	runtime.ReadMemStats(&after)

	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("handshake against a 16 MiB ServerHello: got %v, want ErrFrameTooLarge", err)
	}
	if got := read.Load(); got > HandshakeReadBudget {
		t.Fatalf("the client read %d bytes of the ServerHello, budget %d", got, HandshakeReadBudget)
	}
	// The whole process (server goroutine included) allocated far less than
	// the announced 16 MiB; a client that buffered the body allocates more
	// than that.
	alloc := after.TotalAlloc - before.TotalAlloc
	if alloc > 4<<20 {
		t.Fatalf("the handshake allocated %d bytes", alloc)
	}
	t.Logf("a ServerHello announced at 16 MiB: %d bytes read, %d bytes allocated by the process", read.Load(), alloc)
	if c.r.in.buf != nil {
		t.Fatalf("a %d-byte read buffer is kept after the failed handshake", len(c.r.in.buf))
	}
}

func TestServerHandshakeRefusesHugeClientFinish(t *testing.T) {
	p := newTestPKI(t)
	chain := p.chain(t)
	errs := make(chan error, 1)
	srv := serveFrames(t, func(_ *http.Request, c *Conn) {
		_, err := serveHandshake(context.Background(), c, chain, p.static)
		errs <- err
	})
	ws, _, err := websocket.DefaultDialer.Dial(wsURL(srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	eph, err := crypto.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	hello, _ := AppendFrame([]byte(ConnHeader), marshalHS(t, &waproto.HandshakeMessage{
		ClientHello: &waproto.HandshakeMessage_ClientHello{Ephemeral: eph.Pub[:]},
	}))
	if err := ws.WriteMessage(websocket.BinaryMessage, hello); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ws.ReadMessage(); err != nil { // the ServerHello
		t.Fatal(err)
	}
	// A ClientFinish announcing 1 MiB, sent in full: the server must refuse
	// it from its prefix.
	finish, _ := AppendFrame(nil, make([]byte, 1<<20))
	ws.WriteMessage(websocket.BinaryMessage, finish)
	if err := <-errs; !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("server handshake: got %v, want ErrFrameTooLarge", err)
	}
}

func TestHandshakeLimitsEndWithTheHandshake(t *testing.T) {
	p := newTestPKI(t)
	chain := p.chain(t)
	type result struct {
		conn *Conn
		res  *ServerResult
		err  error
	}
	results := make(chan result, 1)
	srv := serveFrames(t, func(_ *http.Request, c *Conn) {
		res, err := serveHandshake(context.Background(), c, chain, p.static)
		results <- result{c, res, err}
		if err != nil {
			return
		}
		pt, err := res.Transport.Receive()
		if err == nil {
			err = res.Transport.Send(pt)
		}
		if err != nil {
			t.Errorf("server echo: %v", err)
		}
		res.Transport.Receive() // until the client hangs up
	})
	c := dialT(t, wsURL(srv), DialOptions{})
	tr, err := ClientHandshake(context.Background(), c, p.clientConfig(t))
	if err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if len(c.r.in.buf) > readBufferSize || c.r.limit != MaxFrameSize {
		t.Fatalf("client after the handshake: %d-byte buffer kept, limit %d", len(c.r.in.buf), c.r.limit)
	}
	r := <-results
	if r.err != nil {
		t.Fatalf("server handshake: %v", r.err)
	}
	if r.conn.r.limit != MaxFrameSize {
		t.Fatalf("server limit after the handshake: %d", r.conn.r.limit)
	}
	// Frames far above the handshake limit pass both ways afterwards.
	msg := bytes.Repeat([]byte{9}, 256<<10)
	if err := tr.Send(msg); err != nil {
		t.Fatal(err)
	}
	got, err := tr.Receive()
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo of 256 KiB: %d bytes, %v", len(got), err)
	}
	tr.Close()
}
