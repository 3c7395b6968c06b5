package connection

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/wafleet/wafleet/actors/pairing"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// The stanzas of a live connection: login (<success>, <active/>), the
// answers to our IQs, acks and the keepalive.

func (c *conn) onNode(ctx actor.Context, n node.Node) {
	switch n.Tag {
	case "iq":
		c.onIQ(ctx, n)
	case "success":
		c.onSuccess(ctx, n)
	case "failure", "stream:error":
		out, serr := classify(n)
		if serr.Class == ErrUnacked {
			c.deps.Observer.StreamErrorAck()
			c.log.Warn("server ended the stream for an unacknowledged stanza",
				slog.String("class", serr.AckClass), slog.String("id", serr.AckID))
		}
		if c.cur.logoutID != "" {
			c.finishLogout(ctx)
			return
		}
		if out == outReconnectNow && c.cur.expectRestart {
			c.log.Info("pairing done; reconnecting to log in")
			c.end(ctx, outReconnectNow, nil)
			return
		}
		if out == outReconnectNow {
			// A 515 reconnects at once only once per stable connection:
			// a server that asks for it on every login (or before login)
			// would otherwise be stormed at the connect rate. Consecutive
			// ones back off like any other failure (end counts them).
			if c.phase == phaseActive && c.deps.Backoff.Stable(c.deps.Now().Sub(c.connectedAt)) {
				c.failures = 0
			}
			if c.phase != phaseActive || c.failures > 0 {
				out = outBackoff
			}
		}
		c.end(ctx, out, serr)
	case "xmlstreamend":
		c.cur.streamEnded = true
	case "ack":
		c.onServerAck(n)
	case "ib":
		if _, ok := n.Child("downgrade_webclient"); ok {
			c.log.Warn("the phone scanned the code but does not support multi-device")
		}
	default:
		if ackable[n.Tag] {
			c.onAckable(ctx, n)
			return
		}
		// presence, chatstate and the like need no answer
		c.log.Debug("stanza ignored", slog.String("tag", n.Tag))
	}
}

// onFrame decodes a frame the session received and handles its stanza. A
// frame that does not decode is counted, logged and skipped: the transport
// authenticated it, so the stream itself is sound, and a real server may
// send stanzas this codec does not know yet. If its tag and id decode and
// it is ackable, it is acknowledged all the same: the server would
// otherwise end the stream for it and redeliver it on every login.
func (c *conn) onFrame(ctx actor.Context, data []byte) {
	n, err := node.UnmarshalOwnedPayload(data) // data is the actor's copy: decoded in place
	if err == nil {
		c.onNode(ctx, n)
		return
	}
	c.deps.Observer.StanzaUndecodable()
	header, _ := node.UnmarshalPayloadHeader(data) // a zero node when even that fails
	if ack, ok := ackFor(header); ok {
		c.log.Warn("stanza not decodable; acknowledged by its tag and id", slog.String("tag", header.Tag), slog.String("error", err.Error()))
		if c.write(ctx, ack, 0) == nil {
			c.deps.Observer.AckSent(header.Tag)
		}
		return
	}
	c.log.Warn("stanza not decodable; skipped", slog.String("error", err.Error()))
}

// onAckable acknowledges a receipt, notification or call at once, in the
// order they came, and reacts to the ones it understands; a message with
// encrypted content is acknowledged once it is decrypted and its state
// stored (onMessage), others at once.
func (c *conn) onAckable(ctx actor.Context, n node.Node) {
	ack, ok := ackFor(n)
	if !ok {
		c.log.Warn("ackable stanza without id", slog.String("tag", n.Tag))
		return
	}
	if n.Tag == "message" && c.onMessage(ctx, n) {
		return // acknowledged once decrypted and stored (receive.go)
	}
	if c.write(ctx, ack, 0) != nil {
		return
	}
	c.deps.Observer.AckSent(n.Tag)
	if n.Tag == "receipt" {
		c.onReceipt(ctx, n)
	}
	if typ, _ := n.Attr("type"); n.Tag == "notification" && typ == "link_code_companion_reg" && c.cur.child != nil {
		ctx.Send(c.cur.child, &pairing.LinkCodeNotification{Node: n})
	}
	if typ, _ := n.Attr("type"); n.Tag == "notification" && typ == "encrypt" {
		if count, ok := serverPreKeyCount(n); ok {
			c.onServerPreKeyCount(ctx, count)
		}
	}
}

