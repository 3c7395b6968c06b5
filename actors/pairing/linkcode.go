package pairing

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// Pairing by phone number (PROTOCOL.md 10). With Deps.LinkPhone set, the
// actor answers the first pair-device by asking the server for a link code
// instead of showing QR codes: companion_hello carries the companion's
// ephemeral key wrapped under a fresh code; once the server answers with a
// ref, the code is published (events.KindLinkCode) until the refs' window
// closes. The server's link_code_companion_reg notification carries the
// phone's wrapped ephemeral and identity key; the actor answers with
// companion_finish (the sealed key bundle) and keeps the derived ADV secret,
// with which pair-success is then verified exactly as for QR. Any failure
// ends the attempt with *Failed; the store is never touched.
//
// The two reference clients differ in the nonce: whatsmeow sends one 00
// byte, Baileys the string "0". This client sends the byte, as whatsmeow
// does; companion_platform_id and companion_platform_display are text.
// They differ too in where the ephemeral key pair lives: Baileys stores it
// with its credentials, whatsmeow keeps it in memory. This client keeps it
// in the actor only: an attempt that loses its connection starts over with
// a new code, and nothing of it reaches the store.

// DefaultLinkDisplay is the companion_platform_display sent when
// Deps.LinkDisplay is empty: the server accepts only "Browser (OS)" pairs.
const DefaultLinkDisplay = "Chrome (Linux)"

// Sentinel errors of link-code pairing. None of them carries the code.
var (
	// ErrLinkCodeExpired: the code's window passed without the phone
	// answering.
	ErrLinkCodeExpired = errors.New("pairing: link code expired without being entered on the phone")
	// ErrLinkCodeRefused: the server refused companion_hello (an invalid
	// phone number, an unaccepted platform display, …).
	ErrLinkCodeRefused = errors.New("pairing: the server refused the link-code request")
	// ErrLinkCodeRejected: the phone did not accept the key bundle; the code
	// typed on the phone was not the one shown.
	ErrLinkCodeRejected = errors.New("pairing: the phone rejected the link code: was it typed exactly as shown?")
	// ErrLinkCodeMalformed: the server's notification was malformed or did
	// not name this request.
	ErrLinkCodeMalformed = errors.New("pairing: malformed link-code notification")
)

// IQAnswer is a result or error IQ the parent could not match to an IQ of
// its own, forwarded while a pairing runs (the answers to companion_hello
// and companion_finish).
type IQAnswer struct{ Node node.Node }

// LinkCodeNotification is the server's <notification
// type="link_code_companion_reg">, forwarded after the parent acked it.
type LinkCodeNotification struct{ Node node.Node }

// Failed ends a link-code attempt that has no pair-success to answer: the
// parent closes the connection and reports Err; the account is unpaired
// and may pair again.
type Failed struct {
	Gen uint64
	Err error
}

// linkState is the pending link-code exchange of one pairing actor.
type linkState struct {
	code      string // 8 characters, no dash; secret
	ephemeral *crypto.KeyPair
	ref       []byte
	helloID   string
	finishID  string
	expires   time.Time
	adv       *[32]byte // derived ADV secret, once companion_finish is sent
}

// newIQID returns an IQ id of the pairing actor's own ("lc." + random hex),
// distinct from the connection's numbered ids.
func newIQID() string {
	var b [6]byte
	rand.Read(b[:])
	return "lc." + hex.EncodeToString(b[:])
}

// linkPhoneJID is the account's phone number as a user JID.
func (p *pairer) linkPhoneJID() jid.JID {
	return jid.JID{User: p.deps.LinkPhone, Server: jid.DefaultUserServer}
}

// startLinkCode sends companion_hello with a fresh code and ephemeral key.
// window is how long the server keeps this registration (the refs' life).
func (p *pairer) startLinkCode(ctx actor.Context, window time.Duration) {
	code, err := crypto.GenerateLinkCode()
	var eph *crypto.KeyPair
	if err == nil {
		eph, err = crypto.GenerateKeyPair()
	}
	var wrapped []byte
	if err == nil {
		wrapped, err = crypto.WrapLinkCodeKey(code, eph.Pub)
	}
	if err != nil {
		p.linkFail(ctx, fmt.Errorf("pairing: link code: %w", err))
		return
	}
	p.link = &linkState{code: code, ephemeral: eph, helloID: newIQID(), expires: p.deps.Now().Add(window)}
	d := p.deps.Device
	display := p.deps.LinkDisplay
	if display == "" {
		display = DefaultLinkDisplay
	}
	hello := node.IQ(p.link.helloID, jid.ServerJID, "set", "md", node.New("link_code_companion_reg",
		node.JIDAttr("jid", p.linkPhoneJID()),
		node.StrAttr("stage", "companion_hello"),
		node.StrAttr("should_show_push_notification", "true"),
	).WithChildren(
		node.New("link_code_pairing_wrapped_companion_ephemeral_pub").WithBytes(wrapped),
		node.New("companion_server_auth_key_pub").WithBytes(d.NoiseKey.Pub[:]),
		node.New("companion_platform_id").WithText(string(rune(p.deps.ClientType))),
		node.New("companion_platform_display").WithText(display),
		node.New("link_code_pairing_nonce").WithBytes([]byte{0}),
	))
	p.log.Info("pairing: asking the server for a link code")
	ctx.Send(ctx.Parent(), &Send{Gen: p.deps.Gen, Node: hello})
}

