package node

import (
	"bytes"
	"compress/zlib"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/wafleet/wafleet/wire/jid"
)

func TestDecodeErrors(t *testing.T) {
	deep := strings.Repeat("f80219f801", DefaultMaxDepth+2) + "f80119"
	tests := []struct {
		name string
		hex  string
		want error
	}{
		{"empty input", "", ErrTruncated},
		{"list header only", "f8", ErrTruncated},
		{"list16 header short", "f901", ErrTruncated},
		{"empty list as node", "f800", ErrInvalidNode},
		{"list empty tag byte", "00", ErrInvalidNode},
		{"not a list", "19", ErrInvalidNode},
		{"leftover byte", "f8011900", ErrLeftover},
		{"unknown tag 240 as tag", "f801f0", ErrUnknownTag},
		{"unknown tag 244 as content", "f80219f4", ErrUnknownTag},
		{"unknown tag as attr value", "f8031904f2", ErrUnknownTag},
		{"dictionary index missing", "f801ec", ErrTruncated},
		{"empty tag via 00", "f80100", ErrInvalidNode},
		{"empty tag via FC 00", "f801fc00", ErrInvalidNode},
		{"tag is a list", "f801f80119", ErrInvalidNode},
		{"tag is a JID", "f801fa0003", ErrInvalidNode},
		{"empty attribute key", "f803190004", ErrInvalidNode},
		{"attribute key is a JID", "f80319fa000304", ErrInvalidNode},
		{"attribute value is a list", "f8031904f80119", ErrInvalidNode},
		{"attribute value missing", "f8031904", ErrTruncated},
		{"JID_PAIR empty server", "f8031911fa00ff00", ErrInvalidJID},
		{"JID_PAIR server 00", "f8031911fa0000", ErrInvalidJID},
		{"JID_PAIR user is JID", "f8031911fafa000303", ErrInvalidNode},
		{"AD_JID truncated", "f8031911f700", ErrTruncated},
		{"FB_JID wrong server", "f8031911f6ff01120001" + "03", ErrInvalidJID},
		{"INTEROP_JID wrong server", "f8031911f5ff011200010002" + "03", ErrInvalidJID},
		{"FB_JID truncated device", "f8031911f6ff011200", ErrTruncated},
		{"nibble 12", "f801ff01cc", ErrInvalidPacked},
		{"nibble 15 not last", "f801ff02f112", ErrInvalidPacked},
		{"odd flag on empty packed", "f801ff80", ErrInvalidPacked},
		{"packed longer than input", "f801ff051234", ErrTruncated},
		{"binary8 longer than input", "f801fc05616263", ErrTruncated},
		{"binary20 forged length", "f80219fd0fffff00", ErrTruncated},
		{"binary32 forged length", "f80219fe7fffffff00", ErrTruncated},
		{"binary32 huge length", "f80219feffffffff", ErrTruncated},
		{"forged child count", "f80219f9ffff", ErrTruncated},
		{"forged child count 8", "f80219f8ff" + "f80119", ErrTruncated},
		{"forged attribute count", "f9ffff19", ErrTruncated},
		{"child truncated", "f80219f801f802", ErrTruncated},
		{"content missing", "f80219", ErrTruncated},
		{"too deep", deep, ErrTooDeep},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := hex.DecodeString(tt.hex)
			if err != nil {
				t.Fatal(err)
			}
			n, err := Unmarshal(data)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Unmarshal(%s) = %v, %v; want %v", tt.hex, n, err, tt.want)
			}
		})
	}
}

func TestDecodePayloadErrors(t *testing.T) {
	var bomb bytes.Buffer
	zw := zlib.NewWriter(&bomb)
	zw.Write(make([]byte, 1<<20))
	zw.Close()
	var truncated bytes.Buffer
	zw = zlib.NewWriter(&truncated)
	zw.Write([]byte{0xf8, 0x01, 0x19})
	zw.Close()

	tests := []struct {
		name    string
		payload []byte
		max     int
		want    error
	}{
		{"empty payload", nil, 0, ErrEmptyPayload},
		{"not zlib", []byte{0x02, 0x01, 0x02, 0x03}, 0, ErrInflate},
		{"zlib cut short", append([]byte{0x02}, truncated.Bytes()[:truncated.Len()-3]...), 0, ErrInflate},
		{"zlib bomb", append([]byte{0x02}, bomb.Bytes()...), 64 << 10, ErrInflatedTooLarge},
		{"flags only", []byte{0x00}, 0, ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decoder{MaxInflatedSize: tt.max}.DecodePayload(tt.payload)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("other flag bits ignored", func(t *testing.T) {
		n, err := UnmarshalPayload([]byte{0xFD, 0xf8, 0x01, 0x19})
		if err != nil || n.Tag != "iq" {
			t.Fatalf("got %v, %v", n, err)
		}
		n, err = UnmarshalPayload(append([]byte{0x06}, truncated.Bytes()...))
		if err != nil || n.Tag != "iq" {
			t.Fatalf("compressed: got %v, %v", n, err)
		}
	})
}

func TestEncodeErrors(t *testing.T) {
	deep := New("leaf")
	for range DefaultMaxDepth + 1 {
		deep = New("x").WithChildren(deep)
	}
	tests := []struct {
		name string
		node Node
		want error
	}{
		{"empty tag", Node{}, ErrInvalidNode},
		{"empty child tag", New("iq").WithChildren(Node{}), ErrInvalidNode},
		{"empty attribute key", New("iq", StrAttr("", "x")), ErrInvalidNode},
		{"AD device over 255", New("iq", JIDAttr("to", jid.JID{User: "1", Device: 256, Server: jid.DefaultUserServer})), ErrInvalidJID},
		{"device on group", New("iq", JIDAttr("to", jid.JID{User: "1", Device: 2, Server: jid.GroupServer})), ErrInvalidJID},
		{"agent on lid", New("iq", JIDAttr("to", jid.JID{User: "1", RawAgent: 2, Device: 1, Server: jid.HiddenUserServer})), ErrInvalidJID},
		{"agent reading as lid", New("iq", JIDAttr("to", jid.JID{User: "1", RawAgent: 1, Server: jid.DefaultUserServer})), ErrInvalidJID},
		{"agent on msgr", New("iq", JIDAttr("to", jid.JID{User: "1", RawAgent: 1, Server: jid.MessengerServer})), ErrInvalidJID},
		{"integrator outside interop", New("iq", JIDAttr("to", jid.JID{User: "1", Integrator: 1, Server: jid.MessengerServer})), ErrInvalidJID},
		{"empty JID content", New("iq").WithJID(jid.JID{}), ErrInvalidJID},
		{"too deep", deep, ErrTooDeep},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte{1, 2, 3}
			out, err := AppendNode(dst, &tt.node)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !bytes.Equal(out, []byte{1, 2, 3}) {
				t.Fatalf("dst changed on error: %x", out)
			}
		})
	}
}
