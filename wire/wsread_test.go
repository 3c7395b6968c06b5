package wire

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"pgregory.net/rapid"
)

// sentFrame is a WebSocket frame a Conn wrote, unmasked.
type sentFrame struct {
	op      byte
	fin     bool
	masked  bool
	payload []byte
}

// parseSent decodes the frames in b (RFC 6455 section 5.2, written here
// independently of the package's decoder).
func parseSent(t interface{ Fatalf(string, ...any) }, b []byte) []sentFrame {
	var out []sentFrame
	for len(b) > 0 {
		if len(b) < 2 {
			t.Fatalf("%d stray bytes after the frames", len(b))
		}
		f := sentFrame{op: b[0] & 0x0f, fin: b[0]&0x80 != 0, masked: b[1]&0x80 != 0}
		n, i := int(b[1]&0x7f), 2
		switch n {
		case 126:
			n, i = int(binary.BigEndian.Uint16(b[2:])), 4
		case 127:
			n, i = int(binary.BigEndian.Uint64(b[2:])), 10
		}
		var key []byte
		if f.masked {
			key, i = b[i:i+4], i+4
		}
		f.payload = slices.Clone(b[i : i+n])
		for j := range f.payload {
			if key != nil {
				f.payload[j] ^= key[j%4]
			}
		}
		out = append(out, f)
		b = b[i+n:]
	}
	return out
}

// TestReaderProperty sends frames as WebSocket messages cut every way a
// peer may: a frame over several messages and several frames in one,
// messages in fragments, pings, pongs and text messages (fragmented too)
// between data frames, the byte stream read in pieces of any size. The
// reader must return every frame, answer every ping with its payload, and
// end with io.EOF. Both sides: a server's reader gets masked frames.
func TestReaderProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		server := rapid.Bool().Draw(t, "server")
		bodies := rapid.SliceOfN(rapid.SliceOfN(rapid.Byte(), 0, 300), 0, 8).Draw(t, "bodies")
		var stream []byte
		for _, b := range bodies {
			stream, _ = AppendFrame(stream, b)
		}
		if server {
			stream = append([]byte(ConnHeader), stream...)
		}
		cuts := rapid.SliceOfN(rapid.IntRange(0, len(stream)), 0, 10).Draw(t, "messages")
		slices.Sort(cuts)
		var wire []byte
		var pings [][]byte
		// extra adds what may come between messages, or only control frames
		// between the fragments of one.
		extra := func(label string, control bool) {
			n := 5
			if control {
				n = 2
			}
			switch rapid.IntRange(0, n).Draw(t, label) {
			case 1:
				p := rapid.SliceOfN(rapid.Byte(), 0, 125).Draw(t, label+" ping")
				pings = append(pings, p)
				wire = append(wire, wsFrame(0x9, true, p, server)...)
			case 2:
				wire = append(wire, wsFrame(0xa, true, []byte("unasked pong"), server)...)
			case 3:
				wire = append(wire, wsFrame(0x1, true, []byte("text is ignored"), server)...)
			case 4:
				wire = append(wire, wsFrame(0x1, false, []byte("text in "), server)...)
				wire = append(wire, wsFrame(0x9, true, nil, server)...)
				pings = append(pings, nil)
				wire = append(wire, wsFrame(0x0, true, []byte("fragments"), server)...)
			}
		}
		for _, msg := range splitAt(stream, cuts) {
			extra("before message", false)
			frags := rapid.SliceOfN(rapid.IntRange(0, len(msg)), 0, 3).Draw(t, "fragments")
			slices.Sort(frags)
			parts := splitAt(msg, frags)
			for j, p := range parts {
				op := byte(0x0)
				if j == 0 {
					op = 0x2
				}
				wire = append(wire, wsFrame(op, j == len(parts)-1, p, server)...)
				if j < len(parts)-1 {
					extra("between fragments", true)
				}
			}
		}
		reads := rapid.SliceOfN(rapid.IntRange(0, len(wire)), 0, 30).Draw(t, "reads")
		slices.Sort(reads)
		c, sock := socketConn(server, 0, splitAt(wire, reads)...)
		if server {
			if err := c.r.readConnHeader(); err != nil {
				t.Fatalf("connection header: %v", err)
			}
			c.headerRead = true
		}
		for i, want := range bodies {
			got, err := c.ReadFrame()
			if err != nil {
				t.Fatalf("frame %d: %v", i, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("frame %d: got %x, want %x", i, got, want)
			}
		}
		if _, err := c.r.ReadFrame(); err != io.EOF {
			t.Fatalf("after the last frame: got %v, want io.EOF", err)
		}
		var pongs [][]byte
		for _, f := range parseSent(t, sock.sent()) {
			if f.masked == server || !f.fin || f.op != 0xa {
				t.Fatalf("sent op %x fin %v masked %v, want only final pongs, masked by a client", f.op, f.fin, f.masked)
			}
			pongs = append(pongs, f.payload)
		}
		if len(pongs) != len(pings) {
			t.Fatalf("%d pongs for %d pings", len(pongs), len(pings))
		}
		for i := range pings {
			if !bytes.Equal(pongs[i], pings[i]) {
				t.Fatalf("pong %d carries %x, ping had %x", i, pongs[i], pings[i])
			}
		}
	})
}

