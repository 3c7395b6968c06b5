package wire

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/wafleet/wafleet/crypto"
)

// tagSize is the AES-GCM tag appended to every transport frame.
const tagSize = 16

// MaxPlaintextSize is the largest plaintext one transport frame can carry.
const MaxPlaintextSize = MaxFrameSize - tagSize

// Transport is the encrypted phase of a connection after the Noise handshake:
// every frame body is AES-256-GCM with the direction's split key and counter.
//
// One goroutine may call Send while another calls Receive, or while Watch
// hands frames over; neither is safe for concurrent use with itself.
// Close may be called from anywhere.
//
// Buffer contract: Send seals into a buffer borrowed from a pool for the
// write (length prefix and ciphertext together), so steady-state sending
// does not allocate and an idle Transport holds no send buffer; the
// caller's plaintext is not retained. Receive decrypts in
// place in the connection's read buffer and returns a slice of it, valid only
// until the next Receive.
type Transport struct {
	conn FrameConn
	pw   prefixedWriter // conn's copy-free write path, or nil
	send *crypto.CipherState
	recv *crypto.CipherState
	rerr error // reader side: sticky receive error
}

// sendBuffers lend Send its frame buffer (length prefix || ciphertext) for
// the time of one write: an idle connection keeps none, however large a
// frame it sent once (a new device's first prekey upload is about 40 KiB),
// and steady sending still allocates nothing. Buffers grown past
// maxPooledSend are left to the collector.
var sendBuffers = sync.Pool{New: func() any { return new([]byte) }}

const maxPooledSend = 64 << 10

// NewTransport wraps conn with the cipher states of a finished handshake
// (send seals outgoing frames, recv opens incoming ones). ClientHandshake and
// ServerHandshake.Finish call it; it is exported for tests and tools that
// derive keys elsewhere.
func NewTransport(conn FrameConn, send, recv *crypto.CipherState) *Transport {
	t := &Transport{conn: conn, send: send, recv: recv}
	t.pw, _ = conn.(prefixedWriter)
	return t
}

// Send encrypts plaintext into one frame and writes it. A plaintext above
// MaxPlaintextSize is ErrFrameTooLarge (nothing is sent, the counter does not
// move). A write failure closes the connection: the peer's counter can no
// longer be trusted to match.
func (t *Transport) Send(plaintext []byte) error {
	if len(plaintext) > MaxPlaintextSize {
		return fmt.Errorf("%w: send: %d bytes of plaintext", ErrFrameTooLarge, len(plaintext))
	}
	bp := sendBuffers.Get().(*[]byte)
	b := append((*bp)[:0], 0, 0, 0)
	b = t.send.Seal(b, plaintext)
	putPrefix(b, len(b)-FramePrefixLen)
	var err error
	if t.pw != nil {
		err = t.pw.writePrefixed(b)
	} else {
		err = t.conn.WriteFrame(b[FramePrefixLen:])
	}
	if cap(b) <= maxPooledSend {
		*bp = b[:0]
		sendBuffers.Put(bp)
	}
	if err != nil {
		t.conn.Close()
		return opError("send", err)
	}
	return nil
}

// Receive reads and decrypts the next frame. The returned plaintext aliases
// the read buffer: it is valid only until the next Receive, and the caller may
// modify it. A frame that fails to decrypt is fatal: Receive closes the
// connection and returns an error wrapping ErrDecrypt. After any error every
// later Receive returns the same error.
func (t *Transport) Receive() ([]byte, error) {
	if t.rerr != nil {
		return nil, t.rerr
	}
	ct, err := t.conn.ReadFrame()
	if errors.Is(err, errWouldBlock) {
		return nil, err // watched: the rest of the frame is not there yet
	}
	if err != nil {
		t.fail(err)
		return nil, t.rerr
	}
	n := t.recv.Counter()
	pt, err := t.recv.Open(ct[:0], ct)
	if err != nil {
		t.rerr = fmt.Errorf("%w: receive frame %d: %w", ErrDecrypt, n, err)
		t.conn.Close()
		return nil, t.rerr
	}
	return pt, nil
}

// fail ends receiving with err and closes the connection.
func (t *Transport) fail(err error) {
	t.rerr = opError("receive", err)
	t.conn.Close()
}

// Close closes the underlying connection. It is idempotent.
func (t *Transport) Close() error { return t.conn.Close() }

// opError gives a failed read or write of the connection its context once:
// "wire: receive: EOF", but "wire: connection closed (receive)" for an
// error of this package, which already names it.
func opError(op string, err error) error {
	if strings.HasPrefix(err.Error(), "wire: ") {
		return fmt.Errorf("%w (%s)", err, op)
	}
	return fmt.Errorf("wire: %s: %w", op, err)
}
