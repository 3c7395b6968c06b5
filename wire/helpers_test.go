package wire

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wafleet/wafleet/crypto"
)

// memConn is an in-memory FrameConn: one end of a pipe of frames. Closing
// either end closes both, like a hung-up socket.
type memConn struct {
	in   <-chan []byte
	out  chan<- []byte
	done chan struct{}
	once *sync.Once
}

func memPipe() (a, b *memConn) {
	ab, ba := make(chan []byte, 16), make(chan []byte, 16)
	done, once := make(chan struct{}), new(sync.Once)
	return &memConn{in: ba, out: ab, done: done, once: once},
		&memConn{in: ab, out: ba, done: done, once: once}
}

func (c *memConn) ReadFrame() ([]byte, error) {
	select {
	case b := <-c.in:
		return b, nil
	case <-c.done:
		return nil, ErrClosed
	}
}

func (c *memConn) WriteFrame(body []byte) error {
	select {
	case <-c.done:
		return ErrClosed
	default:
	}
	select {
	case c.out <- append([]byte(nil), body...):
		return nil
	case <-c.done:
		return ErrClosed
	}
}

func (c *memConn) Close() error {
	c.once.Do(func() { close(c.done) })
	return nil
}

func (c *memConn) isClosed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// unhex decodes a hex string from a vector.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex in vector: %v", err)
	}
	return b
}

func keyPair(t testing.TB, privHex string) *crypto.KeyPair {
	t.Helper()
	kp, err := crypto.KeyPairFromPrivate(unhex(t, privHex))
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func loadJSON(t testing.TB, name string, v any) {
	t.Helper()
	b, err := os.ReadFile("../testdata/protocol/vectors/" + name)
	if err != nil {
		t.Fatalf("read vector: %v", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("parse vector %s: %v", name, err)
	}
}

type vecFrame struct {
	Conn     int    `json:"conn"`
	Dir      string `json:"dir"`
	Kind     string `json:"kind"`
	WireHex  string `json:"wire_hex"`
	FrameHex string `json:"frame_hex"`
	PlainHex string `json:"plain_hex"`
}

// noiseVector is noise_handshake.json (the fields used here).
type noiseVector struct {
	ClientEphemeralPriv string     `json:"client_ephemeral_priv"`
	ClientStaticPriv    string     `json:"client_static_priv"`
	ClientStaticPub     string     `json:"client_static_pub"`
	ClientPayloadPlain  string     `json:"client_payload_plain_hex"`
	ServerEphemeralPriv string     `json:"server_ephemeral_priv"`
	ServerStaticPriv    string     `json:"server_static_priv"`
	ServerStaticPub     string     `json:"server_static_pub"`
	CertChainPlain      string     `json:"cert_chain_plain_hex"`
	TestRootPub         string     `json:"test_root_pub"`
	IntermediateDetails string     `json:"intermediate_details_hex"`
	LeafDetails         string     `json:"leaf_details_hex"`
	Frames              []vecFrame `json:"frames"`
}

// e2eVector is e2e_session.json (the fields used here).
type e2eVector struct {
	ClientKeys struct {
		NoisePub string `json:"noise_pub"`
	} `json:"client_keys"`
	Frames     []vecFrame `json:"frames"`
	Handshakes []struct {
		Conn                int    `json:"conn"`
		CertChainPlain      string `json:"cert_chain_plain"`
		ServerEphemeralPriv string `json:"server_ephemeral_priv"`
		ClientPayloadPlain  string `json:"client_payload_plain"`
		ClientStaticPub     string `json:"client_static_pub"`
	} `json:"handshakes"`
	RegistrationPayload string `json:"registration_client_payload_hex"`
	LoginPayload        string `json:"login_client_payload_hex"`
}

// fakeSocket is a net.Conn whose reads serve chunks in order: one chunk, or
// what fits of it, per Read, then io.EOF. It counts the bytes read and keeps
// the bytes written. Reads and writes allocate nothing.
type fakeSocket struct {
	chunks [][]byte
	next   int
	cur    []byte
	read   atomic.Int64

	mu      sync.Mutex
	written []byte
}

func (s *fakeSocket) Read(p []byte) (int, error) {
	for len(s.cur) == 0 {
		if s.next >= len(s.chunks) {
			return 0, io.EOF
		}
		s.cur = s.chunks[s.next]
		s.next++
	}
	n := copy(p, s.cur)
	s.cur = s.cur[n:]
	s.read.Add(int64(n))
	return n, nil
}

// rewind serves the chunks again from the first.
func (s *fakeSocket) rewind() { s.next, s.cur = 0, nil }

func (s *fakeSocket) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.written = append(s.written, p...)
	s.mu.Unlock()
	return len(p), nil
}

// sent returns a copy of the bytes written so far.
func (s *fakeSocket) sent() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.written)
}

