package node

import (
	"bytes"
	"testing"

	"pgregory.net/rapid"

	"github.com/wafleet/wafleet/wire/jid"
)

var (
	genDigits = rapid.StringMatching(`[0-9]{1,20}`)
	genPacked = rapid.OneOf(
		rapid.StringMatching(`[0-9.\-]{0,127}`),
		rapid.StringMatching(`[0-9A-F]{0,127}`),
	)
	genToken = rapid.Custom(func(t *rapid.T) string {
		if rapid.Bool().Draw(t, "single") {
			return singleByteTokens[rapid.IntRange(1, len(singleByteTokens)-1).Draw(t, "i")]
		}
		d := rapid.IntRange(0, 3).Draw(t, "d")
		return doubleByteTokens[d][rapid.IntRange(0, len(doubleByteTokens[d])-1).Draw(t, "j")]
	})
	// genText is any non-empty string: tokens, packable, raw (incl. > 255 bytes).
	genText = rapid.OneOf(
		genToken,
		genPacked.Filter(func(s string) bool { return s != "" }),
		rapid.StringN(1, 40, -1),
		rapid.Custom(func(t *rapid.T) string {
			return string(rapid.SliceOfN(rapid.Byte(), 1, 400).Draw(t, "raw"))
		}),
	)
	genJID = rapid.Custom(func(t *rapid.T) jid.JID {
		user := rapid.OneOf(genDigits, rapid.Just(""), rapid.StringN(1, 12, -1)).Draw(t, "user")
		switch rapid.IntRange(0, 7).Draw(t, "server") {
		case 0:
			agent := rapid.SampledFrom([]uint8{0, 0, 0, 2, 99, 255}).Draw(t, "agent")
			dev := uint16(rapid.IntRange(0, 255).Draw(t, "dev"))
			return jid.JID{User: user, RawAgent: agent, Device: dev, Server: jid.DefaultUserServer}
		case 1:
			srv := rapid.SampledFrom([]string{jid.HiddenUserServer, jid.HostedServer, jid.HostedLIDServer}).Draw(t, "ad")
			return jid.JID{User: user, Device: uint16(rapid.IntRange(0, 255).Draw(t, "dev")), Server: srv}
		case 2:
			return jid.JID{User: user, Device: rapid.Uint16().Draw(t, "dev"), Server: jid.MessengerServer}
		case 3:
			return jid.JID{User: user, Device: rapid.Uint16().Draw(t, "dev"),
				Integrator: rapid.Uint16().Draw(t, "int"), Server: jid.InteropServer}
		case 4:
			return jid.JID{User: user, Server: rapid.SampledFrom([]string{
				jid.GroupServer, jid.BroadcastServer, jid.NewsletterServer, jid.LegacyUserServer, jid.BotServer,
			}).Draw(t, "srv")}
		default:
			return jid.JID{User: user, Server: rapid.StringN(1, 10, -1).Draw(t, "rawsrv")}
		}
	})
)

func genAttr(t *rapid.T) Attr {
	key := rapid.OneOf(genToken, rapid.StringN(1, 10, -1)).Draw(t, "key")
	if rapid.IntRange(0, 3).Draw(t, "isjid") == 0 {
		return JIDAttr(key, genJID.Draw(t, "jid"))
	}
	return StrAttr(key, genText.Draw(t, "val"))
}

func genNode(t *rapid.T, depth int) Node {
	tag := rapid.OneOf(genToken, rapid.StringN(1, 12, -1)).Draw(t, "tag")
	n := New(tag)
	if k := rapid.IntRange(0, 5).Draw(t, "nattrs"); k > 0 {
		n.Attrs = make([]Attr, k)
		for i := range n.Attrs {
			n.Attrs[i] = genAttr(t)
		}
	}
	kinds := 4
	if depth < 3 {
		kinds = 5
	}
	switch rapid.IntRange(0, kinds-1).Draw(t, "content") {
	case 1:
		size := rapid.IntRange(0, 300).Draw(t, "size")
		if rapid.IntRange(0, 199).Draw(t, "huge") == 0 {
			size = 1<<20 + rapid.IntRange(0, 10).Draw(t, "over")
		}
		n = n.WithBytes(bytes.Repeat([]byte{byte(size)}, size))
	case 2:
		// Only tokens and packed strings decode as string content; raw
		// strings decode as bytes (PROTOCOL.md 6.4).
		n = n.WithText(rapid.OneOf(genToken, genPacked).Draw(t, "text"))
	case 3:
		n = n.WithJID(genJID.Draw(t, "cjid"))
	case 4:
		kids := make([]Node, rapid.IntRange(1, 4).Draw(t, "nkids"))
		for i := range kids {
			kids[i] = genNode(t, depth+1)
		}
		if rapid.IntRange(0, 30).Draw(t, "many") == 0 {
			// more than 255 children: LIST_16
			for len(kids) < 300 {
				kids = append(kids, New("item"))
			}
		}
		n = n.WithChildren(kids...)
	}
	return n
}

func TestRoundTripProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := genNode(t, 0)
		enc, err := Marshal(n)
		if err != nil {
			t.Fatalf("encode %v: %v", n, err)
		}
		back, err := Unmarshal(enc)
		if err != nil {
			t.Fatalf("decode %x: %v", enc[:min(len(enc), 64)], err)
		}
		if !back.Equal(n) {
			t.Fatalf("round trip\n got %v\nwant %v", back, n)
		}
		// Measuring finds the room the node takes, no more.
		m := Decoder{}.measure(enc)
		m.packed = 0
		if m != sizesOf(back) {
			t.Fatalf("measured %+v for a node holding %+v", m, sizesOf(back))
		}
		// The payload form and a reused buffer give the same node.
		buf := []byte("prefix")
		buf, err = AppendPayload(buf, &n)
		if err != nil {
			t.Fatal(err)
		}
		back, err = UnmarshalPayload(buf[len("prefix"):])
		if err != nil || !back.Equal(n) {
			t.Fatalf("payload round trip: %v", err)
		}
	})
}

func TestJIDRoundTripProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		j := genJID.Draw(t, "jid")
		enc, err := appendJID(nil, j)
		if err != nil {
			t.Fatalf("encode %#v: %v", j, err)
		}
		d := decoder{data: enc, pos: 1, maxDepth: DefaultMaxDepth}
		got, err := d.readJID(enc[0])
		if err != nil || got != j || d.pos != len(enc) {
			t.Fatalf("JID %#v -> %x -> %#v, %v", j, enc, got, err)
		}
	})
}
