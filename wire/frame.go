package wire

import (
	"errors"
	"fmt"
	"io"
)

// ConnHeader is the 4-byte connection header ('W', 'A', magic 6, dictionary
// version 3). A client sends it once, in the same WebSocket message as its
// first frame; the server never sends it. It is also the Noise prologue.
const ConnHeader = "WA\x06\x03"

// edgeRoutingMagic starts the optional edge-routing prefix that some clients
// send before ConnHeader: 'E', 'D', 0, 1, a 3-byte length, routing bytes.
const edgeRoutingMagic = "ED\x00\x01"

// maxEdgeRouting bounds the routing-info bytes a server accepts and skips.
const maxEdgeRouting = 4096

const (
	// FramePrefixLen is the length of a frame's big-endian length prefix.
	FramePrefixLen = 3
	// MaxFrameSize is the largest frame body the 3-byte prefix can express.
	MaxFrameSize = 1<<24 - 1
	// DefaultReadLimit is the default limit on one received WebSocket message
	// and on one frame body (16 MiB; a frame body is further capped at
	// MaxFrameSize).
	DefaultReadLimit = 16 << 20
)

// Limits of the handshake phase. Before the handshake has authenticated the
// peer, a connection reads under these instead of its read limit, so a
// hostile or broken peer cannot make it hold megabytes per connection.
const (
	// MaxHandshakeMessageSize bounds one handshake frame body. A real
	// ServerHello is about 350 bytes (ephemeral 32, encrypted static 48,
	// encrypted certificate chain about 250, protobuf tags) and a registration
	// ClientFinish about 370; 8 KiB leaves room for the optional fields newer
	// schemas define (padding, post-quantum keys and ciphertexts of about
	// 1.1 KiB each) at twenty times the size seen today.
	MaxHandshakeMessageSize = 8 << 10
	// HandshakeReadBudget bounds every byte one side reads during a
	// handshake: length prefixes, frame bodies and, on the server, the
	// connection header with its optional edge-routing prefix. A client reads
	// one message (ServerHello), a server two (ClientHello, ClientFinish).
	HandshakeReadBudget = 16 << 10
)

// AppendFrame appends body with its 3-byte length prefix to dst. A body longer
// than MaxFrameSize is ErrFrameTooLarge and dst is returned unchanged.
func AppendFrame(dst, body []byte) ([]byte, error) {
	if len(body) > MaxFrameSize {
		return dst, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, len(body))
	}
	n := len(body)
	dst = append(dst, byte(n>>16), byte(n>>8), byte(n))
	return append(dst, body...), nil
}

// putPrefix writes the length n (<= MaxFrameSize) into b[0:3].
func putPrefix(b []byte, n int) {
	_ = b[2]
	b[0], b[1], b[2] = byte(n>>16), byte(n>>8), byte(n)
}

// frameReader cuts frames out of the stream a wsReader decodes,
// independently of where the WebSocket messages begin and end: one message
// may carry several frames, and one frame, even its length prefix, may span
// several messages. A length above the limit is refused as soon as its
// prefix is there, before the buffer grows for it; a frame that arrived in
// one WebSocket frame is returned where the socket's read put it.
//
// During a handshake (between beginHandshake and endHandshake) frames are
// held to MaxHandshakeMessageSize and all frame bytes to
// HandshakeReadBudget.
//
// It is not safe for concurrent use. After an error, every later call
// returns the same error, and the buffer is released.
type frameReader struct {
	in         wsReader
	frameLimit int // the limit outside the handshake
	limit      int // the limit now: frameLimit, or less during the handshake
	budget     int // bytes that may still be read; negative: unbounded
	err        error
}

// init sets the frame limit (limit <= 0 or above MaxFrameSize means
// MaxFrameSize).
func (r *frameReader) init(limit int) {
	if limit <= 0 || limit > MaxFrameSize {
		limit = MaxFrameSize
	}
	r.frameLimit, r.limit, r.budget = limit, limit, -1
}

// beginHandshake holds the reader to the handshake's limits: frames of at
// most MaxHandshakeMessageSize bytes, HandshakeReadBudget bytes in all.
func (r *frameReader) beginHandshake() {
	r.limit = min(r.frameLimit, MaxHandshakeMessageSize)
	r.budget = HandshakeReadBudget
	r.in.exact = true // a lent buffer would let a socket read pass the budget
}

// endHandshake restores the read limit and gives back the buffer the
// handshake grew.
func (r *frameReader) endHandshake() {
	r.limit = r.frameLimit
	r.budget = -1
	r.in.exact = false
	r.in.shrink(readBufferSize)
}

