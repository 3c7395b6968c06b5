package emulator

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// Link-code pairing, the server and phone side (PROTOCOL.md section 10):
//
//  1. On a registration connection the companion sends companion_hello
//     (<iq xmlns=md type=set><link_code_companion_reg stage=companion_hello
//     jid=PHONE@s.whatsapp.net>); the server checks every child and answers
//     with a <link_code_pairing_ref>. A second hello before the phone
//     answers replaces the first (a new code).
//  2. Phone.EnterLinkCode (POST /link) is the operator typing the code on
//     the phone of that number: the phone wraps its ephemeral key under the
//     typed code and the server sends <notification
//     type=link_code_companion_reg> with the ref, the wrapped key and the
//     account's identity key. The companion must ack it.
//  3. companion_finish (before the ack: 400 and a violation) carries the
//     sealed key bundle. The phone opens it with the shared secret of the
//     two ephemerals; a wrong code typed on the phone makes it fail to
//     open: 401 and ErrLinkCodeMismatch. Otherwise the server answers a
//     result and sends pair-success HMACed with the derived ADV secret;
//     from there it is QR pairing (pair-device-sign, 515).

// linkCode is a companion's pending link-code request; guarded by
// registry.mu.
type linkCode struct {
	phone     string
	ref       []byte
	companion [32]byte // the companion's ephemeral public key, once a code is typed

	// Set by EnterLinkCode.
	entered    bool
	notifID    string
	acked      bool
	primaryEph *crypto.KeyPair
	account    *account
	pn, lid    jid.JID
	attempt    *pairAttempt
	wrapped    []byte // the companion's wrapped ephemeral, from the hello
}

// platformDisplay is the accepted shape of companion_platform_display:
// "Browser (OS)".
var platformDisplay = regexp.MustCompile(`^[A-Za-z0-9 ._-]{1,40} \([A-Za-z0-9 ._-]{1,40}\)$`)

// linkCodeIQ serves <iq xmlns=md type=set><link_code_companion_reg stage>.
func (sess *session) linkCodeIQ(n node.Node, id string) error {
	reg, _ := n.Child("link_code_companion_reg")
	stage, _ := reg.Attr("stage")
	switch stage {
	case "companion_hello":
		return sess.companionHello(reg, id)
	case "companion_finish":
		return sess.companionFinish(reg, id)
	}
	return sess.linkCodeRefused(id, 400, "bad-request", "link_code_companion_reg with stage %q", stage)
}

// linkCodeRefused answers an error IQ, lists the violation and counts a
// failed link-code request.
func (sess *session) linkCodeRefused(id string, code int, text, format string, args ...any) error {
	sess.countedViolation(func(st *Stats) { st.LinkCodeFailures++ }, format, args...)
	return sess.send(iqError(id, code, text))
}

// byteChild returns the byte content of child tag of n, which must be
// exactly size bytes (size 0: any non-empty length).
func byteChild(n *node.Node, tag string, size int) ([]byte, error) {
	c, ok := n.Child(tag)
	if !ok {
		return nil, fmt.Errorf("no <%s>", tag)
	}
	b, ok := c.Bytes()
	if !ok {
		return nil, fmt.Errorf("<%s> content is not bytes", tag)
	}
	if (size > 0 && len(b) != size) || len(b) == 0 {
		return nil, fmt.Errorf("<%s> is %d bytes, want %d", tag, len(b), size)
	}
	return b, nil
}

// textChild returns the content of child tag as text; bytes are accepted
// too (what a client sends for these is not the same in every client).
func textChild(n *node.Node, tag string) (string, error) {
	c, ok := n.Child(tag)
	if !ok {
		return "", fmt.Errorf("no <%s>", tag)
	}
	if s, ok := c.Text(); ok {
		return s, nil
	}
	if b, ok := c.Bytes(); ok {
		return string(b), nil
	}
	return "", fmt.Errorf("<%s> has no content", tag)
}

