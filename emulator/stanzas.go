package emulator

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// stanzaKind is one shape of pushed stanza.
type stanzaKind uint8

const (
	kindMsgPkmsg          stanzaKind = iota // 1:1 message, first of a session: consumes a prekey
	kindMsg                                 // 1:1 message
	kindMsgGroup                            // group message (participant)
	kindMsgFromMe                           // message the own account sent from the phone (recipient)
	kindRcptDelivery                        // delivery receipt, no type
	kindRcptRead                            // read receipt
	kindRcptGroup                           // group read receipt (participant)
	kindRcptRecipient                       // receipt with recipient
	kindNotifGroup                          // w:gp2 (participant)
	kindNotifDevices                        // devices
	kindNotifPicture                        // picture
	kindNotifServerSync                     // server_sync
	kindNotifAccountSync                    // account_sync
	kindNotifPrivacyToken                   // privacy_token
	kindNotifUnknown                        // a type no client knows
	kindCall                                // call offer
)

// isMessage reports whether k is a <message> kind (pushed encrypted by an
// emulated contact, dayonemsg.go).
func (k stanzaKind) isMessage() bool { return k <= kindMsgFromMe }

// kindCycle is the order of pushed stanzas; each connection starts at a
// random place in it, so every 20 pushes hold every kind and the mix is
// 45% messages (10% pkmsg), 20% receipts, 30% notifications, 5% calls.
var kindCycle = [...]stanzaKind{
	kindMsgPkmsg, kindMsg, kindMsgGroup, kindRcptDelivery, kindNotifGroup,
	kindMsg, kindRcptRead, kindMsgFromMe, kindNotifDevices, kindMsgGroup,
	kindCall, kindRcptGroup, kindNotifPicture, kindMsgPkmsg, kindNotifServerSync,
	kindRcptRecipient, kindNotifAccountSync, kindMsg, kindNotifPrivacyToken, kindNotifUnknown,
}

// unknownNotificationType is the notification type no client knows; it
// must be acked like any other.
const unknownNotificationType = "wafleet_emulator_unknown"

// stanzaGen makes the pushed stanzas of one connection. It is used by the
// connection's pusher goroutine only.
type stanzaGen struct {
	own   jid.JID // the account's phone-number JID (no device)
	rnd   *rand.Rand
	slot  int
	live  int // live pushes so far (every fourth is followed by a non-ackable stanza)
	texts int // day-one messages so far (their text numbers them)
}

func newStanzaGen(d *device) *stanzaGen {
	rnd := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	return &stanzaGen{
		own:  jid.New(d.jid.User, jid.DefaultUserServer),
		rnd:  rnd,
		slot: rnd.IntN(len(kindCycle)),
	}
}

func (g *stanzaGen) nextKind() stanzaKind {
	k := kindCycle[g.slot]
	g.slot = (g.slot + 1) % len(kindCycle)
	return k
}

// peer is a made-up contact, 15559xxxxxx (never an emulated account:
// those are 1555000xxxx).
func (g *stanzaGen) peer() jid.JID {
	return jid.New("15559"+fmt.Sprintf("%06d", g.rnd.IntN(1_000_000)), jid.DefaultUserServer)
}

// group is a made-up group, 120363 and 12 digits, the current form.
func (g *stanzaGen) group() jid.JID {
	return jid.New("120363"+fmt.Sprintf("%012d", g.rnd.Int64N(1_000_000_000_000)), jid.GroupServer)
}

func (g *stanzaGen) bytes(n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := g.rnd.Uint64()
		for j := i; j < n && j < i+8; j++ {
			b[j] = byte(v)
			v >>= 8
		}
	}
	return b
}

// messageID is a message id in WhatsApp Web's style (3EB0 and upper-case
// hex, hex-packed on the wire), unique per device.
func messageID(seq uint64, salt uint32) string {
	return fmt.Sprintf("3EB0%08X%012X", salt, seq)
}

// serverStanzaID is a notification or call id in the server's decimal
// style, unique per device.
func serverStanzaID(seq uint64, salt uint32) string {
	return fmt.Sprintf("%d%010d", salt, seq)
}

// enc is an encrypted payload: random bytes standing in for ciphertext.
func (g *stanzaGen) enc(typ string) node.Node {
	return node.New("enc", node.StrAttr("v", "2"), node.StrAttr("type", typ)).WithBytes(g.bytes(32 + g.rnd.IntN(96)))
}

func (g *stanzaGen) name() string { return "Contact " + strconv.Itoa(1000+g.rnd.IntN(9000)) }

