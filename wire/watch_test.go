package wire

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/wafleet/wafleet/crypto"
)

// watchDeadline bounds every wait of these tests: generous, as they assert
// what arrives, never how fast.
const watchDeadline = 30 * time.Second

// watched collects what a watched transport hands over.
type watched struct {
	mu     sync.Mutex
	frames [][]byte
	late   int // frames handed over after the end
	ended  bool
	end    chan error
	more   chan struct{} // a frame arrived
}

func watchT(tr *Transport) *watched {
	w := &watched{end: make(chan error, 2), more: make(chan struct{}, 1)}
	tr.Watch(func(b []byte) {
		w.mu.Lock()
		if w.ended {
			w.late++
		}
		w.frames = append(w.frames, bytes.Clone(b))
		w.mu.Unlock()
		select {
		case w.more <- struct{}{}:
		default:
		}
	}, func(err error) {
		w.mu.Lock()
		w.ended = true
		w.mu.Unlock()
		w.end <- err
	})
	return w
}

// waitFrames waits until n frames arrived and returns them.
func (w *watched) waitFrames(t *testing.T, n int) [][]byte {
	t.Helper()
	deadline := time.After(watchDeadline)
	for {
		w.mu.Lock()
		got := len(w.frames)
		w.mu.Unlock()
		if got >= n {
			w.mu.Lock()
			defer w.mu.Unlock()
			return w.frames
		}
		select {
		case <-w.more:
		case err := <-w.end:
			t.Fatalf("receiving ended after %d of %d frames: %v", got, n, err)
		case <-deadline:
			t.Fatalf("%d of %d frames after %v", got, n, watchDeadline)
		}
	}
}

// waitEnd returns the error that ended receiving, and checks that it came
// once and last.
func (w *watched) waitEnd(t *testing.T) error {
	t.Helper()
	var err error
	select {
	case err = <-w.end:
	case <-time.After(watchDeadline):
		t.Fatalf("receiving did not end in %v", watchDeadline)
	}
	select {
	case again := <-w.end:
		t.Fatalf("onEnd called twice: %v, then %v", err, again)
	default:
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.late != 0 {
		t.Fatalf("%d frames handed over after onEnd", w.late)
	}
	return err
}

// sealer seals frames as the server's side of a transport does.
type sealer struct{ cs *crypto.CipherState }

// frame returns pt sealed, with its length prefix, as the server's
// transport writes it.
func (s sealer) frame(t testing.TB, pt []byte) []byte {
	t.Helper()
	b, err := AppendFrame(nil, s.cs.Seal(nil, pt))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// keys returns a client's receiving cipher state and the server's sending
// one that matches it, from a real handshake.
func keys(t testing.TB) (recv *crypto.CipherState, send sealer) {
	client, server, _, _ := handshakePair(t)
	return client.recv, sealer{server.send}
}

// watchServer is the server end of a WebSocket: its accepted Conn, kept
// open until the test ends or the test closes it.
type watchServer struct {
	srv   *httptest.Server
	conns chan *Conn
}

func startWatchServer(t *testing.T, tlsOn bool) *watchServer {
	t.Helper()
	s := &watchServer{conns: make(chan *Conn, 256)}
	done := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r, AcceptOptions{})
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		defer c.Close()
		s.conns <- c
		<-done
	})
	if tlsOn {
		s.srv = httptest.NewTLSServer(h)
	} else {
		s.srv = httptest.NewServer(h)
	}
	t.Cleanup(func() { close(done); s.srv.Close() })
	return s
}

// dial connects a client and returns it with the server's Conn.
func (s *watchServer) dial(t *testing.T, opts DialOptions) (*Conn, *Conn) {
	t.Helper()
	url := wsURL(s.srv)
	if s.srv.TLS != nil {
		pool := x509.NewCertPool()
		pool.AddCert(s.srv.Certificate())
		opts.TLSConfig = &tls.Config{RootCAs: pool}
	}
	c := dialT(t, url, opts)
	select {
	case sc := <-s.conns:
		return c, sc
	case <-time.After(watchDeadline):
		t.Fatal("the server accepted nothing")
	}
	return nil, nil
}

