package node

import (
	"bytes"
	"compress/zlib"
	"encoding/hex"
	"log/slog"
	"strings"
	"testing"

	"github.com/wafleet/wafleet/wire/jid"
)

func TestIQBuilderMatchesWorkedExample(t *testing.T) {
	// PROTOCOL.md 6.9 with the attribute order of that example.
	n := New("iq", JIDAttr("to", jid.ServerJID), StrAttr("id", "1234567890"), StrAttr("type", "result"))
	got, err := MarshalPayload(n)
	if err != nil {
		t.Fatal(err)
	}
	if want := "00f8071911fa000308ff05123456789004" + "14"; hex.EncodeToString(got) != want {
		t.Fatalf("got %x, want %s", got, want)
	}
	iq := IQ("1234567890", jid.ServerJID, "get", "w:p", New("ping"))
	if id, _ := iq.Attr("id"); id != "1234567890" {
		t.Fatalf("id = %q", id)
	}
	if x, _ := iq.Attr("xmlns"); x != "w:p" {
		t.Fatalf("xmlns = %q", x)
	}
	if _, ok := iq.Child("ping"); !ok {
		t.Fatal("no ping child")
	}
	if len(IQ("1", jid.ServerJID, "get", "").Attrs) != 3 {
		t.Fatal("empty xmlns should not be added")
	}
}

func TestAccessors(t *testing.T) {
	dev := jid.JID{User: "15551234567", Device: 5, Server: jid.DefaultUserServer}
	n := New("device", JIDAttr("jid", dev), StrAttr("name", "x"), IntAttr("t", 42)).
		WithChildren(New("a").WithBytes([]byte{1, 2}), New("b").WithText("hi"), New("c").WithJID(dev), New("a"))
	if v, ok := n.Attr("jid"); !ok || v != "15551234567:5@s.whatsapp.net" {
		t.Errorf("Attr(jid) = %q, %v", v, ok)
	}
	if j, ok := n.AttrJID("jid"); !ok || j != dev {
		t.Errorf("AttrJID(jid) = %v, %v", j, ok)
	}
	if _, ok := n.AttrJID("name"); ok {
		t.Error("AttrJID on a string attribute must be false")
	}
	if _, ok := n.Attr("missing"); ok {
		t.Error("Attr(missing) found")
	}
	if v, _ := n.Attr("t"); v != "42" {
		t.Errorf("IntAttr = %q", v)
	}
	if a, ok := n.GetAttr("name"); !ok || a.IsJID() || a.Value != "x" {
		t.Errorf("GetAttr = %+v, %v", a, ok)
	}
	if n.Kind() != KindChildren || len(n.Children()) != 4 {
		t.Fatalf("kind %v children %d", n.Kind(), len(n.Children()))
	}
	a, _ := n.Child("a")
	if b, ok := a.Bytes(); !ok || !bytes.Equal(b, []byte{1, 2}) {
		t.Errorf("Bytes = %x, %v", b, ok)
	}
	if _, ok := a.Text(); ok {
		t.Error("Text on bytes content")
	}
	b, _ := n.Child("b")
	if s, ok := b.Text(); !ok || s != "hi" {
		t.Errorf("Text = %q, %v", s, ok)
	}
	c, _ := n.Child("c")
	if j, ok := c.ContentJID(); !ok || j != dev {
		t.Errorf("ContentJID = %v, %v", j, ok)
	}
	var tags []byte
	for c := range n.ChildrenByTag("a") {
		tags = append(tags, byte(c.Kind()))
	}
	if len(tags) != 2 || Kind(tags[0]) != KindBytes || Kind(tags[1]) != KindNone {
		t.Errorf("ChildrenByTag(a) kinds = %v", tags)
	}
	for range n.ChildrenByTag("a") {
		break // stopping early must not panic
	}
	if v, ok := n.AttrInt("t"); !ok || v != 42 {
		t.Errorf("AttrInt(t) = %d, %v", v, ok)
	}
	if _, ok := n.AttrInt("name"); ok {
		t.Error("AttrInt(name) ok")
	}
	if _, ok := n.AttrInt("jid"); ok {
		t.Error("AttrInt(jid) ok")
	}
	if _, ok := n.Child("zzz"); ok {
		t.Error("Child(zzz) found")
	}
	if New("x").WithChildren().Kind() != KindNone {
		t.Error("no children must be no content")
	}
	if New("x").WithBytes(nil).Kind() != KindBytes {
		t.Error("nil bytes must still be byte content")
	}
	if n.WithoutContent().Kind() != KindNone {
		t.Error("WithoutContent")
	}

	m := n.WithAttr(StrAttr("name", "y")).WithAttr(StrAttr("new", "z"))
	if v, _ := m.Attr("name"); v != "y" || m.Attrs[1].Key != "name" || m.Attrs[3].Key != "new" {
		t.Errorf("WithAttr: %v", m.Attrs)
	}
	if v, _ := n.Attr("name"); v != "x" {
		t.Error("WithAttr modified the original")
	}
	for k := KindNone; k <= KindJID+1; k++ {
		if k.String() == "" {
			t.Errorf("Kind(%d).String() empty", k)
		}
	}
}

