package emulator

import (
	"slices"
	"sync"
	"time"

	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// deviceState is the per-device server state of day-one mode and prekeys:
// the stanzas pushed and not yet acked (they survive reconnects, not
// emulator restarts), the prekey count and the prekey IDs ever uploaded.
// Every field is guarded by mu. Lock order: registry.mu, then mu.
//
// Memory: a device whose client acks promptly holds a few pending entries
// (each its encoded stanza, about 100–250 bytes, and its ack fields); prekey
// IDs are kept as ranges, one range for a client that numbers its prekeys
// consecutively, as both reference clients do.
type deviceState struct {
	mu sync.Mutex

	// current is the logged-in connection that owns the device's stanzas:
	// the newest login. Only it pushes, settles acks and enforces deadlines.
	current *session

	pending map[string]*pendingStanza // by pendingKey; nil until the first push
	order   []*pendingStanza          // push order, oldest first; entries may be settled

	seq  uint64 // stanza ids: one per stanza, unique per device
	salt uint32 // random per device, mixed into ids

	// ready is current once it has taken over the pending stanzas
	// (takeOver): from then on new stanzas are sent to it as they come.
	ready *session

	prekeys     int64           // one-time prekeys the server holds for the device
	prekeyIDs   idRanges        // every prekey ID ever uploaded
	published   []oneTimePreKey // public halves of uploaded prekeys not handed out yet, oldest first
	lowNotified bool            // an encrypt notification was pushed since the count fell below minPrekeys
	removed     bool            // the device was unlinked or removed by a failure
}

// pendingStanza is one ackable stanza pushed and not yet settled, with what
// its ack must carry (PROTOCOL.md 9.8).
type pendingStanza struct {
	tag                    string // message, receipt, notification, call: the ack's class
	id                     string
	from                   jid.JID // the ack's to
	participant, recipient jid.JID // copied into the ack when set (empty: absent)
	typ                    string  // the stanza's type ("" if none)
	payload                []byte  // the encoded stanza, sent again on redelivery
	sentAt                 time.Time
	settled                bool   // acked (removed from pending)
	onSettle               func() // run once it is acked (a resend waiting for it), without locks
	receipted              bool   // a message the client sent a delivery receipt for
}

// pendingKey is the key of a pending stanza: its id, and its participant
// when it has one (a group message's receipts from several member devices
// share the message's id; so do their acks, each with its participant),
// or for a receipt without one its from (a 1:1 message's delivery receipt
// and a retry receipt of another of the chat's devices share the id; their
// acks name the device in to).
func pendingKey(id string, participant jid.JID) string {
	if participant.IsEmpty() {
		return id
	}
	return id + " " + participant.String()
}

func (p *pendingStanza) key() string {
	if p.tag == "receipt" && p.participant.IsEmpty() {
		return pendingKey(p.id, p.from)
	}
	return pendingKey(p.id, p.participant)
}

// lookup returns the pending stanza an ack or receipt with id and
// participant names: the one with both, else (for a malformed ack to
// point out) one with the id alone. Caller holds mu.
func (ds *deviceState) lookup(id string, participant jid.JID) *pendingStanza {
	if p := ds.pending[pendingKey(id, participant)]; p != nil {
		return p
	}
	for _, p := range ds.pending {
		if p.id == id {
			return p
		}
	}
	return nil
}

// ackableTags are the stanzas the client must ack.
var ackableTags = map[string]bool{"message": true, "receipt": true, "notification": true, "call": true}

// newPending describes the ack that stanza n needs.
func newPending(n node.Node, payload []byte) *pendingStanza {
	p := &pendingStanza{tag: n.Tag, payload: payload}
	p.id, _ = n.Attr("id")
	p.from, _ = n.AttrJID("from")
	p.participant, _ = n.AttrJID("participant")
	p.recipient, _ = n.AttrJID("recipient")
	p.typ, _ = n.Attr("type")
	return p
}

// nextSeq returns a fresh stanza sequence number (caller holds mu).
func (ds *deviceState) nextSeq() uint64 {
	ds.seq++
	return ds.seq
}

// add records a pushed stanza (caller holds mu).
func (ds *deviceState) add(p *pendingStanza) {
	if ds.pending == nil {
		ds.pending = make(map[string]*pendingStanza)
	}
	ds.pending[p.key()] = p
	ds.order = append(ds.order, p)
	if len(ds.order) > 2*len(ds.pending)+32 {
		// Mostly settled entries behind an old unacked one: drop them, so
		// order stays proportional to what is pending (amortized O(1)).
		live := make([]*pendingStanza, 0, len(ds.pending))
		for _, q := range ds.order {
			if !q.settled && !q.receipted {
				live = append(live, q)
			}
		}
		ds.order = live
	}
}

// settle removes a pending stanza that was acked (caller holds mu).
func (ds *deviceState) settle(p *pendingStanza) {
	p.settled = true
	p.payload = nil
	delete(ds.pending, p.key())
}

// oldest returns the oldest stanza whose deadline still runs: not settled
// and not receipted. It drops settled and receipted entries from the front
// of order (receipted ones stay in pending, so their ack is still
// recognised). Caller holds mu.
func (ds *deviceState) oldest() *pendingStanza {
	for len(ds.order) > 0 {
		p := ds.order[0]
		if !p.settled && !p.receipted {
			return p
		}
		ds.order[0] = nil
		ds.order = ds.order[1:]
	}
	ds.order = nil // let the backing array go
	return nil
}

// takeOver returns the stanzas to redeliver to sess, the device's current
// connection, oldest first, restamped with now, and makes sess the ready
// connection that gets later stanzas as they come. Receipted stanzas are
// forgotten: their delivery was confirmed. Caller holds mu.
func (ds *deviceState) takeOver(sess *session, now time.Time) []*pendingStanza {
	ds.ready = sess
	var out []*pendingStanza
	for _, p := range ds.order {
		if !p.settled && !p.receipted {
			p.sentAt = now
			out = append(out, p)
		}
	}
	ds.pending = nil
	for _, p := range out {
		if ds.pending == nil {
			ds.pending = make(map[string]*pendingStanza, len(out))
		}
		ds.pending[p.key()] = p
	}
	ds.order = slices.Clone(out)
	return out
}

// enqueue records an ackable stanza for device d as pending: build makes
// it from the device's next sequence number and id salt. The connection
// that owns the device's stanzas gets it at once; without one, the next
// login's redelivery does. It reports false when the device was removed.
func (s *Server) enqueue(d *device, build func(seq uint64, salt uint32) node.Node) bool {
	now := time.Now()
	d.st.mu.Lock()
	if d.st.removed {
		d.st.mu.Unlock()
		return false
	}
	n := build(d.st.nextSeq(), d.st.salt)
	b, err := node.MarshalPayload(n)
	if err != nil { // cannot happen: callers build valid nodes
		d.st.mu.Unlock()
		s.log.Error("encode queued stanza", "tag", n.Tag, "err", err)
		return false
	}
	p := newPending(n, b)
	p.sentAt = now
	d.st.add(p)
	sess := d.st.ready
	d.st.mu.Unlock()
	if sess != nil {
		// A failed send leaves the stanza pending for the next login.
		_ = sess.sendRaw(b)
		if sess.d1 != nil {
			select { // the day-one pusher watches its deadline
			case sess.d1.wake <- struct{}{}:
			default:
			}
		}
	}
	return true
}

// idRanges is a set of prekey IDs (24-bit) as sorted, disjoint, non-adjacent
// half-open ranges.
type idRanges []idRange

type idRange struct{ lo, hi uint32 } // [lo, hi)

// contains reports whether id is in the set.
func (r idRanges) contains(id uint32) bool {
	_, found := slices.BinarySearchFunc(r, id, func(x idRange, id uint32) int {
		switch {
		case x.hi <= id:
			return -1
		case x.lo > id:
			return 1
		}
		return 0
	})
	return found
}

// add inserts id (which must not be in the set).
func (r *idRanges) add(id uint32) {
	s := *r
	// i: first range with lo > id.
	i, _ := slices.BinarySearchFunc(s, id, func(x idRange, id uint32) int {
		if x.lo <= id {
			return -1
		}
		return 1
	})
	joinLeft := i > 0 && s[i-1].hi == id
	joinRight := i < len(s) && s[i].lo == id+1
	switch {
	case joinLeft && joinRight:
		s[i-1].hi = s[i].hi
		s = slices.Delete(s, i, i+1)
	case joinLeft:
		s[i-1].hi = id + 1
	case joinRight:
		s[i].lo = id
	default:
		s = slices.Insert(s, i, idRange{id, id + 1})
	}
	*r = s
}