// writeWS writes b as one binary WebSocket message, unmasked, as a server
// does, on the server Conn's socket.
func writeWS(t testing.TB, sc *Conn, b []byte) {
	t.Helper()
	if _, err := sc.NetConn().Write(wsFrame(0x2, true, b, false)); err != nil {
		t.Fatal(err)
	}
}

// message returns the i-th test plaintext of a sequence: its index, then
// filler of a size that cycles through small, medium and large frames
// (larger than the lent 64 KiB buffer included).
func message(i int) []byte {
	sizes := []int{0, 1, 100, 300, 5000, 70 << 10, 200 << 10}
	b := binary.BigEndian.AppendUint32(nil, uint32(i))
	return append(b, bytes.Repeat([]byte{byte(i)}, sizes[i%len(sizes)])...)
}

func checkMessages(t *testing.T, got [][]byte, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%d frames, want %d", len(got), n)
	}
	for i, b := range got {
		if !bytes.Equal(b, message(i)) {
			t.Fatalf("frame %d: %d bytes starting %x, want message %d (%d bytes)", i, len(b), b[:min(len(b), 8)], i, len(message(i)))
		}
	}
}

// TestWatchOverSockets: frames of every size arrive whole and in order
// over a real TCP socket and over TLS, read when the socket is ready; a
// close from the server ends receiving once, after the last frame.
func TestWatchOverSockets(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", tlsOn), func(t *testing.T) {
			s := startWatchServer(t, tlsOn)
			c, sc := s.dial(t, DialOptions{})
			recv, send := keys(t)
			tr := NewTransport(c, nil, recv)
			w := watchT(tr)
			requirePolled(t, c)
			const n = 60
			for i := range n {
				writeWS(t, sc, send.frame(t, message(i)))
			}
			checkMessages(t, w.waitFrames(t, n), n)
			sc.Close()
			if err := w.waitEnd(t); !errors.Is(err, ErrClosed) {
				t.Fatalf("end: %v, want ErrClosed", err)
			}
			checkMessages(t, w.frames, n)
		})
	}
}

// TestWatchOneByteAtATime: a peer that sends its bytes one at a time (each
// its own write, so mostly its own segment and readiness): every frame is
// taken up again where the last read stopped, over TCP and over TLS (a
// record per byte).
func TestWatchOneByteAtATime(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", tlsOn), func(t *testing.T) {
			s := startWatchServer(t, tlsOn)
			c, sc := s.dial(t, DialOptions{})
			recv, send := keys(t)
			w := watchT(NewTransport(c, nil, recv))
			requirePolled(t, c)
			var stream []byte
			const n = 12
			for i := range n {
				m := message(i)
				if len(m) > 400 {
					m = m[:400] // keep the byte-by-byte writes few
				}
				stream = append(stream, wsFrame(0x2, true, send.frame(t, m), false)...)
				if i == 5 {
					stream = append(stream, wsFrame(0x9, true, []byte("ping"), false)...)
				}
			}
			for i := range stream {
				if _, err := sc.NetConn().Write(stream[i : i+1]); err != nil {
					t.Fatal(err)
				}
			}
			got := w.waitFrames(t, n)
			for i, b := range got {
				m := message(i)
				if len(m) > 400 {
					m = m[:400]
				}
				if !bytes.Equal(b, m) {
					t.Fatalf("frame %d: %x, want %x", i, b[:min(8, len(b))], m[:min(8, len(m))])
				}
			}
		})
	}
}

// TestWatchEOFMidFrame: a socket that ends inside a frame ends receiving
// with io.ErrUnexpectedEOF, after the whole frames before it.
func TestWatchEOFMidFrame(t *testing.T) {
	s := startWatchServer(t, false)
	c, sc := s.dial(t, DialOptions{})
	recv, send := keys(t)
	w := watchT(NewTransport(c, nil, recv))
	requirePolled(t, c)
	writeWS(t, sc, send.frame(t, message(0)))
	whole := wsFrame(0x2, true, send.frame(t, message(2)), false)
	if _, err := sc.NetConn().Write(whole[:len(whole)/2]); err != nil {
		t.Fatal(err)
	}
	w.waitFrames(t, 1)
	sc.NetConn().Close()
	err := w.waitEnd(t)
	if !errors.Is(err, io.ErrUnexpectedEOF) || !errors.Is(err, ErrClosed) {
		t.Fatalf("end: %v, want ErrClosed wrapping io.ErrUnexpectedEOF", err)
	}
	if len(w.frames) != 1 {
		t.Fatalf("%d frames, want 1", len(w.frames))
	}
}

