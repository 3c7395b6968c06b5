package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/gobwas/ws"
)

// Sizes of the read buffer. An idle reader, with nothing buffered, waits
// for the socket in a buffer of its own of readBufferSize bytes. A frame
// that needs more borrows a buffer of growStep bytes from readBuffers, and
// larger ones grow a buffer of their own (at most doubling, never past what
// the frame needs); either is given back once every byte it holds is
// consumed, before the next frame, and one grown past shrinkAbove is cut
// down before then. Memory follows the bytes that actually arrived, never
// a length the peer merely announced, and an idle connection keeps only
// its small buffer, however large a frame it received once; a watched one
// (Transport.Watch), with nothing buffered, keeps none.
const (
	readBufferSize = 256
	growStep       = 64 << 10
	shrinkAbove    = 1 << 20
)

// readBuffers lend readers their growStep-byte buffers while frames larger
// than readBufferSize are read and consumed.
var readBuffers = sync.Pool{New: func() any { return new([growStep]byte) }}

// smallBuffers hold the readBufferSize-byte buffers of readers that wait
// for their socket with nothing kept (watched connections, Transport.Watch)
// or that failed: a reader blocked in a read keeps its own.
var smallBuffers = sync.Pool{New: func() any { return new([readBufferSize]byte) }}

// maxControlFrame is the largest WebSocket control frame: a 14-byte header
// (at most) and a 125-byte payload.
const maxControlFrame = ws.MaxHeaderSize + ws.MaxControlFramePayloadSize

// maxEmptyReads bounds consecutive reads that return nothing, so a
// misbehaving connection cannot spin the reader forever.
const maxEmptyReads = 100

// wsReader reads the WebSocket frames of one connection straight into a
// buffer it owns and decodes them there: the payloads of binary messages
// become one stream of data, unmasked in place (server side), with the
// frame headers between them cut out, so a frame of the stream that arrived
// in one WebSocket frame is never copied after the socket read it. Text
// messages are skipped; pings are answered and a close is echoed through
// control; a message above limit is ErrFrameTooLarge from its header, before
// its payload is read.
//
// buf[d0:d1] is decoded data not yet consumed, buf[r:w] bytes read and not
// yet decoded (d0 <= d1 <= r <= w). When a stream frame spans WebSocket
// frames, the later payload is moved down over the header that separated
// them: a copy only for frames that were cut.
type wsReader struct {
	conn    io.Reader
	server  bool  // we are the server: frames must be masked
	limit   int64 // bound of one message, all its fragments
	control func(op ws.OpCode, payload []byte)

	buf    []byte
	small  []byte          // the idle buffer, readBufferSize bytes (nil until the first read)
	lent   *[growStep]byte // buf's owner when it is borrowed from readBuffers
	exact  bool            // grow to what a frame needs, not to a lent buffer (the handshake's read budget)
	d0, d1 int
	r, w   int
	rerr   error // the error of a read that also returned bytes

	// The WebSocket frame being decoded.
	remain  int64   // payload bytes still to decode
	mask    [4]byte // its masking key (server side)
	maskOff int
	skip    bool // a text message: its payload is dropped

	// The message being received.
	fragmented bool  // a message is open: continuation frames follow
	text       bool  // the open message is text
	msgLen     int64 // its bytes so far
}

// closeError is a close frame received from the peer.
type closeError struct {
	code   ws.StatusCode
	reason string
}

func (e *closeError) Error() string {
	if e.code == 0 {
		return "websocket: peer sent close"
	}
	if e.reason == "" {
		return fmt.Sprintf("websocket: peer sent close %d", e.code)
	}
	return fmt.Sprintf("websocket: peer sent close %d (%q)", e.code, e.reason)
}

// protocolError wraps a violation of RFC 6455 by the peer.
func protocolError(err error) error { return fmt.Errorf("websocket: %w", err) }

