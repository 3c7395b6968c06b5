package emulator

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/signal"
	"github.com/wafleet/wafleet/waproto"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// maxContactText bounds the text of one emulated message.
const maxContactText = 64 << 10

// Errors of the sends: ErrNoRecipient when the account sent to names no
// emulated account or has no paired companion, ErrBadMessage for a text
// that is empty or longer than 64 KiB or a group JID that is not one.
var (
	ErrNoRecipient = errors.New("emulator: no device to deliver to")
	ErrBadMessage  = errors.New("emulator: bad message")
)

// SentMessage is what a contact's send did: the message id, shared by the
// stanza of every recipient device, and those devices.
type SentMessage struct {
	ID      string    `json:"id"`
	Devices []jid.JID `json:"devices"`
}

// SendText makes a contact's device send a text message to an emulated
// account (to: its user JID, any device part ignored), through the real
// protocol path: for each of the account's companions the device builds a
// session from a bundle the server hands out (one one-time prekey per
// fetch) unless it has one, pads and encrypts a Message{conversation}, and
// the server queues <message from=DEVICE id t type="text"
// notify=NAME><enc v="2" type="pkmsg"|"msg">…</enc></message> for the
// companion (acked, redelivered, receipts awaited: contactroute.go). The
// account's phone is not a recipient: the emulated phone reads nothing.
func (s *Server) SendText(from *SignalDevice, to jid.JID, text string) (SentMessage, error) {
	if err := checkText(text); err != nil {
		return SentMessage{}, err
	}
	msg := &waproto.Message{Conversation: proto.String(text)}
	return s.counted(s.send(from, to, outgoing{from: from.jid, notify: s.nameOf(from)}, msg, msg))
}

// SendFromPhone makes an account's phone send a text to peer (a user JID)
// and hands the copy to the account's companions, as the real phone does
// for its own devices: each gets <message from=OWN id t type="text"
// recipient=PEER><enc …/></message> whose plaintext is a
// Message{deviceSentMessage{destinationJID: PEER, message:
// {conversation}}}, encrypted by the phone's Signal device (whose identity
// is the account's primary key). whatsmeow and Baileys read such a message
// as from us in the chat with recipient.
func (s *Server) SendFromPhone(account, peer jid.JID, text string) (SentMessage, error) {
	if err := checkText(text); err != nil {
		return SentMessage{}, err
	}
	s.reg.mu.Lock()
	a := s.reg.accounts[account.User]
	var phone *SignalDevice
	var err error
	if a != nil && account.Server == jid.DefaultUserServer {
		phone, err = a.phoneDevice()
	}
	s.reg.mu.Unlock()
	switch {
	case err != nil:
		return SentMessage{}, err
	case phone == nil:
		return SentMessage{}, fmt.Errorf("%w: %s is not an emulated account", ErrNoRecipient, account)
	}
	peer = peer.ToNonAD()
	msg := deviceSent(peer, text)
	return s.counted(s.send(phone, account, outgoing{from: phone.jid.ToNonAD(), recipient: peer}, msg, msg))
}

// deviceSent is the copy of a text to peer (a user JID) that a phone hands
// its own companions.
func deviceSent(peer jid.JID, text string) *waproto.Message {
	return &waproto.Message{DeviceSentMessage: &waproto.Message_DeviceSent{
		DestinationJID: proto.String(peer.String()),
		Message:        &waproto.Message{Conversation: proto.String(text)},
	}}
}