// TestWatchCloseWhileIdle: closing the client's Conn while its socket is
// armed and quiet ends receiving with ErrClosed, as it ends a blocked
// Receive; so does closing it from onFrame, and a frame that fails to
// decrypt.
func TestWatchCloseWhileIdle(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		s := startWatchServer(t, false)
		c, _ := s.dial(t, DialOptions{})
		recv, _ := keys(t)
		tr := NewTransport(c, nil, recv)
		w := watchT(tr)
		requirePolled(t, c)
		waitArmed(t, c)
		tr.Close()
		if err := w.waitEnd(t); !errors.Is(err, ErrClosed) {
			t.Fatalf("end: %v, want ErrClosed", err)
		}
	})
	t.Run("from onFrame", func(t *testing.T) {
		s := startWatchServer(t, true)
		c, sc := s.dial(t, DialOptions{})
		recv, send := keys(t)
		tr := NewTransport(c, nil, recv)
		end := make(chan error, 1)
		var frames int
		tr.Watch(func([]byte) { frames++; tr.Close() }, func(err error) { end <- err })
		requirePolled(t, c)
		writeWS(t, sc, append(send.frame(t, message(0)), send.frame(t, message(1))...))
		select {
		case err := <-end:
			// The second frame came in the same read as the first: it may
			// be handed over from the buffer, as a Receive after Close
			// returns what is buffered.
			if !errors.Is(err, ErrClosed) || frames < 1 {
				t.Fatalf("end: %v after %d frames, want ErrClosed after 1 or 2", err, frames)
			}
		case <-time.After(watchDeadline):
			t.Fatal("receiving did not end")
		}
	})
	t.Run("decrypt", func(t *testing.T) {
		s := startWatchServer(t, false)
		c, sc := s.dial(t, DialOptions{})
		recv, _ := keys(t)
		_, other := keys(t)
		w := watchT(NewTransport(c, nil, recv))
		requirePolled(t, c)
		writeWS(t, sc, other.frame(t, message(0)))
		if err := w.waitEnd(t); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("end: %v, want ErrDecrypt", err)
		}
		if !c.closed.Load() {
			t.Fatal("the connection stayed open after a frame failed to decrypt")
		}
	})
}

// TestWatchReadLimit: a frame above the read limit ends receiving with
// ErrFrameTooLarge, from its prefix.
func TestWatchReadLimit(t *testing.T) {
	s := startWatchServer(t, false)
	c, sc := s.dial(t, DialOptions{ReadLimit: 1000})
	recv, send := keys(t)
	w := watchT(NewTransport(c, nil, recv))
	requirePolled(t, c)
	writeWS(t, sc, send.frame(t, message(2))) // 104 bytes
	big := send.frame(t, bytes.Repeat([]byte{1}, 2000))
	if _, err := sc.NetConn().Write(wsFrame(0x2, true, big, false)[:10]); err != nil {
		t.Fatal(err)
	}
	if err := w.waitEnd(t); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("end: %v, want ErrFrameTooLarge", err)
	}
	if len(w.frames) != 1 {
		t.Fatalf("%d frames before the large one, want 1", len(w.frames))
	}
}

// TestWatchBytesBufferedAtTheStart: frames that came with the upgrade, in
// the buffers above the socket, are handed over without the socket ever
// being ready again.
func TestWatchBytesBufferedAtTheStart(t *testing.T) {
	recv, send := keys(t)
	srv := startRawUpgradeServer(t, send.frame(t, []byte("right after the 101")))
	t.Cleanup(srv.close)
	c := dialT(t, "ws://"+srv.ln.Addr().String()+"/ws/chat", DialOptions{})
	w := watchT(NewTransport(c, nil, recv))
	requirePolled(t, c)
	if got := w.waitFrames(t, 1); string(got[0]) != "right after the 101" {
		t.Fatalf("got %q", got[0])
	}
}

