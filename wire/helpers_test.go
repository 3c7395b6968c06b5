package wire

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"sync"
	"testing"

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

// loopConn is a single-goroutine loopback FrameConn with the copy-free write
// path: what one transport sends, another (sharing the conn) receives,
// through real framing (length prefix written, FrameReader cutting it).
// It holds one message at a time: every write must be read before the next.
type loopConn struct {
	own     []byte // WriteFrame's buffer
	pending []byte
	has     bool
	rd      bytes.Reader
	fr      *FrameReader
}

func newLoopConn() *loopConn {
	l := &loopConn{}
	l.fr = NewFrameReader(l.next, 0)
	return l
}

func (l *loopConn) next() (io.Reader, error) {
	if !l.has {
		return nil, io.EOF
	}
	l.has = false
	l.rd.Reset(l.pending)
	return &l.rd, nil
}

// writePrefixed keeps msg without copying it, as a socket write would hand
// the bytes to the kernel: the reader consumes it before the next write.
func (l *loopConn) writePrefixed(msg []byte) error {
	l.pending, l.has = msg, true
	return nil
}

func (l *loopConn) WriteFrame(body []byte) error {
	var err error
	l.own, err = AppendFrame(l.own[:0], body)
	l.pending, l.has = l.own, true
	return err
}

func (l *loopConn) ReadFrame() ([]byte, error) { return l.fr.ReadFrame() }
func (l *loopConn) Close() error               { return nil }

// loopTransports returns a sender and a receiver transport joined by a
// loopConn, keyed by a real handshake.
func loopTransports(t testing.TB) (send, recv *Transport) {
	t.Helper()
	client, server, _, _ := handshakePair(t)
	loop := newLoopConn()
	return NewTransport(loop, client.send, nil), NewTransport(loop, nil, server.recv)
}
