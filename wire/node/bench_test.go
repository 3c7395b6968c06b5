package node

import (
	"encoding/hex"
	"strconv"
	"testing"

	"github.com/wafleet/wafleet/wire/jid"
)

// pairSuccess returns the node bytes (no flags byte) of the pair-success
// vector.
func pairSuccess(b *testing.B) []byte {
	v := loadVectors(b)
	for _, tv := range v.Nodes {
		if tv.Node.Tag == "iq" && len(tv.Node.Content) > 0 && hexContains(tv.Hex, "706169722d73756363657373") {
			data, _ := hex.DecodeString(tv.Hex)
			return data[1:]
		}
	}
	b.Fatal("pair-success vector not found")
	return nil
}

func hexContains(h, sub string) bool {
	for i := 0; i+len(sub) <= len(h); i += 2 {
		if h[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// wideIQ is an <iq> with 200 <item jid=… id=… type=… name=…/> children:
// AD_JID and JID_PAIR values, hex-packed ids, a token and a raw string.
func wideIQ() Node {
	items := make([]Node, 200)
	for i := range items {
		j := jid.JID{User: "1555" + strconv.Itoa(1000000+i), Server: jid.DefaultUserServer}
		if i%2 == 0 {
			j.Device = uint16(i % 50)
		}
		items[i] = New("item",
			JIDAttr("jid", j),
			StrAttr("id", "3EB0"+strconv.FormatInt(int64(0xA1B2C3D4E5+i), 16)),
			StrAttr("type", "available"),
			StrAttr("name", "Contact number "+strconv.Itoa(i)),
		)
	}
	return IQ("1234567890", jid.ServerJID, "result", "usync", items...)
}

func benchDecode(b *testing.B, data []byte) {
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Unmarshal(data); err != nil {
			b.Fatal(err)
		}
	}
}

func benchEncode(b *testing.B, n Node) {
	buf, err := AppendNode(nil, &n)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if buf, err = AppendNode(buf[:0], &n); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodePairSuccess(b *testing.B) {
	benchDecode(b, pairSuccess(b))
}

func BenchmarkEncodePairSuccess(b *testing.B) {
	n, err := Unmarshal(pairSuccess(b))
	if err != nil {
		b.Fatal(err)
	}
	benchEncode(b, n)
}

func BenchmarkDecode200Children(b *testing.B) {
	data, err := Marshal(wideIQ())
	if err != nil {
		b.Fatal(err)
	}
	benchDecode(b, data)
}

func BenchmarkEncode200Children(b *testing.B) {
	benchEncode(b, wideIQ())
}

func BenchmarkDecodeCompressedPayload(b *testing.B) {
	v := loadVectors(b)
	data, _ := hex.DecodeString(v.Compressed.Hex)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := UnmarshalPayload(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkString200Children(b *testing.B) {
	n := wideIQ()
	b.ReportAllocs()
	for b.Loop() {
		_ = n.String()
	}
}

// encMessage is an incoming <message> with one <enc> child of 1 KiB
// ciphertext, the most common stanza a connection receives.
func encMessage() Node {
	ct := make([]byte, 1024)
	for i := range ct {
		ct[i] = byte(i * 7)
	}
	return New("message",
		JIDAttr("from", jid.JID{User: "15551234567", Server: jid.DefaultUserServer}),
		StrAttr("id", "3EB0A1B2C3D4E5F60718"),
		StrAttr("type", "text"),
		StrAttr("t", "1764460800"),
		StrAttr("notify", "Contact"),
	).WithChildren(New("enc", StrAttr("v", "2"), StrAttr("type", "msg")).WithBytes(ct))
}

func BenchmarkDecodeEncMessage(b *testing.B) {
	data, err := Marshal(encMessage())
	if err != nil {
		b.Fatal(err)
	}
	benchDecode(b, data)
}