// spend takes n bytes from the handshake's read budget before they are read.
func (r *frameReader) spend(n int) error {
	if r.budget < 0 {
		return nil
	}
	if n > r.budget {
		return fmt.Errorf("%w: %d more bytes would pass the handshake read budget of %d", ErrFrameTooLarge, n, HandshakeReadBudget)
	}
	r.budget -= n
	return nil
}

// limitError describes a frame whose announced length n is above the limit.
func (r *frameReader) limitError(n int) error {
	if r.budget >= 0 {
		return fmt.Errorf("%w: handshake message announced %d bytes, limit %d", ErrFrameTooLarge, n, r.limit)
	}
	return fmt.Errorf("%w: announced %d bytes, limit %d", ErrFrameTooLarge, n, r.limit)
}

// ReadFrame returns the next frame body. The returned slice is valid only
// until the next call to ReadFrame (its buffer is reused); callers may modify
// it in place (the transport decrypts in place). At a clean end of stream
// between frames it returns io.EOF; a stream ending inside a frame is
// io.ErrUnexpectedEOF. A length above the limit is ErrFrameTooLarge.
func (r *frameReader) ReadFrame() ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	// The frame returned last is no longer needed: a buffer lent or grown
	// for it goes back, unless it holds bytes still to come.
	r.in.shrink(shrinkAbove)
	if err := r.spend(FramePrefixLen); err != nil {
		return nil, r.fail(err)
	}
	pre, err := r.in.peek(FramePrefixLen)
	if err != nil {
		return nil, r.failUnlessBlocked(err)
	}
	n := int(pre[0])<<16 | int(pre[1])<<8 | int(pre[2])
	if n > r.limit {
		return nil, r.fail(r.limitError(n))
	}
	if err := r.spend(n); err != nil {
		return nil, r.fail(err)
	}
	b, err := r.in.peek(FramePrefixLen + n)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, r.failUnlessBlocked(err)
	}
	r.in.discard(FramePrefixLen + n)
	return b[FramePrefixLen:], nil
}

// readConnHeader consumes the client's connection header (server side),
// skipping an optional edge-routing prefix before it.
func (r *frameReader) readConnHeader() error {
	if r.err != nil {
		return r.err
	}
	const n = len(ConnHeader)
	if err := r.spend(n); err != nil {
		return r.fail(err)
	}
	hdr, err := r.in.peek(n)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return r.fail(fmt.Errorf("%w: %w", ErrBadHeader, err))
		}
		return r.fail(err) // nothing arrived: a hang-up, not a bad header
	}
	if string(hdr) == edgeRoutingMagic {
		if err := r.spend(FramePrefixLen); err != nil {
			return r.fail(err)
		}
		b, err := r.in.peek(n + FramePrefixLen)
		if err != nil {
			return r.fail(fmt.Errorf("%w: edge routing: %w", ErrBadHeader, err))
		}
		m := int(b[n])<<16 | int(b[n+1])<<8 | int(b[n+2])
		if m > maxEdgeRouting {
			return r.fail(fmt.Errorf("%w: edge routing info of %d bytes", ErrBadHeader, m))
		}
		if err := r.spend(m + n); err != nil {
			return r.fail(err)
		}
		skip := n + FramePrefixLen + m
		if _, err := r.in.peek(skip + n); err != nil {
			return r.fail(fmt.Errorf("%w: edge routing: %w", ErrBadHeader, err))
		}
		r.in.discard(skip)
		if hdr, err = r.in.peek(n); err != nil {
			return r.fail(fmt.Errorf("%w: %w", ErrBadHeader, err))
		}
	}
	if string(hdr) != ConnHeader {
		return r.fail(fmt.Errorf("%w: got %x", ErrBadHeader, hdr))
	}
	r.in.discard(n)
	return nil
}

// failUnlessBlocked fails with err, unless the frame is only not all there
// yet on a watched connection (errWouldBlock): then the next call reads it
// again from its prefix, nothing lost. The handshake's budget is never in
// force then (a Transport is watched, after the handshake), so its spending
// is not repeated.
func (r *frameReader) failUnlessBlocked(err error) error {
	if errors.Is(err, errWouldBlock) {
		return err
	}
	return r.fail(err)
}

// fail makes err sticky and releases the buffer: no frame follows an error.
func (r *frameReader) fail(err error) error {
	r.err = err
	r.in.release()
	return err
}