func (s *fakeSocket) Close() error                     { return nil }
func (s *fakeSocket) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (s *fakeSocket) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (s *fakeSocket) SetDeadline(time.Time) error      { return nil }
func (s *fakeSocket) SetReadDeadline(time.Time) error  { return nil }
func (s *fakeSocket) SetWriteDeadline(time.Time) error { return nil }

// wsFrame encodes one WebSocket frame as a peer sends it, written here
// from RFC 6455 section 5.2 independently of the package's encoder: masked
// (as a client sends) with a fixed key when mask is set.
func wsFrame(op byte, fin bool, payload []byte, mask bool) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	var m byte
	if mask {
		m = 0x80
	}
	var out []byte
	switch n := len(payload); {
	case n < 126:
		out = []byte{b0, m | byte(n)}
	case n < 1<<16:
		out = []byte{b0, m | 126, byte(n >> 8), byte(n)}
	default:
		out = []byte{b0, m | 127}
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if !mask {
		return append(out, payload...)
	}
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	out = append(out, key[:]...)
	for i, c := range payload {
		out = append(out, c^key[i%4])
	}
	return out
}

// binaryMessages encodes each chunk as one binary message of one frame.
func binaryMessages(chunks [][]byte, mask bool) [][]byte {
	out := make([][]byte, len(chunks))
	for i, c := range chunks {
		out[i] = wsFrame(0x2, true, c, mask)
	}
	return out
}

// socketConn returns a Conn (server side if server) reading from a
// fakeSocket that serves msgs, one per read.
func socketConn(server bool, limit int, msgs ...[]byte) (*Conn, *fakeSocket) {
	sock := &fakeSocket{chunks: msgs}
	return newConn(sock, server, limit, 0), sock
}

// loopConn is a single-goroutine loopback FrameConn with the copy-free write
// path: what one transport sends, another (sharing the conn) receives,
// through a client Conn's reader: each message arrives as a server's binary
// WebSocket message on a socket whose read copies it into the Conn's
// buffer, as the kernel would. It holds one message at a time: every write
// must be read before the next.
type loopConn struct {
	own  []byte // WriteFrame's buffer
	sock loopSocket
	c    *Conn
}

// loopSocket serves the pending message: its WebSocket header, then the
// bytes the sender wrote, not copied until read.
type loopSocket struct {
	fakeSocket
	hb       [10]byte
	hdr, msg []byte
}

func (s *loopSocket) Read(p []byte) (int, error) {
	if len(s.hdr)+len(s.msg) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.hdr)
	s.hdr = s.hdr[n:]
	m := copy(p[n:], s.msg)
	s.msg = s.msg[m:]
	return n + m, nil
}

func newLoopConn() *loopConn {
	l := &loopConn{}
	l.c = newConn(&l.sock, false, 0, 0)
	return l
}

// writePrefixed keeps msg without copying it, as a socket write would hand
// the bytes to the kernel: the reader consumes it before the next write.
func (l *loopConn) writePrefixed(msg []byte) error {
	s := &l.sock
	s.hdr = append(s.hb[:0], 0x82)
	switch n := len(msg); {
	case n < 126:
		s.hdr = append(s.hdr, byte(n))
	case n < 1<<16:
		s.hdr = append(s.hdr, 126, byte(n>>8), byte(n))
	default:
		s.hdr = binary.BigEndian.AppendUint64(append(s.hdr, 127), uint64(n))
	}
	s.msg = msg
	return nil
}

func (l *loopConn) WriteFrame(body []byte) error {
	var err error
	if l.own, err = AppendFrame(l.own[:0], body); err != nil {
		return err
	}
	return l.writePrefixed(l.own)
}

func (l *loopConn) ReadFrame() ([]byte, error) { return l.c.ReadFrame() }
func (l *loopConn) Close() error               { return nil }

// loopTransports returns a sender and a receiver transport joined by a
// loopConn, keyed by a real handshake.
func loopTransports(t testing.TB) (send, recv *Transport) {
	t.Helper()
	client, server, _, _ := handshakePair(t)
	loop := newLoopConn()
	return NewTransport(loop, client.send, nil), NewTransport(loop, nil, server.recv)
}
