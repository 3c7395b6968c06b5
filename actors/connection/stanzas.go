package connection

import (
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// ackable are the tags the server expects an <ack> for (PROTOCOL.md 9.8):
// a stanza of one of them left unacknowledged ends the stream with
// <stream:error><ack/></stream:error> and is redelivered first on every
// reconnect. <ib>, <presence> and <chatstate> are not acknowledged.
var ackable = map[string]bool{"message": true, "receipt": true, "notification": true, "call": true}

// ackFor returns the <ack> for an ackable stanza, shaped as the reference
// client shapes it (whatsmeow receipt.go sendAck):
//
//	<ack class=TAG id=ID to=FROM [participant=P] [recipient=R] [type=T]/>
//
// class is the stanza's tag and to its from; participant and recipient are
// copied when present, with their encoding (JID or string) unchanged; type
// is copied except for class=message. A message we cannot decrypt gets this
// same plain ack after its retry receipt: an error attribute makes the
// server withhold the queue (Baileys reports). ok is false for a stanza
// that is not ackable or has no id.
func ackFor(n node.Node) (ack node.Node, ok bool) {
	if !ackable[n.Tag] {
		return node.Node{}, false
	}
	id, _ := n.Attr("id")
	if id == "" {
		return node.Node{}, false
	}
	attrs := make([]node.Attr, 0, 6)
	attrs = append(attrs, node.StrAttr("class", n.Tag), node.StrAttr("id", id))
	if from, ok := n.GetAttr("from"); ok {
		from.Key = "to"
		attrs = append(attrs, from)
	}
	for _, key := range [...]string{"participant", "recipient"} {
		if a, ok := n.GetAttr(key); ok {
			attrs = append(attrs, a)
		}
	}
	if t, ok := n.GetAttr("type"); ok && n.Tag != "message" {
		attrs = append(attrs, t)
	}
	return node.New("ack", attrs...), true
}

// isServerPing reports whether n is the server's ping,
// <iq xmlns=urn:xmpp:ping [type=get] [id]/>: it is sent with and without
// type (whatsapp-rust issues 333 and 783), and WhatsApp Web answers every
// one.
func isServerPing(n node.Node) bool {
	if n.Tag != "iq" {
		return false
	}
	xmlns, _ := n.Attr("xmlns")
	typ, _ := n.Attr("type")
	return xmlns == "urn:xmpp:ping" && (typ == "" || typ == "get")
}

// pongFor answers a server ping: <iq to=s.whatsapp.net type=result [id]/>,
// as WhatsApp Web does (PROTOCOL.md 9.8).
func pongFor(ping node.Node) node.Node {
	pong := node.New("iq", node.JIDAttr("to", jid.ServerJID), node.StrAttr("type", "result"))
	if id, ok := ping.Attr("id"); ok && id != "" {
		pong = pong.WithAttr(node.StrAttr("id", id))
	}
	return pong
}
