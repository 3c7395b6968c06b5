package emulator

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/signal"
	"github.com/wafleet/wafleet/waproto"
	"github.com/wafleet/wafleet/wire/e2e"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// Groups the server knows (Server.AddGroup): their participants answer
// our companions' group info queries, and a companion's group message is
// routed to every member device.

// maxGroups bounds the groups of one server; maxGroupMembers a group's
// participants (WhatsApp's limit).
const (
	maxGroups       = 10_000
	maxGroupMembers = 1024
)

// groupIDBase starts the numbering of groups: 18-digit IDs like the real
// server's new groups (120363…).
const groupIDBase = 120363000000000000

// ErrGroup is wrapped by AddGroup's and AddGroupMember's errors.
var ErrGroup = errors.New("emulator: bad group")

// group is one group: its participants' user JIDs, in the order added.
type group struct {
	members []jid.JID
}

// AddGroup creates a group with the given members (phone-number user
// JIDs: emulated accounts, contacts, or anyone) and returns its JID
// (…@g.us). Errors wrap ErrGroup.
func (s *Server) AddGroup(members ...jid.JID) (jid.JID, error) {
	for _, m := range members {
		if err := checkMember(m); err != nil {
			return jid.JID{}, err
		}
	}
	if len(members) > maxGroupMembers {
		return jid.JID{}, fmt.Errorf("%w: more than %d members", ErrGroup, maxGroupMembers)
	}
	cb := &s.contacts
	cb.mu.Lock()
	defer cb.mu.Unlock()
	if len(cb.groups) >= maxGroups {
		return jid.JID{}, fmt.Errorf("%w: at most %d groups", ErrGroup, maxGroups)
	}
	if cb.groups == nil {
		cb.groups = make(map[string]*group)
	}
	cb.nextGroup++
	id := strconv.FormatUint(groupIDBase+cb.nextGroup, 10)
	g := &group{}
	for _, m := range members {
		if !slices.Contains(g.members, m.ToNonAD()) {
			g.members = append(g.members, m.ToNonAD())
		}
	}
	cb.groups[id] = g
	return jid.New(id, jid.GroupServer), nil
}

// AddGroupMember adds a member to a group. Errors wrap ErrGroup.
func (s *Server) AddGroupMember(groupJID, member jid.JID) error {
	if err := checkMember(member); err != nil {
		return err
	}
	cb := &s.contacts
	cb.mu.Lock()
	defer cb.mu.Unlock()
	g := cb.group(groupJID)
	switch {
	case g == nil:
		return fmt.Errorf("%w: no group %s", ErrGroup, groupJID)
	case slices.Contains(g.members, member.ToNonAD()):
		return nil
	case len(g.members) == maxGroupMembers:
		return fmt.Errorf("%w: more than %d members", ErrGroup, maxGroupMembers)
	}
	g.members = append(g.members, member.ToNonAD())
	return nil
}

// RemoveGroupMember removes a member from a group (nothing when it is not
// one). Errors wrap ErrGroup.
func (s *Server) RemoveGroupMember(groupJID, member jid.JID) error {
	cb := &s.contacts
	cb.mu.Lock()
	defer cb.mu.Unlock()
	g := cb.group(groupJID)
	if g == nil {
		return fmt.Errorf("%w: no group %s", ErrGroup, groupJID)
	}
	g.members = slices.DeleteFunc(g.members, func(m jid.JID) bool { return m == member.ToNonAD() })
	return nil
}

// GroupMembers returns a group's members (none for an unknown group).
func (s *Server) GroupMembers(groupJID jid.JID) []jid.JID {
	cb := &s.contacts
	cb.mu.Lock()
	defer cb.mu.Unlock()
	if g := cb.group(groupJID); g != nil {
		return slices.Clone(g.members)
	}
	return nil
}

