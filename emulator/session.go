package emulator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/waproto"
	"github.com/wafleet/wafleet/wire"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// session is one client connection, from the WebSocket upgrade to the close.
// One goroutine (serveConn) reads and answers; other goroutines (the phone,
// timers) may send through send and end it with close.
type session struct {
	s    *Server
	id   uint64
	conn wire.FrameConn
	log  *slog.Logger
	done chan struct{} // closed when serveConn returns

	tr     *wire.Transport // set after the handshake, before the session is published
	sendMu sync.Mutex

	// Owned by the serveConn goroutine.
	reg   *registration
	dev   *device
	ackID string // id of the pair-device IQ until the client acks it

	// d1 is the day-one state of a logged-in connection (nil when day-one
	// was off at login). Set before the reader and the pusher start.
	d1 *sessionDayOne
}

// violation is a protocol violation by the client: it is listed in Stats and
// the connection is closed.
type violation struct{ msg string }

func (v *violation) Error() string { return v.msg }

// errStop ends a session normally (after 515, a failure or a stream end).
var errStop = errors.New("emulator: session over")

func (sess *session) violate(format string, args ...any) error {
	return &violation{msg: fmt.Sprintf(format, args...)}
}

// violationPrefix names the connection (and device) in Stats.Violations.
func (sess *session) violationPrefix() string {
	msg := fmt.Sprintf("conn %d", sess.id)
	if sess.dev != nil {
		msg += " (" + sess.dev.jid.String() + ")"
	}
	return msg + ": "
}

// softViolation lists a violation without ending the connection (a
// malformed ack, a bad prekey upload).
func (sess *session) softViolation(format string, args ...any) {
	sess.countedViolation(nil, format, args...)
}

// countedViolation is softViolation that also applies fn to the counters,
// in the same update.
func (sess *session) countedViolation(fn func(st *Stats), format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	sess.log.Warn("protocol violation", "violation", msg)
	sess.s.stats.violationWith(sess.violationPrefix()+msg, fn)
}

