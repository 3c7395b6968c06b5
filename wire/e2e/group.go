package e2e

import (
	"fmt"

	"github.com/wafleet/wafleet/signal"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// MaxGroupParticipants bounds the participants ParseGroupParticipants
// accepts: WhatsApp's group size limit is 1024 members.
const MaxGroupParticipants = 1024

// GroupInfoQuery asks for a group's metadata, participants included
// (whatsmeow group.go getGroupInfo):
//
//	<iq xmlns=w:g2 type=get to=GROUP id><query request=interactive/></iq>
func GroupInfoQuery(id string, group jid.JID) node.Node {
	return node.IQ(id, group.ToNonAD(), "get", "w:g2", node.New("query", node.StrAttr("request", "interactive")))
}

// ParseGroupParticipants reads the participants' user JIDs from the
// answer to GroupInfoQuery:
//
//	<iq type=result><group id subject creation [addressing_mode] …>
//	  <participant jid=USER [type=admin|superadmin] [lid]/>…</group></iq>
//
// Only phone-number participants are taken: a group whose participants are
// LIDs (addressing_mode=lid) is refused, as this client addresses its
// sender key and sessions by phone number.
func ParseGroupParticipants(answer node.Node) ([]jid.JID, error) {
	g, ok := answer.Child("group")
	if !ok {
		return nil, fmt.Errorf("%w: group answer without <group>", ErrMalformed)
	}
	if mode, _ := g.Attr("addressing_mode"); mode == "lid" {
		return nil, fmt.Errorf("%w: a LID-addressed group (not supported)", ErrMalformed)
	}
	var out []jid.JID
	seen := make(map[jid.JID]bool)
	for p := range g.ChildrenByTag("participant") {
		u, ok := p.AttrJID("jid")
		if !ok || u.User == "" || u.Server != jid.DefaultUserServer {
			return nil, fmt.Errorf("%w: a <participant> without a phone-number jid", ErrMalformed)
		}
		u = u.ToNonAD()
		if seen[u] {
			continue
		}
		if len(out) == MaxGroupParticipants {
			return nil, fmt.Errorf("%w: more than %d participants", ErrMalformed, MaxGroupParticipants)
		}
		seen[u] = true
		out = append(out, u)
	}
	return out, nil
}

// GroupMessage is the <message> of a group text: the sender-key message
// every member device decrypts, preceded by the 1:1 parts that carry our
// sender key's distribution message to the devices that lack it (none:
// no <participants>), with <device-identity> when any part is a pkmsg.
// phash is over devices, every device the group message is for
// (whatsmeow sendGroup hashes every participant device it found; whether
// the real server counts the sending device itself is not known here: we
// leave it out, and so does the emulator).
//
//	<message id to=GROUP type=text phash>[<participants><to jid=DEVICE><enc v=2 type=pkmsg|msg/></to>…</participants>]
//	  [<device-identity/>]<enc v=2 type=skmsg/></message>
func GroupMessage(id string, group jid.JID, parts []Part, skmsg []byte, devices []jid.JID, deviceIdentity []byte) node.Node {
	var content []node.Node
	if len(parts) > 0 {
		content = append(content, node.New("participants").WithChildren(toNodes(parts)...))
		if hasPreKey(parts) {
			content = append(content, node.New("device-identity").WithBytes(deviceIdentity))
		}
	}
	content = append(content, node.New("enc", node.StrAttr("v", "2"), node.StrAttr("type", "skmsg")).WithBytes(skmsg))
	return node.New("message", node.StrAttr("id", id), node.JIDAttr("to", group.ToNonAD()), node.StrAttr("type", "text"),
		node.StrAttr("phash", ParticipantHash(devices))).WithChildren(content...)
}

// RetryMessage answers a device's retry receipt: the message again,
// encrypted 1:1 for that device alone (for a group, with our sender key's
// distribution inside), the original id and t, and the receipt's count on
// the <enc> (whatsmeow retry.go handleRetryReceipt):
//
//	<message id to=GROUP participant=DEVICE type=text t><enc v=2 type=pkmsg|msg count=N/>[<device-identity/>]</message>
//	<message id to=DEVICE [recipient=CHAT] type=text t device_fanout=false><enc …/>[<device-identity/>]</message>
//
// the second for a 1:1 chat, with recipient when the device is one of our
// own (its receipt named the chat so). The 1:1 form is the reference Go
// client's (to the receipt's from, its recipient copied, device_fanout
// false); the real server's handling of device_fanout is not documented.
func RetryMessage(id string, chat jid.JID, p Part, count int, t int64, deviceIdentity []byte) node.Node {
	content := []node.Node{node.New("enc", node.StrAttr("v", "2"), node.StrAttr("type", p.Ciphertext.Type.String()),
		node.IntAttr("count", int64(count))).WithBytes(p.Ciphertext.Body)}
	if p.Ciphertext.Type == signal.TypePreKey {
		content = append(content, node.New("device-identity").WithBytes(deviceIdentity))
	}
	if chat.Server == jid.GroupServer {
		return node.New("message", node.StrAttr("id", id), node.JIDAttr("to", chat.ToNonAD()),
			node.JIDAttr("participant", p.Device), node.StrAttr("type", "text"), node.IntAttr("t", t)).WithChildren(content...)
	}
	attrs := []node.Attr{node.StrAttr("id", id), node.JIDAttr("to", p.Device)}
	if p.Device.User != chat.User {
		attrs = append(attrs, node.JIDAttr("recipient", chat.ToNonAD()))
	}
	attrs = append(attrs, node.StrAttr("type", "text"), node.IntAttr("t", t), node.StrAttr("device_fanout", "false"))
	return node.New("message", attrs...).WithChildren(content...)
}

func toNodes(parts []Part) []node.Node {
	children := make([]node.Node, len(parts))
	for i, p := range parts {
		children[i] = node.New("to", node.JIDAttr("jid", p.Device)).WithChildren(
			node.New("enc", node.StrAttr("v", "2"), node.StrAttr("type", p.Ciphertext.Type.String())).WithBytes(p.Ciphertext.Body))
	}
	return children
}

func hasPreKey(parts []Part) bool {
	for _, p := range parts {
		if p.Ciphertext.Type == signal.TypePreKey {
			return true
		}
	}
	return false
}
