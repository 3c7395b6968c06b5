package emulator

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/waproto"
	"github.com/wafleet/wafleet/wire"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// fuzzSession returns a server session past the handshake whose writes are
// discarded, with a registration waiting for its pair-device ack and a device.
func fuzzSession(tb testing.TB) (*Server, *session) {
	tb.Helper()
	s, err := New(Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	cEnd, sEnd := queuePipe()
	noise, _ := crypto.GenerateKeyPair()
	eph, _ := crypto.GenerateKeyPair()
	ini := crypto.NewInitiator(noise, eph, []byte(wire.ConnHeader))
	hello, _ := proto.Marshal(&waproto.HandshakeMessage{ClientHello: &waproto.HandshakeMessage_ClientHello{Ephemeral: eph.Pub[:]}})
	cEnd.WriteFrame(hello)
	hs, err := wire.AcceptHandshake(context.Background(), sEnd, wire.ServerHandshakeConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	if err := hs.Respond(s.faults.Load().chain, s.static); err != nil {
		tb.Fatal(err)
	}
	f, _ := cEnd.ReadFrame()
	var msg waproto.HandshakeMessage
	proto.Unmarshal(f, &msg)
	sh := msg.GetServerHello()
	if _, _, err := ini.ReadServerHello(sh.GetEphemeral(), sh.GetStatic(), sh.GetPayload()); err != nil {
		tb.Fatal(err)
	}
	sct, pct, _ := ini.WriteClientFinish([]byte{0x08, 0x01})
	finish, _ := proto.Marshal(&waproto.HandshakeMessage{ClientFinish: &waproto.HandshakeMessage_ClientFinish{Static: sct, Payload: pct}})
	cEnd.WriteFrame(finish)
	res, err := hs.Finish(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	sEnd.discard = true

	sess := &session{s: s, id: 1, conn: sEnd, tr: res.Transport, done: make(chan struct{}),
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	reg := &registration{sess: sess, noisePub: noise.Pub}
	if err := s.reg.addRegistration(reg, 6, time.Minute, time.Minute, time.Now()); err != nil {
		tb.Fatal(err)
	}
	sess.reg = reg
	sess.dev = &device{jid: jid.JID{User: "15550000001", Device: 1, Server: jid.DefaultUserServer}, sessions: map[*session]struct{}{}}
	sess.dev.st.current = sess
	return s, sess
}

// FuzzClientNode feeds arbitrary transport plaintexts to the server's node
// handlers (registration and logged-in states, with a pairing in flight):
// nothing a client sends may panic the server.
func FuzzClientNode(f *testing.F) {
	seeds := []node.Node{
		node.IQ("1", jid.ServerJID, "get", "w:p"),
		node.IQ("2", jid.ServerJID, "set", "passive", node.New("active")),
		node.IQ("3", jid.ServerJID, "get", "encrypt", node.New("count")),
		node.IQ("4", jid.ServerJID, "set", "encrypt", node.New("list").WithChildren(node.New("key"))),
		node.IQ("fuzz-pair", jid.ServerJID, "result", "", node.New("pair-device-sign").WithChildren(
			node.New("device-identity", node.StrAttr("key-index", "1")).WithBytes([]byte{0x0a, 0x02, 0x08, 0x01}))),
		node.IQ("fuzz-pair", jid.ServerJID, "error", "", node.New("error", node.StrAttr("code", "401"), node.StrAttr("text", "hmac-mismatch"))),
		node.New("presence", node.StrAttr("type", "available")),
		node.New("xmlstreamend"),
		node.New("ack", node.StrAttr("class", "message"), node.StrAttr("id", "3EB0000000010000000000001"), node.JIDAttr("to", jid.New("15559000001", jid.DefaultUserServer))),
		node.New("receipt", node.StrAttr("id", "3EB0000000010000000000001")).WithChildren(node.New("list").WithChildren(node.New("item", node.StrAttr("id", "x")))),
		node.New("iq", node.JIDAttr("to", jid.ServerJID), node.StrAttr("type", "result")),
		node.IQ("5", jid.ServerJID, "set", "encrypt", node.New("registration").WithBytes([]byte{0, 0, 0, 1}),
			node.New("list").WithChildren(node.New("key").WithChildren(node.New("id").WithBytes([]byte{0, 0, 1}), node.New("value").WithBytes(make([]byte, 32))))),
	}
	for _, n := range seeds {
		b, err := node.MarshalPayload(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	s, sess := fuzzSession(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := node.UnmarshalPayload(data)
		if err != nil {
			return
		}
		// A pairing in flight, so that replies reach checkPairSign.
		primary := s.static
		a := &pairAttempt{done: make(chan pairResult, 1), ready: true, id: "fuzz-pair", keyIndex: 1,
			details: []byte{0x08, 0x01}, primaryPub: primary.Pub}
		s.reg.mu.Lock()
		sess.reg.state, sess.reg.attempt = regScanning, a
		s.reg.mu.Unlock()
		sess.ackID = "ack"
		_ = sess.handleUnpaired(n)
		sess.d1 = nil
		_ = sess.handleLoggedIn(n)
		// Day-one: a pending stanza to ack, a server ping in flight.
		d1 := &sessionDayOne{pingOut: true}
		sess.dev.st.mu.Lock()
		sess.dev.st.pending, sess.dev.st.order = nil, nil
		sess.dev.st.add(&pendingStanza{tag: "message", id: "3EB0000000010000000000001", from: jid.New("15559000001", jid.DefaultUserServer)})
		sess.dev.st.mu.Unlock()
		sess.d1 = d1
		_ = sess.handleLoggedIn(n)
	})
}