func TestEmptyValuesDropped(t *testing.T) {
	n := New("iq", StrAttr("id", ""), JIDAttr("to", jid.JID{}), StrAttr("type", "get"))
	enc, err := Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Unmarshal(enc)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(New("iq", StrAttr("type", "get"))) {
		t.Fatalf("got %v", got)
	}
	// Decoders drop empty values in any form: 00, FF 00 and FC 00.
	for _, h := range []string{"f805190400" + "0814", "f8051904ff00" + "0814", "f8051904fc00" + "0814"} {
		data, _ := hex.DecodeString(h)
		got, err := Unmarshal(data)
		if err != nil {
			t.Fatalf("%s: %v", h, err)
		}
		if !got.Equal(New("iq", StrAttr("id", "result"))) {
			t.Fatalf("%s: got %v", h, got)
		}
	}
}

func TestStringEncodings(t *testing.T) {
	tests := []struct {
		in   string
		want string // hex of the value
	}{
		{"", "ff00"},
		{"iq", "19"},
		{"passive", "ec18"},
		{"12345", "ff8312345f"},
		{"1234567890", "ff051234567890"},
		{"3EB0A1B2C3D4E5F6", "fb083eb0a1b2c3d4e5f6"},
		{"ABC", "fb82abcf"},
		{"1.2-3", "ff831b2a3f"},
		{"hello world", "fc0b68656c6c6f20776f726c64"},
		{"3eb0", "fc0433656230"},
		{strings.Repeat("1", 127), "ffc0" + strings.Repeat("11", 63) + "1f"},
		{strings.Repeat("1", 128), "fc80" + strings.Repeat("31", 128)},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got := hex.EncodeToString(appendString(nil, tt.in))
			if got != tt.want {
				t.Fatalf("appendString(%q) = %s, want %s", tt.in, got, tt.want)
			}
			// and it decodes back as an attribute value
			n := New("x", StrAttr("v", tt.in))
			enc, err := Marshal(n)
			if err != nil {
				t.Fatal(err)
			}
			back, err := Unmarshal(enc)
			if err != nil {
				t.Fatal(err)
			}
			if tt.in == "" {
				n.Attrs = nil
			}
			if !back.Equal(n) {
				t.Fatalf("round trip %v, want %v", back, n)
			}
		})
	}
}

func TestBinarySizes(t *testing.T) {
	for _, size := range []int{0, 1, 255, 256, 1<<20 - 1, 1 << 20} {
		b := bytes.Repeat([]byte{0xAB}, size)
		n := New("enc").WithBytes(b)
		enc, err := Marshal(n)
		if err != nil {
			t.Fatal(err)
		}
		var wantTag byte = tagBinary8
		if size >= 256 {
			wantTag = tagBinary20
		}
		if size >= 1<<20 {
			wantTag = tagBinary32
		}
		if enc[3] != wantTag {
			t.Errorf("size %d: tag %#x, want %#x", size, enc[3], wantTag)
		}
		back, err := Unmarshal(enc)
		if err != nil || !back.Equal(n) {
			t.Fatalf("size %d: round trip failed: %v", size, err)
		}
	}
}

