package node

import (
	"bytes"
	"compress/zlib"
	"fmt"
	"io"
	"sync"
	"unsafe"

	"github.com/wafleet/wafleet/wire/jid"
)

// DefaultMaxInflatedSize is the default limit on the size of a zlib
// payload after inflation.
const DefaultMaxInflatedSize = 16 << 20

// zlibReaders keeps inflaters for reuse: a new one costs tens of KiB.
var zlibReaders sync.Pool

// Decoder decodes nodes with limits. The zero Decoder uses the defaults.
type Decoder struct {
	// MaxInflatedSize bounds the inflated size of a compressed payload
	// (zip-bomb protection). 0 means DefaultMaxInflatedSize.
	MaxInflatedSize int
	// MaxDepth bounds the nesting of child lists. 0 means DefaultMaxDepth.
	MaxDepth int
}

// Unmarshal decodes one node from data (no flags byte) with the default
// limits. data may be reused by the caller afterwards.
func Unmarshal(data []byte) (Node, error) {
	return Decoder{}.Decode(data)
}

// UnmarshalPayload decodes the plaintext of a transport frame (flags byte,
// then the node, zlib-compressed when flags has bit 0x02) with the default
// limits. payload may be reused by the caller afterwards.
func UnmarshalPayload(payload []byte) (Node, error) {
	return Decoder{}.DecodePayload(payload)
}

// UnmarshalOwnedPayload is UnmarshalPayload of a payload the caller hands
// over (see Decoder.DecodeOwnedPayload).
func UnmarshalOwnedPayload(payload []byte) (Node, error) {
	return Decoder{}.DecodeOwnedPayload(payload)
}

// UnmarshalPayloadHeader decodes only the tag and attributes of a payload's
// node, with the default limits (see Decoder.DecodePayloadHeader).
func UnmarshalPayloadHeader(payload []byte) (Node, error) {
	return Decoder{}.DecodePayloadHeader(payload)
}

// Decode decodes one node from data (no flags byte). All of data must be
// used. The result does not alias data: it points into one copy of data.
func (dc Decoder) Decode(data []byte) (Node, error) {
	s := dc.measure(data)
	// One allocation holds the private copy of the input and the room its
	// packed strings unpack into.
	buf := make([]byte, len(data)+s.packed)
	copy(buf, data)
	return dc.decodeOwned(buf[:len(data):len(data)], buf[len(data):len(data)], s)
}

// DecodePayload decodes a payload: flags byte, then the node bytes, which
// are a zlib stream when flags&0x02 is set. Other flag bits are ignored.
func (dc Decoder) DecodePayload(payload []byte) (Node, error) {
	if len(payload) == 0 {
		return Node{}, ErrEmptyPayload
	}
	flags, body := payload[0], payload[1:]
	if flags&0x02 == 0 {
		return dc.Decode(body)
	}
	inflated, err := dc.inflate(body)
	if err != nil {
		return Node{}, err
	}
	s := dc.measure(inflated)
	return dc.decodeOwned(inflated[:len(inflated):len(inflated)], inflated[len(inflated):], s)
}

// DecodeOwnedPayload is DecodePayload of a payload that becomes the
// node's: its strings and byte content point into payload instead of into
// a copy, so the caller must not change payload afterwards. A reader that
// copies each frame out of its read buffer anyway (to hand it to another
// goroutine) saves the decoder's copy this way.
func (dc Decoder) DecodeOwnedPayload(payload []byte) (Node, error) {
	if len(payload) == 0 || payload[0]&0x02 != 0 {
		return dc.DecodePayload(payload) // empty, or inflated into a buffer of its own
	}
	body := payload[1:]
	s := dc.measure(body)
	return dc.decodeOwned(body[:len(body):len(body)], nil, s)
}

func (dc Decoder) inflate(body []byte) ([]byte, error) {
	limit := dc.MaxInflatedSize
	if limit <= 0 {
		limit = DefaultMaxInflatedSize
	}
	src := bytes.NewReader(body)
	var zr io.ReadCloser
	if pooled, ok := zlibReaders.Get().(io.ReadCloser); ok {
		if err := pooled.(zlib.Resetter).Reset(src, nil); err != nil {
			zlibReaders.Put(pooled)
			return nil, fmt.Errorf("%w: %v", ErrInflate, err)
		}
		zr = pooled
	} else {
		var err error
		if zr, err = zlib.NewReader(src); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInflate, err)
		}
	}
	defer zlibReaders.Put(zr)
	// Grow with what actually arrives; never trust a size up front.
	out := make([]byte, 0, min(max(4*len(body), 512), limit+1))
	for {
		if len(out) == cap(out) {
			if len(out) > limit {
				return nil, fmt.Errorf("%w: more than %d bytes", ErrInflatedTooLarge, limit)
			}
			grown := make([]byte, len(out), min(2*cap(out), limit+1))
			copy(grown, out)
			out = grown
		}
		n, err := zr.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if err == io.EOF {
			if len(out) > limit {
				return nil, fmt.Errorf("%w: more than %d bytes", ErrInflatedTooLarge, limit)
			}
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInflate, err)
		}
	}
}