// preload puts bytes buffered during the upgrade in front of the
// connection's: bytes the peer sent right after the HTTP exchange.
func (r *wsReader) preload(br *bufio.Reader) {
	n := br.Buffered()
	if n == 0 {
		return
	}
	// A buffer of their size, not a lent one: the handshake that follows
	// must not read past its budget into the rest of a lent buffer.
	r.buf = make([]byte, max(readBufferSize, n))
	r.w, _ = io.ReadFull(br, r.buf[:n]) // buffered: cannot fail
}

// peek returns the next n bytes of the stream, reading and decoding as
// needed. They stay valid until the next peek or release, even after
// discard. At the end of the stream it returns io.EOF if no byte of the n
// arrived, io.ErrUnexpectedEOF if some did.
func (r *wsReader) peek(n int) ([]byte, error) {
	empty := 0
	for r.d1-r.d0 < n {
		if r.r < r.w {
			before := r.r
			if err := r.decode(n); err != nil {
				return nil, err
			}
			if r.r != before {
				continue
			}
		}
		got, err := r.read(n)
		if err != nil {
			if errors.Is(err, io.EOF) && (r.d1 > r.d0 || r.r < r.w || r.remain > 0 || r.fragmented) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if got == 0 {
			if empty++; empty > maxEmptyReads {
				return nil, io.ErrNoProgress
			}
		} else {
			empty = 0
		}
	}
	return r.buf[r.d0 : r.d0+n], nil
}

// discard consumes n bytes of the stream (n <= what peek returned).
func (r *wsReader) discard(n int) { r.d0 += n }

// decode turns raw bytes into stream data until n bytes of data wait:
// payloads of binary messages join the data, headers and control frames are
// consumed (a close after them is seen only when the data before it is
// used up). It stops early at a header or control frame not all there.
func (r *wsReader) decode(n int) error {
	for r.r < r.w && r.d1-r.d0 < n {
		if r.remain > 0 {
			r.payload()
			continue
		}
		var mask [4]byte
		op, fin, length, size, err := r.header(&mask)
		if err != nil || size == 0 {
			return err // size 0: the header is not all there
		}
		if !op.IsControl() {
			if err := r.begin(op, fin, length, mask); err != nil {
				return err
			}
			r.r += size
			continue
		}
		end := r.r + size + int(length)
		if end > r.w {
			return nil // the payload is not all there
		}
		p := r.buf[r.r+size : end]
		if r.server {
			ws.Cipher(p, mask, 0)
		}
		r.r = end
		if err := r.onControl(op, p); err != nil {
			return err
		}
	}
	return nil
}

// header parses the WebSocket frame header at r.r and checks it: its
// opcode, FIN bit, payload length and size (0 if the header is not all
// there). A masked frame's key goes to mask.
func (r *wsReader) header(mask *[4]byte) (op ws.OpCode, fin bool, length int64, size int, err error) {
	b := r.buf[r.r:r.w]
	if len(b) < 2 {
		return 0, false, 0, 0, nil
	}
	if err := r.check(b[0], b[1]); err != nil {
		return 0, false, 0, 0, r.fail(ws.StatusProtocolError, protocolError(err))
	}
	op, fin = ws.OpCode(b[0]&0x0f), b[0]&0x80 != 0
	size, length = 2, int64(b[1]&0x7f)
	switch length {
	case 126:
		size += 2
	case 127:
		size += 8
	}
	if r.server { // masked: check made sure
		size += 4
	}
	if len(b) < size {
		return 0, false, 0, 0, nil
	}
	switch length {
	case 126:
		length = int64(binary.BigEndian.Uint16(b[2:]))
	case 127:
		u := binary.BigEndian.Uint64(b[2:])
		if u>>63 != 0 {
			return 0, false, 0, 0, r.fail(ws.StatusProtocolError, protocolError(ws.ErrHeaderLengthMSB))
		}
		length = int64(u)
	}
	if r.server {
		copy(mask[:], b[size-4:size])
	}
	return op, fin, length, size, nil
}

// begin starts a data frame of length payload bytes, refusing it if its
// message would pass the limit.
func (r *wsReader) begin(op ws.OpCode, fin bool, length int64, mask [4]byte) error {
	if op != ws.OpContinuation {
		r.text, r.msgLen = op == ws.OpText, 0
	}
	if length > r.limit-r.msgLen {
		return r.fail(ws.StatusMessageTooBig, fmt.Errorf("%w: websocket message above %d bytes", ErrFrameTooLarge, r.limit))
	}
	r.msgLen += length
	r.fragmented = !fin
	r.remain, r.skip = length, r.text
	r.mask, r.maskOff = mask, 0
	return nil
}

// check applies the rules of ws.CheckHeader to the first two bytes of a
// header. (ws.Header holds an array, so it travels through memory: building
// and checking one per frame costs more than all the rest of the decoding.)
func (r *wsReader) check(b0, b1 byte) error {
	op := ws.OpCode(b0 & 0x0f)
	fin, masked := b0&0x80 != 0, b1&0x80 != 0
	switch {
	case op.IsReserved():
		return ws.ErrProtocolOpCodeReserved
	case op.IsControl() && b1&0x7f > ws.MaxControlFramePayloadSize:
		return ws.ErrProtocolControlPayloadOverflow
	case op.IsControl() && !fin:
		return ws.ErrProtocolControlNotFinal
	case b0&0x70 != 0:
		return ws.ErrProtocolNonZeroRsv
	case r.server && !masked:
		return ws.ErrProtocolMaskRequired
	case !r.server && masked:
		return ws.ErrProtocolMaskUnexpected
	case r.fragmented && op.IsData() && op != ws.OpContinuation:
		return ws.ErrProtocolContinuationExpected
	case !r.fragmented && op == ws.OpContinuation:
		return ws.ErrProtocolContinuationUnexpected
	}
	return nil
}

// payload decodes what arrived of the current frame's payload: a binary
// message's joins the data (unmasked in place, moved down over a header
// only if data is waiting before it); a text message's is dropped.
func (r *wsReader) payload() {
	k := int(min(r.remain, int64(r.w-r.r)))
	r.remain -= int64(k)
	if r.skip {
		r.r += k
		return
	}
	p := r.buf[r.r : r.r+k]
	if r.server {
		ws.Cipher(p, r.mask, r.maskOff)
		r.maskOff += k
	}
	if r.d0 == r.d1 {
		r.d0, r.d1 = r.r, r.r // no data waits: nothing to move
	} else if r.d1 != r.r {
		copy(r.buf[r.d1:], p)
	}
	r.d1 += k
	r.r += k
}

// onControl handles a control frame: a ping is answered with a pong of the
// same payload, a close is echoed (its status code) and ends the stream.
func (r *wsReader) onControl(op ws.OpCode, p []byte) error {
	switch op {
	case ws.OpPing:
		r.control(ws.OpPong, p)
	case ws.OpClose:
		if len(p) == 1 {
			return r.fail(ws.StatusProtocolError, protocolError(errors.New("close frame with a 1-byte payload")))
		}
		code, reason := ws.ParseCloseFrameData(p)
		if len(p) >= 2 {
			if err := ws.CheckCloseFrameData(code, reason); err != nil {
				return r.fail(ws.StatusProtocolError, protocolError(err))
			}
		}
		r.control(ws.OpClose, p[:min(len(p), 2)])
		return &closeError{code: code, reason: reason}
	}
	return nil
}

// fail tells the peer why the connection ends (a close frame with code) and
// returns err.
func (r *wsReader) fail(code ws.StatusCode, err error) error {
	var body [2]byte
	binary.BigEndian.PutUint16(body[:], uint16(code))
	r.control(ws.OpClose, body[:])
	return err
}

// read reads what the connection has, for a peek of n bytes: when the
// buffer is full it first moves what is kept to the front, then grows it.
// It returns how many bytes arrived.
func (r *wsReader) read(n int) (int, error) {
	if r.rerr != nil {
		return 0, r.rerr
	}
	if r.d0 == r.d1 && r.r == r.w {
		r.d0, r.d1, r.r, r.w = 0, 0, 0, 0
	}
	if r.buf == nil {
		if r.small == nil {
			r.small = smallBuffers.Get().(*[readBufferSize]byte)[:]
		}
		r.buf = r.small
	}
	if free := len(r.buf) - r.w; free < r.d0+r.r-r.d1 {
		r.compact() // at least doubles the room to read into
	}
	if r.w == len(r.buf) {
		// Full of bytes that arrived and are needed: at most double it,
		// and never past what a frame of n bytes and a control frame need.
		r.resize(max(len(r.buf)+1, min(n+maxControlFrame, max(2*len(r.buf), growStep))))
	}
	got, err := r.conn.Read(r.buf[r.w:])
	r.w += got
	if errors.Is(err, errWouldBlock) {
		// Nothing there now: a watched connection is read again when
		// ready, and one that holds no byte keeps no buffer meanwhile.
		if r.d0 == r.d1 && r.r == r.w {
			r.release()
		}
		return 0, err
	}
	if err != nil {
		r.rerr = err
		if got == 0 {
			return 0, err
		}
	}
	return got, nil
}

// compact moves the data and the raw bytes to the front of the buffer.
func (r *wsReader) compact() {
	n := copy(r.buf, r.buf[r.d0:r.d1])
	m := copy(r.buf[n:], r.buf[r.r:r.w])
	r.d0, r.d1, r.r, r.w = 0, n, n, n+m
}

// resize moves the data and the raw bytes into another buffer of at least
// size bytes: the small one, one borrowed from readBuffers, or one of its
// own (the allocation's size class: the slack is free).
func (r *wsReader) resize(size int) {
	var nb []byte
	var lent *[growStep]byte
	switch {
	case size <= readBufferSize && r.small != nil:
		nb = r.small
	case size <= growStep && !r.exact:
		lent = readBuffers.Get().(*[growStep]byte)
		nb = lent[:]
	default:
		nb = slices.Grow([]byte(nil), size)
		nb = nb[:cap(nb)]
	}
	n := copy(nb, r.buf[r.d0:r.d1])
	m := copy(nb[n:], r.buf[r.r:r.w])
	r.giveBack()
	r.buf, r.lent = nb, lent
	r.d0, r.d1, r.r, r.w = 0, n, n, n+m
}

// giveBack returns a borrowed buf to readBuffers.
func (r *wsReader) giveBack() {
	if r.lent != nil {
		readBuffers.Put(r.lent)
		r.lent = nil
	}
}

// shrink returns the reader to its small buffer when every byte is
// consumed; else it gives back a buffer larger than size, keeping the bytes
// not yet consumed.
func (r *wsReader) shrink(size int) {
	if r.d0 == r.d1 && r.r == r.w {
		r.giveBack()
		r.buf = r.small
		r.d0, r.d1, r.r, r.w = 0, 0, 0, 0
		return
	}
	if len(r.buf) <= size {
		return
	}
	if n := max(readBufferSize, r.d1-r.d0+r.w-r.r); n < len(r.buf) {
		r.resize(n)
	}
}

// release drops the buffers, the small one back to smallBuffers: after
// an error, or while a watched connection waits for its socket with no
// byte kept.
func (r *wsReader) release() {
	r.giveBack()
	if r.small != nil {
		smallBuffers.Put((*[readBufferSize]byte)(r.small))
	}
	r.buf, r.small = nil, nil
	r.d0, r.d1, r.r, r.w = 0, 0, 0, 0
}
