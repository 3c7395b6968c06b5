package emulator

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/signal"
	"github.com/wafleet/wafleet/waproto"
	"github.com/wafleet/wafleet/wire/e2e"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// maxParticipants bounds the <to> nodes of one message.
const maxParticipants = 1024

// errSmaxInvalid is the ack error of a message the server refuses as
// malformed: 479, "smax-invalid" (Baileys' SERVER_ERROR_CODES; whatsmeow
// reports any error attribute as ErrServerReturnedError). Which code the
// real server gives for each refusal below is not documented; 479 is the
// one both implementations see for "stale device session or malformed
// addressing".
const errSmaxInvalid = 479

// routeMessage serves a companion's 1:1 <message> (wire/e2e describes it): every
// <to jid=DEVICE><enc/></to> goes to its device (deliverPart), the sender
// gets <ack class=message id from=CHAT t/>, then a delivery receipt from
// the first of the chat's devices that decrypted its part (one: the
// device queue keys stanzas by id), and a retry receipt from each
// emulated device that could not decrypt its part (sendRetryReceipt).
// A <message to=DEVICE> with an <enc> of its own answers such a receipt
// (routeRetryAnswer).
//
// Teeth: a pkmsg part without a valid <device-identity> (the sender's
// ADVSignedDeviceIdentity, signed by its account's phone) refuses the
// whole message (ack error 479, nothing delivered, a violation listed);
// parts for devices the server does not know are dropped; when the
// devices addressed differ from the server's list of the chat's and the
// sender's own other devices, the ack carries the server's phash, as both
// reference clients read it (whatsmeow drops its device cache), and the
// missed devices get nothing.
func (sess *session) routeMessage(n node.Node) error {
	s := sess.s
	id, _ := n.Attr("id")
	to, okTo := n.AttrJID("to")
	if id != "" && okTo && to.Server == jid.GroupServer && to.User != "" {
		return sess.routeGroupMessage(n, id, to)
	}
	if _, ok := n.Child("enc"); ok && id != "" && okTo && to.Server == jid.DefaultUserServer && to.User != "" {
		chat := to.ToNonAD()
		if rc, ok := n.AttrJID("recipient"); ok {
			chat = rc.ToNonAD()
		}
		return sess.routeRetryAnswer(n, id, chat, to)
	}
	if id == "" || !okTo || to.Server != jid.DefaultUserServer || to.Device != 0 || to.User == "" {
		return sess.violate("message without id or a user to")
	}
	parts, identity, err := messageParts(n)
	if err == nil {
		err = sess.checkIdentity(parts, identity)
	}
	if err != nil {
		return sess.refuseMessage(id, to, err)
	}

	sender := sess.dev.jid
	want := s.devicesOf(to.User)
	if own := jid.New(sender.User, jid.DefaultUserServer); own != to {
		for _, d := range s.devicesOf(sender.User) {
			if d != sender {
				want = append(want, d)
			}
		}
	}
	var receiptFrom jid.JID    // the first of the chat's devices that decrypted its part
	var failed []*SignalDevice // emulated devices that could not, for their retry receipts
	addressed := make([]jid.JID, 0, len(parts))
	for _, p := range parts {
		addressed = append(addressed, p.dev)
		switch decrypted := s.deliverPart(sess, id, to, p, identity); {
		case decrypted && p.dev.User == to.User && receiptFrom.IsEmpty():
			receiptFrom = p.dev
		case !decrypted:
			if sd, ok := s.SignalDevice(p.dev); ok {
				failed = append(failed, sd)
			}
		}
	}
	s.stats.add(func(st *Stats) *int64 { return &st.CompanionMessages }, 1)
	ack := node.New("ack", node.StrAttr("class", "message"), node.StrAttr("id", id), node.JIDAttr("from", to),
		node.IntAttr("t", time.Now().Unix()))
	if server := e2e.ParticipantHash(want); server != e2e.ParticipantHash(addressed) {
		ack = ack.WithAttr(node.StrAttr("phash", server))
	}
	if err := sess.send(ack); err != nil {
		return err
	}
	if !receiptFrom.IsEmpty() {
		s.enqueue(sess.dev, func(uint64, uint32) node.Node {
			return node.New("receipt", node.JIDAttr("from", receiptFrom), node.StrAttr("id", id), node.IntAttr("t", time.Now().Unix()))
		})
	}
	for _, sd := range failed {
		s.sendRetryReceipt(sess.dev, sd, id, to)
	}
	return nil
}

