package pairing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
	"github.com/wafleet/wafleet/wire/qr"
)

// Schedule is how long each QR code is shown (PROTOCOL.md 8.4).
type Schedule struct {
	// First is the lifetime of the first code. Default 60 s.
	First time.Duration
	// Next is the lifetime of every later code. Default 20 s.
	Next time.Duration
}

// Deps are the dependencies of one pairing actor. Device and Events are
// required.
type Deps struct {
	// AccountID names the account in events and logs. Default Device.ID.
	AccountID string
	// Gen is the parent's connection generation, echoed in every message
	// to the parent.
	Gen uint64
	// Device is the unpaired device; the actor keeps its own copy.
	Device *store.Device
	// Events receives the QR codes (events.KindQR).
	Events events.Publisher
	// Logger is the service's JSON logger. Default slog.Default().
	Logger *slog.Logger
	// Schedule is the QR rotation. Zero fields take the defaults.
	Schedule Schedule
	// ClientType is the last field of the QR code. Default
	// qr.ClientUnknown ('0').
	ClientType qr.ClientType
	// Now is the clock (PairedAt, event times). Default time.Now.
	Now func() time.Time
	// LinkPhone, when set, pairs by link code (phone number) instead of
	// QR: the account's number, digits only, international, no leading 0
	// (linkcode.go). The refs of pair-device then only bound the code's
	// life; no QR code is published.
	LinkPhone string
	// LinkDisplay is companion_platform_display. Default
	// DefaultLinkDisplay.
	LinkDisplay string
}

// New returns the producer of a pairing actor.
func New(deps Deps) actor.Producer {
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Schedule.First <= 0 {
		deps.Schedule.First = qr.FirstTTL
	}
	if deps.Schedule.Next <= 0 {
		deps.Schedule.Next = qr.NextTTL
	}
	if deps.ClientType == 0 {
		deps.ClientType = qr.ClientUnknown
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.AccountID == "" && deps.Device != nil {
		deps.AccountID = deps.Device.ID
	}
	return func() actor.Actor {
		d := deps
		if d.Device != nil {
			d.Device = d.Device.Clone()
		}
		return &pairer{deps: d, log: d.Logger.With(slog.String("account", d.AccountID), slog.String("actor", "pairing"))}
	}
}

// rotate is the timer message that shows the next code.
type rotate struct{ seq uint64 }

// IgnoreDeadLetterLogging: a late timer for a stopped actor is expected.
func (*rotate) IgnoreDeadLetterLogging() {}

type pairer struct {
	deps Deps
	log  *slog.Logger

	refs  []string
	index int
	seq   uint64 // bumped on every schedule change; stale rotates are dropped
	timer *time.Timer

	finished  bool // a pair-success was answered (or the codes expired)
	lastCoded bool

	link *linkState // the link-code exchange, when Deps.LinkPhone is set
}

// Receive implements actor.Actor.
func (p *pairer) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		p.log.Debug("pairing started")
	case *PairDevice:
		p.onPairDevice(ctx, m.Node)
	case *PairSuccess:
		p.onPairSuccess(ctx, m.Node)
	case *IQAnswer:
		p.onIQAnswer(ctx, m.Node)
	case *LinkCodeNotification:
		p.onLinkCodeNotification(ctx, m.Node)
	case *rotate:
		if m.seq == p.seq {
			p.onRotate(ctx)
		}
	case *actor.Stopping, *actor.Restarting:
		p.stopTimer()
		p.seq++
	case *actor.Stopped:
		// No message reaches the actor any more, but the parent's list of
		// children may keep it reachable until its next child: keep
		// nothing sizeable.
		p.refs, p.link = nil, nil
	case *actor.Restart, *actor.Terminated:
	default:
		p.log.Warn("pairing: unexpected message", slog.String("type", fmt.Sprintf("%T", m)))
	}
}

func (p *pairer) onPairDevice(ctx actor.Context, n node.Node) {
	id, _ := n.Attr("id")
	ctx.Send(ctx.Parent(), &Send{Gen: p.deps.Gen, Node: node.IQ(id, replyTo(n), "result", "")})
	if p.finished {
		p.log.Warn("pairing: pair-device after pair-success ignored")
		return
	}
	pd, _ := n.Child("pair-device")
	var refs []string
	if pd != nil {
		for _, c := range pd.Children() {
			if c.Tag != "ref" {
				continue
			}
			if b, ok := c.Bytes(); ok && len(b) > 0 && len(b) <= qr.MaxRefLen {
				refs = append(refs, string(b))
			}
		}
	}
	p.refs, p.index, p.lastCoded = refs, 0, false
	p.seq++
	if len(refs) == 0 {
		p.log.Warn("pairing: pair-device without refs")
		p.expire(ctx)
		return
	}
	if p.deps.LinkPhone != "" {
		if p.link == nil {
			p.startLinkCode(ctx, p.deps.Schedule.First+time.Duration(len(refs)-1)*p.deps.Schedule.Next)
			if p.finished {
				return
			}
		}
	} else {
		p.log.Info("pairing: showing QR codes", slog.Int("refs", len(refs)))
	}
	p.show(ctx, p.deps.Schedule.First)
}