// serveWS upgrades a request on ChatPath and serves the connection.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	if s.Faults().RefuseConnections {
		s.log.Info("connection refused (fault refuse-connections)", "remote", r.RemoteAddr)
		writeError(w, http.StatusServiceUnavailable, errors.New("emulator: refusing connections (fault refuse-connections)"))
		return
	}
	conn, err := wire.Accept(w, r, wire.AcceptOptions{})
	if err != nil {
		s.log.Debug("websocket upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	s.serveConn(conn, r.RemoteAddr)
}

// serveConn runs one connection to its end. The caller has counted it in
// s.wg (enter).
func (s *Server) serveConn(conn wire.FrameConn, remote string) {
	sess := &session{s: s, id: s.conns.Add(1), conn: conn, done: make(chan struct{})}
	sess.log = s.log.With("conn", sess.id)
	defer close(sess.done)
	defer conn.Close()
	if !s.addSession(sess) {
		return
	}
	defer s.removeSession(sess)
	sess.log.Debug("connection", "remote", remote)

	err := sess.run()
	var v *violation
	switch {
	case errors.As(err, &v):
		sess.log.Warn("protocol violation", "violation", v.msg)
		s.stats.violation(sess.violationPrefix() + v.msg)
	case err == nil, errors.Is(err, errStop):
	default:
		sess.log.Debug("connection ended", "err", err)
	}
}

func (sess *session) run() error {
	res, err := sess.handshake()
	if err != nil {
		return err
	}
	s := sess.s
	sess.tr = res.Transport
	s.stats.add(func(st *Stats) *int64 { return &st.Handshakes }, 1)
	s.stats.add(func(st *Stats) *int64 { return &st.ActiveConnections }, 1)
	defer s.stats.add(func(st *Stats) *int64 { return &st.ActiveConnections }, -1)

	var cp waproto.ClientPayload
	if err := proto.Unmarshal(res.ClientPayload, &cp); err != nil {
		return sess.violate("client payload is not a ClientPayload protobuf")
	}
	isReg, isLogin := cp.GetDevicePairingData() != nil, cp.Username != nil
	if !isReg && !isLogin {
		return sess.violate("client payload has neither devicePairingData nor username")
	}
	if old, v := s.outdated(&cp); old {
		s.stats.add(func(st *Stats) *int64 { return &st.LoginsRejected }, 1)
		sess.log.Info("client outdated; failure 405", "version", v.String(), "min", s.Versions().Min, "registration", isReg)
		return sess.fail("405")
	}
	if isReg {
		return sess.register(res.ClientStatic, &cp)
	}
	return sess.login(res.ClientStatic, &cp)
}

// fail sends <failure reason=REASON [attrs] location="emulator"/> and ends
// the session (the socket closes).
func (sess *session) fail(reason string, attrs ...node.Attr) error {
	all := append([]node.Attr{node.StrAttr("reason", reason)}, attrs...)
	all = append(all, node.StrAttr("location", "emulator"))
	if err := sess.send(node.New("failure", all...)); err != nil {
		sess.log.Debug("send failure", "err", err)
	}
	return errStop
}

// handshake runs the server side of the Noise handshake with the faults.
func (sess *session) handshake() (*wire.ServerResult, error) {
	s := sess.s
	fs := s.faults.Load()
	cfg := wire.ServerHandshakeConfig{Timeout: s.opts.HandshakeTimeout}
	hs, err := wire.AcceptHandshake(s.ctx, sess.conn, cfg)
	if err != nil {
		return nil, sess.handshakeError(err)
	}
	switch {
	case fs.f.DropAfterHello:
		sess.log.Info("dropping connection after ClientHello (fault drop-after-hello)")
		return nil, errStop
	case fs.f.HugeServerHello:
		sess.log.Info("announcing a 16 MiB ServerHello and trickling it (fault huge-server-hello)")
		sess.trickleHugeServerHello()
		return nil, errStop
	case fs.f.StallAfterHello:
		sess.log.Info("stalling after ClientHello (fault stall-after-hello)")
		for {
			if _, err := sess.conn.ReadFrame(); err != nil {
				return nil, errStop
			}
		}
	case fs.f.SlowServerHello > 0:
		t := time.NewTimer(fs.f.SlowServerHello)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			return nil, errStop
		}
	}
	if err := hs.Respond(fs.chain, s.static); err != nil {
		return nil, sess.handshakeError(err)
	}
	res, err := hs.Finish(s.ctx)
	if err != nil {
		return nil, sess.handshakeError(err)
	}
	return res, nil
}

// rawWriter is a connection that can send bytes outside frames (*wire.Conn).
type rawWriter interface{ WriteRaw(b []byte) error }

// trickleHugeServerHello announces a ServerHello of wire.MaxFrameSize bytes
// and sends its body 4 KiB per message, until the client hangs up or the
// whole body is out (fault huge-server-hello).
func (sess *session) trickleHugeServerHello() {
	raw, ok := sess.conn.(rawWriter)
	if !ok {
		sess.log.Error("fault huge-server-hello needs a WebSocket connection")
		return
	}
	n := wire.MaxFrameSize
	chunk := make([]byte, 4<<10)
	msg := append([]byte{byte(n >> 16), byte(n >> 8), byte(n)}, chunk...)
	for sent := 0; sent < n; {
		if err := raw.WriteRaw(msg); err != nil {
			sess.log.Debug("huge ServerHello cut short", "sent", sent, "err", err)
			return
		}
		sent += len(chunk)
		msg = chunk[:min(len(chunk), n-sent)]
	}
}

// handshakeError turns a malformed handshake into a violation; hang-ups and
// timeouts are not the client's protocol errors.
func (sess *session) handshakeError(err error) error {
	for _, target := range []error{
		wire.ErrBadHeader, wire.ErrHandshakeMessage, wire.ErrFrameTooLarge,
		crypto.ErrNoiseDecrypt, crypto.ErrNoiseLength, crypto.ErrLowOrderKey, crypto.ErrKeyLength,
	} {
		if errors.Is(err, target) {
			return sess.violate("handshake: %v", err)
		}
	}
	return err
}