// TestWatchThroughProxies: the socket under a proxy's tunnel is watched,
// and frames arrive through an HTTP CONNECT proxy (with TLS to the server
// inside it) and a SOCKS5 proxy.
func TestWatchThroughProxies(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tlsOn bool
		proxy func(t *testing.T) string
	}{
		{"http", false, func(t *testing.T) string { return "http://" + startConnectProxy(t, false).ln.Addr().String() }},
		{"http+wss", true, func(t *testing.T) string { return "http://" + startConnectProxy(t, false).ln.Addr().String() }},
		{"socks5", false, func(t *testing.T) string { a, _ := startSOCKS5(t); return "socks5://" + a }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startWatchServer(t, tc.tlsOn)
			c, sc := s.dial(t, DialOptions{Proxy: tc.proxy(t)})
			recv, send := keys(t)
			w := watchT(NewTransport(c, nil, recv))
			requirePolled(t, c)
			const n = 10
			for i := range n {
				writeWS(t, sc, send.frame(t, message(i)))
			}
			checkMessages(t, w.waitFrames(t, n), n)
			c.Close()
			if err := w.waitEnd(t); !errors.Is(err, ErrClosed) {
				t.Fatalf("end: %v", err)
			}
		})
	}
}

// TestWatchManyConnections: many watched connections at once, each with
// frames arriving concurrently, keep each its own frames in order.
func TestWatchManyConnections(t *testing.T) {
	conns := 100
	if testing.Short() {
		conns = 40
	}
	const n = 30
	s := startWatchServer(t, false)
	type one struct {
		c, sc *Conn
		send  sealer
		w     *watched
	}
	all := make([]one, conns)
	for i := range all {
		c, sc := s.dial(t, DialOptions{})
		recv, send := keys(t)
		all[i] = one{c: c, sc: sc, send: send, w: watchT(NewTransport(c, nil, recv))}
		requirePolled(t, c)
	}
	var wg sync.WaitGroup
	for i := range all {
		wg.Go(func() {
			for k := range n {
				m := message(k)
				if len(m) > 6000 {
					m = m[:6000]
				}
				b := all[i].send.frame(t, m)
				if _, err := all[i].sc.NetConn().Write(wsFrame(0x2, true, b, false)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for i := range all {
		got := all[i].w.waitFrames(t, n)
		for k, b := range got {
			m := message(k)
			if len(m) > 6000 {
				m = m[:6000]
			}
			if !bytes.Equal(b, m) {
				t.Fatalf("connection %d, frame %d: %x, want %x", i, k, b[:min(8, len(b))], m[:min(8, len(m))])
			}
		}
	}
	for i := range all {
		if i%2 == 0 {
			all[i].c.Close()
		} else {
			all[i].sc.Close()
		}
	}
	for i := range all {
		if err := all[i].w.waitEnd(t); !errors.Is(err, ErrClosed) {
			t.Fatalf("connection %d: end %v", i, err)
		}
	}
}

// BenchmarkWatch measures one frame's trip from the server's socket write
// to the client's onFrame, over loopback TCP, one frame in flight at a
// time: what each readiness costs, on a socket read by a goroutine of its
// own (goroutine: Watch's fallback) and on one read when ready (poll).
func BenchmarkWatch(b *testing.B) {
	for _, mode := range []string{"goroutine", "poll"} {
		b.Run(mode, func(b *testing.B) {
			recv, send := keys(b)
			ready := make(chan *Conn, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, err := Accept(w, r, AcceptOptions{})
				if err != nil {
					return
				}
				ready <- c
			}))
			defer srv.Close()
			c, err := Dial(context.Background(), wsURL(srv), DialOptions{})
			if err != nil {
				b.Fatal(err)
			}
			sc := <-ready
			defer sc.Close()
			if mode == "goroutine" {
				c.pc = nil
			}
			got := make(chan struct{}, 1)
			end := make(chan error, 1)
			NewTransport(c, nil, recv).Watch(func([]byte) { got <- struct{}{} }, func(err error) { end <- err })
			msgs := make([][]byte, b.N)
			for i := range msgs {
				msgs[i] = wsFrame(0x2, true, send.frame(b, make([]byte, 200)), false)
			}
			b.ResetTimer()
			for i := range b.N {
				if _, err := sc.NetConn().Write(msgs[i]); err != nil {
					b.Fatal(err)
				}
				<-got
			}
			b.StopTimer()
			c.Close()
			<-end
		})
	}
}