// TestReaderProtocolErrors: frames RFC 6455 forbids end the connection
// with a close frame of status 1002 (protocol error) or, for a message above
// the limit, 1009 (message too big); nothing of their payload is read.
func TestReaderProtocolErrors(t *testing.T) {
	huge := []byte{0x82, 127, 0, 0, 1, 0, 0, 0, 0, 0} // 1 TiB announced
	tests := []struct {
		name   string
		server bool
		msgs   [][]byte
		code   uint16
		want   error
	}{
		{"masked frame to a client", false, [][]byte{wsFrame(0x2, true, []byte{0, 0, 0}, true)}, 1002, nil},
		{"unmasked frame to a server", true, [][]byte{wsFrame(0x2, true, []byte(ConnHeader), false)}, 1002, nil},
		{"reserved opcode", false, [][]byte{wsFrame(0x3, true, nil, false)}, 1002, nil},
		{"reserved bit", false, [][]byte{{0xc2, 0}}, 1002, nil},
		{"fragmented ping", false, [][]byte{wsFrame(0x9, false, nil, false)}, 1002, nil},
		{"ping above 125 bytes", false, [][]byte{wsFrame(0x9, true, make([]byte, 126), false)}, 1002, nil},
		{"continuation without a message", false, [][]byte{wsFrame(0x0, true, []byte{0, 0, 0}, false)}, 1002, nil},
		{"new message inside a fragmented one", false, [][]byte{wsFrame(0x2, false, []byte{0}, false), wsFrame(0x2, true, []byte{0, 0}, false)}, 1002, nil},
		{"length with the top bit set", false, [][]byte{{0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0}}, 1002, nil},
		{"close with a 1-byte payload", false, [][]byte{wsFrame(0x8, true, []byte{3}, false)}, 1002, nil},
		{"close with a reserved code", false, [][]byte{wsFrame(0x8, true, []byte{0x03, 0xee}, false)}, 1002, nil}, // 1006
		{"message of 1 TiB", false, [][]byte{huge}, 1009, ErrFrameTooLarge},
		{"fragments above the limit", false, [][]byte{wsFrame(0x2, false, append([]byte{0, 0x03, 0xe7}, make([]byte, 897)...), false), wsFrame(0x0, true, make([]byte, 200), false)}, 1009, ErrFrameTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, sock := socketConn(tt.server, 1000, tt.msgs...)
			_, err := c.ReadFrame()
			want := tt.want
			if want == nil {
				want = ErrClosed
			}
			if !errors.Is(err, want) {
				t.Fatalf("got %v, want %v", err, want)
			}
			sent := parseSent(t, sock.sent())
			if len(sent) != 1 || sent[0].op != 0x8 || len(sent[0].payload) < 2 {
				t.Fatalf("sent %+v, want one close frame", sent)
			}
			if code := binary.BigEndian.Uint16(sent[0].payload); code != tt.code {
				t.Fatalf("close code %d, want %d", code, tt.code)
			}
			if c.r.in.buf != nil {
				t.Fatalf("a %d-byte buffer is kept after the error", len(c.r.in.buf))
			}
			c.Close()
			if n := len(parseSent(t, sock.sent())); n != 1 {
				t.Fatalf("%d frames sent after Close, want the one close frame", n)
			}
		})
	}
}

func TestReaderRefusesHugeMessageWithoutAllocating(t *testing.T) {
	msgs := [][]byte{{0x82, 127, 0, 0, 1, 0, 0, 0, 0, 0}} // 1 TiB announced
	got := bytesAllocated(func() {
		c, _ := socketConn(false, 0, msgs...)
		if _, err := c.ReadFrame(); !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("got %v, want ErrFrameTooLarge", err)
		}
	})
	if got > 4096 {
		t.Fatalf("refusing a 1 TiB message allocated %d bytes", got)
	}
}