// send encodes n and sends it as one transport frame.
func (sess *session) send(n node.Node) error {
	b, err := node.MarshalPayload(n)
	if err != nil {
		return fmt.Errorf("encode <%s>: %w", n.Tag, err)
	}
	sess.sendMu.Lock()
	defer sess.sendMu.Unlock()
	return sess.tr.Send(b)
}

// sendRaw sends an encoded node (a pending stanza's payload).
func (sess *session) sendRaw(b []byte) error {
	sess.sendMu.Lock()
	defer sess.sendMu.Unlock()
	return sess.tr.Send(b)
}

// close closes the connection; serveConn then finishes. Idempotent.
func (sess *session) close() { sess.conn.Close() }

// endStream sends a stream error (or another final node) and closes.
func (sess *session) endStream(n node.Node) {
	if err := sess.send(n); err != nil {
		sess.log.Debug("send final node", "tag", n.Tag, "err", err)
	}
	sess.close()
}

// Server → client nodes.

func serverIQ(id, typ string, children ...node.Node) node.Node {
	n := node.New("iq", node.JIDAttr("from", jid.ServerJID), node.StrAttr("id", id), node.StrAttr("type", typ))
	return n.WithChildren(children...)
}

func iqError(id string, code int, text string) node.Node {
	return serverIQ(id, "error", node.New("error", node.IntAttr("code", int64(code)), node.StrAttr("text", text)))
}

func streamError(code string, conflict string) node.Node {
	n := node.New("stream:error")
	if code != "" {
		n = n.WithAttr(node.StrAttr("code", code))
	}
	if conflict != "" {
		n = n.WithChildren(node.New("conflict", node.StrAttr("type", conflict)))
	}
	return n
}

// register handles a registration payload: check it, issue refs, send
// pair-device, then serve until the refs expire, the pairing completes (515)
// or the client leaves.
func (sess *session) register(clientStatic [32]byte, cp *waproto.ClientPayload) error {
	s := sess.s
	reg, err := parseRegistration(clientStatic, cp.GetDevicePairingData())
	if err != nil {
		return sess.violate("registration payload: %v", err)
	}
	reg.sess = sess
	if err := s.reg.addRegistration(reg, s.opts.RefCount, s.opts.FirstRefTTL, s.opts.NextRefTTL, time.Now()); err != nil {
		return err
	}
	sess.reg = reg
	defer func() {
		if a := s.reg.removeRegistration(reg); a != nil {
			a.finish(pairResult{err: ErrPairAborted})
		}
	}()
	s.stats.add(func(st *Stats) *int64 { return &st.Registrations }, 1)
	sess.log.Info("registration", "os", reg.os)

	sess.ackID = s.newID()
	refs := make([]node.Node, len(reg.refs))
	for i, ref := range reg.refs {
		refs[i] = node.New("ref").WithBytes([]byte(ref))
	}
	iq := serverIQ(sess.ackID, "set", node.New("pair-device").WithChildren(refs...)).WithAttr(node.StrAttr("xmlns", "md"))
	if err := sess.send(iq); err != nil {
		return err
	}
	lifetime := s.opts.FirstRefTTL + time.Duration(len(reg.refs)-1)*s.opts.NextRefTTL
	t := time.AfterFunc(lifetime, func() {
		if s.reg.expire(reg) {
			sess.log.Info("QR refs expired without a scan; closing")
			sess.close()
		}
	})
	defer t.Stop()
	return sess.readLoop(sess.handleUnpaired)
}