// show publishes the code of the current ref and arms the timer for the
// next one.
func (p *pairer) show(ctx actor.Context, life time.Duration) {
	d := p.deps.Device
	code, err := qr.Build(p.refs[p.index], d.NoiseKey.Pub, d.IdentityKey.Pub, d.AdvSecret, p.deps.ClientType)
	switch {
	case p.deps.LinkPhone != "":
		// Pairing by link code: the refs only time the code's life.
	case err != nil:
		// A ref the builder refuses: skip it (the error names no value).
		p.log.Warn("pairing: unusable ref skipped", slog.Int("index", p.index), slog.String("error", err.Error()))
	default:
		now := p.deps.Now()
		p.deps.Events.Publish(events.Event{
			Account: p.deps.AccountID, Kind: events.KindQR, State: events.StatePairing,
			QR: code, QRIndex: p.index + 1, QRCount: len(p.refs), QRExpires: now.Add(life), Time: now,
		})
		p.log.Info("pairing: QR code showing", slog.Int("index", p.index+1), slog.Int("of", len(p.refs)),
			slog.Duration("for", life))
	}
	if p.index == len(p.refs)-1 && !p.lastCoded {
		p.lastCoded = true
		ctx.Send(ctx.Parent(), &LastCode{Gen: p.deps.Gen})
	}
	p.arm(ctx, life)
}

func (p *pairer) arm(ctx actor.Context, d time.Duration) {
	p.stopTimer()
	seq, self, root := p.seq, ctx.Self(), ctx.ActorSystem().Root
	p.timer = time.AfterFunc(d, func() { root.Send(self, &rotate{seq: seq}) })
}

func (p *pairer) stopTimer() {
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
}

func (p *pairer) onRotate(ctx actor.Context) {
	p.timer = nil
	if p.finished {
		return
	}
	p.index++
	if p.index >= len(p.refs) {
		p.expire(ctx)
		return
	}
	p.seq++
	p.show(ctx, p.deps.Schedule.Next)
}

func (p *pairer) expire(ctx actor.Context) {
	if p.link != nil {
		p.linkFail(ctx, ErrLinkCodeExpired)
		return
	}
	p.stopTimer()
	p.seq++
	p.finished = true
	p.log.Info("pairing: QR codes expired without a scan")
	ctx.Send(ctx.Parent(), &Expired{Gen: p.deps.Gen})
}

func (p *pairer) onPairSuccess(ctx actor.Context, n node.Node) {
	if p.finished {
		p.log.Warn("pairing: duplicate pair-success ignored")
		return
	}
	p.stopTimer()
	p.seq++
	id, _ := n.Attr("id")
	to := replyTo(n)
	paired, pr, err := p.verify(n)
	if err != nil {
		var pe *Error
		if !errors.As(err, &pe) {
			pe = &Error{Code: 500, Text: "internal-error", Err: err}
		}
		p.fail(ctx, id, to, pe)
		return
	}
	p.finished = true
	p.log.Info("pairing: pair-success verified; the parent saves and replies", slog.String("jid", paired.JID))
	reply := node.IQ(id, to, "result", "",
		node.New("pair-device-sign").WithChildren(
			node.New("device-identity", node.IntAttr("key-index", int64(pr.KeyIndex))).WithBytes(pr.Reply),
		))
	ctx.Send(ctx.Parent(), &Finish{Gen: p.deps.Gen, Reply: reply, Paired: paired})
}