func TestDecodedNodeDoesNotAliasInput(t *testing.T) {
	v := loadVectors(t)
	for _, tv := range v.Nodes {
		data, _ := hex.DecodeString(tv.Hex)
		want, err := UnmarshalPayload(data)
		if err != nil {
			t.Fatal(err)
		}
		got, err := UnmarshalPayload(data)
		if err != nil {
			t.Fatal(err)
		}
		for i := range data {
			data[i] = 0x5A
		}
		if !got.Equal(want) {
			t.Fatalf("%s: decoded node changed when the input was overwritten", tv.Name)
		}
	}
}

func TestRender(t *testing.T) {
	secret := bytes.Repeat([]byte{0xCD}, 200)
	n := New("iq", JIDAttr("from", jid.ServerJID), StrAttr("id", `a"<&>`+"\x01\xff")).
		WithChildren(New("ref").WithBytes(secret), New("t").WithText("hi"), New("j").WithJID(jid.ServerJID))
	s := n.String()
	want := `<iq from="s.whatsapp.net" id="a&quot;&lt;&amp;&gt;\x01\xff"><ref><!-- 200 bytes: ` +
		strings.Repeat("cd", 16) + `… --></ref><t>hi</t><j>s.whatsapp.net</j></iq>`
	if s != want {
		t.Fatalf("String() =\n%s\nwant\n%s", s, want)
	}
	if lv := n.LogValue(); lv.Kind() != slog.KindString || lv.String() != s {
		t.Fatalf("LogValue = %v", lv)
	}

	// Large nodes render bounded.
	kids := make([]Node, 1000)
	for i := range kids {
		kids[i] = New("item", StrAttr("name", strings.Repeat("x", 1000)))
	}
	deep := New("leaf")
	for range 50 {
		deep = New("d").WithChildren(deep)
	}
	for name, big := range map[string]Node{"wide": New("list").WithChildren(kids...), "deep": deep} {
		if out := big.String(); len(out) > 8192 {
			t.Errorf("%s: rendered %d bytes", name, len(out))
		}
	}
}

// TestDecodePayloadHeader: a stanza whose content does not decode still
// gives its tag and attributes, plain or compressed.
func TestDecodePayloadHeader(t *testing.T) {
	peer := jid.JID{User: "15551230001", Server: jid.DefaultUserServer}
	msg := New("message", JIDAttr("from", peer), StrAttr("id", "3EB0A1"), StrAttr("type", "text")).
		WithChildren(New("enc", StrAttr("v", "2"), StrAttr("type", "pkmsg")).WithBytes([]byte("ciphertext")))
	full, err := MarshalPayload(msg)
	if err != nil {
		t.Fatal(err)
	}
	broken := full[:len(full)-5] // the content is cut short
	if _, err := UnmarshalPayload(broken); err == nil {
		t.Fatal("a truncated stanza decoded whole")
	}
	want := New("message", JIDAttr("from", peer), StrAttr("id", "3EB0A1"), StrAttr("type", "text"))
	for name, payload := range map[string][]byte{"plain": broken, "compressed": compress(t, broken[1:])} {
		h, err := UnmarshalPayloadHeader(payload)
		if err != nil || !h.Equal(want) {
			t.Errorf("%s: header %v, %v; want %v", name, h, err, want)
		}
	}
	// A header that is itself broken is an error.
	if _, err := UnmarshalPayloadHeader(full[:4]); err == nil {
		t.Error("a header cut short decoded")
	}
	if _, err := UnmarshalPayloadHeader(nil); err == nil {
		t.Error("an empty payload decoded")
	}
}

// compress makes a payload with the zlib flag from node bytes.
func compress(t *testing.T, body []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteByte(0x02)
	w := zlib.NewWriter(&b)
	if _, err := w.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