// parseRegistration checks devicePairingData (PROTOCOL.md 5.2): key and ID
// lengths, keys not of small order, and the identity key's signature over
// 05 || signed prekey.
func parseRegistration(clientStatic [32]byte, pd *waproto.ClientPayload_DevicePairingRegistrationData) (*registration, error) {
	switch {
	case len(pd.GetERegid()) != 4:
		return nil, errors.New("eRegid is not 4 bytes")
	case len(pd.GetEKeytype()) != 1 || pd.GetEKeytype()[0] != 5:
		return nil, errors.New("eKeytype is not 05")
	case len(pd.GetEIdent()) != 32:
		return nil, errors.New("eIdent is not 32 bytes")
	case len(pd.GetESkeyID()) != 3:
		return nil, errors.New("eSkeyID is not 3 bytes")
	case len(pd.GetESkeyVal()) != 32:
		return nil, errors.New("eSkeyVal is not 32 bytes")
	case len(pd.GetESkeySig()) != 64:
		return nil, errors.New("eSkeySig is not 64 bytes")
	}
	if err := crypto.CheckPublicKey(pd.GetEIdent()); err != nil {
		return nil, fmt.Errorf("eIdent: %w", err)
	}
	if err := crypto.CheckPublicKey(pd.GetESkeyVal()); err != nil {
		return nil, fmt.Errorf("eSkeyVal: %w", err)
	}
	msg := append([]byte{5}, pd.GetESkeyVal()...)
	if !crypto.Verify(pd.GetEIdent(), msg, pd.GetESkeySig()) {
		return nil, errors.New("signed prekey signature does not verify with the identity key")
	}
	reg := &registration{noisePub: clientStatic}
	copy(reg.identityPub[:], pd.GetEIdent())
	r := pd.GetERegid()
	reg.regID = uint32(r[0])<<24 | uint32(r[1])<<16 | uint32(r[2])<<8 | uint32(r[3])
	k := pd.GetESkeyID()
	reg.skey.id = uint32(k[0])<<16 | uint32(k[1])<<8 | uint32(k[2])
	copy(reg.skey.pub[:], pd.GetESkeyVal())
	copy(reg.skey.sig[:], pd.GetESkeySig())
	var props waproto.DeviceProps
	if proto.Unmarshal(pd.GetDeviceProps(), &props) == nil && len(props.GetOs()) <= 64 {
		reg.os = props.GetOs()
	}
	return reg, nil
}

// readLoop reads nodes until the connection ends or handle returns an error.
func (sess *session) readLoop(handle func(node.Node) error) error {
	for {
		pt, err := sess.tr.Receive()
		if err != nil {
			if errors.Is(err, wire.ErrDecrypt) || errors.Is(err, wire.ErrFrameTooLarge) {
				return sess.violate("transport: %v", err)
			}
			return nil // the client or the server closed the connection
		}
		n, err := node.UnmarshalPayload(pt)
		if err != nil {
			return sess.violate("undecodable node: %v", err)
		}
		if err := handle(n); err != nil {
			return err
		}
	}
}

// serverOnly are tags only a server sends; a client sending one is out of
// order.
var serverOnly = map[string]bool{
	"success": true, "failure": true, "stream:error": true, "pair-device": true, "pair-success": true,
}

// handleUnpaired serves a registration connection.
func (sess *session) handleUnpaired(n node.Node) error {
	if n.Tag == "ack" {
		return sess.linkCodeAck(n)
	}
	if n.Tag != "iq" {
		return sess.other(n)
	}
	id, typ, err := sess.iqHeader(n)
	if err != nil {
		return err
	}
	if _, ok := n.Child("link_code_companion_reg"); ok && typ == "set" {
		if xmlns, _ := n.Attr("xmlns"); xmlns == "md" {
			return sess.linkCodeIQ(n, id)
		}
	}
	switch typ {
	case "result", "error":
		if sess.ackID != "" && id == sess.ackID {
			if typ == "error" {
				return sess.violate("pair-device answered with an error IQ")
			}
			sess.ackID = ""
			return nil
		}
		if a := sess.s.reg.attemptFor(sess.reg, id); a != nil {
			return sess.pairReply(n, typ, a)
		}
		return sess.violate("iq %s with an id the server never sent", typ)
	default:
		return sess.answerIQ(n, id, typ)
	}
}

// handleLoggedIn serves a connection after <success/>. It checks acks and
// notes receipts of the stanzas it delivered; with day-one on it also
// takes server-ping answers.
func (sess *session) handleLoggedIn(n node.Node) error {
	switch n.Tag {
	case "ack":
		sess.handleAck(n)
		return nil
	case "receipt":
		sess.handleReceipt(n)
		return nil
	case "iq":
		if t, _ := n.Attr("type"); t == "result" && sess.d1 != nil && sess.pingAnswer(n) {
			return nil
		}
	}
	if n.Tag == "message" {
		return sess.routeMessage(n)
	}
	if n.Tag != "iq" {
		return sess.other(n)
	}
	id, typ, err := sess.iqHeader(n)
	if err != nil {
		return err
	}
	if typ == "result" || typ == "error" {
		return sess.violate("iq %s with an id the server never sent", typ)
	}
	return sess.answerIQ(n, id, typ)
}

