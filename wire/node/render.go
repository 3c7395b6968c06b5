package node

import (
	"encoding/hex"
	"log/slog"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits of the text rendering used in logs.
const (
	renderMaxBytes    = 16   // bytes of binary content shown (as hex)
	renderMaxText     = 64   // characters of a string value shown
	renderMaxChildren = 16   // children shown per node
	renderMaxDepth    = 8    // nesting shown
	renderMaxLen      = 4096 // total output, roughly
)

// String renders n as XML-like text for logs. Binary content is shown as
// its length and a short hex prefix; long strings, deep nesting and long
// child lists are cut, so the output stays small whatever the node.
func (n Node) String() string {
	var b strings.Builder
	renderNode(&b, &n, 0)
	return b.String()
}

// LogValue implements slog.LogValuer: the text is rendered only when a log
// line is actually written.
func (n Node) LogValue() slog.Value {
	return slog.StringValue(n.String())
}

func renderNode(b *strings.Builder, n *Node, depth int) {
	b.WriteByte('<')
	writeText(b, n.Tag, renderMaxText)
	for i := range n.Attrs {
		if b.Len() > renderMaxLen {
			b.WriteString(" …")
			break
		}
		a := &n.Attrs[i]
		b.WriteByte(' ')
		writeText(b, a.Key, renderMaxText)
		b.WriteString(`="`)
		writeText(b, a.String(), renderMaxText)
		b.WriteByte('"')
	}
	switch n.kind {
	case KindNone:
		b.WriteString("/>")
		return
	case KindChildren:
		b.WriteByte('>')
		if depth+1 >= renderMaxDepth {
			b.WriteString("<!-- ")
			b.WriteString(strconv.Itoa(len(n.children)))
			b.WriteString(" children -->")
			break
		}
		for i := range n.children {
			if i == renderMaxChildren || b.Len() > renderMaxLen {
				b.WriteString("<!-- ")
				b.WriteString(strconv.Itoa(len(n.children) - i))
				b.WriteString(" more -->")
				break
			}
			renderNode(b, &n.children[i], depth+1)
		}
	case KindBytes:
		b.WriteString("><!-- ")
		b.WriteString(strconv.Itoa(len(n.bytes)))
		b.WriteString(" bytes: ")
		shown := n.bytes[:min(len(n.bytes), renderMaxBytes)]
		b.WriteString(hex.EncodeToString(shown))
		if len(shown) < len(n.bytes) {
			b.WriteString("…")
		}
		b.WriteString(" -->")
	case KindString:
		b.WriteByte('>')
		writeText(b, n.text, renderMaxText)
	case KindJID:
		b.WriteByte('>')
		writeText(b, n.jid.String(), renderMaxText) // n.jid set for KindJID
	}
	b.WriteString("</")
	writeText(b, n.Tag, renderMaxText)
	b.WriteByte('>')
}

// writeText writes at most limit characters of s, escaping XML specials
// and control or invalid bytes.
func writeText(b *strings.Builder, s string, limit int) {
	count := 0
	for i := 0; i < len(s); {
		if count == limit {
			b.WriteString("…")
			return
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteString(`\x`)
			b.WriteString(hex.EncodeToString([]byte{s[i]}))
		case r == '<':
			b.WriteString("&lt;")
		case r == '>':
			b.WriteString("&gt;")
		case r == '&':
			b.WriteString("&amp;")
		case r == '"':
			b.WriteString("&quot;")
		case r < 0x20 || r == 0x7F:
			b.WriteString(`\x`)
			b.WriteString(hex.EncodeToString([]byte{byte(r)}))
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
		count++
	}
}
