package emulator

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// Defaults of DayOne (when Enabled and the field is zero).
const (
	DefaultPushRate     = 1.0
	DefaultPushBurst    = 20
	DefaultAckDeadline  = 60 * time.Second
	DefaultPingInterval = 30 * time.Second

	// maxPushRate and maxPushBurst bound DayOne's rates.
	maxPushRate  = 1000
	maxPushBurst = 100_000

	// minPrekeys: when a device's prekey count falls below it, the server
	// pushes <notification type="encrypt"><count value=N/></notification>
	// (whatsmeow and Baileys upload when the count is below 5).
	minPrekeys = 5
)

// DayOne makes the server behave like the real one from a device's first
// login: after <success> it redelivers what earlier connections left
// unacked, pushes an offline burst and then a steady stream of ackable
// stanzas, requires an exact <ack> for each within AckDeadline, pings the
// client, and consumes the device's prekeys. The zero value is off (the
// server sends nothing after <success> unless asked). See doc.go for the
// stanzas and the ack rules.
//
// For every numeric field, zero means its default and a negative value
// turns that part off (no live pushes, no burst, no deadline, no pings),
// which tests use to look at one behaviour at a time.
type DayOne struct {
	Enabled bool
	// PushRate is ackable stanzas pushed per second per logged-in
	// connection, as a Poisson process (exponential gaps with mean
	// 1/PushRate: bursty like real traffic, not a metronome). Default 1;
	// at most 1000.
	PushRate float64
	// PushBurst is stanzas pushed right after <success> (the offline
	// queue), followed by <ib><offline count=N/></ib>. Default 20.
	PushBurst int
	// AckDeadline: a pushed stanza not acked within it ends the stream with
	// <stream:error><ack class=TAG id=ID/></stream:error> and the socket
	// closes; it stays pending for redelivery. Default 60 s. The real
	// server's deadline is not known: public reports say "minutes".
	AckDeadline time.Duration
	// PingInterval is the period of server pings <iq from=s.whatsapp.net
	// id xmlns=urn:xmpp:ping type=get/> (every second one without type,
	// every third one without id). Default 30 s. A ping still unanswered at
	// the next one, or after AckDeadline, ends the stream like an unacked
	// stanza.
	PingInterval time.Duration
	// GarbageShare is the share of pushed messages (0..1) whose <enc>
	// children are random bytes from a made-up peer instead of a
	// contact's ciphertext: a fault that no client can decrypt (its retry
	// receipts go unanswered). Default 0: every message decrypts.
	GarbageShare float64
}

// withDefaults fills zero fields of an enabled DayOne.
func (d DayOne) withDefaults() DayOne {
	if !d.Enabled {
		return d
	}
	if d.PushRate == 0 {
		d.PushRate = DefaultPushRate
	}
	if d.PushBurst == 0 {
		d.PushBurst = DefaultPushBurst
	}
	if d.AckDeadline == 0 {
		d.AckDeadline = DefaultAckDeadline
	}
	if d.PingInterval == 0 {
		d.PingInterval = DefaultPingInterval
	}
	return d
}

// validate checks the ranges; errors name the field as the control API
// spells it.
func (d DayOne) validate() error {
	switch {
	case math.IsNaN(d.PushRate) || d.PushRate > maxPushRate:
		return fmt.Errorf("%w: push_rate must be at most %d per second (negative: no live pushes)", ErrBadDayOne, maxPushRate)
	case math.IsNaN(d.GarbageShare) || d.GarbageShare < 0 || d.GarbageShare > 1:
		return fmt.Errorf("%w: garbage_share must be between 0 and 1", ErrBadDayOne)
	case d.PushBurst > maxPushBurst:
		return fmt.Errorf("%w: push_burst must be at most %d (negative: no burst)", ErrBadDayOne, maxPushBurst)
	}
	return nil
}

// dayOneState is the current DayOne (defaults applied) and the channel that
// is closed when it is replaced, so live connections pick up changes.
type dayOneState struct {
	cfg     DayOne
	changed chan struct{}
}

// DayOne returns the current day-one settings, defaults applied.
func (s *Server) DayOne() DayOne { return s.dayOne.Load().cfg }

// SetDayOne replaces the day-one settings. Logins from then on follow them;
// live connections that logged in with day-one on pick up new rates,
// deadlines and intervals at their next step, and pause (no pushes, pings
// or deadline checks; pending stanzas stay pending) while it is off.
// Turning it on does not start day-one on connections that logged in while
// it was off. Errors wrap ErrBadDayOne.
func (s *Server) SetDayOne(d DayOne) error {
	s.dayOneMu.Lock()
	defer s.dayOneMu.Unlock()
	return s.setDayOneLocked(d)
}