// iqHeader checks an IQ's id and type.
func (sess *session) iqHeader(n node.Node) (id, typ string, err error) {
	id, _ = n.Attr("id")
	typ, _ = n.Attr("type")
	switch {
	case id == "":
		return "", "", sess.violate("iq without id")
	case typ != "get" && typ != "set" && typ != "result" && typ != "error":
		return "", "", sess.violate("iq with type %q", typ)
	}
	return id, typ, nil
}

// other handles non-IQ nodes: a clean stream end, server-only tags (out of
// order) and everything else (presence, ib, acks: accepted and ignored).
func (sess *session) other(n node.Node) error {
	switch {
	case n.Tag == "xmlstreamend":
		return errStop
	case serverOnly[n.Tag]:
		return sess.violate("client sent <%s>, which only a server sends", n.Tag)
	}
	sess.log.Debug("ignored node", "tag", n.Tag)
	return nil
}

// answerIQ answers a get/set IQ: keepalive, passive/active, prekey count and
// upload; anything else gets error 501.
func (sess *session) answerIQ(n node.Node, id, typ string) error {
	s := sess.s
	xmlns, _ := n.Attr("xmlns")
	_, hasActive := n.Child("active")
	_, hasPassive := n.Child("passive")
	_, hasCount := n.Child("count")
	list, hasList := n.Child("list")
	key, hasKey := n.Child("key")
	usync, hasUsync := n.Child("usync")
	var reply node.Node
	switch {
	case xmlns == "w:p" && typ == "get":
		if s.Faults().DropPongs {
			sess.log.Debug("keepalive ping not answered (fault drop-pongs)")
			return nil
		}
		s.stats.add(func(st *Stats) *int64 { return &st.Pings }, 1)
		reply = serverIQ(id, "result")
	case xmlns == "passive" && typ == "set" && (hasActive || hasPassive):
		if err := sess.send(serverIQ(id, "result")); err != nil {
			return err
		}
		if hasActive && sess.dev != nil && s.Faults().RestartAfterActive {
			sess.log.Info("restart required after active (fault restart-after-active)")
			sess.endStream(streamError("515", ""))
			return errStop
		}
		return nil
	case xmlns == "encrypt" && typ == "get" && hasCount && sess.dev != nil:
		sess.dev.st.mu.Lock()
		count := sess.dev.st.prekeys
		sess.dev.st.mu.Unlock()
		reply = serverIQ(id, "result", node.New("count", node.IntAttr("value", count)))
	case xmlns == "encrypt" && typ == "get" && hasKey && sess.dev != nil:
		reply = sess.answerKeyFetch(id, key)
	case xmlns == "usync" && typ == "get" && hasUsync && sess.dev != nil:
		reply = sess.answerUsync(id, usync)
	case xmlns == "w:g2" && typ == "get" && sess.dev != nil:
		reply = sess.answerGroupInfo(id, n)
	case xmlns == "encrypt" && typ == "set" && sess.d1 != nil:
		// Day-one: the strict checks of PROTOCOL.md 9.8.
		keys, err := checkPrekeyUpload(n, sess.dev)
		if err == nil {
			s.acceptPrekeys(sess.dev, keys, 0)
		}
		if err != nil {
			sess.softViolation("prekey upload: %v", err)
			reply = iqError(id, 400, "bad-request")
			break
		}
		reply = serverIQ(id, "result")
	case xmlns == "encrypt" && typ == "set" && hasList && sess.dev != nil:
		keys := 0
		for _, k := range list.Children() {
			if k.Tag == "key" {
				keys++
			}
		}
		s.acceptPrekeys(sess.dev, nil, keys)
		reply = serverIQ(id, "result")
	case xmlns == "md" && typ == "set" && sess.dev != nil:
		return sess.removeCompanion(n, id)
	default:
		sess.log.Debug("unknown iq", "xmlns", xmlns, "type", typ)
		reply = iqError(id, 501, "feature-not-implemented")
	}
	return sess.send(reply)
}

