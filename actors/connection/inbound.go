package connection

import (
	"errors"
	"fmt"
	"time"

	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// inbound is what the receive path needs of one <message> stanza with
// encrypted content (whatsmeow message.go parseMessageSource for the
// attributes):
//
//	<message id from [participant] [recipient] t [notify] [type]>
//	  <enc type=pkmsg|msg|skmsg v=2 [count=N]>ciphertext</enc> …
//	</message>
//
// A 1:1 message comes from the sender's device JID; a group's from the
// group with the sender's device in participant; one our own phone sent
// from our own user with the chat in recipient.
type inbound struct {
	node     node.Node // the stanza, for its receipts and ack
	id       string
	chat     jid.JID // the conversation (no device)
	sender   jid.JID // the sending device
	group    bool    // a group or broadcast: sender keys, a participant
	fromMe   bool    // sent by another device of our own account
	at       time.Time
	pushName string
	encs     []encPart
}

// encPart is one <enc> child.
type encPart struct {
	typ   string // pkmsg, msg, skmsg
	v     int    // 2: padded Message protobuf; 3: unpadded (whatsmeow: an "armadillo" message)
	count int    // the sender's retry count when it answers our retry receipt
	body  []byte
}

// maxEncParts bounds the <enc> children of one stanza that are decrypted
// (a real one has one or two: the sender-key distribution and the group
// message).
const maxEncParts = 4

// errNotE2E: the stanza has no <enc> child; it is acknowledged as before.
var errNotE2E = errors.New("no enc child")

// parseInbound reads a <message> stanza for the device own (paired).
func parseInbound(n node.Node, own *store.Device) (*inbound, error) {
	in := &inbound{node: n}
	in.id, _ = n.Attr("id")
	for c := range n.ChildrenByTag("enc") {
		if len(in.encs) == maxEncParts {
			return nil, fmt.Errorf("more than %d enc children", maxEncParts)
		}
		typ, _ := c.Attr("type")
		v, _ := c.AttrInt("v")
		count, _ := c.AttrInt("count")
		body, _ := c.Bytes()
		in.encs = append(in.encs, encPart{typ: typ, v: int(v), count: int(min(max(count, 0), 1000)), body: body})
	}
	if len(in.encs) == 0 {
		return nil, errNotE2E
	}
	from, ok := n.AttrJID("from")
	if !ok {
		return nil, errors.New("no from JID")
	}
	if t, ok := n.AttrInt("t"); ok && t > 0 {
		in.at = time.Unix(t, 0).UTC()
	}
	in.pushName, _ = n.Attr("notify")
	switch from.Server {
	case jid.GroupServer, jid.BroadcastServer:
		p, ok := n.AttrJID("participant")
		if !ok {
			return nil, errors.New("group message without participant")
		}
		// A broadcast (status@broadcast, a broadcast list) uses sender keys
		// like a group (whatsmeow's IsGroup covers both).
		in.chat, in.sender, in.group = from, p, true
	default:
		in.sender, in.chat = from, from.ToNonAD()
	}
	in.fromMe = isOwnUser(in.sender, own)
	if in.fromMe && !in.group {
		if r, ok := n.AttrJID("recipient"); ok {
			in.chat = r.ToNonAD()
		}
	}
	if _, ok := senderAddress(in.sender); !ok {
		return nil, fmt.Errorf("sender %s has no Signal address", in.sender)
	}
	return in, nil
}

// isOwnUser reports whether j is a device of our own account (its phone
// number or its LID).
func isOwnUser(j jid.JID, own *store.Device) bool {
	switch j.Server {
	case jid.DefaultUserServer:
		return j.User == own.PNUser()
	case jid.HiddenUserServer:
		return j.User != "" && j.User == own.LIDUser()
	}
	return false
}

// senderAddress is the store's address of a device JID (store.PeerAddress).
// Sessions are kept under the address the stanza names: the reference
// client moves a phone-number session to the contact's LID once it learns
// the mapping; this one does not yet, so a contact that switches to LID
// addressing starts a new session (its pkmsg) under the LID address.
func senderAddress(j jid.JID) (string, bool) {
	domain, ok := j.DomainType()
	if !ok || j.User == "" || len(j.User) > store.MaxPeerUserLen {
		return "", false
	}
	for i := 0; i < len(j.User); i++ {
		if j.User[i] < '0' || j.User[i] > '9' {
			return "", false
		}
	}
	addr := store.PeerAddress(j.User, domain, j.Device)
	return addr, store.ValidatePeerAddress(addr) == nil
}

// receiptFor is the delivery receipt of a decrypted message, as the
// reference client sends it (whatsmeow receipt.go sendMessageReceipt and
// buildBaseReceipt): <receipt id to=FROM [recipient] [participant] [type]/>,
// to, recipient and participant copied from the stanza. type is "sender"
// for a message our own phone sent, else "inactive": both reference
// clients send that while the account has not announced itself available
// (presence), which this client never does.
func receiptFor(in *inbound) node.Node {
	r := baseReceipt(in)
	if in.fromMe {
		return r.WithAttr(node.StrAttr("type", "sender"))
	}
	return r.WithAttr(node.StrAttr("type", "inactive"))
}

func baseReceipt(in *inbound) node.Node {
	attrs := make([]node.Attr, 0, 6)
	attrs = append(attrs, node.StrAttr("id", in.id))
	if from, ok := in.node.GetAttr("from"); ok {
		from.Key = "to"
		attrs = append(attrs, from)
	}
	for _, key := range [...]string{"recipient", "participant"} {
		if a, ok := in.node.GetAttr(key); ok {
			attrs = append(attrs, a)
		}
	}
	return node.New("receipt", attrs...)
}

// maxRetryReceipts is how many retry receipts one message gets; the
// reference client stops at its fifth (whatsmeow retry.go).
const maxRetryReceipts = 4

// retryKeys is what a retry receipt from the second on carries so that
// the sender can build a new session: a fresh one-time prekey (stored
// before it is offered).
type retryKeys struct {
	preKey store.PreKey
}

// retryReceiptFor asks the sender to encrypt the message again (whatsmeow
// retry.go sendRetryReceipt):
//
//	<receipt id to [recipient] [participant] type=retry>
//	  <retry count=N id t v=1/>
//	  <registration>registration ID, 4 bytes big-endian</registration>
//	  [<keys><type>05</type><identity/><key/><skey/><device-identity/></keys>]
//	</receipt>
//
// keys is set from the second retry on.
func retryReceiptFor(in *inbound, count int, dev *store.Device, keys *retryKeys) node.Node {
	retry := node.New("retry", node.IntAttr("count", int64(count)), node.StrAttr("id", in.id))
	if t, ok := in.node.GetAttr("t"); ok {
		retry = retry.WithAttr(t)
	}
	retry = retry.WithAttr(node.StrAttr("v", "1"))
	children := []node.Node{retry, node.New("registration").WithBytes(registrationBytes(dev.RegistrationID))}
	if keys != nil {
		children = append(children, node.New("keys").WithChildren(
			node.New("type").WithBytes([]byte{0x05}),
			node.New("identity").WithBytes(dev.IdentityKey.Pub[:]),
			preKeyNode(keys.preKey),
			signedPreKeyNode(dev.SignedPreKey),
			node.New("device-identity").WithBytes(dev.Account),
		))
	}
	return baseReceipt(in).WithAttr(node.StrAttr("type", "retry")).WithChildren(children...)
}

// retryCount is the count of the next retry receipt for in: one more than
// the receipts already sent for it on this run, or than the count the
// sender's answer carries (after a restart, as the reference client does).
func retryCount(in *inbound, sent int) int {
	n := sent
	for _, e := range in.encs {
		n = max(n, e.count)
	}
	return n + 1
}

func registrationBytes(id uint32) []byte {
	return []byte{byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)}
}

// receiptEvent reads a <receipt> the server pushed: for messages we sent,
// whose ids are the id attribute and the <list><item id/> children.
func receiptEvent(n node.Node) (ids []string, chat, sender jid.JID, typ string, at time.Time) {
	if id, _ := n.Attr("id"); id != "" {
		ids = append(ids, id)
	}
	if l, ok := n.Child("list"); ok {
		for item := range l.ChildrenByTag("item") {
			if id, _ := item.Attr("id"); id != "" && len(ids) < maxReceiptIDs {
				ids = append(ids, id)
			}
		}
	}
	from, _ := n.AttrJID("from")
	chat, sender = from.ToNonAD(), from
	if p, ok := n.AttrJID("participant"); ok {
		sender = p
	}
	if typ, _ = n.Attr("type"); typ == "" {
		typ = "delivery"
	}
	if t, ok := n.AttrInt("t"); ok && t > 0 {
		at = time.Unix(t, 0).UTC()
	}
	return ids, chat, sender, typ, at
}

// maxReceiptIDs bounds the ids one receipt event carries.
const maxReceiptIDs = 256

// jidUser is j without device, as events name users.
func jidUser(j jid.JID) string { return j.ToNonAD().String() }