// setDayOneLocked is SetDayOne with dayOneMu held.
func (s *Server) setDayOneLocked(d DayOne) error {
	if err := d.validate(); err != nil {
		return err
	}
	old := s.dayOne.Load()
	s.dayOne.Store(&dayOneState{cfg: d.withDefaults(), changed: make(chan struct{})})
	if old != nil {
		close(old.changed)
	}
	return nil
}

// sessionDayOne is a logged-in connection's day-one state: the server ping
// in flight (shared by the pusher and the reader, under mu) and the stanza
// generator (the pusher's alone).
type sessionDayOne struct {
	mu       sync.Mutex
	pingOut  bool   // a server ping awaits its answer
	pingID   string // its id ("" when it had none)
	pingSent time.Time
	pings    int // server pings sent on this connection

	gen  *stanzaGen
	peer *dayOnePeer // where its messages come from, once the first is pushed
	// wake tells the pusher that a stanza was queued from elsewhere (a
	// contact's message), whose deadline it must now watch.
	wake chan struct{}
}

// startDayOne starts the connection's pusher: one goroutine per logged-in
// connection, with one timer, whatever the push rate.
func (sess *session) startDayOne() {
	s := sess.s
	sess.d1 = &sessionDayOne{gen: newStanzaGen(sess.dev), wake: make(chan struct{}, 1)}
	s.wg.Add(1) // serveConn holds a count, so Close is still waiting
	go func() {
		defer s.wg.Done()
		sess.runDayOne(sess.d1)
	}()
}

// runDayOne is the pusher: redelivery, burst, <ib><offline/>, then pushes,
// pings and deadline checks until the connection ends.
func (sess *session) runDayOne(d1 *sessionDayOne) {
	s := sess.s
	st := s.dayOne.Load()
	start := time.Now()

	// 1. Redelivery: everything earlier connections left unacked, oldest
	// first, before anything new.
	redelivered, ok := sess.redeliver(start)
	if !ok {
		return
	}

	// 2. The offline burst, then its end marker.
	burst := 0
	if st.cfg.Enabled {
		for range max(st.cfg.PushBurst, 0) {
			if !sess.push(d1, time.Now(), st.cfg.GarbageShare) {
				return
			}
			burst++
		}
		offline := node.New("ib").WithChildren(node.New("offline", node.IntAttr("count", int64(redelivered+burst))))
		if sess.send(offline) != nil {
			return
		}
	}

	// 3. Live traffic.
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	pingBase := start // when the last ping was sent (or the login)
	nextPush := start.Add(pushGap(st.cfg.PushRate, d1.gen.rnd))
	for {
		cfg := st.cfg
		now := time.Now()
		var wake time.Time
		if cfg.Enabled {
			deadline, ok := sess.checkDeadlines(d1, cfg, now)
			if !ok {
				return
			}
			wake = deadline
			if cfg.PingInterval > 0 {
				if next := pingBase.Add(cfg.PingInterval); !now.Before(next) {
					if !sess.sendPing(d1, now) {
						return
					}
					pingBase = now
				}
				wake = earliest(wake, pingBase.Add(cfg.PingInterval))
				if cfg.AckDeadline > 0 {
					d1.mu.Lock()
					if d1.pingOut {
						wake = earliest(wake, d1.pingSent.Add(cfg.AckDeadline))
					}
					d1.mu.Unlock()
				}
			}
			if cfg.PushRate > 0 {
				if !now.Before(nextPush) {
					if !sess.push(d1, now, cfg.GarbageShare) {
						return
					}
					d1.gen.live++
					// Now and then a stanza that takes no ack.
					if d1.gen.live%4 == 0 {
						if sess.send(d1.gen.nonAckable()) != nil {
							return
						}
					}
					nextPush = now.Add(pushGap(cfg.PushRate, d1.gen.rnd))
				}
				wake = earliest(wake, nextPush)
			}
		}
		if !wake.IsZero() {
			timer.Reset(max(time.Until(wake), 0))
		} else {
			timer.Stop()
		}
		select {
		case <-timer.C:
		case <-d1.wake:
		case <-st.changed:
			st = s.dayOne.Load()
			if st.cfg.PushRate > 0 {
				nextPush = time.Now().Add(pushGap(st.cfg.PushRate, d1.gen.rnd))
			}
		case <-sess.done:
			return
		case <-s.ctx.Done():
			return
		}
	}
}