// group returns the group j names (caller holds mu).
func (cb *contactBook) group(j jid.JID) *group {
	if j.Server != jid.GroupServer {
		return nil
	}
	return cb.groups[j.User]
}

func checkMember(m jid.JID) error {
	if m.Server != jid.DefaultUserServer || m.User == "" || m.Device != 0 {
		return fmt.Errorf("%w: member %s is not a phone-number user JID", ErrGroup, m)
	}
	return nil
}

// answerGroupInfo answers a group info query, <iq xmlns=w:g2 type=get
// to=GROUP><query request=interactive/></iq>, with the group's metadata
// and participants as whatsmeow's parseGroupNode reads them:
//
//	<group id subject creation size addressing_mode=pn><participant jid/>…</group>
//
// 404 item-not-found for a group the server does not know, 403 forbidden
// when the asking device's user is not a member (whatsmeow's
// ErrGroupNotFound and ErrNotInGroup).
func (sess *session) answerGroupInfo(id string, n node.Node) node.Node {
	to, _ := n.AttrJID("to")
	cb := &sess.s.contacts
	cb.mu.Lock()
	g := cb.group(to)
	var members []jid.JID
	if g != nil {
		members = slices.Clone(g.members)
	}
	cb.mu.Unlock()
	switch {
	case g == nil:
		return iqError(id, 404, "item-not-found")
	case !slices.Contains(members, sess.dev.jid.ToNonAD()):
		return iqError(id, 403, "forbidden")
	}
	ps := make([]node.Node, len(members))
	for i, m := range members {
		ps[i] = node.New("participant", node.JIDAttr("jid", m))
	}
	return serverIQ(id, "result", node.New("group", node.StrAttr("id", to.User), node.StrAttr("subject", "Group "+to.User[len(to.User)-4:]),
		node.IntAttr("creation", 0), node.IntAttr("size", int64(len(members))), node.StrAttr("addressing_mode", "pn")).WithChildren(ps...))
}

// memberDevices lists the devices of a group's members but sender, by
// member then device number.
func (s *Server) memberDevices(members []jid.JID, sender jid.JID) []jid.JID {
	var out []jid.JID
	for _, m := range members {
		for _, d := range s.devicesOf(m.User) {
			if d != sender {
				out = append(out, d)
			}
		}
	}
	return out
}

// routeGroupMessage serves a companion's group <message> (wire/e2e
// GroupMessage): the skmsg goes to every device of every member (but the
// sender), each with the 1:1 part addressed to it if any; an emulated
// device decrypts the part (learning the sender key from its distribution
// message), then the skmsg, and answers with a delivery receipt, or, when
// it cannot decrypt (counted in companion_decrypt_failures), with a retry
// receipt; another companion gets the stanza queued. The sender gets <ack
// class=message id from=GROUP t [phash]/>, phash the server's when the
// message's differs.
//
// Teeth: an skmsg to a device that never got the sender key fails there;
// a message without exactly one skmsg, or a pkmsg without a valid
// <device-identity>, is refused (ack error 479, nothing delivered, a
// violation); one from a device whose user is not a member is refused the
// same way without a violation (its client may not know yet). Which
// error the real server gives a non-member is not known here. A <message participant=DEVICE> is an
// answer to a member's retry receipt (routeRetryAnswer).
func (sess *session) routeGroupMessage(n node.Node, id string, to jid.JID) error {
	s := sess.s
	if dev, ok := n.AttrJID("participant"); ok {
		return sess.routeRetryAnswer(n, id, to, dev)
	}
	sender := sess.dev.jid
	members := s.GroupMembers(to)
	if !slices.Contains(members, sender.ToNonAD()) {
		sess.log.Info("group message from a non-member refused", "id", id, "group", to.String())
		return sess.refuse(id, to)
	}
	parts, skmsg, identity, err := groupMessageParts(n)
	if err == nil {
		err = sess.checkIdentity(parts, identity)
	}
	if err != nil {
		return sess.refuseMessage(id, to, err)
	}
	want := s.memberDevices(members, sender)
	byDev := make(map[jid.JID]part, len(parts))
	for _, p := range parts {
		byDev[p.dev] = p
	}
	var receipts []func() // the emulated devices' receipts, after the ack
	for _, dev := range want {
		p, has := byDev[dev]
		if sd, ok := s.SignalDevice(dev); ok {
			receipts = append(receipts, s.deliverGroupToSignal(sess, sd, id, to, p, has, skmsg))
			continue
		}
		s.deliverGroupToCompanion(sess, dev, id, to, p, has, skmsg, identity)
	}
	s.stats.update(func(st *Stats) { st.CompanionMessages++; st.CompanionGroupMessages++ })
	ack := node.New("ack", node.StrAttr("class", "message"), node.StrAttr("id", id), node.JIDAttr("from", to),
		node.IntAttr("t", time.Now().Unix()))
	if ph, _ := n.Attr("phash"); ph != e2e.ParticipantHash(want) {
		ack = ack.WithAttr(node.StrAttr("phash", e2e.ParticipantHash(want)))
	}
	if err := sess.send(ack); err != nil {
		return err
	}
	for _, r := range receipts {
		r()
	}
	return nil
}

