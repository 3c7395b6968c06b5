package connection

import (
	"testing"

	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// TestAckShapes checks every ack against the reference client's rules
// (whatsmeow receipt.go sendAck; PROTOCOL.md 9.8): class = tag, id, to =
// from, participant and recipient copied, type copied except for messages,
// nothing else.
func TestAckShapes(t *testing.T) {
	peer := jid.JID{User: "15551230001", Server: jid.DefaultUserServer}
	group := jid.JID{User: "120363001234567890", Server: jid.GroupServer}
	own := jid.JID{User: "15550000001", Server: jid.DefaultUserServer}
	j := node.JIDAttr
	s := node.StrAttr
	tests := []struct {
		name string
		in   node.Node
		want node.Node // zero Tag: no ack
	}{
		{"1:1 message: type dropped",
			node.New("message", j("from", peer), s("id", "3EB0A1"), s("type", "text"), s("t", "1767225660")),
			node.New("ack", s("class", "message"), s("id", "3EB0A1"), j("to", peer))},
		{"group message: participant copied",
			node.New("message", j("from", group), s("id", "3EB0A2"), j("participant", peer), s("type", "media")),
			node.New("ack", s("class", "message"), s("id", "3EB0A2"), j("to", group), j("participant", peer))},
		{"message sent from the phone: recipient copied",
			node.New("message", j("from", own), s("id", "3EB0A3"), j("recipient", peer), s("type", "text")),
			node.New("ack", s("class", "message"), s("id", "3EB0A3"), j("to", own), j("recipient", peer))},
		{"read receipt: type copied",
			node.New("receipt", j("from", peer), s("id", "3EB0B1"), s("type", "read"), s("t", "1")),
			node.New("ack", s("class", "receipt"), s("id", "3EB0B1"), j("to", peer), s("type", "read"))},
		{"delivery receipt: no type",
			node.New("receipt", j("from", peer), s("id", "3EB0B2")),
			node.New("ack", s("class", "receipt"), s("id", "3EB0B2"), j("to", peer))},
		{"group receipt: participant and recipient",
			node.New("receipt", j("from", group), s("id", "3EB0B3"), j("participant", peer), j("recipient", own), s("type", "read-self")),
			node.New("ack", s("class", "receipt"), s("id", "3EB0B3"), j("to", group), j("participant", peer), j("recipient", own), s("type", "read-self"))},
		{"notification of a known type",
			node.New("notification", j("from", jid.ServerJID), s("id", "101"), s("type", "encrypt"), s("t", "1")).WithChildren(node.New("count", s("value", "3"))),
			node.New("ack", s("class", "notification"), s("id", "101"), j("to", jid.ServerJID), s("type", "encrypt"))},
		{"notification of an unknown type",
			node.New("notification", j("from", group), s("id", "102"), s("type", "made_up_type"), j("participant", peer)),
			node.New("ack", s("class", "notification"), s("id", "102"), j("to", group), j("participant", peer), s("type", "made_up_type"))},
		{"from as a plain string stays a string",
			node.New("notification", s("from", "s.whatsapp.net"), s("id", "103"), s("type", "server_sync")),
			node.New("ack", s("class", "notification"), s("id", "103"), s("to", "s.whatsapp.net"), s("type", "server_sync"))},
		{"call",
			node.New("call", j("from", peer), s("id", "C1"), s("t", "1")).WithChildren(node.New("offer", s("call-id", "X"))),
			node.New("ack", s("class", "call"), s("id", "C1"), j("to", peer))},
		{"presence needs none", node.New("presence", j("from", peer), s("id", "P1"), s("type", "available")), node.Node{}},
		{"chatstate needs none", node.New("chatstate", j("from", peer), s("id", "P2")), node.Node{}},
		{"ib needs none", node.New("ib", s("id", "P3")), node.Node{}},
		{"no id: nothing to name", node.New("message", j("from", peer)), node.Node{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ackFor(tt.in)
			if ok != (tt.want.Tag != "") {
				t.Fatalf("ackable %v, want %v", ok, tt.want.Tag != "")
			}
			if ok && !got.Equal(tt.want) {
				t.Errorf("ack %v\nwant %v", got, tt.want)
			}
			// Encoded and decoded, it is still the same ack (JIDs stay JIDs).
			if ok {
				b, err := node.MarshalPayload(got)
				if err != nil {
					t.Fatal(err)
				}
				back, err := node.UnmarshalPayload(b)
				if err != nil {
					t.Fatal(err)
				}
				if !back.Equal(tt.want) {
					t.Errorf("decoded ack %v\nwant %v", back, tt.want)
				}
			}
		})
	}
}

func TestServerPing(t *testing.T) {
	s := node.StrAttr
	tests := []struct {
		name string
		in   node.Node
		ping bool
		pong node.Node
	}{
		{"with type and id", node.New("iq", node.JIDAttr("from", jid.ServerJID), s("id", "7"), s("xmlns", "urn:xmpp:ping"), s("type", "get")), true,
			node.New("iq", node.JIDAttr("to", jid.ServerJID), s("type", "result"), s("id", "7"))},
		{"without type", node.New("iq", node.JIDAttr("from", jid.ServerJID), s("id", "8"), s("xmlns", "urn:xmpp:ping")), true,
			node.New("iq", node.JIDAttr("to", jid.ServerJID), s("type", "result"), s("id", "8"))},
		{"without id", node.New("iq", node.JIDAttr("from", jid.ServerJID), s("xmlns", "urn:xmpp:ping"), s("type", "get")), true,
			node.New("iq", node.JIDAttr("to", jid.ServerJID), s("type", "result"))},
		{"our own ping's answer is no ping", node.New("iq", s("id", "9"), s("type", "result"), s("xmlns", "urn:xmpp:ping")), false, node.Node{}},
		{"another namespace", node.New("iq", s("id", "10"), s("type", "get"), s("xmlns", "w:p")), false, node.Node{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isServerPing(tt.in); got != tt.ping {
				t.Fatalf("isServerPing %v, want %v", got, tt.ping)
			}
			if tt.ping {
				if got := pongFor(tt.in); !got.Equal(tt.pong) {
					t.Errorf("pong %v\nwant %v", got, tt.pong)
				}
			}
		})
	}
}
