package node

import (
	"bytes"
	"iter"
	"strconv"

	"github.com/wafleet/wafleet/wire/jid"
)

// Kind says what a node's content is.
type Kind uint8

// Content kinds.
const (
	KindNone     Kind = iota // no content
	KindChildren             // one or more child nodes
	KindBytes                // raw bytes (BINARY_8/20/32 on the wire)
	KindString               // a string value (token or packed string on the wire)
	KindJID                  // a JID value
)

func (k Kind) String() string {
	switch k {
	case KindNone:
		return "none"
	case KindChildren:
		return "children"
	case KindBytes:
		return "bytes"
	case KindString:
		return "string"
	case KindJID:
		return "jid"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Attr is one attribute. Its value is the string Value or, for attributes
// made with JIDAttr (or decoded from a JID encoding), a JID; the two are
// distinct on the wire and clients depend on the difference (PROTOCOL.md
// 6.8). Attributes whose value is "" (or an empty JID) are never written.
type Attr struct {
	Key   string
	Value string // the value when the attribute is not a JID

	jid *jid.JID // the value when the attribute is a JID; never modified
}

// StrAttr returns a string-valued attribute.
func StrAttr(key, value string) Attr { return Attr{Key: key, Value: value} }

// JIDAttr returns a JID-valued attribute.
func JIDAttr(key string, j jid.JID) Attr { return Attr{Key: key, jid: &j} }

// IntAttr returns a string-valued attribute holding the decimal form of v.
func IntAttr(key string, v int64) Attr { return Attr{Key: key, Value: strconv.FormatInt(v, 10)} }

// IsJID reports whether the value is a JID.
func (a Attr) IsJID() bool { return a.jid != nil }

// JID returns the value if it is a JID.
func (a Attr) JID() (jid.JID, bool) {
	if a.jid == nil {
		return jid.JID{}, false
	}
	return *a.jid, true
}

// empty reports whether the attribute has no value (it is then not written).
func (a Attr) empty() bool {
	if a.jid != nil {
		return a.jid.IsEmpty()
	}
	return a.Value == ""
}

// String returns the value as text: the string, or the JID's string form.
func (a Attr) String() string {
	if a.jid != nil {
		return a.jid.String()
	}
	return a.Value
}

// equal compares key, value type and value.
func (a Attr) equal(b Attr) bool {
	if a.Key != b.Key || (a.jid == nil) != (b.jid == nil) {
		return false
	}
	if a.jid != nil {
		return *a.jid == *b.jid
	}
	return a.Value == b.Value
}

// Node is one element: a tag, attributes in order, and content.
//
// The zero Node is invalid (empty tag). Build nodes with New and the With*
// methods; read content with Kind, Children, Bytes, Text and ContentJID.
type Node struct {
	Tag   string
	Attrs []Attr

	kind     Kind
	children []Node
	bytes    []byte
	text     string
	jid      *jid.JID // never modified once set
}

// New returns a node with the given tag and attributes and no content.
func New(tag string, attrs ...Attr) Node {
	return Node{Tag: tag, Attrs: attrs}
}

// IQ returns an <iq> with id, to, type and (when not "") xmlns attributes
// and the given children.
func IQ(id string, to jid.JID, typ, xmlns string, children ...Node) Node {
	attrs := make([]Attr, 0, 4)
	attrs = append(attrs, StrAttr("id", id), JIDAttr("to", to), StrAttr("type", typ))
	if xmlns != "" {
		attrs = append(attrs, StrAttr("xmlns", xmlns))
	}
	return New("iq", attrs...).WithChildren(children...)
}

// WithChildren returns n with the children as content. No children means
// no content (an empty child list is not distinguishable on the wire).
func (n Node) WithChildren(children ...Node) Node {
	n.clearContent()
	if len(children) > 0 {
		n.kind, n.children = KindChildren, children
	}
	return n
}

// WithBytes returns n with raw byte content (not copied).
func (n Node) WithBytes(b []byte) Node {
	n.clearContent()
	if b == nil {
		b = []byte{}
	}
	n.kind, n.bytes = KindBytes, b
	return n
}

// WithText returns n with string content. Note that a string that is not a
// token and cannot be nibble/hex packed is written as raw bytes and decodes
// as byte content (PROTOCOL.md 6.4).
func (n Node) WithText(s string) Node {
	n.clearContent()
	n.kind, n.text = KindString, s
	return n
}

// WithJID returns n with JID content.
func (n Node) WithJID(j jid.JID) Node {
	n.clearContent()
	n.kind, n.jid = KindJID, &j
	return n
}

// WithoutContent returns n with no content.
func (n Node) WithoutContent() Node {
	n.clearContent()
	return n
}

// WithAttr returns n with the attribute set: an existing attribute of the
// same key is replaced in place, otherwise a is appended. The attribute
// slice is copied so n's original is not modified.
func (n Node) WithAttr(a Attr) Node {
	attrs := make([]Attr, len(n.Attrs), len(n.Attrs)+1)
	copy(attrs, n.Attrs)
	for i := range attrs {
		if attrs[i].Key == a.Key {
			attrs[i] = a
			n.Attrs = attrs
			return n
		}
	}
	n.Attrs = append(attrs, a)
	return n
}

func (n *Node) clearContent() {
	n.kind, n.children, n.bytes, n.text, n.jid = KindNone, nil, nil, "", nil
}

// Kind returns the kind of n's content.
func (n Node) Kind() Kind { return n.kind }

// Children returns the child nodes (nil unless Kind is KindChildren).
func (n Node) Children() []Node { return n.children }

// Bytes returns the byte content, if the content is bytes.
func (n Node) Bytes() ([]byte, bool) { return n.bytes, n.kind == KindBytes }

// Text returns the string content, if the content is a string.
func (n Node) Text() (string, bool) { return n.text, n.kind == KindString }

// ContentJID returns the JID content, if the content is a JID.
func (n Node) ContentJID() (jid.JID, bool) {
	if n.kind != KindJID {
		return jid.JID{}, false
	}
	return *n.jid, true
}

// Child returns the first child with the given tag.
func (n Node) Child(tag string) (*Node, bool) {
	for i := range n.children {
		if n.children[i].Tag == tag {
			return &n.children[i], true
		}
	}
	return nil, false
}

// ChildrenByTag yields the children with the given tag, in order.
func (n Node) ChildrenByTag(tag string) iter.Seq[*Node] {
	return func(yield func(*Node) bool) {
		for i := range n.children {
			if n.children[i].Tag == tag && !yield(&n.children[i]) {
				return
			}
		}
	}
}

// AttrInt returns the first attribute with the given key parsed as a
// decimal integer; false if it is missing, a JID or not a number.
func (n Node) AttrInt(key string) (int64, bool) {
	a, ok := n.GetAttr(key)
	if !ok || a.IsJID() {
		return 0, false
	}
	v, err := strconv.ParseInt(a.Value, 10, 64)
	return v, err == nil
}

// GetAttr returns the first attribute with the given key.
func (n Node) GetAttr(key string) (Attr, bool) {
	for _, a := range n.Attrs {
		if a.Key == key {
			return a, true
		}
	}
	return Attr{}, false
}

// Attr returns the value of the first attribute with the given key as
// text (a JID value in its string form).
func (n Node) Attr(key string) (string, bool) {
	for i := range n.Attrs {
		if n.Attrs[i].Key == key {
			return n.Attrs[i].String(), true
		}
	}
	return "", false
}

// AttrJID returns the value of the first attribute with the given key if
// that value is a JID. A string value is not parsed: clients tell the two
// apart (PROTOCOL.md 6.8).
func (n Node) AttrJID(key string) (jid.JID, bool) {
	for i := range n.Attrs {
		if n.Attrs[i].Key == key {
			return n.Attrs[i].JID()
		}
	}
	return jid.JID{}, false
}

// Equal reports whether n and o have the same tag, the same attributes in
// the same order (value types included) and equal content. Nil and empty
// byte content are equal.
func (n Node) Equal(o Node) bool {
	if n.Tag != o.Tag || len(n.Attrs) != len(o.Attrs) || n.kind != o.kind {
		return false
	}
	for i := range n.Attrs {
		if !n.Attrs[i].equal(o.Attrs[i]) {
			return false
		}
	}
	switch n.kind {
	case KindChildren:
		if len(n.children) != len(o.children) {
			return false
		}
		for i := range n.children {
			if !n.children[i].Equal(o.children[i]) {
				return false
			}
		}
	case KindBytes:
		return bytes.Equal(n.bytes, o.bytes)
	case KindString:
		return n.text == o.text
	case KindJID:
		return *n.jid == *o.jid
	}
	return true
}