// refuseMessage refuses a malformed message of a companion whole: a soft
// violation, then refuse.
func (sess *session) refuseMessage(id string, to jid.JID, err error) error {
	sess.softViolation("message %s: %v", id, err)
	return sess.refuse(id, to)
}

// refuse answers a message the server does not route with ack error 479
// (counted in companion_messages_refused).
func (sess *session) refuse(id string, to jid.JID) error {
	sess.s.stats.add(func(st *Stats) *int64 { return &st.CompanionMessagesRefused }, 1)
	return sess.send(node.New("ack", node.StrAttr("class", "message"), node.StrAttr("id", id),
		node.JIDAttr("from", to), node.IntAttr("error", errSmaxInvalid)))
}

// checkIdentity checks that a message with a pkmsg part carries the
// sender's valid <device-identity>.
func (sess *session) checkIdentity(parts []part, identity []byte) error {
	if identity == nil && hasPreKey(parts) {
		return errors.New("a pkmsg without <device-identity>")
	}
	if identity != nil {
		return sess.checkDeviceIdentity(identity)
	}
	return nil
}

// groupMessageParts reads a group message: the optional <participants>
// (as messageParts), <device-identity>, and its one <enc v=2 type=skmsg>.
func groupMessageParts(n node.Node) (parts []part, skmsg, identity []byte, err error) {
	if _, ok := n.Child("participants"); ok {
		if parts, identity, err = messageParts(n); err != nil {
			return nil, nil, nil, err
		}
	} else if _, ok := n.Child("device-identity"); ok {
		return nil, nil, nil, errors.New("a <device-identity> without <participants>")
	}
	for enc := range n.ChildrenByTag("enc") {
		typ, _ := enc.Attr("type")
		v, _ := enc.Attr("v")
		body, ok := enc.Bytes()
		if skmsg != nil || typ != "skmsg" || v != "2" || !ok || len(body) == 0 {
			return nil, nil, nil, errors.New("not exactly one <enc v=2 type=skmsg> ciphertext")
		}
		skmsg = body
	}
	if skmsg == nil {
		return nil, nil, nil, errors.New("no <enc type=skmsg>")
	}
	return parts, skmsg, identity, nil
}

