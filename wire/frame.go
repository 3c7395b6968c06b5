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

// Growth policy of FrameReader's buffer: a body is read in steps of at least
// growStep bytes, and the buffer at most doubles per step, so memory follows
// the bytes that actually arrived, never a length the peer merely announced.
// A buffer grown past shrinkAbove is dropped before the next frame.
const (
	growStep    = 64 << 10
	shrinkAbove = 1 << 20
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

// FrameReader cuts frames out of a stream of messages, independently of where
// the messages begin and end: one message may carry several frames, and one
// frame, even its length prefix, may span several messages.
//
// It pulls messages from a function (for a WebSocket: the next binary
// message's reader) and reads only as many bytes as the current frame needs.
// A length above the limit is rejected as soon as its prefix is read; the body
// buffer grows only as body bytes arrive and is reused between frames, so the
// steady state allocates nothing.
//
// During a handshake (between beginHandshake and endHandshake) frames are
// held to MaxHandshakeMessageSize and all reads to HandshakeReadBudget.
//
// A FrameReader is not safe for concurrent use. After an error, every later
// call returns the same error, and the buffer is released.
type FrameReader struct {
	next       func() (io.Reader, error)
	cur        io.Reader
	frameLimit int // the limit outside the handshake
	limit      int // the limit now: frameLimit, or less during the handshake
	budget     int // bytes that may still be read; negative: unbounded
	pre        [FramePrefixLen]byte
	buf        []byte
	err        error
}

// NewFrameReader returns a FrameReader that takes messages from next and
// refuses frame bodies longer than limit bytes (limit <= 0 or above
// MaxFrameSize means MaxFrameSize). next returns io.EOF when the stream ends.
func NewFrameReader(next func() (io.Reader, error), limit int) *FrameReader {
	if limit <= 0 || limit > MaxFrameSize {
		limit = MaxFrameSize
	}
	return &FrameReader{next: next, frameLimit: limit, limit: limit, budget: -1}
}

// beginHandshake holds the reader to the handshake's limits: frames of at
// most MaxHandshakeMessageSize bytes, HandshakeReadBudget bytes in all.
func (r *FrameReader) beginHandshake() {
	r.limit = min(r.frameLimit, MaxHandshakeMessageSize)
	r.budget = HandshakeReadBudget
}

// endHandshake restores the read limit and releases the handshake's buffer.
func (r *FrameReader) endHandshake() {
	r.limit = r.frameLimit
	r.budget = -1
	r.buf = nil
}

// spend takes n bytes from the handshake's read budget before they are read.
func (r *FrameReader) spend(n int) error {
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
func (r *FrameReader) limitError(n int) error {
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
func (r *FrameReader) ReadFrame() ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	if cap(r.buf) > shrinkAbove {
		r.buf = nil
	}
	if err := r.spend(FramePrefixLen); err != nil {
		return nil, r.fail(err)
	}
	if n, err := r.fill(r.pre[:]); err != nil {
		if errors.Is(err, io.EOF) && n > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, r.fail(err)
	}
	n := int(r.pre[0])<<16 | int(r.pre[1])<<8 | int(r.pre[2])
	if n > r.limit {
		return nil, r.fail(r.limitError(n))
	}
	if err := r.spend(n); err != nil {
		return nil, r.fail(err)
	}
	body, err := r.readBody(n)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, r.fail(err)
	}
	return body, nil
}

// readBody reads n bytes into r.buf, growing it in steps as bytes arrive.
func (r *FrameReader) readBody(n int) ([]byte, error) {
	buf := r.buf[:0]
	have := 0
	for have < n {
		target := min(n, max(cap(buf), 2*have, growStep))
		if target > cap(buf) {
			nb := make([]byte, target)
			copy(nb, buf[:have])
			buf = nb
			r.buf = nb
		}
		buf = buf[:target]
		if _, err := r.fill(buf[have:target]); err != nil {
			return nil, err
		}
		have = target
	}
	return buf[:n], nil
}

// maxEmptyReads bounds consecutive (0, nil) reads before giving up, so a
// misbehaving message reader cannot spin the reader forever.
const maxEmptyReads = 100

// fill reads exactly len(p) bytes, crossing message boundaries as needed. It
// returns how many bytes it read and io.EOF if the stream ended first.
func (r *FrameReader) fill(p []byte) (int, error) {
	total, empty := 0, 0
	for total < len(p) {
		if r.cur == nil {
			m, err := r.next()
			if err != nil {
				return total, err
			}
			if m == nil { // no message after all: counts as an empty read
				if empty++; empty > maxEmptyReads {
					return total, io.ErrNoProgress
				}
				continue
			}
			r.cur = m
		}
		n, err := r.cur.Read(p[total:])
		total += n
		switch {
		case err == io.EOF:
			r.cur = nil
		case err != nil:
			return total, err
		case n == 0:
			empty++
			if empty > maxEmptyReads {
				return total, io.ErrNoProgress
			}
			continue
		}
		empty = 0
	}
	return total, nil
}

// readConnHeader consumes the client's connection header (server side),
// skipping an optional edge-routing prefix before it.
func (r *FrameReader) readConnHeader() error {
	if r.err != nil {
		return r.err
	}
	var hdr [len(ConnHeader)]byte
	if err := r.spend(len(hdr)); err != nil {
		return r.fail(err)
	}
	if n, err := r.fill(hdr[:]); err != nil {
		if n == 0 {
			return r.fail(err) // nothing arrived: a hang-up, not a bad header
		}
		return r.fail(fmt.Errorf("%w: %w", ErrBadHeader, err))
	}
	if string(hdr[:]) == edgeRoutingMagic {
		if err := r.spend(FramePrefixLen); err != nil {
			return r.fail(err)
		}
		if _, err := r.fill(r.pre[:]); err != nil {
			return r.fail(fmt.Errorf("%w: edge routing: %w", ErrBadHeader, err))
		}
		n := int(r.pre[0])<<16 | int(r.pre[1])<<8 | int(r.pre[2])
		if n > maxEdgeRouting {
			return r.fail(fmt.Errorf("%w: edge routing info of %d bytes", ErrBadHeader, n))
		}
		if err := r.spend(n + len(hdr)); err != nil {
			return r.fail(err)
		}
		skip := make([]byte, n)
		if _, err := r.fill(skip); err != nil {
			return r.fail(fmt.Errorf("%w: edge routing: %w", ErrBadHeader, err))
		}
		if _, err := r.fill(hdr[:]); err != nil {
			return r.fail(fmt.Errorf("%w: %w", ErrBadHeader, err))
		}
	}
	if string(hdr[:]) != ConnHeader {
		return r.fail(fmt.Errorf("%w: got %x", ErrBadHeader, hdr[:]))
	}
	return nil
}

// fail makes err sticky and releases the buffer: no frame follows an error.
func (r *FrameReader) fail(err error) error {
	r.err = err
	r.buf = nil
	return err
}