// part is one <to> of a message.
type part struct {
	dev  jid.JID
	typ  string
	body []byte
}

// messageParts reads the <participants> and <device-identity> of a message.
func messageParts(n node.Node) ([]part, []byte, error) {
	ps, ok := n.Child("participants")
	if !ok || len(ps.Children()) == 0 {
		return nil, nil, errors.New("no <participants>")
	}
	if len(ps.Children()) > maxParticipants {
		return nil, nil, fmt.Errorf("more than %d participants", maxParticipants)
	}
	parts := make([]part, 0, len(ps.Children()))
	seen := make(map[jid.JID]bool, len(ps.Children()))
	for _, t := range ps.Children() {
		dev, ok := t.AttrJID("jid")
		if t.Tag != "to" || !ok || seen[dev] {
			return nil, nil, errors.New("a participant that is not one <to jid> per device")
		}
		seen[dev] = true
		enc, ok := t.Child("enc")
		body, isBytes := enc.Bytes()
		typ, _ := enc.Attr("type")
		v, _ := enc.Attr("v")
		if !ok || !isBytes || len(body) == 0 || v != "2" || (typ != "msg" && typ != "pkmsg") {
			return nil, nil, fmt.Errorf("<to jid=%s> without one <enc v=2 type=msg|pkmsg> ciphertext", dev)
		}
		parts = append(parts, part{dev: dev, typ: typ, body: body})
	}
	var identity []byte
	if di, ok := n.Child("device-identity"); ok {
		if identity, ok = di.Bytes(); !ok || len(identity) == 0 {
			return nil, nil, errors.New("an empty <device-identity>")
		}
	}
	return parts, identity, nil
}

func hasPreKey(parts []part) bool {
	for _, p := range parts {
		if p.typ == "pkmsg" {
			return true
		}
	}
	return false
}

// checkDeviceIdentity checks that identity is the sending companion's
// ADVSignedDeviceIdentity: signed by its account's primary key over its
// own identity key.
func (sess *session) checkDeviceIdentity(identity []byte) error {
	var sdi waproto.ADVSignedDeviceIdentity
	var di waproto.ADVDeviceIdentity
	if proto.Unmarshal(identity, &sdi) != nil || proto.Unmarshal(sdi.GetDetails(), &di) != nil {
		return errors.New("<device-identity> is not an ADVSignedDeviceIdentity")
	}
	d := sess.dev
	if string(sdi.GetAccountSignatureKey()) != string(d.account.primary.Pub[:]) {
		return errors.New("<device-identity> is not signed by the sender's phone")
	}
	if err := crypto.VerifyADVAccountSignature(&sdi, &di, d.identityPub[:]); err != nil {
		return fmt.Errorf("<device-identity>: %w", err)
	}
	return nil
}

// deliverPart hands one part to its device: an emulated Signal device (a
// contact's, or the sending account's phone) decrypts it, another
// companion gets it queued as <message from=SENDER recipient=CHAT>; a
// device the server does not know gets nothing. It reports whether an
// emulated device decrypted it (a failure is counted in
// companion_decrypt_failures).
func (s *Server) deliverPart(sess *session, id string, chat jid.JID, p part, identity []byte) (decrypted bool) {
	if sd, ok := s.SignalDevice(p.dev); ok {
		if err := sd.receive(sess.dev.jid, id, chat, p.typ, p.body); err != nil {
			sess.log.Info("emulated device could not decrypt", "device", p.dev.String(), "id", id, "err", err)
			s.stats.add(func(st *Stats) *int64 { return &st.CompanionDecryptFailures }, 1)
			return false
		}
		return true
	}
	s.reg.mu.Lock()
	d, ok := s.reg.devices[p.dev]
	s.reg.mu.Unlock()
	if !ok {
		return false
	}
	content := []node.Node{node.New("enc", node.StrAttr("v", "2"), node.StrAttr("type", p.typ)).WithBytes(p.body)}
	if p.typ == "pkmsg" {
		content = append(content, node.New("device-identity").WithBytes(identity))
	}
	from := sess.dev.jid
	s.enqueue(d, func(uint64, uint32) node.Node {
		return node.New("message", node.JIDAttr("from", from), node.JIDAttr("recipient", chat),
			node.StrAttr("id", id), node.StrAttr("type", "text"), node.IntAttr("t", time.Now().Unix())).WithChildren(content...)
	})
	return false
}