// deliverGroupToSignal hands a group message to an emulated device: the
// 1:1 part if it has one, then the skmsg. It returns what queues the
// device's answer to the sender: its delivery receipt, or a retry receipt
// when it could not decrypt.
func (s *Server) deliverGroupToSignal(sess *session, sd *SignalDevice, id string, group jid.JID, p part, has bool, skmsg []byte) func() {
	sender := sess.dev.jid
	err := func() error {
		if has {
			if err := sd.receive(sender, id, group, p.typ, p.body); err != nil {
				return err
			}
		}
		return sd.receiveGroup(sender, id, group, skmsg)
	}()
	if err != nil {
		sess.log.Info("emulated device could not decrypt a group message", "device", sd.jid.String(), "id", id, "err", err)
		s.stats.add(func(st *Stats) *int64 { return &st.CompanionDecryptFailures }, 1)
		return func() { s.sendRetryReceipt(sess.dev, sd, id, group) }
	}
	return func() { s.groupReceipt(sess.dev, sd.jid, id, group) }
}

// groupReceipt queues a member device's delivery receipt of a group
// message for its sender: <receipt from=GROUP participant=DEVICE id t/>.
func (s *Server) groupReceipt(to *device, member jid.JID, id string, group jid.JID) {
	s.enqueue(to, func(uint64, uint32) node.Node {
		return node.New("receipt", node.JIDAttr("from", group), node.JIDAttr("participant", member), node.StrAttr("id", id),
			node.IntAttr("t", time.Now().Unix()))
	})
}

// sendRetryReceipt queues the retry receipt an emulated device sends the
// sender of a message it could not decrypt (as our receive path sends
// one: whatsmeow retry.go sendRetryReceipt), for a group message or a
// 1:1 one (recipient naming the chat when the device is the sender's
// own, as the sending account's phone is):
//
//	<receipt from=GROUP participant=DEVICE id t type=retry><retry count id t v=1/><registration/>
//	  [<keys><type/><identity/><key/><skey/><device-identity/></keys>]</receipt>
//	<receipt from=DEVICE [recipient=CHAT] id t type=retry>…</receipt>
//
// count is 1 and up per message and device; from the second on it
// carries the device's keys with a one-time prekey (taken from those the
// server hands out), for a new session. A device gives up after
// maxResends.
func (s *Server) sendRetryReceipt(to *device, sd *SignalDevice, id string, chat jid.JID) {
	count := sd.nextRetry(id)
	if count > maxResends {
		return
	}
	var keys []node.Node
	if count >= 2 {
		b, err := sd.takeBundle()
		if err != nil || b.PreKey == nil {
			s.log.Info("no keys for a retry receipt", "device", sd.jid.String(), "err", err)
		} else {
			keys = append(keys, node.New("keys").WithChildren(
				node.New("type").WithBytes([]byte{5}),
				node.New("identity").WithBytes(b.IdentityKey[:]),
				node.New("key").WithChildren(node.New("id").WithBytes(id3(b.PreKeyID)), node.New("value").WithBytes(b.PreKey[:])),
				node.New("skey").WithChildren(node.New("id").WithBytes(id3(b.SignedPreKeyID)), node.New("value").WithBytes(b.SignedPreKey[:]),
					node.New("signature").WithBytes(b.SignedPreKeySignature[:])),
				node.New("device-identity")))
		}
	}
	reg := sd.Identity().RegistrationID
	now := time.Now().Unix()
	// counted first: the sender may answer before enqueue returns
	s.stats.add(func(st *Stats) *int64 { return &st.CompanionRetryReceipts }, 1)
	attrs := []node.Attr{node.JIDAttr("from", chat), node.JIDAttr("participant", sd.jid)}
	switch {
	case chat.Server != jid.GroupServer && sd.jid.User == chat.User:
		attrs = []node.Attr{node.JIDAttr("from", sd.jid)}
	case chat.Server != jid.GroupServer:
		attrs = []node.Attr{node.JIDAttr("from", sd.jid), node.JIDAttr("recipient", chat)}
	}
	attrs = append(attrs, node.StrAttr("id", id), node.IntAttr("t", now), node.StrAttr("type", "retry"))
	s.enqueue(to, func(uint64, uint32) node.Node {
		return node.New("receipt", attrs...).WithChildren(append([]node.Node{
			node.New("retry", node.IntAttr("count", int64(count)), node.StrAttr("id", id), node.IntAttr("t", now), node.StrAttr("v", "1")),
			node.New("registration").WithBytes([]byte{byte(reg >> 24), byte(reg >> 16), byte(reg >> 8), byte(reg)})}, keys...)...)
	})
}