// redeliver makes sess the connection that gets the device's stanzas and
// sends it, oldest first, what earlier connections left unacked. Without
// day-one mode it is all a login gets (the stanzas of contacts and encrypt
// notifications). It returns how many it sent, and false when the
// connection no longer owns the device or a send failed.
func (sess *session) redeliver(now time.Time) (int, bool) {
	s := sess.s
	dev := sess.dev
	dev.st.mu.Lock()
	if dev.st.current != sess || dev.st.removed {
		dev.st.mu.Unlock()
		return 0, false
	}
	redeliver := dev.st.takeOver(sess, now)
	payloads := make([][]byte, len(redeliver))
	for i, p := range redeliver {
		payloads[i] = p.payload
	}
	dev.st.mu.Unlock()
	for _, b := range payloads {
		if err := sess.sendRaw(b); err != nil {
			return 0, false
		}
		s.stats.add(func(st *Stats) *int64 { return &st.Redeliveries }, 1)
	}
	if len(payloads) > 0 {
		sess.log.Info("redelivered unacked stanzas", "count", len(payloads))
	}
	return len(payloads), true
}

// earliest returns the earlier of two times, the zero time meaning "none".
func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}

// pushGap draws the gap to the next push of a Poisson process with the
// given rate per second.
func pushGap(rate float64, rnd *rand.Rand) time.Duration {
	if rate <= 0 {
		return time.Hour
	}
	return time.Duration(rnd.ExpFloat64() / rate * float64(time.Second))
}

// push builds the next ackable stanza, records it as pending and sends it:
// a message through pushMessage (encrypted by an emulated contact, or
// random bytes for a garbageShare of them), anything else from the
// generator. It reports false when the connection no longer owns the
// device or the send failed.
func (sess *session) push(d1 *sessionDayOne, now time.Time, garbageShare float64) bool {
	k := d1.gen.nextKind()
	if k.isMessage() && !(garbageShare > 0 && d1.gen.rnd.Float64() < garbageShare) {
		return sess.pushMessage(d1, k, now)
	}
	return sess.pushGenerated(d1, k, now)
}

// pushGenerated pushes one stanza of kind k made by the generator.
func (sess *session) pushGenerated(d1 *sessionDayOne, k stanzaKind, now time.Time) bool {
	s := sess.s
	dev := sess.dev
	dev.st.mu.Lock()
	if dev.st.current != sess || dev.st.removed {
		dev.st.mu.Unlock()
		return false
	}
	n := d1.gen.build(k, dev.st.nextSeq(), dev.st.salt, now)
	b, err := node.MarshalPayload(n)
	if err != nil { // cannot happen: the generator builds valid nodes
		dev.st.mu.Unlock()
		sess.log.Error("encode pushed stanza", "tag", n.Tag, "err", err)
		return false
	}
	p := newPending(n, b)
	p.sentAt = now
	dev.st.add(p)
	dev.st.mu.Unlock()
	if err := sess.sendRaw(b); err != nil {
		return false
	}
	s.stats.add(func(st *Stats) *int64 { return &st.StanzasPushed }, 1)
	return true
}

// checkDeadlines ends the stream when the oldest pending stanza, or the
// server ping in flight, has outlived AckDeadline. It returns when the
// oldest stanza's deadline falls (zero if none), and false if it ended the
// stream.
func (sess *session) checkDeadlines(d1 *sessionDayOne, cfg DayOne, now time.Time) (time.Time, bool) {
	if cfg.AckDeadline <= 0 {
		return time.Time{}, true
	}
	dev := sess.dev
	var (
		deadline time.Time
		tag, id  string
		expired  bool
	)
	dev.st.mu.Lock()
	if dev.st.current == sess {
		if p := dev.st.oldest(); p != nil {
			deadline = p.sentAt.Add(cfg.AckDeadline)
			if !now.Before(deadline) {
				expired, tag, id = true, p.tag, p.id
			}
		}
	}
	dev.st.mu.Unlock()
	if expired {
		sess.ackKill(tag, id, fmt.Sprintf("<%s id=%s> not acked within %v; stream ended with <stream:error><ack/>", tag, id, cfg.AckDeadline))
		return time.Time{}, false
	}
	d1.mu.Lock()
	pingExpired := d1.pingOut && !now.Before(d1.pingSent.Add(cfg.AckDeadline))
	pingID := d1.pingID
	d1.mu.Unlock()
	if pingExpired {
		sess.ackKill("iq", pingID, fmt.Sprintf("server ping (id %q) not answered within %v; stream ended", pingID, cfg.AckDeadline))
		return time.Time{}, false
	}
	return deadline, true
}

