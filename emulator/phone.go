package emulator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/waproto"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
	"github.com/wafleet/wafleet/wire/qr"
)

// Phone is the emulated primary device: it scans QR codes to link
// companions and can unlink or kick them. Each companion identity key is
// linked to its own account (phone number 1555000xxxx, a LID), kept when the
// same companion links again; device numbers grow per account.
type Phone struct {
	s *Server
}

// ScanOptions tunes a scan.
type ScanOptions struct {
	// Phone links the companion to the account with this phone number
	// (created if new). Default "": the account this companion identity
	// linked to before, else a new account.
	Phone string
}

// Linked is the outcome of a successful scan: the companion's device JIDs.
type Linked struct {
	JID jid.JID `json:"jid"` // PHONE:N@s.whatsapp.net
	LID jid.JID `json:"lid"` // LID:N@lid
}

// pairAttempt is one pair-success in flight. Its fields are written by Scan
// before arm and read by the session after attemptFor (both under
// registry.mu), so they need no lock of their own.
type pairAttempt struct {
	done chan pairResult // buffered; receives exactly one result
	once sync.Once
	// ready is set by arm; guarded by registry.mu.
	ready bool

	id                string
	jid, lid          jid.JID
	account           *account
	keyIndex          uint32
	details           []byte // the ADVDeviceIdentity bytes that were signed
	companionIdentity [32]byte
	primaryPub        [32]byte
	linkCode          bool // paired by link code, not by QR
}

type pairResult struct {
	dev *device
	err error
}

func (a *pairAttempt) finish(r pairResult) {
	a.once.Do(func() { a.done <- r })
}

// Scan is the phone scanning a QR code (current URL form or legacy four
// fields): it checks that the ref is live and the keys are the
// registration's, sends pair-success and waits (up to Options.ScanTimeout,
// or ctx) for the companion's pair-device-sign, which it verifies. Errors:
// ErrBadQR, ErrUnknownRef, ErrRefExpired, ErrAlreadyScanned, ErrKeyMismatch,
// *PairError (ErrPairRejected) when the companion answered with an error,
// ErrBadPairReply, ErrPairTimeout, ErrPairAborted, ErrClosed.
func (p *Phone) Scan(ctx context.Context, code string) (Linked, error) {
	return p.ScanWith(ctx, code, ScanOptions{})
}

// ScanWith is Scan with options.
func (p *Phone) ScanWith(ctx context.Context, text string, opts ScanOptions) (Linked, error) {
	s := p.s
	if s.ctx.Err() != nil {
		return Linked{}, ErrClosed
	}
	code, err := qr.Parse(strings.TrimSpace(text))
	if err != nil {
		return Linked{}, fmt.Errorf("%w: %w", ErrBadQR, err)
	}
	if opts.Phone != "" && !isPhoneNumber(opts.Phone) {
		return Linked{}, ErrBadPhone
	}
	reg, a, err := s.reg.claim(code, time.Now())
	if err != nil {
		return Linked{}, err
	}
	pairSuccess, err := p.prepare(reg, a, code, opts)
	if err != nil {
		s.reg.unclaim(reg)
		return Linked{}, err
	}
	if !s.reg.arm(reg, a) {
		return Linked{}, ErrPairAborted
	}
	if err := reg.sess.send(pairSuccess); err != nil {
		s.reg.unclaim(reg)
		reg.sess.close()
		return Linked{}, fmt.Errorf("%w: send pair-success: %w", ErrPairAborted, err)
	}
	reg.sess.log.Info("scanned; pair-success sent", "jid", a.jid.String())
	return p.await(ctx, reg, a)
}

// await waits (up to Options.ScanTimeout, or ctx) for the outcome of a
// pairing attempt, QR or link code.
func (p *Phone) await(ctx context.Context, reg *registration, a *pairAttempt) (Linked, error) {
	s := p.s
	ctx, cancel := s.opContext(ctx, s.opts.ScanTimeout)
	defer cancel()
	select {
	case r := <-a.done:
		if r.err != nil {
			return Linked{}, r.err
		}
		return Linked{JID: r.dev.jid, LID: r.dev.lid}, nil
	case <-ctx.Done():
		s.reg.unclaim(reg)
		reg.sess.close()
		if s.ctx.Err() != nil {
			return Linked{}, ErrClosed
		}
		if err := context.Cause(ctx); errors.Is(err, ErrPairTimeout) {
			return Linked{}, err
		}
		return Linked{}, fmt.Errorf("emulator: scan: %w", context.Cause(ctx))
	}
}

// prepare allocates the device JIDs and builds the pair-success IQ with its
// ADV identity (PROTOCOL.md 8.5, 8.6), broken as the faults ask.
func (p *Phone) prepare(reg *registration, a *pairAttempt, code qr.Code, opts ScanOptions) (node.Node, error) {
	acct, pn, lid, err := p.s.reg.allocate(reg.identityPub, opts.Phone)
	if err != nil {
		return node.Node{}, err
	}
	return p.pairSuccess(reg, a, acct, pn, lid, code.AdvSecret)
}