// deliverGroupToCompanion queues a group message for another companion:
//
//	<message from=GROUP participant=SENDER id t type=text>[<enc pkmsg|msg/>][<device-identity/>]<enc skmsg/></message>
func (s *Server) deliverGroupToCompanion(sess *session, dev jid.JID, id string, group jid.JID, p part, has bool, skmsg, identity []byte) {
	s.reg.mu.Lock()
	d, ok := s.reg.devices[dev]
	s.reg.mu.Unlock()
	if !ok {
		return
	}
	var content []node.Node
	if has {
		content = append(content, encNode(p.typ, p.body, 0))
		if p.typ == "pkmsg" {
			content = append(content, node.New("device-identity").WithBytes(identity))
		}
	}
	content = append(content, encNode("skmsg", skmsg, 0))
	from := sess.dev.jid
	s.enqueue(d, func(uint64, uint32) node.Node {
		return node.New("message", node.JIDAttr("from", group), node.JIDAttr("participant", from),
			node.StrAttr("id", id), node.StrAttr("type", "text"), node.IntAttr("t", time.Now().Unix())).WithChildren(content...)
	})
}

// routeRetryAnswer serves a companion's answer to an emulated device's
// retry receipt (wire/e2e RetryMessage), for a group message or a 1:1 one:
//
//	<message to=GROUP participant=DEVICE id t><enc v=2 type=pkmsg|msg count=N/>[<device-identity/>]</message>
//	<message to=DEVICE [recipient=CHAT] id t device_fanout=false><enc …/>[<device-identity/>]</message>
//
// The device must be a member's (group) or the chat's or the sender's own
// (1:1). It decrypts the answer (the text, and a group's sender key
// distribution inside) and answers with its delivery receipt (none from
// the sender's own device, as for routed messages), or, when it cannot,
// with its next retry receipt; the sender gets the ack.
func (sess *session) routeRetryAnswer(n node.Node, id string, chat, dev jid.JID) error {
	s := sess.s
	enc, ok := n.Child("enc")
	body, isBytes := enc.Bytes()
	typ, _ := enc.Attr("type")
	var err error
	switch {
	case !ok || !isBytes || len(body) == 0 || (typ != "pkmsg" && typ != "msg"):
		err = errors.New("a retry answer without one <enc type=pkmsg|msg>")
	case chat.Server == jid.GroupServer && !slices.Contains(s.GroupMembers(chat), dev.ToNonAD()):
		err = fmt.Errorf("%s is not a member of %s", dev, chat)
	case chat.Server != jid.GroupServer && dev.User != chat.User && dev.User != sess.dev.jid.User:
		err = fmt.Errorf("%s is neither a device of %s nor of the sender", dev, chat)
	}
	var identity []byte
	if err == nil {
		if di, ok := n.Child("device-identity"); ok {
			identity, _ = di.Bytes()
		}
		err = sess.checkIdentity([]part{{dev: dev, typ: typ, body: body}}, identity)
	}
	if err != nil {
		return sess.refuseMessage(id, chat, err)
	}
	s.stats.add(func(st *Stats) *int64 { return &st.CompanionRetryAnswers }, 1)
	var answer func() // the device's receipt, after the ack
	if sd, ok := s.SignalDevice(dev); ok {
		switch err := sd.receive(sess.dev.jid, id, chat, typ, body); {
		case err != nil:
			sess.log.Info("emulated device could not decrypt a retry answer", "device", dev.String(), "id", id, "err", err)
			s.stats.add(func(st *Stats) *int64 { return &st.CompanionDecryptFailures }, 1)
			answer = func() { s.sendRetryReceipt(sess.dev, sd, id, chat) }
		case chat.Server == jid.GroupServer:
			answer = func() { s.groupReceipt(sess.dev, dev, id, chat) }
		case dev.User == chat.User:
			answer = func() {
				s.enqueue(sess.dev, func(uint64, uint32) node.Node {
					return node.New("receipt", node.JIDAttr("from", dev), node.StrAttr("id", id), node.IntAttr("t", time.Now().Unix()))
				})
			}
		}
	} else {
		s.deliverPart(sess, id, chat, part{dev: dev, typ: typ, body: body}, identity)
	}
	if err := sess.send(node.New("ack", node.StrAttr("class", "message"), node.StrAttr("id", id), node.JIDAttr("from", chat),
		node.IntAttr("t", time.Now().Unix()))); err != nil {
		return err
	}
	if answer != nil {
		answer()
	}
	return nil
}