// ackKill ends the stream for an unacked stanza or an unanswered server
// ping: <stream:error><ack class=TAG id=ID/></stream:error>, then close.
// For pings the real server's reaction is not known; ending the stream the
// same way is the strict choice.
func (sess *session) ackKill(class, id, why string) {
	sess.countedViolation(func(st *Stats) { st.AckDeadlineKills++ }, "%s", why)
	sess.endStream(node.New("stream:error").WithChildren(
		node.New("ack", node.StrAttr("class", class), node.StrAttr("id", id))))
}

// sendPing sends the next server ping: pings 1, 3, 5… carry type="get",
// 2, 4, 6… have no type (the form reported in whatsapp-rust issues 333 and
// 783); every third has no id. A ping still unanswered ends the stream.
// WhatsApp Web answers every urn:xmpp:ping; what the real server does when
// a ping goes unanswered is not known.
func (sess *session) sendPing(d1 *sessionDayOne, now time.Time) bool {
	s := sess.s
	d1.mu.Lock()
	if d1.pingOut {
		id := d1.pingID
		d1.mu.Unlock()
		sess.ackKill("iq", id, fmt.Sprintf("server ping (id %q) still unanswered at the next ping; stream ended", id))
		return false
	}
	d1.pings++
	k := d1.pings
	id := ""
	if k%3 != 0 {
		id = s.newID()
	}
	d1.pingOut, d1.pingID, d1.pingSent = true, id, now
	d1.mu.Unlock()
	n := node.New("iq", node.JIDAttr("from", jid.ServerJID), node.StrAttr("id", id), node.StrAttr("xmlns", "urn:xmpp:ping"))
	if k%2 == 1 {
		n = n.WithAttr(node.StrAttr("type", "get"))
	}
	if sess.send(n) != nil {
		return false
	}
	s.stats.add(func(st *Stats) *int64 { return &st.ServerPingsSent }, 1)
	return true
}

// pingAnswer handles an <iq type="result"> that may answer the server ping
// in flight: <iq to="s.whatsapp.net" type="result" [id]/>, with the ping's
// id exactly when the ping had one. It reports whether n was such an
// answer; anything else goes the usual way (a result with an unknown id,
// or without id, is a violation that ends the connection).
func (sess *session) pingAnswer(n node.Node) bool {
	d1 := sess.d1
	id, _ := n.Attr("id")
	d1.mu.Lock()
	match := d1.pingOut && id == d1.pingID
	if !match {
		d1.mu.Unlock()
		return false
	}
	to, ok := n.AttrJID("to")
	if !ok || to != jid.ServerJID {
		d1.mu.Unlock()
		sess.softViolation("answer to server ping (id %q) without to=s.whatsapp.net (as a JID)", id)
		return true
	}
	d1.pingOut = false
	d1.mu.Unlock()
	sess.s.stats.add(func(st *Stats) *int64 { return &st.ServerPingsAnswered }, 1)
	return true
}

// ackAttrs are the attributes an ack may carry.
var ackAttrs = map[string]bool{"class": true, "id": true, "to": true, "participant": true, "recipient": true, "type": true}

// handleAck checks a client <ack> against the pending stanza it names
// (PROTOCOL.md 9.8): exactly class, id, to, participant and recipient when
// the stanza had them, and type when it had one unless class is message.
// A match settles the stanza; anything else is counted in acks_malformed
// and listed as a violation (the connection stays open, the stanza stays
// pending). Acks arriving on a connection that no longer owns the device
// (replaced by a newer login) or for a removed device are ignored.
func (sess *session) handleAck(n node.Node) {
	s := sess.s
	dev := sess.dev
	class, _ := n.Attr("class")
	id, _ := n.Attr("id")
	dev.st.mu.Lock()
	if dev.st.current != sess || dev.st.removed {
		dev.st.mu.Unlock()
		return
	}
	participant, _ := n.AttrJID("participant")
	if class == "receipt" && participant.IsEmpty() {
		participant, _ = n.AttrJID("to") // a 1:1 receipt's key names its device (pendingStanza.key)
	}
	p := dev.st.lookup(id, participant)
	if p == nil && sess.d1 == nil {
		// Outside day-one mode the server asks for no acks but those of the
		// stanzas it queued; others are ignored as before.
		dev.st.mu.Unlock()
		return
	}
	why := ackProblem(n, class, id, p)
	var then func()
	if why == "" {
		dev.st.settle(p)
		then, p.onSettle = p.onSettle, nil
	}
	dev.st.mu.Unlock()
	if why == "" {
		s.stats.add(func(st *Stats) *int64 { return &st.AcksOK }, 1)
		if then != nil {
			then()
		}
		return
	}
	sess.countedViolation(func(st *Stats) { st.AcksMalformed++ }, "malformed ack (class %q id %q): %s", class, id, why)
}

