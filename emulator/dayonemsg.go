package emulator

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/waproto"
	"github.com/wafleet/wafleet/wire/jid"
)

// dayOneContactCount is how many emulated contacts day-one messages come from:
// a small pool shared by every connection (each contact holds a session
// and a sender key per device it writes to, not per message).
const dayOneContactCount = 8

// dayOnePhoneBase numbers day-one's contacts, 1555190xxxx: apart from the
// contacts AddContact numbers by itself (1555100xxxx) and the made-up
// peers (15559xxxxxx).
const dayOnePhoneBase = 15551900000

// DayOneParty reports whether j (any device) is one of day-one mode's
// parties: a contact of its pool or a made-up peer. Tools that show
// messages (manager demo) leave day-one's traffic out by it.
func (s *Server) DayOneParty(j jid.JID) bool {
	if j.Server != jid.DefaultUserServer {
		return false
	}
	if len(j.User) == 11 && strings.HasPrefix(j.User, "15559") {
		return true
	}
	p := &s.d1pool
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.contacts {
		if c.user.User == j.User {
			return true
		}
	}
	return false
}

// dayOnePool is the contacts day-one messages come from, made on first use
// (guarded by mu; lock order: mu, then registry.mu).
type dayOnePool struct {
	mu       sync.Mutex
	contacts []*Contact
}

// dayOneContacts returns the day-one contacts, made on first use.
func (s *Server) dayOneContacts() ([]*Contact, error) {
	p := &s.d1pool
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.contacts) < dayOneContactCount {
		c, err := s.AddContact(strconv.FormatUint(dayOnePhoneBase+uint64(len(p.contacts))+1, 10))
		if err != nil {
			return nil, fmt.Errorf("day-one contact: %w", err)
		}
		p.contacts = append(p.contacts, c)
	}
	return p.contacts, nil
}

// dayOnePeer is where a device's day-one messages come from: one contact
// device for its 1:1 and group messages, the group (one per device: a
// sender key shared by many recipients would skip far ahead for each),
// and the account's phone for its own sent messages. Chosen from the
// device's JID, so every login of the device continues the same sessions.
type dayOnePeer struct {
	contact *SignalDevice
	group   jid.JID
	phone   *SignalDevice
}

// dayOnePeerOf picks the contact device and group of d and makes its
// account's phone device if needed.
func (s *Server) dayOnePeerOf(d *device) (*dayOnePeer, error) {
	contacts, err := s.dayOneContacts()
	if err != nil {
		return nil, err
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(d.jid.String()))
	sum := h.Sum64()
	p := &dayOnePeer{
		contact: contacts[sum%dayOneContactCount].devices[(sum/dayOneContactCount)%2],
		group:   jid.New("120363"+fmt.Sprintf("%012d", (sum>>8)%1_000_000_000_000), jid.GroupServer),
	}
	s.reg.mu.Lock()
	p.phone, err = d.account.phoneDevice()
	s.reg.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return p, nil
}

// pushMessage pushes a day-one message of kind k as the real server
// delivers one: encrypted by the sender's Signal device through the
// contact send path (route), so the message is a routed one whose receipt
// is awaited and whose retry receipts are answered. A pkmsg kind makes the
// contact start a new session from a bundle of the device (using up one of
// its one-time prekeys, the server then sending an encrypt notification
// when few are left); a msg kind continues the session, started the same
// way at first. The Signal initiator keeps sending pkmsg until it hears
// from the peer (libsignal's unacknowledged prekey message), and day-one's
// client never writes to the contact, so both go out as pkmsg; only the
// first of a session uses a prekey. The group kind is an skmsg under the
// contact's sender key for the device's group, with the distribution in
// the first one; the own kind is a deviceSentMessage from the account's
// phone. It reports false when the connection no longer owns the device.
func (sess *session) pushMessage(d1 *sessionDayOne, k stanzaKind, now time.Time) bool {
	s := sess.s
	dev := sess.dev
	dev.st.mu.Lock()
	owned := dev.st.current == sess && !dev.st.removed
	dev.st.mu.Unlock()
	if !owned {
		return false
	}
	if d1.peer == nil {
		p, err := s.dayOnePeerOf(dev)
		if err != nil {
			sess.log.Error("day-one message not pushed", "err", err)
			return true
		}
		d1.peer = p
	}
	p := d1.peer
	d1.gen.texts++
	text := "day-one message " + strconv.Itoa(d1.gen.texts)
	content := &waproto.Message{Conversation: proto.String(text)}
	var (
		sender = p.contact
		o      outgoing
		msg    = content
		fresh  bool
		err    error
	)
	switch k {
	case kindMsgPkmsg, kindMsg:
		o = outgoing{from: sender.jid, notify: s.nameOf(sender), id: newMessageID()}
		fresh = k == kindMsgPkmsg
	case kindMsgGroup:
		o, msg, err = s.groupSend(sender, p.group, content)
	case kindMsgFromMe:
		sender = p.phone
		peer := d1.gen.peer()
		msg = deviceSent(peer, text)
		content = msg
		o = outgoing{from: sender.jid.ToNonAD(), recipient: peer, id: newMessageID()}
	default:
		panic(fmt.Sprintf("emulator: kind %d is not a message", k))
	}
	if err == nil {
		err = s.route(sender, dev, o, mustMarshal(msg), content, now, fresh)
	}
	if errors.Is(err, ErrUnknownDevice) {
		return false // the device was removed
	}
	if err != nil { // a bundle that does not verify, a key not made
		sess.log.Error("day-one message not pushed", "err", err)
		return true
	}
	s.stats.add(func(st *Stats) *int64 { return &st.StanzasPushed }, 1)
	return true
}