func (c *conn) onIQ(ctx actor.Context, n node.Node) {
	if isServerPing(n) {
		c.write(ctx, pongFor(n), 0)
		return
	}
	typ, _ := n.Attr("type")
	id, _ := n.Attr("id")
	switch typ {
	case "result", "error":
		if id != "" {
			c.onIQAnswer(ctx, n, id, typ == "result")
		}
	case "set":
		if _, ok := n.Child("pair-device"); ok {
			c.onPairDevice(ctx, n)
		} else if _, ok := n.Child("pair-success"); ok {
			if c.cur.child == nil {
				c.log.Warn("pair-success without a pairing in progress ignored")
				return
			}
			ctx.Send(c.cur.child, &pairing.PairSuccess{Node: n})
		}
	}
}

// onIQAnswer matches the answer to an IQ of ours by its id.
func (c *conn) onIQAnswer(ctx actor.Context, n node.Node, id string, ok bool) {
	switch id {
	case c.cur.pingID:
		c.stopTimer(&c.cur.pongTimer)
		c.cur.pingID = ""
		if c.cur.missedPings > 0 {
			c.log.Info("keepalive restored", slog.Int("missed", c.cur.missedPings))
		}
		c.cur.lastPong, c.cur.missedPings = c.deps.Now(), 0
		c.armPing(ctx)
	case c.cur.logoutID:
		c.finishLogout(ctx)
	case c.cur.activeID:
		c.stopTimer(&c.cur.activeTimer)
		c.cur.activeID = ""
		if !ok {
			c.log.Warn("the server refused <active/>; going on", slog.String("error", n.ErrorText()))
		}
		c.connected()
	case c.cur.countID:
		c.cur.countID = ""
		count, valid := serverPreKeyCount(n)
		if !ok || !valid {
			c.log.Warn("prekey count not answered", slog.String("error", n.ErrorText()))
			c.goActive(ctx)
			return
		}
		if !c.onServerPreKeyCount(ctx, count) {
			c.goActive(ctx)
		}
	case c.cur.uploadID:
		c.cur.uploadID = ""
		c.onPreKeysUploaded(ctx, n, ok)
	default:
		if reply, ok := c.cur.sendIQs[id]; ok {
			delete(c.cur.sendIQs, id)
			reply <- n // buffered: the send goroutine may have given up
			return
		}
		if c.cur.child != nil {
			ctx.Send(c.cur.child, &pairing.IQAnswer{Node: n}) // companion_hello, companion_finish
		}
	}
}

// onSuccess follows the reference client's order after <success>
// (PROTOCOL.md 9.8): note the LID and the server's clock, ask for the
// prekey count and upload prekeys if the server runs low, then send
// <active/> and report connected once it is answered. Each step is bounded
// by Keepalive.Timeout (activeTimeout), after which the next one goes on
// anyway. Stanzas the server pushes meanwhile are acknowledged as they come.
func (c *conn) onSuccess(ctx actor.Context, n node.Node) {
	if !c.dev.Paired() {
		c.log.Warn("login success for a device that is not paired")
	}
	c.setPhase(phaseLoggingIn, "", nil, nil)
	c.cur.expectRestart = false
	c.cur.loggedIn = true
	c.noteSuccess(n)
	if c.goal.logout {
		c.sendLogout(ctx)
		return
	}
	c.cur.countID = c.newID()
	if c.write(ctx, preKeyCountIQ(c.cur.countID), 0) != nil {
		return
	}
	c.cur.activeTimer = c.after(ctx, c.deps.Keepalive.Timeout, &activeTimeout{gen: c.cur.gen})
}