// removeCompanion handles a logged-in companion unlinking itself:
// <iq xmlns=md type=set><remove-companion-device jid=OWN reason=…/></iq>.
// The answer is a result; then the device is removed as by the phone (its
// connections end with 401 device_removed, later logins fail). Any other
// md IQ, or one naming another device, is refused.
func (sess *session) removeCompanion(n node.Node, id string) error {
	rm, ok := n.Child("remove-companion-device")
	if !ok {
		return sess.send(iqError(id, 501, "feature-not-implemented"))
	}
	own, _ := rm.AttrJID("jid")
	if own != sess.dev.jid && own != sess.dev.lid {
		sess.softViolation("remove-companion-device names %s, not the device itself", own)
		return sess.send(iqError(id, 403, "forbidden"))
	}
	// Forgotten before the answer goes out: whoever sees the answer sees
	// the device gone.
	sessions, err := sess.s.forgetDevice(sess.dev.jid)
	if err != nil {
		sess.log.Debug("remove device", "err", err)
	}
	if err := sess.send(serverIQ(id, "result")); err != nil {
		return err
	}
	sess.log.Info("the companion unlinked itself")
	endRemoved(sessions)
	return errStop
}

// pairReply handles the companion's answer to pair-success: pair-device-sign
// (check it, record the device, end with 515) or an error IQ.
func (sess *session) pairReply(n node.Node, typ string, a *pairAttempt) error {
	s := sess.s
	if typ == "error" {
		pe := &PairError{}
		if e, ok := n.Child("error"); ok {
			code, _ := e.Attr("code")
			pe.Code, _ = strconv.Atoi(code)
			pe.Text, _ = e.Attr("text")
		}
		s.reg.unclaim(sess.reg)
		sess.log.Info("companion rejected pairing", "code", pe.Code, "text", pe.Text)
		a.finish(pairResult{err: pe})
		return errStop
	}
	if err := checkPairSign(n, a); err != nil {
		s.reg.unclaim(sess.reg)
		a.finish(pairResult{err: fmt.Errorf("%w: %w", ErrBadPairReply, err)})
		return sess.violate("pair-device-sign: %v", err)
	}
	d := s.reg.completePairing(sess.reg, a, time.Now())
	s.stats.update(func(st *Stats) {
		st.Pairings++
		if a.linkCode {
			st.LinkCodePairings++
		}
	})
	sess.log.Info("paired", "jid", d.jid.String())
	if err := sess.send(streamError("515", "")); err != nil {
		sess.log.Debug("send 515", "err", err)
	}
	a.finish(pairResult{dev: d})
	return errStop
}

// checkPairSign is the phone's check of pair-device-sign (PROTOCOL.md 8.6/8.7).
func checkPairSign(n node.Node, a *pairAttempt) error {
	sign, ok := n.Child("pair-device-sign")
	if !ok {
		return errors.New("no <pair-device-sign>")
	}
	di, ok := sign.Child("device-identity")
	if !ok {
		return errors.New("no <device-identity>")
	}
	reply, ok := di.Bytes()
	if !ok {
		return errors.New("<device-identity> content is not bytes")
	}
	ki, _ := di.Attr("key-index")
	if ki != strconv.FormatUint(uint64(a.keyIndex), 10) {
		return fmt.Errorf("key-index %q, want %d", ki, a.keyIndex)
	}
	return crypto.VerifyADVReply(reply, a.details, a.companionIdentity[:], a.primaryPub[:])
}