func (p *pairer) onIQAnswer(ctx actor.Context, n node.Node) {
	l := p.link
	if l == nil || p.finished {
		return
	}
	id, _ := n.Attr("id")
	typ, _ := n.Attr("type")
	switch id {
	case l.helloID:
		l.helloID = ""
		if typ != "result" {
			p.linkFail(ctx, fmt.Errorf("%w: %s", ErrLinkCodeRefused, n.ErrorText()))
			return
		}
		reg, _ := n.Child("link_code_companion_reg")
		var ref []byte
		if reg != nil {
			if r, ok := reg.Child("link_code_pairing_ref"); ok {
				ref, _ = r.Bytes()
			}
		}
		if len(ref) == 0 || len(ref) > 256 {
			p.linkFail(ctx, fmt.Errorf("%w: companion_hello answered without a ref", ErrLinkCodeRefused))
			return
		}
		l.ref = ref
		now := p.deps.Now()
		p.deps.Events.Publish(events.Event{
			Account: p.deps.AccountID, Kind: events.KindLinkCode, State: events.StatePairing,
			LinkCode: crypto.FormatLinkCode(l.code), LinkCodeExpires: l.expires, Time: now,
		})
		p.log.Info("pairing: a link code is showing", slog.Duration("for", l.expires.Sub(now).Round(time.Second)))
	case l.finishID:
		l.finishID = ""
		if typ != "result" {
			p.linkFail(ctx, fmt.Errorf("%w (%s)", ErrLinkCodeRejected, n.ErrorText()))
			return
		}
		p.log.Info("pairing: the phone accepted the link code; waiting for pair-success")
	}
}

func (p *pairer) onLinkCodeNotification(ctx actor.Context, n node.Node) {
	l := p.link
	if l == nil || l.ref == nil || l.adv != nil || p.finished {
		p.log.Warn("pairing: link-code notification without a pending request ignored")
		return
	}
	reg, _ := n.Child("link_code_companion_reg")
	get := func(tag string) []byte {
		if reg == nil {
			return nil
		}
		c, ok := reg.Child(tag)
		if !ok {
			return nil
		}
		b, _ := c.Bytes()
		return b
	}
	ref, wrapped, primaryID := get("link_code_pairing_ref"), get("link_code_pairing_wrapped_primary_ephemeral_pub"), get("primary_identity_pub")
	switch {
	case string(ref) != string(l.ref):
		p.linkFail(ctx, fmt.Errorf("%w: the ref is not this request's", ErrLinkCodeMalformed))
		return
	case len(wrapped) != crypto.LinkCodeWrappedLen || len(primaryID) != 32:
		p.linkFail(ctx, fmt.Errorf("%w: wrapped primary key of %d bytes, identity of %d", ErrLinkCodeMalformed, len(wrapped), len(primaryID)))
		return
	}
	d := p.deps.Device
	identity, err := crypto.KeyPairFromPrivate(d.IdentityKey.Priv[:])
	if err != nil {
		p.linkFail(ctx, fmt.Errorf("pairing: identity key: %w", err))
		return
	}
	fin, err := crypto.LinkCodeCompanionFinish(l.code, l.ephemeral, identity, wrapped, primaryID)
	if err != nil {
		p.linkFail(ctx, fmt.Errorf("%w: %w", ErrLinkCodeMalformed, err))
		return
	}
	l.adv = &fin.ADVSecret
	l.finishID = newIQID()
	finish := node.IQ(l.finishID, jid.ServerJID, "set", "md", node.New("link_code_companion_reg",
		node.JIDAttr("jid", p.linkPhoneJID()),
		node.StrAttr("stage", "companion_finish"),
	).WithChildren(
		node.New("link_code_pairing_wrapped_key_bundle").WithBytes(fin.WrappedBundle),
		node.New("companion_identity_public").WithBytes(identity.Pub[:]),
		node.New("link_code_pairing_ref").WithBytes(l.ref),
	))
	p.log.Info("pairing: the code was entered on the phone; sending companion_finish")
	ctx.Send(ctx.Parent(), &Send{Gen: p.deps.Gen, Node: finish})
}

// linkFail ends the attempt: no pair-success will come to answer.
func (p *pairer) linkFail(ctx actor.Context, err error) {
	p.stopTimer()
	p.seq++
	p.finished = true
	p.log.Warn("pairing: link-code pairing failed", slog.String("error", err.Error()))
	ctx.Send(ctx.Parent(), &Failed{Gen: p.deps.Gen, Err: err})
}