// verify runs the ADV procedure and builds the paired device.
func (p *pairer) verify(n node.Node) (*store.Device, *crypto.ADVPairing, error) {
	ps, ok := n.Child("pair-success")
	if !ok {
		return nil, nil, fmt.Errorf("%w: no pair-success child", ErrMalformed)
	}
	di, ok := ps.Child("device-identity")
	var container []byte
	if ok {
		container, ok = di.Bytes()
	}
	if !ok || len(container) == 0 {
		return nil, nil, fmt.Errorf("%w: no device-identity bytes", ErrMalformed)
	}
	devNode, ok := ps.Child("device")
	if !ok {
		return nil, nil, fmt.Errorf("%w: no device", ErrMalformed)
	}
	pn, err := attrJID(*devNode, "jid")
	if err != nil || pn.IsEmpty() {
		return nil, nil, fmt.Errorf("%w: device jid", ErrMalformed)
	}
	var lid jid.JID
	if _, has := devNode.Attr("lid"); has {
		if lid, err = attrJID(*devNode, "lid"); err != nil {
			return nil, nil, fmt.Errorf("%w: device lid", ErrMalformed)
		}
	}

	d := p.deps.Device
	if p.link != nil && p.link.adv != nil {
		// Paired by link code: the derived secret replaces the QR's. Without
		// it (no exchange happened) the QR's secret stays and the HMAC
		// check refuses the pair-success.
		d.AdvSecret = *p.link.adv
	}
	identity, err := crypto.KeyPairFromPrivate(d.IdentityKey.Priv[:])
	if err != nil {
		return nil, nil, fmt.Errorf("identity key: %w", err)
	}
	pr, err := crypto.VerifyADVPairing(container, d.AdvSecret[:], identity)
	switch {
	case errors.Is(err, crypto.ErrADVHMACMismatch):
		return nil, nil, &Error{Code: 401, Text: "hmac-mismatch", Err: err}
	case errors.Is(err, crypto.ErrADVSignatureMismatch):
		return nil, nil, &Error{Code: 401, Text: "signature-mismatch", Err: err}
	case err != nil:
		return nil, nil, &Error{Code: 500, Text: "internal-error", Err: err}
	}
	account, err := proto.Marshal(pr.Account)
	if err != nil {
		return nil, nil, fmt.Errorf("encode account: %w", err)
	}

	paired := d.Clone()
	paired.JID = pn.String()
	if !lid.IsEmpty() {
		paired.LID = lid.String()
	}
	if biz, ok := ps.Child("biz"); ok {
		paired.BusinessName, _ = biz.Attr("name")
	}
	if pl, ok := ps.Child("platform"); ok {
		paired.Platform, _ = pl.Attr("name")
	}
	paired.Account = account
	copy(paired.MainDeviceIdentity[:], pr.Account.GetAccountSignatureKey())
	paired.PairedAt = p.deps.Now().UTC()
	if err := paired.Validate(); err != nil {
		return nil, nil, fmt.Errorf("paired device: %w", err)
	}
	return paired, pr, nil
}

func (p *pairer) fail(ctx actor.Context, id string, to jid.JID, pe *Error) {
	p.finished = true
	p.log.Warn("pairing: pair-success refused", slog.Int("code", pe.Code), slog.String("text", pe.Text),
		slog.String("error", pe.Error()))
	ctx.Send(ctx.Parent(), &Finish{Gen: p.deps.Gen, Reply: errorIQ(id, to, pe), Err: pe})
}

// errorIQ answers the pair-success id with pe's <error code text/>.
func errorIQ(id string, to jid.JID, pe *Error) node.Node {
	return node.IQ(id, to, "error", "",
		node.New("error", node.IntAttr("code", int64(pe.Code)), node.StrAttr("text", pe.Text)))
}

// replyTo is the "to" of a reply: the request's from when it is a JID,
// else the server.
func replyTo(n node.Node) jid.JID {
	if j, ok := n.AttrJID("from"); ok && !j.IsEmpty() {
		return j
	}
	return jid.ServerJID
}

// attrJID reads a JID attribute, accepting its string form too.
func attrJID(n node.Node, key string) (jid.JID, error) {
	if j, ok := n.AttrJID(key); ok {
		return j, nil
	}
	s, ok := n.Attr(key)
	if !ok {
		return jid.JID{}, fmt.Errorf("no %s", key)
	}
	return jid.Parse(s)
}

// Unpaired returns a copy of d with every pairing field cleared: the device
// as it was before pairing.
func Unpaired(d *store.Device) *store.Device {
	u := d.Clone()
	u.JID, u.LID, u.BusinessName, u.Platform = "", "", "", ""
	u.Account = nil
	u.MainDeviceIdentity = [32]byte{}
	u.PairedAt = time.Time{}
	return u
}

// Restore undoes the save of paired: if the store still holds that pairing
// (same noise key, same JID, same pairing time) it saves the device unpaired
// again, in one atomic Save; if the store holds anything else (the device
// was wiped, re-keyed or paired anew meanwhile) it changes nothing. The
// caller is the store's one writer for the account (the connection actor).
func Restore(ctx context.Context, st store.Store, paired *store.Device) error {
	cur, err := st.Load(ctx, paired.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pairing: restore: %w", err)
	}
	if cur.NoiseKey.Pub != paired.NoiseKey.Pub || cur.JID != paired.JID || !cur.PairedAt.Equal(paired.PairedAt) {
		return nil
	}
	if err := st.Save(ctx, Unpaired(cur)); err != nil {
		return fmt.Errorf("pairing: restore: %w", err)
	}
	return nil
}