// goActive leaves passive mode, once per connection; connected follows
// its answer.
func (c *conn) goActive(ctx actor.Context) {
	if c.cur.activeSent || !c.cur.loggedIn {
		return
	}
	c.cur.activeSent = true
	c.cur.activeID = c.newID()
	if c.write(ctx, node.IQ(c.cur.activeID, jid.ServerJID, "set", "passive", node.New("active")), 0) != nil {
		return
	}
	c.stopTimer(&c.cur.activeTimer)
	c.cur.activeTimer = c.after(ctx, c.deps.Keepalive.Timeout, &activeTimeout{gen: c.cur.gen})
}

// noteSuccess checks our clock against the server's and saves the LID the
// server gives the device when the store has another (or none).
func (c *conn) noteSuccess(n node.Node) {
	if t, ok := n.AttrInt("t"); ok && t > 0 {
		// Nothing uses the server's clock yet (the reference sends it in
		// telemetry); a skewed clock is worth a warning.
		if offset := time.Unix(t, 0).Sub(c.deps.Now()); offset > time.Minute || offset < -time.Minute {
			c.log.Warn("our clock differs from the server's", slog.Duration("offset", offset))
		}
	}
	lid, ok := n.AttrJID("lid")
	if !ok || !c.dev.Paired() || lid.String() == c.dev.LID {
		return
	}
	if lid.Server != jid.HiddenUserServer {
		c.log.Warn("success carries a LID that is not one", slog.String("lid", lid.String()))
		return
	}
	if c.dev.LID != "" {
		c.log.Warn("the server gave another LID; replacing the stored one", slog.String("stored", c.dev.LID), slog.String("lid", lid.String()))
	}
	d := c.dev.Clone()
	d.LID = lid.String()
	c.dev = d
	c.resave()
}

// connected reports the login done (once per connection).
func (c *conn) connected() {
	if c.phase == phaseActive {
		return
	}
	c.connectedAt = c.deps.Now()
	c.setPhase(phaseActive, events.KindConnected, nil, nil)
}

func (c *conn) newID() string {
	c.idSeq++
	return fmt.Sprintf("%s%d", c.idPrefix, c.idSeq)
}

func (c *conn) armPing(ctx actor.Context) {
	c.stopTimer(&c.cur.pingTimer)
	iv := c.deps.Keepalive.Interval
	d := time.Duration(float64(iv) * (0.8 + 0.4*c.deps.Rand()))
	c.cur.pingTimer = c.after(ctx, d, &pingDue{gen: c.cur.gen})
}

func (c *conn) onPingDue(ctx actor.Context) {
	if c.cur.pingID != "" || c.cur.link == nil {
		return
	}
	id := c.newID()
	if err := c.write(ctx, node.IQ(id, jid.ServerJID, "get", "w:p"), 0); err != nil {
		return
	}
	c.cur.pingID = id
	c.cur.pongTimer = c.after(ctx, c.deps.Keepalive.Timeout, &pingTimeout{gen: c.cur.gen, id: id})
}

// onPingMissed: one unanswered ping is not a dead connection (PROTOCOL.md
// 9.8, as the reference client). The connection is given up only when no
// ping has been answered for Keepalive.Window; socket errors end it at once
// anyway.
func (c *conn) onPingMissed(ctx actor.Context) {
	c.cur.pingID = ""
	c.cur.pongTimer = nil
	c.cur.missedPings++
	silent := c.deps.Now().Sub(c.cur.lastPong)
	if silent >= c.deps.Keepalive.Window {
		c.end(ctx, outBackoff, fmt.Errorf("%w: %d pings unanswered over %v", ErrKeepaliveTimeout, c.cur.missedPings, silent.Round(time.Second)))
		return
	}
	c.log.Warn("keepalive ping unanswered", slog.Int("missed", c.cur.missedPings), slog.Duration("since_last_answer", silent))
	c.armPing(ctx)
}