// linkPhone reads the jid attribute: PHONE@s.whatsapp.net, as a JID or as
// a string.
func linkPhone(reg *node.Node) (string, error) {
	j, ok := reg.AttrJID("jid")
	if !ok {
		s, _ := reg.Attr("jid")
		var err error
		if j, err = jid.Parse(s); err != nil {
			return "", fmt.Errorf("jid %q is not a JID", s)
		}
	}
	if j.Server != jid.DefaultUserServer || j.Device != 0 || !isPhoneNumber(j.User) {
		return "", fmt.Errorf("jid %s is not PHONE@s.whatsapp.net", j)
	}
	return j.User, nil
}

func (sess *session) companionHello(reg *node.Node, id string) error {
	s := sess.s
	phone, err := linkPhone(reg)
	if err != nil {
		return sess.linkCodeRefused(id, 400, "bad-request", "companion_hello: %v", err)
	}
	wrapped, err := byteChild(reg, "link_code_pairing_wrapped_companion_ephemeral_pub", crypto.LinkCodeWrappedLen)
	if err == nil {
		var auth []byte
		if auth, err = byteChild(reg, "companion_server_auth_key_pub", 32); err == nil && !bytes.Equal(auth, sess.reg.noisePub[:]) {
			err = errors.New("companion_server_auth_key_pub is not the handshake's static key")
		}
	}
	var platformID, display string
	if err == nil {
		platformID, err = textChild(reg, "companion_platform_id")
	}
	if err == nil && (len(platformID) == 0 || len(platformID) > 2 || strings.Trim(platformID, "0123456789") != "") {
		err = fmt.Errorf("companion_platform_id %q is not a platform number", platformID)
	}
	if err == nil {
		display, err = textChild(reg, "companion_platform_display")
	}
	if err == nil && !platformDisplay.MatchString(display) {
		err = fmt.Errorf("companion_platform_display %q is not \"Browser (OS)\"", display)
	}
	if err == nil {
		// whatsmeow sends one 00 byte, Baileys the string "0": both accepted.
		var nonce string
		if nonce, err = textChild(reg, "link_code_pairing_nonce"); err == nil && nonce != "0" && nonce != "\x00" {
			err = errors.New("link_code_pairing_nonce is neither 00 nor \"0\"")
		}
	}
	if err != nil {
		return sess.linkCodeRefused(id, 400, "bad-request", "companion_hello: %v", err)
	}
	ref := make([]byte, 16)
	rand.Read(ref)
	if !s.reg.startLinkCode(sess.reg, &linkCode{phone: phone, ref: ref, wrapped: wrapped}) {
		return sess.linkCodeRefused(id, 409, "conflict", "companion_hello after the phone answered or the refs ended")
	}
	s.stats.add(func(st *Stats) *int64 { return &st.LinkCodeRequests }, 1)
	sess.log.Info("link code requested")
	return sess.send(serverIQ(id, "result", node.New("link_code_companion_reg").WithChildren(
		node.New("link_code_pairing_ref").WithBytes(ref))))
}

// startLinkCode records a companion_hello on a waiting registration,
// replacing an earlier one the phone has not answered.
func (r *registry) startLinkCode(reg *registration, lc *linkCode) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if reg.state != regWaiting || (reg.link != nil && reg.link.entered) {
		return false
	}
	reg.link = lc
	return true
}

// claimLinkCode returns the registration whose companion waits for a code
// for phone and claims it for the phone (state regScanning).
func (r *registry) claimLinkCode(phone string) (*registration, *linkCode, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, reg := range r.refs {
		if reg.link == nil || reg.link.phone != phone {
			continue
		}
		if reg.state != regWaiting || reg.link.entered {
			continue
		}
		reg.state = regScanning
		reg.link.entered = true
		reg.attempt = &pairAttempt{done: make(chan pairResult, 1)}
		reg.link.attempt = reg.attempt
		return reg, reg.link, nil
	}
	return nil, nil, ErrNoLinkCode
}

// linkCodeFor returns reg's link-code request if the phone has entered a code.
func (r *registry) linkCodeFor(reg *registration) *linkCode {
	r.mu.Lock()
	defer r.mu.Unlock()
	if reg.link != nil && reg.link.entered && reg.state == regScanning {
		return reg.link
	}
	return nil
}

// ackLinkCode settles the notification with id; false if it is not the
// pending one.
func (r *registry) ackLinkCode(reg *registration, id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if reg == nil || reg.link == nil || reg.link.notifID == "" || reg.link.notifID != id || reg.link.acked {
		return false
	}
	reg.link.acked = true
	return true
}