// SendGroupText makes a contact's device send a text to a group whose other
// members are the given emulated accounts. Each of their companions that
// lacks the device's sender key for the group gets it in a 1:1 part of the
// same stanza, as the real server delivers a sender's fan-out:
// <message from=GROUP participant=DEVICE id t type="text" notify><enc v="2"
// type="pkmsg"|"msg">Message{senderKeyDistributionMessage}</enc><enc v="2"
// type="skmsg">…</enc></message>; the others get the skmsg alone. (whatsmeow
// sends the distribution in <participants> and the skmsg once; the server
// puts each device's part and the skmsg in one stanza, and both reference
// clients decrypt every <enc> of a message in order.)
func (s *Server) SendGroupText(from *SignalDevice, group jid.JID, members []jid.JID, text string) (SentMessage, error) {
	if err := checkText(text); err != nil {
		return SentMessage{}, err
	}
	if len(members) == 0 {
		return SentMessage{}, fmt.Errorf("%w: a group send names no member", ErrNoRecipient)
	}
	if group.Server != jid.GroupServer || group.User == "" {
		return SentMessage{}, fmt.Errorf("%w: %s is not a group JID", ErrBadMessage, group)
	}
	content := &waproto.Message{Conversation: proto.String(text)}
	o, dist, err := s.groupSend(from, group, content)
	if err != nil {
		return SentMessage{}, err
	}
	out := SentMessage{ID: o.id}
	for _, m := range members {
		sent, err := s.send(from, m, o, dist, content)
		if err != nil {
			return out, err
		}
		out.Devices = append(out.Devices, sent.Devices...)
	}
	return s.counted(out, nil)
}

// groupSend encrypts content once with the sender's key for group and
// returns how its stanzas look (a new id, the skmsg) and the 1:1 message
// that distributes the sender key to a device that lacks it.
func (s *Server) groupSend(from *SignalDevice, group jid.JID, content *waproto.Message) (outgoing, *waproto.Message, error) {
	skmsg, skdm, err := from.groupEncrypt(group, signal.Pad(mustMarshal(content)))
	if err != nil {
		return outgoing{}, nil, err
	}
	o := outgoing{from: group, participant: from.jid, notify: s.nameOf(from), skmsg: skmsg, id: newMessageID()}
	return o, &waproto.Message{SenderKeyDistributionMessage: skdm}, nil
}

// counted counts a send in contact_messages when it reached a device.
func (s *Server) counted(out SentMessage, err error) (SentMessage, error) {
	if len(out.Devices) > 0 {
		s.stats.add(func(st *Stats) *int64 { return &st.ContactMessages }, 1)
	}
	return out, err
}

func checkText(text string) error {
	if text == "" || len(text) > maxContactText {
		return fmt.Errorf("%w: text of %d bytes, want 1..%d", ErrBadMessage, len(text), maxContactText)
	}
	return nil
}

// mustMarshal marshals a Message built here (it cannot fail).
func mustMarshal(m *waproto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("emulator: marshal message: %v", err))
	}
	return b
}

// newMessageID is a message id in the style of a phone's: 3A and 18
// upper-case hex digits.
func newMessageID() string {
	var b [9]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return "3A" + strings.ToUpper(hex.EncodeToString(b[:]))
}

// nameOf is the push name a device's messages carry.
func (s *Server) nameOf(d *SignalDevice) string {
	if c, ok := s.Contact(d.jid); ok {
		return c.name
	}
	return ""
}

// outgoing is how a send's stanzas look: from, participant and recipient
// attributes, the push name, and for a group the skmsg every device gets.
type outgoing struct {
	id                     string // "": a new one
	from                   jid.JID
	participant, recipient jid.JID
	notify                 string
	skmsg                  []byte
}

// send encrypts msg from sender for every companion of the account to names
// and queues one stanza per companion; content is what a resend carries.
func (s *Server) send(sender *SignalDevice, to jid.JID, o outgoing, msg, content *waproto.Message) (SentMessage, error) {
	targets, _ := s.reg.companionsOf(to.User, to.Server)
	if len(targets) == 0 {
		return SentMessage{}, fmt.Errorf("%w: %s has no paired companion", ErrNoRecipient, to.ToNonAD())
	}
	if o.id == "" {
		o.id = newMessageID()
	}
	plaintext := mustMarshal(msg)
	out := SentMessage{ID: o.id}
	now := time.Now()
	for _, d := range targets {
		if err := s.route(sender, d, o, plaintext, content, now, false); err != nil {
			return out, err
		}
		out.Devices = append(out.Devices, d.jid)
	}
	s.stats.add(func(st *Stats) *int64 { return &st.MessagesRouted }, int64(len(out.Devices)))
	return out, nil
}

