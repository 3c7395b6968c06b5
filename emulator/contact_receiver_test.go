package emulator_test

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/signal"
	"github.com/wafleet/wafleet/waproto"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// receiver is a test-side companion built from package signal alone: it
// uploads real one-time prekeys, decrypts what contacts send it, and acks
// and receipts like the reference clients. It stands in for the client's
// receive path, so these tests do not depend on it.
type receiver struct {
	t       *testing.T
	srv     *emulator.Server
	d       *testDevice
	c       *testConn
	prekeys map[uint32]*crypto.KeyPair
	nextKey uint32
	// sessions by sender device, sender keys by group and sender device
	sessions   map[jid.JID]*signal.Session
	senderKeys map[[2]jid.JID]*signal.SenderKey
}

// newReceiver pairs a device on srv (day-one on, so uploads are checked and
// kept), logs it in and uploads n real one-time prekeys.
func newReceiver(t *testing.T, srv *emulator.Server, n int) (*receiver, emulator.Linked) {
	t.Helper()
	d := newTestDevice(t)
	linked := pair(t, srv, d)
	d.jid, d.lid = linked.JID, linked.LID
	r := &receiver{t: t, srv: srv, d: d, prekeys: map[uint32]*crypto.KeyPair{},
		sessions: map[jid.JID]*signal.Session{}, senderKeys: map[[2]jid.JID]*signal.SenderKey{}}
	r.connect()
	if srv.DayOne().Enabled {
		r.c.expectTag("ib")
	}
	r.upload(n)
	return r, linked
}

// connect logs the device in.
func (r *receiver) connect() {
	r.t.Helper()
	r.c = login(r.t, r.srv, r.d)
	r.c.expectTag("success")
}

// upload uploads n fresh one-time prekeys with their private halves kept.
func (r *receiver) upload(n int) {
	r.t.Helper()
	u := goodUpload(r.t, r.d, 1, 1)
	u.keys = nil
	for range n {
		kp, err := crypto.GenerateKeyPair()
		if err != nil {
			r.t.Fatal(err)
		}
		r.nextKey++
		r.prekeys[r.nextKey] = kp
		id := r.nextKey
		u.keys = append(u.keys, node.New("key").WithChildren(
			node.New("id").WithBytes([]byte{byte(id >> 16), byte(id >> 8), byte(id)}),
			node.New("value").WithBytes(kp.Pub[:])))
	}
	iqID := fmt.Sprintf("up%d", r.nextKey)
	r.c.send(u.node(iqID))
	r.c.expectResult(iqID, "result")
}

// sender is the device a message stanza comes from: the participant of a
// group message, else from.
func sender(n node.Node) jid.JID {
	if p, ok := n.AttrJID("participant"); ok {
		return p
	}
	f, _ := n.AttrJID("from")
	return f
}

// decrypt decrypts every <enc> of a message stanza in order, learning sender
// keys from distribution messages, and returns the last Message and the
// <enc> types seen.
func (r *receiver) decrypt(n node.Node) (*waproto.Message, []string, error) {
	from := sender(n)
	chat, _ := n.AttrJID("from")
	var last *waproto.Message
	var types []string
	for i := range n.Children() {
		enc := &n.Children()[i]
		typ, _ := enc.Attr("type")
		types = append(types, typ)
		body, _ := enc.Bytes()
		var padded []byte
		var err error
		switch typ {
		case "pkmsg":
			m, perr := signal.ParsePreKeySignalMessage(body)
			if perr != nil {
				return nil, types, perr
			}
			keys := signal.ResponderKeys{
				Local:        signal.LocalIdentity{Key: r.d.identity, RegistrationID: r.d.regID},
				SignedPreKey: r.d.spk,
			}
			if m.HasPreKeyID {
				keys.PreKey = r.prekeys[m.PreKeyID]
			}
			s := r.sessions[from]
			if s == nil {
				s = &signal.Session{}
			}
			if padded, err = s.DecryptPreKey(m, keys); err == nil {
				r.sessions[from] = s
				if m.HasPreKeyID {
					delete(r.prekeys, m.PreKeyID)
				}
			}
		case "msg":
			s := r.sessions[from]
			if s == nil {
				return nil, types, signal.ErrNoSession
			}
			padded, err = s.Decrypt(body)
		case "skmsg":
			sk := r.senderKeys[[2]jid.JID{chat, from}]
			if sk == nil {
				return nil, types, signal.ErrNoSenderKey
			}
			padded, err = sk.Decrypt(body)
		default:
			return nil, types, fmt.Errorf("enc type %q", typ)
		}
		if err != nil {
			return nil, types, err
		}
		plain, err := signal.Unpad(padded)
		if err != nil {
			return nil, types, err
		}
		var m waproto.Message
		if err := proto.Unmarshal(plain, &m); err != nil {
			return nil, types, err
		}
		if skdm := m.GetSenderKeyDistributionMessage(); skdm != nil {
			g, err := jid.Parse(skdm.GetGroupID())
			if err != nil {
				return nil, types, err
			}
			dist, err := signal.ParseSenderKeyDistribution(skdm.GetAxolotlSenderKeyDistributionMessage())
			if err != nil {
				return nil, types, err
			}
			k := [2]jid.JID{g, from}
			if r.senderKeys[k] == nil {
				r.senderKeys[k] = &signal.SenderKey{}
			}
			r.senderKeys[k].Process(dist)
		}
		last = &m
	}
	return last, types, nil
}