// EnterLinkCode is the operator typing code on the phone of number phone
// (digits, international, no leading +) under Linked devices → Link with
// phone number: the phone answers the companion that asked for a code for
// this number, and EnterLinkCode waits (up to Options.ScanTimeout, or ctx)
// for the pairing to finish as Scan does. Errors: ErrBadPhone,
// ErrBadLinkCode (not 8 characters of the alphabet), ErrNoLinkCode (no
// companion waits for this number), ErrLinkCodeMismatch (the typed code is
// not the companion's: the key bundle did not open), and Scan's
// ErrBadPairReply, *PairError, ErrPairTimeout, ErrPairAborted, ErrClosed.
func (p *Phone) EnterLinkCode(ctx context.Context, phone, code string) (Linked, error) {
	s := p.s
	if s.ctx.Err() != nil {
		return Linked{}, ErrClosed
	}
	if !isPhoneNumber(phone) {
		return Linked{}, ErrBadPhone
	}
	code, err := crypto.NormalizeLinkCode(code)
	if err != nil {
		return Linked{}, ErrBadLinkCode
	}
	reg, lc, err := s.reg.claimLinkCode(phone)
	if err != nil {
		return Linked{}, err
	}
	a := lc.attempt
	notification, err := p.primaryHello(reg, lc, code)
	if err != nil {
		s.reg.unclaim(reg)
		s.stats.add(func(st *Stats) *int64 { return &st.LinkCodeFailures }, 1)
		return Linked{}, err
	}
	if s.Faults().LinkCodeNoAnswer {
		reg.sess.log.Info("link code entered; the phone never answers (fault link-code-no-answer)")
	} else if err := reg.sess.send(notification); err != nil {
		s.reg.unclaim(reg)
		reg.sess.close()
		return Linked{}, fmt.Errorf("%w: send link-code notification: %w", ErrPairAborted, err)
	} else {
		reg.sess.log.Info("link code entered; notification sent")
	}
	return p.await(ctx, reg, a)
}

// primaryHello makes the phone's half of the exchange: its ephemeral key,
// wrapped under the typed code, and the notification that carries it (cut
// short under the fault link-code-bad-primary-hello).
func (p *Phone) primaryHello(reg *registration, lc *linkCode, code string) (node.Node, error) {
	s := p.s
	acct, pn, lid, err := s.reg.allocate(reg.identityPub, lc.phone)
	if err != nil {
		return node.Node{}, err
	}
	eph, err := crypto.GenerateKeyPair()
	if err != nil {
		return node.Node{}, fmt.Errorf("emulator: link-code ephemeral: %w", err)
	}
	wrapped, err := crypto.WrapLinkCodeKey(code, eph.Pub)
	if err != nil {
		return node.Node{}, fmt.Errorf("emulator: wrap link-code key: %w", err)
	}
	if s.Faults().LinkCodeBadPrimaryHello {
		wrapped = wrapped[:40]
	}
	// A wrong code unwraps the companion's key to another point; only the
	// bundle shows it. A point of small order cannot be agreed with.
	companion, err := crypto.UnwrapLinkCodeKey(code, lc.wrapped)
	if err != nil && !errors.Is(err, crypto.ErrLowOrderKey) {
		return node.Node{}, fmt.Errorf("emulator: unwrap companion key: %w", err)
	}
	id := s.newID()
	s.reg.mu.Lock()
	lc.companion, lc.primaryEph = companion, eph
	lc.account, lc.pn, lc.lid = acct, pn, lid
	lc.notifID = id
	s.reg.mu.Unlock()
	return node.New("notification",
		node.JIDAttr("from", jid.ServerJID), node.StrAttr("id", id),
		node.StrAttr("type", "link_code_companion_reg"), node.IntAttr("t", time.Now().Unix()),
	).WithChildren(node.New("link_code_companion_reg").WithChildren(
		node.New("link_code_pairing_ref").WithBytes(lc.ref),
		node.New("link_code_pairing_wrapped_primary_ephemeral_pub").WithBytes(wrapped),
		node.New("primary_identity_pub").WithBytes(acct.primary.Pub[:]),
	)), nil
}

