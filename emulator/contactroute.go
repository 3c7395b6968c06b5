package emulator

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/signal"
	"github.com/wafleet/wafleet/waproto"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

const (
	// DefaultReceiptDeadline is Options.ReceiptDeadline's default.
	DefaultReceiptDeadline = 60 * time.Second

	// maxResends is how many retry receipts of one message to one device
	// the sender answers; the next one gives the message up. whatsmeow
	// sends at most 4 (none from its fifth failure on) and its sender side
	// answers up to 9; Baileys' default is 5 each way.
	maxResends = 5

	// maxRouted bounds the routed messages the server remembers for
	// receipts and retries; beyond it the oldest are forgotten.
	maxRouted = 100_000
)

// routed is one message a Signal device sent to one of our companions: what
// the receipt must name, what a resend needs, and how it went. Its fields
// after the first block are guarded by contactBook.mu.
type routed struct {
	sender *SignalDevice
	dev    *device
	out    outgoing
	t      int64
	// content is what a resend carries, encrypted 1:1: the message itself
	// (for a group the text; the resend adds the sender's distribution).
	content *waproto.Message
	group   jid.JID // the group of a group message, else empty

	timer   *time.Timer // the receipt deadline
	overdue bool
	retries int
}

// routeKey names a routed message: the recipient device and the message id.
type routeKey struct {
	dev jid.JID
	id  string
}

// routeBook is the contactBook's record of routed messages, oldest first in
// order (entries may have been forgotten).
type routeBook struct {
	m     map[routeKey]*routed
	order []routeKey
}

// track records r (caller holds contactBook.mu) and forgets the oldest
// beyond maxRouted.
func (rs *routeBook) track(r *routed) {
	if rs.m == nil {
		rs.m = make(map[routeKey]*routed)
	}
	k := routeKey{r.dev.jid, r.out.id}
	rs.m[k] = r
	rs.order = append(rs.order, k)
	for len(rs.m) > maxRouted && len(rs.order) > 0 {
		old := rs.order[0]
		rs.order = rs.order[1:]
		if o := rs.m[old]; o != nil {
			rs.forget(o)
		}
	}
	if len(rs.order) > 2*len(rs.m)+32 { // mostly forgotten: keep order proportional to m
		rs.order = slices.DeleteFunc(rs.order, func(k routeKey) bool { return rs.m[k] == nil })
	}
}

// forget drops a routed message that needs nothing more (receipted or
// given up); caller holds contactBook.mu.
func (rs *routeBook) forget(r *routed) {
	r.stop()
	delete(rs.m, routeKey{r.dev.jid, r.out.id})
}

// stopTimers ends every receipt deadline (the server is closing).
func (cb *contactBook) stopTimers() {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	for _, r := range cb.routes.m {
		r.stop()
	}
}

// stop ends r's receipt deadline (caller holds contactBook.mu).
func (r *routed) stop() {
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
}

// route encrypts a send's plaintext for one of our companions and queues
// its stanza: the 1:1 part (the whole message, or for a group the sender's
// distribution when the device has not had it) and the group's skmsg.
// fresh makes the sender start a new session for the 1:1 part, from a
// bundle the server hands out (a pkmsg that uses up one of the device's
// one-time prekeys), even when it has one.
func (s *Server) route(sender *SignalDevice, d *device, o outgoing, plaintext []byte, content *waproto.Message, now time.Time, fresh bool) error {
	var encs []node.Node
	if o.skmsg == nil || sender.needsSenderKey(o.from, d.jid) {
		ct, err := s.encryptFor(sender, d.jid, signal.Pad(slices.Clip(plaintext)), fresh, nil)
		if err != nil {
			return err
		}
		encs = append(encs, encNode(ct.Type.String(), ct.Body, 0))
	}
	if o.skmsg != nil {
		encs = append(encs, encNode("skmsg", o.skmsg, 0))
	}
	r := &routed{sender: sender, dev: d, out: o, t: now.Unix(), content: content}
	if o.skmsg != nil {
		r.group = o.from
	}
	cb := &s.contacts
	cb.mu.Lock()
	cb.routes.track(r) // before the stanza goes out: its receipt may come at once
	if dl := s.opts.ReceiptDeadline; dl > 0 {
		r.timer = time.AfterFunc(dl, func() { s.receiptOverdue(r) })
	}
	cb.mu.Unlock()
	if !s.enqueue(d, func(uint64, uint32) node.Node { return o.messageNode(r.t, encs...) }) {
		cb.mu.Lock()
		cb.routes.forget(r)
		cb.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrUnknownDevice, d.jid)
	}
	return nil
}