// DecodePayloadHeader decodes a payload like DecodePayload but stops after
// the node's tag and attributes: its content is neither decoded nor
// checked, and the result has none. A stanza whose content this codec
// cannot read can so still be answered by its tag and id. The result does
// not alias payload.
func (dc Decoder) DecodePayloadHeader(payload []byte) (Node, error) {
	if len(payload) == 0 {
		return Node{}, ErrEmptyPayload
	}
	flags, body := payload[0], payload[1:]
	if flags&0x02 == 0 {
		body = bytes.Clone(body)
	} else {
		var err error
		if body, err = dc.inflate(body); err != nil {
			return Node{}, err
		}
	}
	d := dc.newDecoder(body, nil, sizes{})
	d.headerOnly = true
	var n Node
	if err := d.readNode(&n, 0); err != nil {
		return Node{}, err
	}
	return n, nil
}

// newDecoder returns a decoder of data, which it owns from now on, that
// unpacks strings into arena's spare capacity and takes nodes, attributes
// and JIDs from the room reserved for s.
func (dc Decoder) newDecoder(data, arena []byte, s sizes) decoder {
	d := decoder{data: data, arena: arena, maxDepth: dc.maxDepth()}
	if cap(d.arena)-len(d.arena) < s.packed {
		d.arena = make([]byte, 0, s.packed)
	}
	d.nodes, d.attrs, d.jids = reserve(s)
	return d
}

func (dc Decoder) maxDepth() int {
	if dc.MaxDepth <= 0 {
		return DefaultMaxDepth
	}
	return dc.MaxDepth
}

// decodeOwned decodes from data, which the decoder owns from now on:
// strings and byte content of the result point into it. arena is spare
// room for unpacked strings, s what measuring data found.
func (dc Decoder) decodeOwned(data, arena []byte, s sizes) (Node, error) {
	d := dc.newDecoder(data, arena, s)
	var n Node
	if err := d.readNode(&n, 0); err != nil {
		return Node{}, err
	}
	if d.pos != len(d.data) {
		return Node{}, fmt.Errorf("%w: %d bytes", ErrLeftover, len(d.data)-d.pos)
	}
	return n, nil
}

// The decoder takes nodes, attributes, JIDs and unpacked strings from the
// room reserved for the measured input. What was not measured (the input
// does not decode, or only its header is read) is allocated where it is
// needed, in sizes checked against the input still to decode.
type decoder struct {
	data     []byte
	pos      int
	arena    []byte // unpacked strings; append-only, never reallocated in place
	attrs    []Attr // reserved attributes; len = used
	jids     []jid.JID
	nodes    []Node
	maxDepth int
	// headerOnly stops after the root's tag and attributes.
	headerOnly bool
}

func (d *decoder) errf(err error, format string, args ...any) error {
	return fmt.Errorf("%w at offset %d: "+format, append([]any{err, d.pos}, args...)...)
}

func (d *decoder) remaining() int { return len(d.data) - d.pos }

func (d *decoder) byte() (byte, error) {
	if d.pos >= len(d.data) {
		return 0, d.errf(ErrTruncated, "want 1 byte")
	}
	b := d.data[d.pos]
	d.pos++
	return b, nil
}

func (d *decoder) take(n int) ([]byte, error) {
	if n < 0 || n > d.remaining() {
		return nil, d.errf(ErrTruncated, "want %d bytes, have %d", n, d.remaining())
	}
	b := d.data[d.pos : d.pos+n : d.pos+n]
	d.pos += n
	return b, nil
}

func (d *decoder) uint16() (uint16, error) {
	b, err := d.take(2)
	if err != nil {
		return 0, err
	}
	return uint16(b[0])<<8 | uint16(b[1]), nil
}

// listSize reads the count of a list whose tag byte was already read.
func (d *decoder) listSize(tag byte) (int, error) {
	switch tag {
	case tagListEmpty:
		return 0, nil
	case tagList8:
		b, err := d.byte()
		return int(b), err
	case tagList16:
		n, err := d.uint16()
		return int(n), err
	}
	return 0, d.errf(ErrInvalidNode, "tag %#02x is not a list", tag)
}

