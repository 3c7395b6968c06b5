package node

import (
	"fmt"
	"math"

	"github.com/wafleet/wafleet/wire/jid"
)

// DefaultMaxDepth is the deepest nesting of child lists the encoder writes
// and the decoder accepts by default.
const DefaultMaxDepth = 64

// Marshal returns the binary form of n (without the payload flags byte).
func Marshal(n Node) ([]byte, error) {
	return AppendNode(make([]byte, 0, 128), &n)
}

// MarshalPayload returns the flags byte 0x00 followed by the binary form of
// n: the plaintext of a transport frame.
func MarshalPayload(n Node) ([]byte, error) {
	return AppendPayload(make([]byte, 0, 128), &n)
}

// AppendPayload appends the flags byte 0x00 (uncompressed) and n to dst.
func AppendPayload(dst []byte, n *Node) ([]byte, error) {
	return AppendNode(append(dst, 0x00), n)
}

// AppendNode appends the binary form of n to dst and returns the extended
// buffer. On error the returned slice is dst as it was given.
func AppendNode(dst []byte, n *Node) ([]byte, error) {
	out, err := appendNode(dst, n, 0)
	if err != nil {
		return dst, err
	}
	return out, nil
}

func appendNode(dst []byte, n *Node, depth int) ([]byte, error) {
	if depth >= DefaultMaxDepth {
		return dst, ErrTooDeep
	}
	if n.Tag == "" {
		return dst, fmt.Errorf("%w: empty tag", ErrInvalidNode)
	}
	attrs := 0
	for i := range n.Attrs {
		if n.Attrs[i].Key == "" {
			return dst, fmt.Errorf("%w: <%s> attribute with empty key", ErrInvalidNode, n.Tag)
		}
		if !n.Attrs[i].empty() {
			attrs++
		}
	}
	size := 1 + 2*attrs
	hasContent := n.kind != KindNone && !(n.kind == KindChildren && len(n.children) == 0)
	if hasContent {
		size++
	}
	if size > math.MaxUint16 {
		return dst, fmt.Errorf("%w: <%s> has %d attributes", ErrTooLarge, n.Tag, attrs)
	}
	dst = appendListHeader(dst, size)
	dst = appendString(dst, n.Tag)
	var err error
	for i := range n.Attrs {
		a := &n.Attrs[i]
		if a.empty() {
			continue
		}
		dst = appendString(dst, a.Key)
		if a.jid != nil {
			if dst, err = appendJID(dst, *a.jid); err != nil {
				return dst, fmt.Errorf("<%s %s>: %w", n.Tag, a.Key, err)
			}
		} else {
			dst = appendString(dst, a.Value)
		}
	}
	if !hasContent {
		return dst, nil
	}
	switch n.kind {
	case KindChildren:
		if len(n.children) > math.MaxUint16 {
			return dst, fmt.Errorf("%w: <%s> has %d children", ErrTooLarge, n.Tag, len(n.children))
		}
		dst = appendListHeader(dst, len(n.children))
		for i := range n.children {
			if dst, err = appendNode(dst, &n.children[i], depth+1); err != nil {
				return dst, err
			}
		}
	case KindBytes:
		if uint64(len(n.bytes)) > math.MaxUint32 {
			return dst, fmt.Errorf("%w: <%s> content of %d bytes", ErrTooLarge, n.Tag, len(n.bytes))
		}
		dst = appendBinaryHeader(dst, len(n.bytes))
		dst = append(dst, n.bytes...)
	case KindString:
		dst = appendString(dst, n.text)
	case KindJID:
		if n.jid == nil || n.jid.IsEmpty() {
			return dst, fmt.Errorf("%w: <%s> content is an empty JID", ErrInvalidJID, n.Tag)
		}
		if dst, err = appendJID(dst, *n.jid); err != nil {
			return dst, fmt.Errorf("<%s> content: %w", n.Tag, err)
		}
	default:
		return dst, fmt.Errorf("%w: <%s> content kind %d", ErrInvalidNode, n.Tag, n.kind)
	}
	return dst, nil
}

func appendListHeader(dst []byte, n int) []byte {
	if n < 256 {
		return append(dst, tagList8, byte(n))
	}
	return append(dst, tagList16, byte(n>>8), byte(n))
}

func appendBinaryHeader(dst []byte, n int) []byte {
	switch {
	case n < 1<<8:
		return append(dst, tagBinary8, byte(n))
	case n < 1<<20:
		return append(dst, tagBinary20, byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, tagBinary32, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// appendString writes s by the encoder choice order of PROTOCOL.md 6.5:
// token, double-byte token, nibble, hex, raw. Strings longer than 4 GiB
// cannot occur in attribute keys/values built by this program.
func appendString(dst []byte, s string) []byte {
	if c, ok := lookupToken(s); ok {
		if c.dict == 0 {
			return append(dst, c.b)
		}
		return append(dst, tagDict0+c.dict-1, c.b)
	}
	if k := packKind(s); k != packNone {
		return appendPacked(dst, s, k)
	}
	dst = appendBinaryHeader(dst, len(s))
	return append(dst, s...)
}

// appendJID writes j in the form chosen by its server (PROTOCOL.md 6.7).
// JIDs whose parts have no wire form (device > 255 on an AD server, a device
// on a JID_PAIR server, an integrator outside interop) are an error rather
// than silently truncated.
func appendJID(dst []byte, j jid.JID) ([]byte, error) {
	if j.Server == "" {
		return dst, fmt.Errorf("%w: empty server", ErrInvalidJID)
	}
	if j.Integrator != 0 && j.Server != jid.InteropServer {
		return dst, fmt.Errorf("%w: integrator on %s", ErrInvalidJID, j.Server)
	}
	switch j.Server {
	case jid.MessengerServer:
		if j.RawAgent != 0 {
			return dst, fmt.Errorf("%w: agent on %s", ErrInvalidJID, j.Server)
		}
		dst = append(dst, tagFBJID)
		dst = appendString(dst, j.User)
		dst = append(dst, byte(j.Device>>8), byte(j.Device))
		return appendString(dst, j.Server), nil
	case jid.InteropServer:
		if j.RawAgent != 0 {
			return dst, fmt.Errorf("%w: agent on %s", ErrInvalidJID, j.Server)
		}
		dst = append(dst, tagInteropJID)
		dst = appendString(dst, j.User)
		dst = append(dst, byte(j.Device>>8), byte(j.Device), byte(j.Integrator>>8), byte(j.Integrator))
		return appendString(dst, j.Server), nil
	}
	domain, ad := j.DomainType()
	hosted := j.Server == jid.HostedServer || j.Server == jid.HostedLIDServer
	if ad && (j.Device > 0 || j.RawAgent > 0 || hosted) {
		if j.Device > 0xFF {
			return dst, fmt.Errorf("%w: device %d does not fit AD_JID", ErrInvalidJID, j.Device)
		}
		dst = append(dst, tagADJID, domain, byte(j.Device))
		return appendString(dst, j.User), nil
	}
	if j.Device > 0 || j.RawAgent > 0 {
		return dst, fmt.Errorf("%w: device or agent on %s", ErrInvalidJID, j.Server)
	}
	dst = append(dst, tagJIDPair)
	if j.User == "" {
		dst = append(dst, tagListEmpty)
	} else {
		dst = appendString(dst, j.User)
	}
	return appendString(dst, j.Server), nil
}