// companionFinish checks the companion's key bundle, derives the ADV secret
// and sends pair-success with it.
func (sess *session) companionFinish(reg *node.Node, id string) error {
	s := sess.s
	lc := s.reg.linkCodeFor(sess.reg)
	if lc == nil {
		return sess.linkCodeRefused(id, 400, "bad-request", "companion_finish before the phone entered a code")
	}
	s.reg.mu.Lock()
	acked := lc.acked
	s.reg.mu.Unlock()
	fail := func(code int, text string, err error, format string, args ...any) error {
		s.reg.unclaim(sess.reg)
		lc.attempt.finish(pairResult{err: err})
		return sess.linkCodeRefused(id, code, text, format, args...)
	}
	if !acked {
		return fail(400, "bad-request", fmt.Errorf("%w: companion_finish before the notification's ack", ErrBadLinkCodeReply),
			"companion_finish before the link-code notification was acked")
	}
	if phone, err := linkPhone(reg); err != nil || phone != lc.phone {
		return fail(400, "bad-request", ErrBadLinkCodeReply, "companion_finish: jid is not the number of companion_hello")
	}
	ref, err := byteChild(reg, "link_code_pairing_ref", 0)
	if err == nil && subtle.ConstantTimeCompare(ref, lc.ref) != 1 {
		err = errors.New("link_code_pairing_ref is not the ref of companion_hello")
	}
	var bundle, identity []byte
	if err == nil {
		bundle, err = byteChild(reg, "link_code_pairing_wrapped_key_bundle", crypto.LinkCodeBundleLen)
	}
	if err == nil {
		identity, err = byteChild(reg, "companion_identity_public", 32)
	}
	if err == nil && !bytes.Equal(identity, sess.reg.identityPub[:]) {
		err = errors.New("companion_identity_public is not the registration's identity key")
	}
	if err != nil {
		return fail(400, "bad-request", fmt.Errorf("%w: %w", ErrBadLinkCodeReply, err), "companion_finish: %v", err)
	}
	secret, err := crypto.LinkCodePrimaryFinish(lc.primaryEph, lc.account.primary, lc.companion[:], bundle, identity)
	if err != nil {
		// Not a violation: the operator typed another code.
		s.reg.unclaim(sess.reg)
		lc.attempt.finish(pairResult{err: ErrLinkCodeMismatch})
		s.stats.add(func(st *Stats) *int64 { return &st.LinkCodeFailures }, 1)
		sess.log.Info("link-code key bundle does not open: a wrong code was typed")
		return sess.send(iqError(id, 401, "not-authorized"))
	}
	if err := sess.send(serverIQ(id, "result")); err != nil {
		return err
	}
	a := lc.attempt
	pairSuccess, err := sess.s.phone.pairSuccess(sess.reg, a, lc.account, lc.pn, lc.lid, secret)
	if err != nil {
		s.reg.unclaim(sess.reg)
		a.finish(pairResult{err: err})
		return err
	}
	a.linkCode = true
	if !s.reg.arm(sess.reg, a) {
		a.finish(pairResult{err: ErrPairAborted})
		return errStop
	}
	sess.log.Info("link code confirmed; pair-success sent", "jid", lc.pn.String())
	return sess.send(pairSuccess)
}

// linkCodeAck takes the companion's ack of the link-code notification:
// exactly <ack class="notification" id=ID to=s.whatsapp.net
// type="link_code_companion_reg"/>. Other acks on a registration
// connection are ignored as before; a malformed ack of the pending
// notification is a violation that settles nothing.
func (sess *session) linkCodeAck(n node.Node) error {
	id, _ := n.Attr("id")
	s := sess.s
	s.reg.mu.Lock()
	pending := sess.reg != nil && sess.reg.link != nil && sess.reg.link.notifID != "" && sess.reg.link.notifID == id
	s.reg.mu.Unlock()
	if !pending {
		return sess.other(n)
	}
	class, _ := n.Attr("class")
	typ, _ := n.Attr("type")
	to, toJID := n.AttrJID("to")
	if class != "notification" || typ != "link_code_companion_reg" || !toJID || to != jid.ServerJID || len(n.Children()) > 0 {
		sess.softViolation("malformed ack of the link-code notification: %v", n)
		return nil
	}
	s.reg.ackLinkCode(sess.reg, id)
	return nil
}