// binaryLen reads the length of a BINARY_8/20/32 whose tag was read and
// checks it against the remaining input.
func (d *decoder) binaryLen(tag byte) (int, error) {
	var n int
	switch tag {
	case tagBinary8:
		b, err := d.byte()
		if err != nil {
			return 0, err
		}
		n = int(b)
	case tagBinary20:
		b, err := d.take(3)
		if err != nil {
			return 0, err
		}
		n = int(b[0]&0x0F)<<16 | int(b[1])<<8 | int(b[2])
	case tagBinary32:
		b, err := d.take(4)
		if err != nil {
			return 0, err
		}
		n64 := uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
		if n64 > uint64(d.remaining()) {
			return 0, d.errf(ErrTruncated, "binary of %d bytes, have %d", n64, d.remaining())
		}
		n = int(n64)
	}
	if n > d.remaining() {
		return 0, d.errf(ErrTruncated, "binary of %d bytes, have %d", n, d.remaining())
	}
	return n, nil
}

// str makes a string over bytes of the private input copy (or arena),
// which are never modified afterwards.
func str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// readValue reads a string or JID value whose tag byte is tag; a JID is
// returned as a pointer into the decoder's JID arena. allowJID false makes
// a JID an error (tags, keys and JID parts are strings).
func (d *decoder) readValue(tag byte, allowJID bool) (string, *jid.JID, error) {
	switch {
	case tag == tagListEmpty:
		return "", nil, nil
	case tag < tagDict0:
		if int(tag) >= len(singleByteTokens) {
			return "", nil, d.errf(ErrTokenIndex, "single-byte token %d", tag)
		}
		return singleByteTokens[tag], nil, nil
	case tag <= tagDict3:
		i, err := d.byte()
		if err != nil {
			return "", nil, err
		}
		dict := doubleByteTokens[tag-tagDict0]
		if int(i) >= len(dict) {
			return "", nil, d.errf(ErrTokenIndex, "dictionary %d index %d", tag-tagDict0, i)
		}
		return dict[i], nil, nil
	case tag < tagInteropJID:
		return "", nil, d.errf(ErrUnknownTag, "%#02x", tag)
	case tag == tagInteropJID, tag == tagFBJID, tag == tagADJID, tag == tagJIDPair:
		if !allowJID {
			return "", nil, d.errf(ErrInvalidNode, "JID where a string is required")
		}
		j, err := d.readJID(tag)
		if err != nil {
			return "", nil, err
		}
		return "", d.newJID(j), nil
	case tag == tagList8, tag == tagList16:
		return "", nil, d.errf(ErrInvalidNode, "list where a value is required")
	case tag == tagHex8, tag == tagNibble8:
		s, err := d.readPacked(tag == tagHex8)
		return s, nil, err
	default: // BINARY_8/20/32
		n, err := d.binaryLen(tag)
		if err != nil {
			return "", nil, err
		}
		b, _ := d.take(n)
		return str(b), nil, nil
	}
}

// newJID stores j in the reserved JIDs, or in a JID of its own when none
// is left.
func (d *decoder) newJID(j jid.JID) *jid.JID {
	if len(d.jids) == cap(d.jids) {
		p := new(jid.JID)
		*p = j
		return p
	}
	d.jids = append(d.jids, j)
	return &d.jids[len(d.jids)-1]
}

// readString reads a string value (no JIDs, no lists).
func (d *decoder) readString() (string, error) {
	tag, err := d.byte()
	if err != nil {
		return "", err
	}
	s, _, err := d.readValue(tag, false)
	return s, err
}

func (d *decoder) readPacked(hex bool) (string, error) {
	l, err := d.byte()
	if err != nil {
		return "", err
	}
	n, odd := int(l&0x7F), l&0x80 != 0
	if odd && n == 0 {
		return "", d.errf(ErrInvalidPacked, "odd flag on empty string")
	}
	src, err := d.take(n)
	if err != nil {
		return "", err
	}
	if cap(d.arena)-len(d.arena) < 2*n {
		d.arena = make([]byte, 0, 2*n)
	}
	start := len(d.arena)
	out, ok := unpack(d.arena, src, hex, odd)
	if !ok {
		return "", d.errf(ErrInvalidPacked, "bad nibble")
	}
	d.arena = out
	return str(out[start:]), nil
}