// needsSenderKey reports whether peer still needs the device's sender key
// for group, and notes that it gets it now.
func (d *SignalDevice) needsSenderKey(group, peer jid.JID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := senderKeyName{group, peer}
	if d.distributed[k] {
		return false
	}
	d.distributed[k] = true
	return true
}

// receiptOverdue counts a routed message whose receipt has not come by the
// deadline.
func (s *Server) receiptOverdue(r *routed) {
	cb := &s.contacts
	cb.mu.Lock()
	due := !r.overdue && r.timer != nil
	if due {
		r.overdue = true
		r.timer = nil
	}
	cb.mu.Unlock()
	if due {
		s.stats.add(func(st *Stats) *int64 { return &st.ReceiptsOverdue }, 1)
	}
}

// deliveryReceipts takes a companion's receipts (any type but retry) for
// messages routed to it: a receipt must name the message's from as to, and
// its participant and recipient when it had them (whatsmeow's
// buildBaseReceipt copies them; so does Baileys), else it is a violation
// and confirms nothing. The first one of each message is counted (a read
// receipt confirms delivery too); receipts of other messages are ignored.
func (s *Server) deliveryReceipts(sess *session, n node.Node, ids []string) {
	cb := &s.contacts
	var got, late int64
	var problems []string
	cb.mu.Lock()
	for _, id := range ids {
		r := cb.routes.m[routeKey{sess.dev.jid, id}]
		if r == nil {
			continue
		}
		if why := receiptAddressProblem(n, &r.out); why != "" {
			problems = append(problems, fmt.Sprintf("receipt of message %s: %s", id, why))
			continue
		}
		cb.routes.forget(r) // later receipts (read after delivered) confirm nothing new
		got++
		if r.overdue {
			late++
		}
	}
	cb.mu.Unlock()
	for _, p := range problems {
		sess.softViolation("%s", p)
	}
	if got > 0 {
		s.stats.update(func(st *Stats) {
			st.Receipts += got
			st.ReceiptsLate += late
		})
	}
}

// receiptAddressProblem checks a receipt's to, participant and recipient
// against the stanza it answers.
func receiptAddressProblem(n node.Node, o *outgoing) string {
	for _, c := range []struct {
		key  string
		want jid.JID
	}{{"to", o.from}, {"participant", o.participant}, {"recipient", o.recipient}} {
		if msg := jidAttrProblem(n, c.key, c.want); msg != "" {
			return msg
		}
	}
	return ""
}

// retryReceipt answers a companion's retry receipt for a routed message,
// <receipt id to [participant] [recipient] type="retry"><retry count id t
// v/><registration>4 bytes</registration>[<keys>…</keys>]</receipt>
// (whatsmeow's sendRetryReceipt; Baileys' sendRetryRequest has the same
// children): the retry's id must be the receipt's, the registration the
// device's. Up to maxResends times the sender encrypts the message again
// for that device — from a fresh session when the receipt carries <keys>
// (its bundle) or asks a second time or more (a bundle fetched from the
// server, as whatsmeow's shouldRecreateSession) — and the server sends it
// with the same id and t and <enc count=N> once the original is acked (an
// earlier copy with the same id must be settled first, or one ack would
// match two stanzas). A retry beyond that gives the message up. Retry
// receipts of other messages are ignored.
func (s *Server) retryReceipt(sess *session, n node.Node) {
	id, _ := n.Attr("id")
	cb := &s.contacts
	cb.mu.Lock()
	r := cb.routes.m[routeKey{sess.dev.jid, id}]
	cb.mu.Unlock()
	if r == nil {
		return
	}
	count, bundle, err := parseRetry(n, id, sess.dev)
	if err == nil {
		if why := receiptAddressProblem(n, &r.out); why != "" {
			err = errors.New(why)
		}
	}
	if err != nil {
		sess.softViolation("retry receipt of message %s: %v", id, err)
		return
	}
	cb.mu.Lock()
	r.retries++
	retries := r.retries
	give := retries > maxResends
	if give {
		cb.routes.forget(r)
	}
	cb.mu.Unlock()
	s.stats.update(func(st *Stats) {
		st.RetryReceipts++
		if retries == 1 {
			st.DecryptFailures++
		}
		if give {
			st.MessagesUndelivered++
		}
	})
	if retries > maxResends {
		return
	}
	resend, err := s.reencrypt(r, count, bundle)
	if err != nil {
		s.log.Info("retry not answered", "id", id, "err", err)
		s.stats.add(func(st *Stats) *int64 { return &st.MessagesUndelivered }, 1)
		return
	}
	s.afterSettled(sess.dev, pendingKey(id, r.out.participant), func() {
		if s.enqueue(r.dev, func(uint64, uint32) node.Node { return resend }) {
			s.stats.add(func(st *Stats) *int64 { return &st.Resends }, 1)
		}
	})
}