// ackProblem says what is wrong with ack n for pending stanza p (nil if
// the id is unknown), or "" if it is right.
func ackProblem(n node.Node, class, id string, p *pendingStanza) string {
	if n.Kind() != node.KindNone {
		return "an ack has attributes only, no content"
	}
	seen := make(map[string]bool, len(n.Attrs))
	for _, a := range n.Attrs {
		switch {
		case seen[a.Key]:
			return fmt.Sprintf("attribute %s twice", a.Key)
		case a.Key == "error" && class == "message":
			return "an error attribute on a message ack (ack undecryptable messages plainly; the server withholds the queue otherwise)"
		case !ackAttrs[a.Key]:
			return fmt.Sprintf("unexpected attribute %s", a.Key)
		}
		seen[a.Key] = true
	}
	switch {
	case class == "":
		return "no class"
	case !ackableTags[class]:
		return fmt.Sprintf("class %s: the server never asks for acks of <%s> stanzas", class, class)
	case id == "":
		return "no id"
	case p == nil:
		return "no pending stanza has this id (unknown, or already acked)"
	case class != p.tag:
		return fmt.Sprintf("class %s for a <%s>", class, p.tag)
	}
	if msg := jidAttrProblem(n, "to", p.from); msg != "" {
		return msg
	}
	if msg := jidAttrProblem(n, "participant", p.participant); msg != "" {
		return msg
	}
	if msg := jidAttrProblem(n, "recipient", p.recipient); msg != "" {
		return msg
	}
	want := p.typ
	if p.tag == "message" {
		want = ""
	}
	got, has := n.Attr("type")
	switch {
	case want == "" && has && p.tag == "message":
		return "type on a message ack (the reference clients omit it)"
	case want == "" && has:
		return fmt.Sprintf("type %q, but the <%s> had no type", got, p.tag)
	case want != "" && !has:
		return fmt.Sprintf("no type; want %q", want)
	case got != want:
		return fmt.Sprintf("type %q; want %q", got, want)
	}
	return ""
}

// jidAttrProblem checks that attribute key of an ack is the JID want, or
// absent when want is empty. Both reference clients copy the stanza's JID
// values, so they go out as JID encodings; a string is a different value.
func jidAttrProblem(n node.Node, key string, want jid.JID) string {
	a, has := n.GetAttr(key)
	switch {
	case want.IsEmpty() && has:
		return fmt.Sprintf("%s present, but the stanza had none", key)
	case want.IsEmpty():
		return ""
	case !has:
		return fmt.Sprintf("no %s; want %s", key, want)
	}
	got, isJID := a.JID()
	if !isJID {
		return fmt.Sprintf("%s %q is a string, not a JID encoding", key, a.Value)
	}
	if got != want {
		return fmt.Sprintf("%s %s; want %s", key, got, want)
	}
	return ""
}

// handleReceipt lets a client's delivery receipt for a pushed message stop
// that message's deadline (PROTOCOL.md 9.8: a delivery receipt also
// settles a message). The message's ack is still recognised afterwards, so
// a client that sends both (as whatsmeow does) is not told its ack is
// unknown. Receipts for other ids are normal (read receipts of older
// messages) and ignored. Receipts and retry receipts of messages from
// emulated contacts also go to them (contactroute.go); retry receipts do
// not settle.
func (sess *session) handleReceipt(n node.Node) {
	if typ, _ := n.Attr("type"); typ == "retry" {
		sess.s.retryReceipt(sess, n)
		return
	}
	ids := make([]string, 0, 1)
	if id, _ := n.Attr("id"); id != "" {
		ids = append(ids, id)
	}
	if l, ok := n.Child("list"); ok {
		for item := range l.ChildrenByTag("item") {
			if id, _ := item.Attr("id"); id != "" {
				ids = append(ids, id)
			}
		}
	}
	participant, _ := n.AttrJID("participant")
	dev := sess.dev
	dev.st.mu.Lock()
	if dev.st.current != sess {
		dev.st.mu.Unlock()
		return
	}
	for _, id := range ids {
		if p := dev.st.lookup(id, participant); p != nil && p.tag == "message" {
			p.receipted = true
		}
	}
	dev.st.mu.Unlock()
	sess.s.deliveryReceipts(sess, n, ids)
}
