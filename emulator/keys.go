package emulator

import (
	"encoding/binary"

	"github.com/wafleet/wafleet/signal"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// maxKeyFetch bounds the devices of one prekey-bundle fetch and the users
// of one usync query; more is answered 400.
const maxKeyFetch = 512

// answerKeyFetch answers <iq xmlns=encrypt type=get><key><user jid/>…</key></iq>
// with one <user> per device asked: its bundle from PreKeyBundle (which
// hands each one-time prekey out once), or <error code=404
// text=item-not-found/> for a device the server does not know.
func (sess *session) answerKeyFetch(id string, key *node.Node) node.Node {
	users := key.Children()
	if len(users) == 0 || len(users) > maxKeyFetch {
		sess.softViolation("prekey fetch of %d devices (want 1..%d)", len(users), maxKeyFetch)
		return iqError(id, 400, "bad-request")
	}
	out := make([]node.Node, 0, len(users))
	for i := range users {
		dev, ok := users[i].AttrJID("jid")
		if users[i].Tag != "user" || !ok {
			sess.softViolation("prekey fetch: a <%s> without a jid", users[i].Tag)
			return iqError(id, 400, "bad-request")
		}
		b, err := sess.s.PreKeyBundle(dev)
		if err != nil {
			out = append(out, node.New("user", node.JIDAttr("jid", dev)).WithChildren(
				node.New("error", node.IntAttr("code", 404), node.StrAttr("text", "item-not-found"))))
			continue
		}
		out = append(out, bundleNode(dev, &b))
	}
	return serverIQ(id, "result", node.New("list").WithChildren(out...))
}

// bundleNode is one device's entry of a key-fetch answer.
func bundleNode(dev jid.JID, b *signal.Bundle) node.Node {
	children := []node.Node{
		node.New("registration").WithBytes(binary.BigEndian.AppendUint32(nil, b.RegistrationID)),
		node.New("type").WithBytes([]byte{5}),
		node.New("identity").WithBytes(b.IdentityKey[:]),
	}
	if b.PreKey != nil {
		children = append(children, node.New("key").WithChildren(
			node.New("id").WithBytes(id3(b.PreKeyID)),
			node.New("value").WithBytes(b.PreKey[:])))
	}
	children = append(children, node.New("skey").WithChildren(
		node.New("id").WithBytes(id3(b.SignedPreKeyID)),
		node.New("value").WithBytes(b.SignedPreKey[:]),
		node.New("signature").WithBytes(b.SignedPreKeySignature[:])))
	return node.New("user", node.JIDAttr("jid", dev)).WithChildren(children...)
}

// id3 is a prekey ID as it travels: 3 bytes, big-endian.
func id3(id uint32) []byte { return []byte{byte(id >> 16), byte(id >> 8), byte(id)} }