// reencrypt builds the resend of r for its device: the content (for a
// group with the sender's current distribution, as whatsmeow adds one) in
// a 1:1 <enc count=N>, from a fresh session when bundle is given or count
// is 2 or more.
func (s *Server) reencrypt(r *routed, count int, bundle *signal.Bundle) (node.Node, error) {
	msg := r.content
	if !r.group.IsEmpty() {
		msg = proto.Clone(r.content).(*waproto.Message)
		skdm, err := r.sender.distribution(r.group)
		if err != nil {
			return node.Node{}, err
		}
		msg.SenderKeyDistributionMessage = skdm
	}
	ct, err := s.encryptFor(r.sender, r.dev.jid, signal.Pad(mustMarshal(msg)), count >= 2 || bundle != nil, bundle)
	if err != nil {
		return node.Node{}, err
	}
	return r.out.messageNode(r.t, encNode(ct.Type.String(), ct.Body, count)), nil
}

// afterSettled runs fn once the pending stanza of d with key (pendingKey)
// is settled (at once when it is not pending).
func (s *Server) afterSettled(d *device, key string, fn func()) {
	d.st.mu.Lock()
	if p := d.st.pending[key]; p != nil && !p.settled {
		prev := p.onSettle
		p.onSettle = func() {
			if prev != nil {
				prev()
			}
			fn()
		}
		d.st.mu.Unlock()
		return
	}
	d.st.mu.Unlock()
	fn()
}

// parseRetry checks a retry receipt's children and returns its count and,
// when it carries <keys>, the bundle they make.
func parseRetry(n node.Node, id string, d *device) (int, *signal.Bundle, error) {
	retry, ok := n.Child("retry")
	if !ok {
		return 0, nil, errors.New("no <retry>")
	}
	if rid, _ := retry.Attr("id"); rid != id {
		return 0, nil, fmt.Errorf("<retry id=%q> is not the receipt's id", rid)
	}
	cs, _ := retry.Attr("count")
	count, err := strconv.Atoi(cs)
	if err != nil || count < 1 {
		return 0, nil, fmt.Errorf("<retry count=%q> is not a positive number", cs)
	}
	reg, ok := n.Child("registration")
	if !ok {
		return 0, nil, errors.New("no <registration>")
	}
	rb, err := leafBytes(reg, 4)
	if err != nil {
		return 0, nil, err
	}
	if binary.BigEndian.Uint32(rb) != d.regID {
		return 0, nil, errors.New("<registration> is not the device's registration ID")
	}
	keys, ok := n.Child("keys")
	if !ok {
		return count, nil, nil
	}
	b, err := parseRetryKeys(keys, d)
	if err != nil {
		return 0, nil, fmt.Errorf("<keys>: %w", err)
	}
	return count, b, nil
}

// parseRetryKeys reads the bundle of a retry receipt: <type>05</type>
// <identity>, <key><id/><value/></key>, <skey><id/><value/><signature/></skey>
// and <device-identity> (whatsmeow's sendRetryReceipt sends all five). The
// identity must be the device's: a companion's identity does not change
// without a new pairing.
func parseRetryKeys(keys *node.Node, d *device) (*signal.Bundle, error) {
	parts, err := exactChildren(keys, "type", "identity", "key", "skey", "device-identity")
	if err != nil {
		return nil, err
	}
	typ, err := leafBytes(parts[0], 1)
	if err != nil {
		return nil, err
	}
	if typ[0] != 5 {
		return nil, fmt.Errorf("<type> is %02x, want 05", typ[0])
	}
	ident, err := leafBytes(parts[1], 32)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(ident, d.identityPub[:]) {
		return nil, errors.New("<identity> is not the device's identity key")
	}
	b := &signal.Bundle{RegistrationID: d.regID, IdentityKey: d.identityPub}
	key, err := readKey(parts[2])
	if err != nil {
		return nil, fmt.Errorf("<key>: %w", err)
	}
	b.PreKeyID, b.PreKey = key.id, &key.pub
	if b.SignedPreKeyID, b.SignedPreKey, b.SignedPreKeySignature, err = readSignedKey(parts[3]); err != nil {
		return nil, fmt.Errorf("<skey>: %w", err)
	}
	if _, ok := parts[4].Bytes(); !ok {
		return nil, errors.New("<device-identity> content is not bytes")
	}
	return b, nil
}