// pairSuccess builds the pair-success IQ for device pn/lid of acct, its ADV
// identity HMACed with secret (the QR's, or a link code's derived one), and
// records what the reply must match in a.
func (p *Phone) pairSuccess(reg *registration, a *pairAttempt, acct *account, pn, lid jid.JID, secret [32]byte) (node.Node, error) {
	s := p.s
	f := s.Faults()
	now := time.Now()
	keyIndex := uint32(pn.Device)
	di := &waproto.ADVDeviceIdentity{
		RawID:     proto.Uint32(acct.rawID),
		Timestamp: proto.Uint64(uint64(now.Unix())),
		KeyIndex:  proto.Uint32(keyIndex),
	}
	sdi, err := crypto.SignADVAccount(acct.primary, di, reg.identityPub[:])
	if err != nil {
		return node.Node{}, fmt.Errorf("emulator: account signature: %w", err)
	}
	details := sdi.GetDetails()
	if f.BadAccountSignature {
		sig := append([]byte(nil), sdi.GetAccountSignature()...)
		sig[0] ^= 0x01
		sdi.AccountSignature = sig
	}
	sdiBytes, err := proto.Marshal(sdi)
	if err != nil {
		return node.Node{}, fmt.Errorf("emulator: encode signed identity: %w", err)
	}
	if f.BadPairHMAC {
		secret[0] ^= 0xFF
	}
	container, err := crypto.MakeADVContainer(sdiBytes, secret[:], waproto.ADVEncryptionType_E2EE)
	if err != nil {
		return node.Node{}, fmt.Errorf("emulator: ADV container: %w", err)
	}

	a.id = s.newID()
	a.jid, a.lid, a.account, a.keyIndex = pn, lid, acct, keyIndex
	a.details = details
	a.companionIdentity = reg.identityPub
	a.primaryPub = acct.primary.Pub

	children := []node.Node{
		node.New("device-identity").WithBytes(container),
		node.New("platform", node.StrAttr("name", s.opts.Platform)),
		node.New("device", node.JIDAttr("jid", pn), node.JIDAttr("lid", lid)),
	}
	if s.opts.BusinessName != "" {
		children = append(children, node.New("biz", node.StrAttr("name", s.opts.BusinessName)))
	}
	iq := serverIQ(a.id, "set", node.New("pair-success").WithChildren(children...)).
		WithAttr(node.StrAttr("xmlns", "md")).
		WithAttr(node.IntAttr("t", now.Unix()))
	return iq, nil
}

// Unlink removes a paired device (by its PN or LID device JID), as the
// phone's "log out" of a linked device: a connected device gets
// <stream:error code="401"><conflict type="device_removed"/></stream:error>
// and is disconnected; later logins get <failure reason="401"/>.
func (p *Phone) Unlink(j jid.JID) error {
	sessions, err := p.s.removeDevice(j)
	if err != nil {
		return fmt.Errorf("unlink %s: %w", j, err)
	}
	p.s.log.Info("device unlinked", "jid", j.String(), "connections", len(sessions))
	waitEnded(sessions)
	return nil
}

// removeDevice forgets a device (its pending stanzas and prekeys too) and
// ends its connections with <stream:error code="401"><conflict
// type="device_removed"/>. It returns the connections it ended.
func (s *Server) removeDevice(j jid.JID) ([]*session, error) {
	sessions, err := s.forgetDevice(j)
	if err != nil {
		return nil, err
	}
	endRemoved(sessions)
	return sessions, nil
}

// forgetDevice removes a device from the registry and returns its
// connections, still open.
func (s *Server) forgetDevice(j jid.JID) ([]*session, error) {
	_, sessions, hadPrekeys, err := s.reg.remove(j)
	if err != nil {
		return nil, err
	}
	if hadPrekeys {
		s.stats.add(func(st *Stats) *int64 { return &st.DevicesWithPrekeys }, -1)
	}
	return sessions, nil
}

// endRemoved ends the connections of a removed device with <stream:error
// code="401"><conflict type="device_removed"/>.
func endRemoved(sessions []*session) {
	for _, sess := range sessions {
		sess.endStream(streamError("401", "device_removed"))
	}
}

// waitEnded waits until the sessions' goroutines have finished (they have
// been closed, so this is prompt), so that a device is offline when Kick or
// Unlink returns.
func waitEnded(sessions []*session) {
	for _, sess := range sessions {
		<-sess.done
	}
}

// KickReasons are the reasons Kick accepts.
var KickReasons = []string{"conflict", "replaced", "401", "503", "515"}

// Kick ends every connection of a device with a stream error: reason
// "conflict" or "replaced" → <conflict type="replaced"/>, "401" → code 401
// without a <conflict> child (the device stays paired: a client must
// reconnect and let the login decide, not wipe itself), "503" → code 503
// (server restarting), "515" → code 515 (restart required). The device stays
// paired. ErrNotConnected if it has no connection. Kick and Unlink return
// once the device's connections have ended.
func (p *Phone) Kick(j jid.JID, reason string) error {
	var n node.Node
	switch reason {
	case "conflict", "replaced":
		n = streamError("", "replaced")
	case "401", "503", "515":
		n = streamError(reason, "")
	default:
		return fmt.Errorf("%w %q (valid: %s)", ErrBadReason, reason, strings.Join(KickReasons, ", "))
	}
	sessions, err := p.s.reg.sessionsOf(j)
	if err != nil {
		return fmt.Errorf("kick %s: %w", j, err)
	}
	if len(sessions) == 0 {
		return fmt.Errorf("kick %s: %w", j, ErrNotConnected)
	}
	p.s.log.Info("kick", "jid", j.String(), "reason", reason, "connections", len(sessions))
	for _, sess := range sessions {
		sess.endStream(n)
	}
	waitEnded(sessions)
	return nil
}

// isPhoneNumber reports whether s is 1 to 15 digits, not starting with 0.
func isPhoneNumber(s string) bool {
	if len(s) < 1 || len(s) > 15 || s[0] == '0' {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
