package emulator

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/wire"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
	"github.com/wafleet/wafleet/wire/payload"
)

// An in-memory client harness for tests inside testing/synctest bubbles:
// frames travel over channels (durably blocking), so fake time advances
// whenever client and server both wait, and minutes of day-one traffic take
// milliseconds. The client is built from package wire and wire/node, like
// client_test.go's.

// pipeConn is one end of an in-memory frame connection. Frames written
// before Close are still delivered.
type pipeConn struct {
	in, out chan []byte
	closed  chan struct{}
	once    *sync.Once
}

func newPipe() (a, b *pipeConn) {
	ab, ba := make(chan []byte, 64), make(chan []byte, 64)
	closed, once := make(chan struct{}), &sync.Once{}
	return &pipeConn{in: ba, out: ab, closed: closed, once: once}, &pipeConn{in: ab, out: ba, closed: closed, once: once}
}

func (p *pipeConn) ReadFrame() ([]byte, error) {
	select {
	case b := <-p.in:
		return b, nil
	case <-p.closed:
		select {
		case b := <-p.in:
			return b, nil
		default:
			return nil, wire.ErrClosed
		}
	}
}

func (p *pipeConn) WriteFrame(b []byte) error {
	select {
	case <-p.closed:
		return wire.ErrClosed
	default:
	}
	select {
	case p.out <- append([]byte(nil), b...):
		return nil
	case <-p.closed:
		return wire.ErrClosed
	}
}

func (p *pipeConn) Close() error {
	p.once.Do(func() { close(p.closed) })
	return nil
}

// pipeDevice is a paired device put straight into the registry.
type pipeDevice struct {
	noise, identity *crypto.KeyPair
	jid             jid.JID
	dev             *device
}

func addPipeDevice(t testing.TB, s *Server) *pipeDevice {
	t.Helper()
	noise, err := crypto.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	identity, err := crypto.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	signed, err := crypto.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := crypto.Sign(identity, append([]byte{5}, signed.Pub[:]...))
	if err != nil {
		t.Fatal(err)
	}
	acct, pn, lid, err := s.reg.allocate(identity.Pub, "")
	if err != nil {
		t.Fatal(err)
	}
	// A valid signed prekey: day-one's contacts build sessions from its
	// bundle.
	d := &device{jid: pn, lid: lid, noisePub: noise.Pub, identityPub: identity.Pub, account: acct,
		keyIndex: uint32(pn.Device), pairedAt: time.Now(), regID: 4242,
		skey: signedPreKey{id: 1, pub: signed.Pub, sig: sig}}
	s.reg.mu.Lock()
	s.reg.addDevice(d)
	s.reg.mu.Unlock()
	return &pipeDevice{noise: noise, identity: identity, jid: pn, dev: d}
}

// clientPolicy says what the pipe client answers by itself.
type clientPolicy struct {
	ack    bool // ack every ackable stanza correctly
	pings  bool // answer server pings
	forget bool // do not record what arrives (benchmarks)
}

// pipeClient is a logged-in (or refused) client connection. Its reader
// records every node and answers as its policy says.
type pipeClient struct {
	t      testing.TB
	tr     *wire.Transport
	sendMu sync.Mutex
	done   chan struct{}

	mu     sync.Mutex
	policy clientPolicy
	got    []node.Node
}

// login connects d to s over a pipe and runs the login handshake.
func login(t testing.TB, s *Server, d *pipeDevice, policy clientPolicy, version payload.Version) *pipeClient {
	t.Helper()
	a, b := newPipe()
	return loginOver(t, s, d, policy, version, a, b)
}

// loginOver is login over a given connection: the client's end a, the
// server's end b.
func loginOver(t testing.TB, s *Server, d *pipeDevice, policy clientPolicy, version payload.Version, a, b wire.FrameConn) *pipeClient {
	t.Helper()
	if !s.enter() {
		t.Fatal("server closed")
	}
	go func() {
		defer s.wg.Done()
		s.serveConn(b, "pipe")
	}()
	user, _ := d.jid.UserInt()
	cp, err := payload.Login(payload.LoginData{Username: user, Device: uint32(d.jid.Device), Version: version})
	if err != nil {
		t.Fatal(err)
	}
	cpb, _ := proto.Marshal(cp)
	root := s.RootPublicKey()
	tr, err := wire.ClientHandshake(context.Background(), a, wire.ClientHandshakeConfig{NoiseKey: d.noise, Payload: cpb, RootKey: root[:]})
	if err != nil {
		t.Fatalf("login handshake: %v", err)
	}
	c := &pipeClient{t: t, tr: tr, done: make(chan struct{}), policy: policy}
	go c.read()
	t.Cleanup(func() {
		tr.Close()
		<-c.done
	})
	return c
}

func (c *pipeClient) read() {
	defer close(c.done)
	for {
		pt, err := c.tr.Receive()
		if err != nil {
			return
		}
		n, err := node.UnmarshalPayload(pt)
		if err != nil {
			c.t.Errorf("undecodable node from the server: %v", err)
			return
		}
		c.mu.Lock()
		p := c.policy
		if !p.forget {
			c.got = append(c.got, n)
		}
		c.mu.Unlock()
		switch {
		case p.ack && ackableTags[n.Tag]:
			c.send(correctAck(n))
		case p.pings && isServerPing(n):
			c.send(pingAnswerFor(n))
		}
	}
}

func (c *pipeClient) send(n node.Node) {
	b, err := node.MarshalPayload(n)
	if err != nil {
		c.t.Errorf("encode: %v", err)
		return
	}
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	c.tr.Send(b) // a closed connection is the test's to notice
}

func (c *pipeClient) setPolicy(p clientPolicy) {
	c.mu.Lock()
	c.policy = p
	c.mu.Unlock()
}

// nodes returns what the client has received so far.
func (c *pipeClient) nodes() []node.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]node.Node(nil), c.got...)
}

// closed reports whether the server has closed the connection.
func (c *pipeClient) closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// correctAck is the ack whatsmeow's sendAck builds (PROTOCOL.md 9.8).
func correctAck(n node.Node) node.Node {
	id, _ := n.Attr("id")
	from, _ := n.AttrJID("from")
	ack := node.New("ack", node.StrAttr("class", n.Tag), node.StrAttr("id", id), node.JIDAttr("to", from))
	if p, ok := n.AttrJID("participant"); ok {
		ack = ack.WithAttr(node.JIDAttr("participant", p))
	}
	if r, ok := n.AttrJID("recipient"); ok {
		ack = ack.WithAttr(node.JIDAttr("recipient", r))
	}
	if typ, ok := n.Attr("type"); ok && n.Tag != "message" {
		ack = ack.WithAttr(node.StrAttr("type", typ))
	}
	return ack
}

func isServerPing(n node.Node) bool {
	x, _ := n.Attr("xmlns")
	return n.Tag == "iq" && x == "urn:xmpp:ping"
}

// pingAnswerFor is WhatsApp Web's answer to a server ping.
func pingAnswerFor(n node.Node) node.Node {
	a := node.New("iq", node.JIDAttr("to", jid.ServerJID), node.StrAttr("type", "result"))
	if id, ok := n.Attr("id"); ok {
		a = a.WithAttr(node.StrAttr("id", id))
	}
	return a
}