// build makes the stanza of kind k with the device's next sequence number.
// Its messages are the garbage ones (DayOne.GarbageShare): random bytes
// from made-up peers.
func (g *stanzaGen) build(k stanzaKind, seq uint64, salt uint32, now time.Time) node.Node {
	t := node.IntAttr("t", now.Unix())
	msgID := node.StrAttr("id", messageID(seq, salt))
	srvID := node.StrAttr("id", serverStanzaID(seq, salt))
	from := func(j jid.JID) node.Attr { return node.JIDAttr("from", j) }
	notification := func(f jid.JID, typ string, children ...node.Node) node.Node {
		return node.New("notification", from(f), srvID, node.StrAttr("type", typ), t).WithChildren(children...)
	}
	switch k {
	case kindMsgPkmsg, kindMsg:
		typ := "msg"
		if k == kindMsgPkmsg {
			typ = "pkmsg"
		}
		return node.New("message", from(g.peer()), msgID, node.StrAttr("type", "text"), t,
			node.StrAttr("notify", g.name())).WithChildren(g.enc(typ))
	case kindMsgGroup:
		return node.New("message", from(g.group()), node.JIDAttr("participant", g.peer()), msgID,
			node.StrAttr("type", "text"), t, node.StrAttr("notify", g.name())).WithChildren(g.enc("skmsg"))
	case kindMsgFromMe:
		return node.New("message", from(g.own), node.JIDAttr("recipient", g.peer()), msgID,
			node.StrAttr("type", "text"), t).WithChildren(g.enc("msg"))
	case kindRcptDelivery:
		return node.New("receipt", from(g.peer()), msgID, t)
	case kindRcptRead:
		return node.New("receipt", from(g.peer()), msgID, node.StrAttr("type", "read"), t)
	case kindRcptGroup:
		return node.New("receipt", from(g.group()), node.JIDAttr("participant", g.peer()), msgID,
			node.StrAttr("type", "read"), t)
	case kindRcptRecipient:
		return node.New("receipt", from(g.own), node.JIDAttr("recipient", g.peer()), msgID, t)
	case kindNotifGroup:
		p := g.peer()
		n := notification(g.group(), "w:gp2", node.New("subject",
			node.StrAttr("subject", "Emulated group"), node.IntAttr("s_t", now.Unix()), node.JIDAttr("s_o", p)))
		return n.WithAttr(node.JIDAttr("participant", p))
	case kindNotifDevices:
		p := g.peer()
		return notification(p, "devices", node.New("add", node.StrAttr("device_hash", "2:"+strconv.Itoa(g.rnd.IntN(1<<20)))).
			WithChildren(node.New("device", node.JIDAttr("jid", jid.JID{User: p.User, Device: uint16(1 + g.rnd.IntN(20)), Server: jid.DefaultUserServer}))))
	case kindNotifPicture:
		p := g.peer()
		return notification(p, "picture", node.New("set", node.JIDAttr("jid", p), node.StrAttr("id", strconv.FormatInt(now.Unix(), 10))))
	case kindNotifServerSync:
		return notification(jid.ServerJID, "server_sync",
			node.New("collection", node.StrAttr("name", "regular_high"), node.IntAttr("version", int64(1+g.rnd.IntN(1000)))))
	case kindNotifAccountSync:
		return notification(g.own, "account_sync",
			node.New("privacy").WithChildren(node.New("category", node.StrAttr("name", "last"), node.StrAttr("value", "contacts"))))
	case kindNotifPrivacyToken:
		p := g.peer()
		return notification(p, "privacy_token", node.New("tokens").WithChildren(
			node.New("token", node.JIDAttr("jid", p), node.IntAttr("t", now.Unix()), node.StrAttr("type", "trusted_contact")).WithBytes(g.bytes(24))))
	case kindNotifUnknown:
		return notification(jid.ServerJID, unknownNotificationType, node.New("item", node.StrAttr("value", "opaque")))
	case kindCall:
		p := g.peer()
		return node.New("call", from(p), srvID, t, node.StrAttr("notify", g.name())).WithChildren(
			node.New("offer", node.StrAttr("call-id", fmt.Sprintf("%016X%016X", g.rnd.Uint64(), g.rnd.Uint64())),
				node.JIDAttr("call-creator", p)))
	}
	panic(fmt.Sprintf("emulator: unknown stanza kind %d", k))
}

// encryptNotification tells a device that the server holds only count of
// its one-time prekeys: <notification from="s.whatsapp.net" id
// type="encrypt" t><count value=N/></notification>.
func encryptNotification(id string, now time.Time, count int64) node.Node {
	return node.New("notification", node.JIDAttr("from", jid.ServerJID), node.StrAttr("id", id),
		node.StrAttr("type", "encrypt"), node.IntAttr("t", now.Unix())).WithChildren(node.New("count", node.IntAttr("value", count)))
}

// nonAckable is a stanza the client must not ack: presence or chatstate,
// alternately.
func (g *stanzaGen) nonAckable() node.Node {
	p := g.peer()
	if g.live%8 == 0 {
		return node.New("chatstate", node.JIDAttr("from", p)).WithChildren(node.New("composing"))
	}
	return node.New("presence", node.JIDAttr("from", p), node.StrAttr("type", "available"))
}