func (d *decoder) readJID(tag byte) (jid.JID, error) {
	switch tag {
	case tagJIDPair:
		user, err := d.readString()
		if err != nil {
			return jid.JID{}, err
		}
		server, err := d.readString()
		if err != nil {
			return jid.JID{}, err
		}
		if server == "" {
			return jid.JID{}, d.errf(ErrInvalidJID, "empty server")
		}
		return jid.JID{User: user, Server: server}, nil
	case tagADJID:
		hdr, err := d.take(2)
		if err != nil {
			return jid.JID{}, err
		}
		user, err := d.readString()
		if err != nil {
			return jid.JID{}, err
		}
		return jid.NewADJID(user, hdr[0], uint16(hdr[1])), nil
	case tagFBJID, tagInteropJID:
		user, err := d.readString()
		if err != nil {
			return jid.JID{}, err
		}
		j := jid.JID{User: user}
		if j.Device, err = d.uint16(); err != nil {
			return jid.JID{}, err
		}
		want := jid.MessengerServer
		if tag == tagInteropJID {
			want = jid.InteropServer
			if j.Integrator, err = d.uint16(); err != nil {
				return jid.JID{}, err
			}
		}
		if j.Server, err = d.readString(); err != nil {
			return jid.JID{}, err
		}
		if j.Server != want {
			return jid.JID{}, d.errf(ErrInvalidJID, "server %q, want %q", j.Server, want)
		}
		return j, nil
	}
	return jid.JID{}, d.errf(ErrUnknownTag, "%#02x", tag)
}

// allocAttrs returns room for k attributes: reserved ones, or a slice of
// their own when not enough are left. k was checked against the input.
func (d *decoder) allocAttrs(k int) []Attr {
	if cap(d.attrs)-len(d.attrs) < k {
		return make([]Attr, k)
	}
	start := len(d.attrs)
	d.attrs = d.attrs[:start+k]
	return d.attrs[start : start+k : start+k]
}

// allocNodes returns k zero nodes for one child list, like allocAttrs.
func (d *decoder) allocNodes(k int) []Node {
	if cap(d.nodes)-len(d.nodes) < k {
		return make([]Node, k)
	}
	start := len(d.nodes)
	d.nodes = d.nodes[:start+k]
	return d.nodes[start : start+k : start+k]
}

func (d *decoder) readNode(n *Node, depth int) error {
	if depth >= d.maxDepth {
		return d.errf(ErrTooDeep, "more than %d levels", d.maxDepth)
	}
	tag, err := d.byte()
	if err != nil {
		return err
	}
	size, err := d.listSize(tag)
	if err != nil {
		return err
	}
	if size == 0 {
		return d.errf(ErrInvalidNode, "empty node list")
	}
	if n.Tag, err = d.readString(); err != nil {
		return err
	}
	if n.Tag == "" {
		return d.errf(ErrInvalidNode, "empty tag")
	}
	k := (size - 1) / 2
	if 2*k > d.remaining() {
		return d.errf(ErrTruncated, "%d attributes, %d bytes left", k, d.remaining())
	}
	if k > 0 {
		attrs := d.allocAttrs(k)
		kept := 0
		for i := 0; i < k; i++ {
			a := &attrs[kept]
			if a.Key, err = d.readString(); err != nil {
				return err
			}
			if a.Key == "" {
				return d.errf(ErrInvalidNode, "empty attribute key")
			}
			vt, err := d.byte()
			if err != nil {
				return err
			}
			if a.Value, a.jid, err = d.readValue(vt, true); err != nil {
				return err
			}
			if !a.empty() {
				kept++
			} else {
				*a = Attr{}
			}
		}
		if kept > 0 {
			n.Attrs = attrs[:kept:kept]
		}
	}
	if size%2 == 1 || d.headerOnly {
		return nil
	}
	return d.readContent(n, depth)
}

func (d *decoder) readContent(n *Node, depth int) error {
	tag, err := d.byte()
	if err != nil {
		return err
	}
	switch tag {
	case tagListEmpty:
		return nil
	case tagList8, tagList16:
		count, err := d.listSize(tag)
		if err != nil {
			return err
		}
		if count == 0 {
			return nil
		}
		// Every child takes at least 3 bytes (list header and a tag).
		if 3*count > d.remaining() {
			return d.errf(ErrTruncated, "%d children, %d bytes left", count, d.remaining())
		}
		children := d.allocNodes(count)
		for i := range children {
			if err := d.readNode(&children[i], depth+1); err != nil {
				return err
			}
		}
		n.kind, n.children = KindChildren, children
	case tagBinary8, tagBinary20, tagBinary32:
		size, err := d.binaryLen(tag)
		if err != nil {
			return err
		}
		b, _ := d.take(size)
		n.kind, n.bytes = KindBytes, b
	default:
		s, j, err := d.readValue(tag, true)
		if err != nil {
			return err
		}
		if j != nil {
			n.kind, n.jid = KindJID, j
		} else {
			n.kind, n.text = KindString, s
		}
	}
	return nil
}
