package node

import "github.com/wafleet/wafleet/wire/jid"

// sizes is what decoding a node takes besides its input: the nodes of its
// child lists, its attributes (those with an empty value included), its
// JIDs and the bytes its packed strings unpack to.
type sizes struct {
	nodes, attrs, jids, packed int
}

// measure walks the node in data without building it and returns what
// decoding it takes, or the zero sizes when the walk fails. It checks only
// what the walk needs (lengths, counts, nesting, which tags may appear
// where); the decoder checks the rest and reports every error.
func (dc Decoder) measure(data []byte) sizes {
	m := measurer{data: data, maxDepth: dc.maxDepth()}
	if m.node(0, 0) != len(data) {
		return sizes{}
	}
	return m.sizes
}

// A measurer walks an encoded node. Each step takes the position to read
// at and returns the position after what it read, or -1 when the input
// ends early or holds what the step cannot walk; a step given -1 returns
// -1, so steps compose.
type measurer struct {
	data     []byte
	maxDepth int
	sizes
}

// skip passes n bytes.
func (m *measurer) skip(p, n int) int {
	if p < 0 || n < 0 || n > len(m.data)-p {
		return -1
	}
	return p + n
}

// number reads an n-byte big-endian number (n <= 4).
func (m *measurer) number(p, n int) (int, int) {
	if p < 0 || n > len(m.data)-p {
		return 0, -1
	}
	v := 0
	for _, b := range m.data[p : p+n] {
		v = v<<8 | int(b)
	}
	return v, p + n
}

func (m *measurer) node(p, depth int) int {
	if depth >= m.maxDepth {
		return -1
	}
	size, p := m.list(p)
	if size == 0 {
		return -1
	}
	p = m.value(p, false) // tag
	k := (size - 1) / 2
	m.attrs += k
	for range k {
		if p = m.value(m.value(p, false), true); p < 0 {
			return -1
		}
	}
	if size%2 == 1 || p < 0 {
		return p
	}
	if p >= len(m.data) || m.data[p] != tagList8 && m.data[p] != tagList16 {
		return m.value(p, true)
	}
	count, p := m.list(p)
	m.nodes += count
	for range count {
		if p = m.node(p, depth+1); p < 0 {
			return -1
		}
	}
	return p
}

// list reads a list header and returns its count.
func (m *measurer) list(p int) (int, int) {
	if uint(p) >= uint(len(m.data)) {
		return 0, -1
	}
	switch m.data[p] {
	case tagListEmpty:
		return 0, p + 1
	case tagList8:
		return m.number(p+1, 1)
	case tagList16:
		return m.number(p+1, 2)
	}
	return 0, -1
}

// value passes a string, or a JID when allowJID, and counts what it takes.
func (m *measurer) value(p int, allowJID bool) int {
	if uint(p) >= uint(len(m.data)) {
		return -1
	}
	tag := m.data[p]
	p++
	switch {
	case tag < tagDict0:
		return p
	case tag <= tagDict3:
		return m.skip(p, 1)
	case tag == tagHex8, tag == tagNibble8:
		if p >= len(m.data) {
			return -1
		}
		n := int(m.data[p] & 0x7F)
		m.packed += 2 * n
		return m.skip(p+1, n)
	case tag == tagBinary8:
		n, p := m.number(p, 1)
		return m.skip(p, n)
	case tag == tagBinary20:
		n, p := m.number(p, 3)
		return m.skip(p, n&0x0FFFFF)
	case tag == tagBinary32:
		n, p := m.number(p, 4)
		return m.skip(p, n)
	case !allowJID:
		return -1
	}
	m.jids++
	// A JID's parts are strings: a JID never nests.
	switch tag {
	case tagJIDPair: // user, server
		return m.value(m.value(p, false), false)
	case tagADJID: // domain type and device bytes, user
		return m.value(m.skip(p, 2), false)
	case tagFBJID: // user, 2-byte device, server
		return m.value(m.skip(m.value(p, false), 2), false)
	case tagInteropJID: // user, 2-byte device and integrator, server
		return m.value(m.skip(m.value(p, false), 4), false)
	}
	return -1
}

// reserve returns room for the nodes, attributes and JIDs of s: a small
// stanza's all come from one allocation (a block), a larger one's from one
// allocation each, of exactly the sizes measured.
func reserve(s sizes) ([]Node, []Attr, []jid.JID) {
	switch {
	case s.nodes == 0 && s.attrs == 0 && s.jids == 0:
		return nil, nil, nil
	case s.nodes <= len(block{}.nodes) && s.attrs <= len(block{}.attrs) && s.jids <= len(block{}.jids):
		b := new(block)
		return b.nodes[:0], b.attrs[:0], b.jids[:0]
	}
	return make([]Node, 0, s.nodes), make([]Attr, 0, s.attrs), make([]jid.JID, 0, s.jids)
}

// A block holds the nodes, attributes and JIDs of a stanza with at most one
// child, seven attributes and two JIDs (an <ack>, a <receipt>, a <message>
// with one <enc>), so that it decodes in two allocations: the copy of the
// input and a block. At 480 bytes it is a small object without a type
// header; larger blocks cost more than the separate allocations they save
// (BENCHMARKS.md, "Binary node codec").
type block struct {
	nodes [1]Node
	attrs [7]Attr
	jids  [2]jid.JID
}