// SignalDevice returns the emulated Signal device j names: a contact's
// device, or an emulated account's phone (device 0).
func (s *Server) SignalDevice(j jid.JID) (*SignalDevice, bool) {
	if d, ok := s.contactDevice(j); ok {
		return d, true
	}
	if j.Device != 0 || j.Server != jid.DefaultUserServer {
		return nil, false
	}
	s.reg.mu.Lock()
	defer s.reg.mu.Unlock()
	a := s.reg.accounts[j.User]
	if a == nil {
		return nil, false
	}
	d, err := a.phoneDevice()
	return d, err == nil
}

// maxReceived bounds the messages an emulated device keeps (Received).
const maxReceived = 64

// Received is a message an emulated device decrypted from one of our
// companions.
type Received struct {
	ID      string
	From    jid.JID // the sending companion
	Chat    jid.JID // the user or group the message was sent to
	Type    string  // "pkmsg", "msg" or (a group's) "skmsg"
	Message *waproto.Message
}

// Received returns the last messages (at most 64) the device decrypted
// from our companions, oldest first.
func (d *SignalDevice) Received() []Received {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.received)
}

// receive decrypts a ciphertext a companion sent the device: a pkmsg
// builds the session from the device's signed prekey and the one-time
// prekey it names, a msg continues it; the plaintext is unpadded and
// parsed as a Message. In a group chat, the sender key distribution it
// carries is learnt (learnSenderKey), and a Message that carries nothing
// else is not recorded. Nothing but the device's Traffic changes when it
// fails.
func (d *SignalDevice) receive(from jid.JID, id string, chat jid.JID, typ string, body []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	err := d.decryptLocked(from, id, chat, typ, body)
	switch {
	case err != nil:
		d.traffic.DecryptFailures++
	case typ == "pkmsg":
		d.traffic.ReceivedPreKey++
	default:
		d.traffic.ReceivedMsg++
	}
	return err
}

// decryptLocked is receive's decryption (caller holds mu).
func (d *SignalDevice) decryptLocked(from jid.JID, id string, chat jid.JID, typ string, body []byte) error {
	sess := d.sessions[from]
	if sess == nil {
		sess = new(signal.Session) // a failed decryption leaves it unused
	}
	var plain []byte
	var err error
	switch typ {
	case "pkmsg":
		var m *signal.PreKeySignalMessage
		if m, err = signal.ParsePreKeySignalMessage(body); err != nil {
			return err
		}
		if m.SignedPreKeyID != d.signedID {
			return fmt.Errorf("unknown signed prekey %d", m.SignedPreKeyID)
		}
		keys := signal.ResponderKeys{Local: d.local, SignedPreKey: d.signed}
		if m.HasPreKeyID {
			// a consumed one-time prekey is gone: only a repeat on the
			// session it built decrypts (signal.ErrMissingPreKey otherwise)
			keys.PreKey = d.preKeys[m.PreKeyID]
		}
		if plain, err = sess.DecryptPreKey(m, keys); err == nil && m.HasPreKeyID {
			delete(d.preKeys, m.PreKeyID)
		}
	case "msg":
		plain, err = sess.Decrypt(body)
	default:
		err = fmt.Errorf("enc type %q", typ)
	}
	if err != nil {
		return err
	}
	msg, err := decodePlaintext(plain)
	if err != nil {
		return err
	}
	skdm := msg.GetSenderKeyDistributionMessage()
	if skdm != nil && chat.Server == jid.GroupServer {
		if err := d.learnSenderKey(from, chat, skdm); err != nil {
			return err
		}
	}
	d.sessions[from] = sess
	if skdm == nil || msg.Conversation != nil {
		d.record(Received{ID: id, From: from, Chat: chat, Type: typ, Message: msg})
	}
	return nil
}

// record keeps a decrypted message, the last maxReceived (caller holds
// mu).
func (d *SignalDevice) record(r Received) {
	if len(d.received) == maxReceived {
		d.received = slices.Delete(d.received, 0, 1)
	}
	d.received = append(d.received, r)
}