func TestReaderCloseHandshake(t *testing.T) {
	f, _ := AppendFrame(nil, []byte("last"))
	c, sock := socketConn(false, 0,
		wsFrame(0x2, true, f, false),
		wsFrame(0x8, true, append([]byte{0x03, 0xe9}, "going away"...), false),
		wsFrame(0x2, true, f, false), // after the close: never read
	)
	if b, err := c.ReadFrame(); err != nil || string(b) != "last" {
		t.Fatalf("the frame before the close: %q, %v", b, err)
	}
	_, err := c.ReadFrame()
	var ce *closeError
	if !errors.Is(err, ErrClosed) || !errors.As(err, &ce) || ce.code != 1001 || ce.reason != "going away" {
		t.Fatalf("got %v, want ErrClosed from the peer's close 1001", err)
	}
	sent := parseSent(t, sock.sent())
	if len(sent) != 1 || sent[0].op != 0x8 || !bytes.Equal(sent[0].payload, []byte{0x03, 0xe9}) {
		t.Fatalf("sent %+v, want the close echoed with its code", sent)
	}
	if err := c.WriteFrame([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after the close: got %v, want ErrClosed", err)
	}
	c.Close()
	if n := len(parseSent(t, sock.sent())); n != 1 {
		t.Fatalf("%d frames sent, want only the echoed close", n)
	}
}

func TestCloseSendsNormalClosure(t *testing.T) {
	got := make(chan error, 1)
	srv := serveRaw(t, func(ws *websocket.Conn) {
		_, _, err := ws.ReadMessage()
		got <- err
	})
	c := dialT(t, wsURL(srv), DialOptions{})
	c.Close()
	if err := <-got; !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Fatalf("the server read %v, want close 1000", err)
	}
}

// TestClientPingsAndLargeMessages talks to gorilla/websocket, an
// independent implementation: its ping is answered, and frames of every
// length encoding (7, 16 and 64 bits) pass both ways, whole from the
// client and in gorilla's own fragments from the server.
func TestClientPingsAndLargeMessages(t *testing.T) {
	pongs := make(chan string, 1)
	srv := serveRaw(t, func(ws *websocket.Conn) {
		ws.SetPongHandler(func(s string) error { pongs <- s; return nil })
		if err := ws.WriteControl(websocket.PingMessage, []byte("are you there"), time.Now().Add(time.Minute)); err != nil {
			t.Errorf("ping: %v", err)
			return
		}
		for first := true; ; first = false {
			_, b, err := ws.ReadMessage()
			if err != nil {
				return
			}
			if first {
				b = bytes.TrimPrefix(b, []byte(ConnHeader))
			}
			w, err := ws.NextWriter(websocket.BinaryMessage)
			if err != nil {
				return
			}
			for len(b) > 0 { // in pieces: gorilla fragments what outgrows its buffer
				n := min(len(b), 3000)
				w.Write(b[:n])
				b = b[n:]
			}
			if w.Close() != nil {
				return
			}
		}
	})
	c := dialT(t, wsURL(srv), DialOptions{})
	for _, n := range []int{0, 100, 122, 123, 1000, 65532, 65533, 300_000} {
		body := bytes.Repeat([]byte{byte(n)}, n)
		if err := c.WriteFrame(body); err != nil {
			t.Fatal(err)
		}
		got, err := c.ReadFrame()
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("echo of %d bytes: %d bytes, %v", n, len(got), err)
		}
	}
	if got := <-pongs; got != "are you there" {
		t.Fatalf("pong %q", got)
	}
}

// TestBytesRightAfterTheUpgrade: a frame that arrives with the upgrade's
// HTTP exchange, in the same read, is not lost, on either side.
func TestBytesRightAfterTheUpgrade(t *testing.T) {
	hello, _ := AppendFrame(nil, []byte("right after the 101"))
	t.Run("client", func(t *testing.T) {
		srv := startRawUpgradeServer(t, hello)
		t.Cleanup(srv.close)
		c := dialT(t, "ws://"+srv.ln.Addr().String()+"/ws/chat", DialOptions{})
		if b, err := c.ReadFrame(); err != nil || string(b) != "right after the 101" {
			t.Fatalf("got %q, %v", b, err)
		}
	})
	t.Run("server", func(t *testing.T) {
		got := make(chan string, 1)
		srv := serveFrames(t, func(_ *http.Request, c *Conn) {
			b, err := c.ReadFrame()
			if err != nil {
				got <- err.Error()
				return
			}
			got <- string(b)
		})
		nc, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		req := "GET /ws/chat HTTP/1.1\r\nHost: " + srv.Listener.Addr().String() +
			"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
		msg := append([]byte(req), wsFrame(0x2, true, append([]byte(ConnHeader), hello...), true)...)
		if _, err := nc.Write(msg); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade: %v, %v", resp, err)
		}
		sum := sha1.Sum([]byte("dGhlIHNhbXBsZSBub25jZQ==258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		if got := resp.Header.Get("Sec-WebSocket-Accept"); got != base64.StdEncoding.EncodeToString(sum[:]) {
			t.Fatalf("Sec-WebSocket-Accept %q", got)
		}
		if b := <-got; b != "right after the 101" {
			t.Fatalf("the server read %q", b)
		}
	})
}

func TestAcceptChecksOrigin(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := Accept(w, r, AcceptOptions{CheckOrigin: func(r *http.Request) bool {
			return r.Header.Get("Origin") == "https://allowed.example"
		}})
		if err == nil {
			t.Error("a refused origin was accepted")
		}
	}))
	defer srv.Close()
	_, err := Dial(context.Background(), wsURL(srv), DialOptions{Origin: "https://other.example"})
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("dial with a refused origin: %v, want HTTP status 403", err)
	}
}