// login handles a login payload: a paired device with the recorded noise
// key gets <success/> (unless a failure fault applies), anything else
// <failure reason="401"/>. Precedence: login-failure-401, an unknown
// device or key (401), login-failure-403, login-failure-406, a running
// login-failure-402 ban.
func (sess *session) login(clientStatic [32]byte, cp *waproto.ClientPayload) error {
	s := sess.s
	fs := s.faults.Load()
	f := fs.f
	user := strconv.FormatUint(cp.GetUsername(), 10)
	devNum := cp.GetDevice()
	reject := func(reason string, attrs ...node.Attr) error {
		s.stats.add(func(st *Stats) *int64 { return &st.LoginsRejected }, 1)
		sess.log.Info("login rejected", "user", user, "device", devNum, "reason", reason)
		return sess.fail(reason, attrs...)
	}
	if f.LoginFailure401 || devNum == 0 || devNum > 0xFFFF {
		return reject("401")
	}
	known, ok := s.reg.authenticate(user, uint16(devNum), clientStatic)
	if !ok {
		return reject("401")
	}
	now := time.Now()
	switch {
	case f.LoginFailure403:
		s.removeDevice(known.jid)
		return reject("403",
			node.StrAttr("logout_message_header", "Your account is locked"),
			node.StrAttr("logout_message_subtext", "Open WhatsApp on your phone to unlock it, then link this device again."))
	case f.LoginFailure406:
		s.removeDevice(known.jid)
		return reject("406")
	case now.Before(fs.banUntil):
		left := int64((fs.banUntil.Sub(now) + time.Second - 1) / time.Second)
		return reject("402", node.StrAttr("code", "101"), node.IntAttr("expire", left))
	}
	d, old, n, ok := s.reg.login(user, uint16(devNum), clientStatic, sess)
	if !ok { // removed meanwhile
		return reject("401")
	}
	sess.dev = d
	defer s.reg.detach(d, sess)
	for _, o := range old {
		if clientClosed(o.conn) {
			n-- // its client let go of it before this login; its reader has not seen that yet
		}
	}
	s.stats.deviceConnections(n)
	s.stats.add(func(st *Stats) *int64 { return &st.Logins }, 1)
	sess.log = sess.log.With("jid", d.jid.String())
	sess.log.Info("login", "connections", n)

	success := node.New("success",
		node.IntAttr("t", time.Now().Unix()),
		node.JIDAttr("lid", d.lid),
		node.StrAttr("props", "27"),
		node.StrAttr("abprops", "10"),
		node.StrAttr("location", "emulator"),
		node.IntAttr("creation", d.pairedAt.Unix()),
	)
	if err := sess.send(success); err != nil {
		return err
	}
	// Real WhatsApp tells the older connection it was replaced. That happens
	// in the background (a slow reader must not delay this session); the
	// overlap has already been counted.
	for _, o := range old {
		s.wg.Add(1) // serveConn holds a count, so Close is still waiting
		go func() {
			defer s.wg.Done()
			o.log.Info("replaced by a newer connection of the same device")
			o.endStream(streamError("", "replaced"))
		}()
	}
	if f.ConflictAfterSuccess {
		sess.log.Info("conflict after success (fault conflict-after-success)")
		sess.endStream(streamError("", "replaced"))
		return errStop
	}
	if f.RandomDisconnects > 0 {
		sess.randomDisconnect(f.RandomDisconnects)
	}
	if s.dayOne.Load().cfg.Enabled {
		sess.startDayOne()
	} else {
		// Stanzas of contacts wait for the device in its queue.
		s.wg.Add(1) // serveConn holds a count, so Close is still waiting
		go func() {
			defer s.wg.Done()
			sess.redeliver(time.Now())
		}()
	}
	return sess.readLoop(sess.handleLoggedIn)
}

// randomDisconnect drops the connection after an exponentially distributed
// time with the given rate per second, unless it ends before.
func (sess *session) randomDisconnect(rate float64) {
	s := sess.s
	d := time.Duration(rand.ExpFloat64() / rate * float64(time.Second))
	s.wg.Add(1) // serveConn holds a count, so Close is still waiting
	go func() {
		defer s.wg.Done()
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			sess.log.Info("random disconnect (fault random-disconnects)")
			sess.close()
		case <-sess.done:
		}
	}()
}

// context for phone operations bounded by the server's life.
func (s *Server) opContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, ErrPairTimeout)
	stop := context.AfterFunc(s.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}