// receiveGroup decrypts a group message a companion sent: the skmsg with
// the sender key the device learnt from the sender's distribution
// message; the Message is recorded (Received, type "skmsg"). Nothing
// changes when it fails.
func (d *SignalDevice) receiveGroup(from jid.JID, id string, group jid.JID, body []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := d.peerSKs[senderKeyName{group, from}]
	if k == nil {
		return fmt.Errorf("%w: from %s in %s", signal.ErrNoSenderKey, from, group)
	}
	plain, err := k.Decrypt(body)
	if err != nil {
		return err
	}
	msg, err := decodePlaintext(plain)
	if err != nil {
		return err
	}
	d.record(Received{ID: id, From: from, Chat: group, Type: "skmsg", Message: msg})
	return nil
}

// decodePlaintext parses a decrypted message: the padding removed, the
// Message protobuf.
func decodePlaintext(plain []byte) (*waproto.Message, error) {
	plain, err := signal.Unpad(plain)
	if err != nil {
		return nil, err
	}
	var msg waproto.Message
	if err := proto.Unmarshal(plain, &msg); err != nil {
		return nil, fmt.Errorf("message: %w", err)
	}
	return &msg, nil
}

// learnSenderKey processes a sender key distribution a companion sent in
// a 1:1 message for group (the stanza's chat, as the reference client
// takes it). Caller holds mu.
func (d *SignalDevice) learnSenderKey(from, group jid.JID, skdm *waproto.Message_SenderKeyDistribution) error {
	dist, err := signal.ParseSenderKeyDistribution(skdm.GetAxolotlSenderKeyDistributionMessage())
	if err != nil {
		return err
	}
	name := senderKeyName{group, from}
	k := d.peerSKs[name]
	if k == nil {
		k = new(signal.SenderKey)
		d.peerSKs[name] = k
	}
	k.Process(dist)
	d.distributions++
	return nil
}

// SenderKeysReceived is how many sender key distribution messages the
// device got from our companions.
func (d *SignalDevice) SenderKeysReceived() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.distributions
}

// nextRetry returns the count of the device's next retry receipt for
// message id (the memory of counts is bounded: past maxReceived ids it
// starts over).
func (d *SignalDevice) nextRetry(id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.retries == nil || len(d.retries) >= maxReceived {
		d.retries = make(map[string]int)
	}
	d.retries[id]++
	return d.retries[id]
}

// ForgetSession makes the device lose its session with peer (a
// companion's device JID), as a reinstalled device has: peer's next 1:1
// message fails to decrypt there.
func (d *SignalDevice) ForgetSession(peer jid.JID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.sessions, peer)
}

// ForgetSenderKey makes the device lose the sender key of sender (a
// companion's device JID) in group, as a reinstalled device has: the
// sender's next group message fails to decrypt there and draws a retry
// receipt.
func (d *SignalDevice) ForgetSenderKey(group, sender jid.JID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.peerSKs, senderKeyName{group, sender})
}
