package node

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// FuzzDecode decodes arbitrary payloads (flags byte included). Decoding
// never panics; what decodes was measured, to room enough for all of it;
// a decoded node re-encodes, and decodes again to an equal node.
func FuzzDecode(f *testing.F) {
	v := loadVectors(f)
	for _, tv := range v.Nodes {
		b, _ := hex.DecodeString(tv.Hex)
		f.Add(b)
	}
	b, _ := hex.DecodeString(v.Compressed.Hex)
	f.Add(b)
	dec := Decoder{MaxInflatedSize: 1 << 20}
	f.Fuzz(func(t *testing.T, payload []byte) {
		h, herr := dec.DecodePayloadHeader(payload)
		n, err := dec.DecodePayload(payload)
		if err != nil {
			return
		}
		// What decodes whole has a header: its tag and attributes.
		if herr != nil || !h.Equal(New(n.Tag, n.Attrs...)) {
			t.Fatalf("header %v, %v of a node that decodes as %v", h, herr, n)
		}
		if payload[0]&0x02 == 0 {
			m, have := dec.measure(payload[1:]), sizesOf(n)
			if m.nodes != have.nodes || m.attrs < have.attrs || m.jids < have.jids {
				t.Fatalf("measured %+v for a node holding %+v", m, have)
			}
		}
		_ = n.String()
		enc, err := Marshal(n)
		if err != nil {
			t.Fatalf("re-encode of decoded node: %v\n%v", err, n)
		}
		again, err := Unmarshal(enc)
		if err != nil {
			t.Fatalf("decode of re-encoded node: %v\n%x", err, enc)
		}
		if !equalAfterReencode(n, again) {
			t.Fatalf("node changed by re-encoding\nfirst  %v\nsecond %v", n, again)
		}
	})
}

// equalAfterReencode is Equal except for the one change re-encoding may
// make: string content longer than the encoder packs (a packed string of
// 128–254 characters) is written raw and so comes back as bytes.
func equalAfterReencode(a, b Node) bool {
	if a.kind == KindString && b.kind == KindBytes && len(a.text) > maxPackedChars {
		if !bytes.Equal([]byte(a.text), b.bytes) {
			return false
		}
		a, b = a.WithoutContent(), b.WithoutContent()
	}
	if a.kind == KindChildren && b.kind == KindChildren && len(a.children) == len(b.children) {
		for i := range a.children {
			if !equalAfterReencode(a.children[i], b.children[i]) {
				return false
			}
		}
		a, b = a.WithoutContent(), b.WithoutContent()
	}
	return a.Equal(b)
}

// sizesOf counts the child nodes, attributes and JIDs of a decoded node.
func sizesOf(n Node) sizes {
	s := sizes{attrs: len(n.Attrs), nodes: len(n.children)}
	for _, a := range n.Attrs {
		if a.IsJID() {
			s.jids++
		}
	}
	if n.kind == KindJID {
		s.jids++
	}
	for _, c := range n.children {
		cs := sizesOf(c)
		s.nodes, s.attrs, s.jids = s.nodes+cs.nodes, s.attrs+cs.attrs, s.jids+cs.jids
	}
	return s
}