// encryptFor encrypts a padded plaintext for peer under the device's
// session with it. A new session is built first when there is none, or
// when fresh is set: from bundle when given, else from one the server
// hands out.
func (s *Server) encryptFor(sender *SignalDevice, peer jid.JID, padded []byte, fresh bool, bundle *signal.Bundle) (signal.Ciphertext, error) {
	sender.mu.Lock()
	_, has := sender.sessions[peer]
	sender.mu.Unlock()
	if bundle == nil && (fresh || !has) {
		// Fetched without holding sender.mu (lock order: registry first).
		b, err := s.PreKeyBundle(peer)
		if err != nil {
			return signal.Ciphertext{}, fmt.Errorf("bundle of %s: %w", peer, err)
		}
		bundle, fresh = &b, true
	}
	sender.mu.Lock()
	defer sender.mu.Unlock()
	sess := sender.sessions[peer]
	if sess == nil || fresh {
		if sess == nil {
			sess = &signal.Session{}
		}
		if err := sess.Initiate(sender.local, bundle); err != nil {
			return signal.Ciphertext{}, fmt.Errorf("session with %s: %w", peer, err)
		}
		sender.sessions[peer] = sess
	}
	ct, err := sess.Encrypt(padded)
	if err == nil {
		if ct.Type == signal.TypePreKey {
			sender.traffic.SentPreKey++
		} else {
			sender.traffic.SentMsg++
		}
	}
	return ct, err
}

// senderKey returns the device's sender key for group, made on first use
// (caller holds mu).
func (d *SignalDevice) senderKey(group jid.JID) (*signal.SenderKey, error) {
	sk := d.ownSKs[group]
	if sk == nil {
		var err error
		if sk, err = signal.NewSenderKey(); err != nil {
			return nil, err
		}
		d.ownSKs[group] = sk
	}
	return sk, nil
}

// distribution is the device's sender key for group as a member gets it
// (at its current iteration).
func (d *SignalDevice) distribution(group jid.JID) (*waproto.Message_SenderKeyDistribution, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.distributionLocked(group)
}

func (d *SignalDevice) distributionLocked(group jid.JID) (*waproto.Message_SenderKeyDistribution, error) {
	sk, err := d.senderKey(group)
	if err != nil {
		return nil, err
	}
	dist, err := sk.Distribution()
	if err != nil {
		return nil, err
	}
	return &waproto.Message_SenderKeyDistribution{
		GroupID:                             proto.String(group.String()),
		AxolotlSenderKeyDistributionMessage: dist.Marshal(),
	}, nil
}

// groupEncrypt encrypts a padded plaintext with the device's sender key for
// the group and returns the skmsg and the distribution that lets a member
// decrypt it (taken before the encryption, so it names the message's
// iteration).
func (d *SignalDevice) groupEncrypt(group jid.JID, padded []byte) ([]byte, *waproto.Message_SenderKeyDistribution, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	skdm, err := d.distributionLocked(group)
	if err != nil {
		return nil, nil, err
	}
	body, err := d.ownSKs[group].Encrypt(padded)
	if err != nil {
		return nil, nil, err
	}
	return body, skdm, nil
}

// encNode is an <enc v="2" type=T [count=N]> with the ciphertext.
func encNode(typ string, body []byte, count int) node.Node {
	n := node.New("enc", node.StrAttr("v", "2"), node.StrAttr("type", typ))
	if count > 0 {
		n = n.WithAttr(node.IntAttr("count", int64(count)))
	}
	return n.WithBytes(body)
}

// messageNode builds the stanza one device gets.
func (o *outgoing) messageNode(t int64, encs ...node.Node) node.Node {
	attrs := []node.Attr{node.JIDAttr("from", o.from), node.StrAttr("id", o.id), node.IntAttr("t", t), node.StrAttr("type", "text")}
	if !o.participant.IsEmpty() {
		attrs = append(attrs, node.JIDAttr("participant", o.participant))
	}
	if !o.recipient.IsEmpty() {
		attrs = append(attrs, node.JIDAttr("recipient", o.recipient))
	}
	if o.notify != "" {
		attrs = append(attrs, node.StrAttr("notify", o.notify))
	}
	return node.New("message", attrs...).WithChildren(encs...)
}