// receipt is the delivery receipt whatsmeow sends for a message stanza:
// id, to = its from, participant and recipient copied; type "sender" for
// a message from our own account.
func receipt(n node.Node, own jid.JID) node.Node {
	id, _ := n.Attr("id")
	from, _ := n.AttrJID("from")
	out := node.New("receipt", node.StrAttr("id", id), node.JIDAttr("to", from))
	for _, k := range []string{"participant", "recipient"} {
		if j, ok := n.AttrJID(k); ok {
			out = out.WithAttr(node.JIDAttr(k, j))
		}
	}
	if from.User == own.User {
		out = out.WithAttr(node.StrAttr("type", "sender"))
	}
	return out
}

// retryReceipt is whatsmeow's retry receipt for a message stanza, with
// <keys> (a fresh one-time prekey) when withKeys.
func (r *receiver) retryReceipt(n node.Node, count int, withKeys bool) node.Node {
	r.t.Helper()
	id, _ := n.Attr("id")
	from, _ := n.AttrJID("from")
	t, _ := n.Attr("t")
	out := node.New("receipt", node.StrAttr("id", id), node.JIDAttr("to", from), node.StrAttr("type", "retry"))
	for _, k := range []string{"participant", "recipient"} {
		if j, ok := n.AttrJID(k); ok {
			out = out.WithAttr(node.JIDAttr(k, j))
		}
	}
	reg := []byte{byte(r.d.regID >> 24), byte(r.d.regID >> 16), byte(r.d.regID >> 8), byte(r.d.regID)}
	children := []node.Node{
		node.New("retry", node.IntAttr("count", int64(count)), node.StrAttr("id", id), node.StrAttr("t", t), node.StrAttr("v", "1")),
		node.New("registration").WithBytes(reg),
	}
	if withKeys {
		kp, err := crypto.GenerateKeyPair()
		if err != nil {
			r.t.Fatal(err)
		}
		r.nextKey++
		r.prekeys[r.nextKey] = kp
		k := r.nextKey
		sig := signSPK(r.t, r.d)
		children = append(children, node.New("keys").WithChildren(
			node.New("type").WithBytes([]byte{5}),
			node.New("identity").WithBytes(r.d.identity.Pub[:]),
			node.New("key").WithChildren(
				node.New("id").WithBytes([]byte{byte(k >> 16), byte(k >> 8), byte(k)}),
				node.New("value").WithBytes(kp.Pub[:])),
			node.New("skey").WithChildren(
				node.New("id").WithBytes([]byte{0, 0, 1}),
				node.New("value").WithBytes(r.d.spk.Pub[:]),
				node.New("signature").WithBytes(sig[:])),
			node.New("device-identity").WithBytes([]byte{1, 2, 3}),
		))
	}
	return out.WithChildren(children...)
}

// nextMessage returns the next <message>, acking anything else ackable.
func (r *receiver) nextMessage() node.Node {
	r.t.Helper()
	return r.c.pump(func(n node.Node) bool { return n.Tag == "message" })
}

// receive takes the next message, decrypts it, and sends the receipt and
// the ack; it returns the stanza and its Message.
func (r *receiver) receive() (node.Node, *waproto.Message) {
	r.t.Helper()
	n := r.nextMessage()
	m, _, err := r.decrypt(n)
	if err != nil {
		r.t.Fatalf("decrypt %v: %v", n, err)
	}
	r.c.send(receipt(n, r.d.jid))
	r.c.send(emulator.AckFor(n))
	return n, m
}
