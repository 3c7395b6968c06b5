package emulator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/wire"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
	"github.com/wafleet/wafleet/wire/payload"
	"github.com/wafleet/wafleet/wire/qr"
)

// A minimal test-side client built from crypto and wire: enough to register,
// pair, log in and exchange nodes with the emulator over real sockets.

// waitTimeout bounds every wait of these tests (a deadline, never a sleep).
const waitTimeout = 10 * time.Second

// testDevice is a companion's long-term keys and, once paired, its JIDs.
type testDevice struct {
	noise, identity, spk *crypto.KeyPair
	regID                uint32
	adv                  [32]byte
	jid, lid             jid.JID
	account              []byte // the ADVSignedDeviceIdentity of pairing (its <device-identity>)
}

func newTestDevice(t testing.TB) *testDevice {
	t.Helper()
	d := &testDevice{regID: 12345}
	var err error
	for _, kp := range []**crypto.KeyPair{&d.noise, &d.identity, &d.spk} {
		if *kp, err = crypto.GenerateKeyPair(); err != nil {
			t.Fatal(err)
		}
	}
	copy(d.adv[:], d.spk.Priv[:]) // any 32 secret bytes
	d.adv[0] ^= 0x55
	return d
}

func (d *testDevice) registrationPayload(t testing.TB) []byte {
	t.Helper()
	sig, err := crypto.Sign(d.identity, append([]byte{5}, d.spk.Pub[:]...))
	if err != nil {
		t.Fatal(err)
	}
	cp, err := payload.Registration(payload.RegistrationData{
		RegistrationID: d.regID, IdentityPub: d.identity.Pub,
		SignedPreKeyID: 1, SignedPreKeyPub: d.spk.Pub, SignedPreKeySig: sig,
	})
	if err != nil {
		t.Fatal(err)
	}
	return marshal(t, cp)
}

func (d *testDevice) loginPayload(t testing.TB) []byte {
	t.Helper()
	user, err := d.jid.UserInt()
	if err != nil {
		t.Fatalf("device not paired: %v", err)
	}
	cp, err := payload.Login(payload.LoginData{Username: user, Device: uint32(d.jid.Device)})
	if err != nil {
		t.Fatal(err)
	}
	return marshal(t, cp)
}

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testConn is a client connection after the handshake, with a reader
// goroutine that decodes nodes into a channel.
type testConn struct {
	t      testing.TB
	tr     *wire.Transport
	nodes  chan node.Node
	done   chan struct{}
	mu     sync.Mutex
	endErr error // why the reader stopped
}

// handshake dials srv and runs the client handshake with the given payload.
func handshake(t testing.TB, srv *emulator.Server, noise *crypto.KeyPair, cp []byte, timeout time.Duration) (*testConn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	conn, err := wire.Dial(ctx, srv.URL(), wire.DialOptions{})
	if err != nil {
		return nil, err
	}
	root := srv.RootPublicKey()
	tr, err := wire.ClientHandshake(ctx, conn, wire.ClientHandshakeConfig{
		NoiseKey: noise, Payload: cp, RootKey: root[:], Timeout: timeout,
	})
	if err != nil {
		return nil, err
	}
	c := &testConn{t: t, tr: tr, nodes: make(chan node.Node, 64), done: make(chan struct{})}
	go c.read()
	t.Cleanup(func() {
		tr.Close()
		<-c.done
	})
	return c, nil
}

func (c *testConn) read() {
	defer close(c.done)
	defer close(c.nodes)
	for {
		pt, err := c.tr.Receive()
		if err != nil {
			c.mu.Lock()
			c.endErr = err
			c.mu.Unlock()
			return
		}
		n, err := node.UnmarshalPayload(pt)
		if err != nil {
			c.mu.Lock()
			c.endErr = fmt.Errorf("client: undecodable node from server: %w", err)
			c.mu.Unlock()
			return
		}
		c.nodes <- n
	}
}

// register dials with the device's registration payload.
func register(t testing.TB, srv *emulator.Server, d *testDevice) *testConn {
	t.Helper()
	c, err := handshake(t, srv, d.noise, d.registrationPayload(t), 0)
	if err != nil {
		t.Fatalf("registration handshake: %v", err)
	}
	return c
}

// login dials with the device's login payload.
func login(t testing.TB, srv *emulator.Server, d *testDevice) *testConn {
	t.Helper()
	c, err := handshake(t, srv, d.noise, d.loginPayload(t), 0)
	if err != nil {
		t.Fatalf("login handshake: %v", err)
	}
	return c
}

// next returns the next node from the server, failing the test if none
// arrives in time or the connection ends.
func (c *testConn) next() node.Node {
	c.t.Helper()
	select {
	case n, ok := <-c.nodes:
		if !ok {
			c.t.Fatalf("connection ended while waiting for a node: %v", c.err())
		}
		return n
	case <-time.After(waitTimeout):
		c.t.Fatal("no node from the server in time")
	}
	return node.Node{}
}

// expectTag returns the next node and checks its tag.
func (c *testConn) expectTag(tag string) node.Node {
	c.t.Helper()
	n := c.next()
	if n.Tag != tag {
		c.t.Fatalf("got %v, want <%s>", n, tag)
	}
	return n
}

// expectClosed waits for the server to close the connection, failing on any
// further node.
func (c *testConn) expectClosed() {
	c.t.Helper()
	select {
	case n, ok := <-c.nodes:
		if ok {
			c.t.Fatalf("got %v, want the connection closed", n)
		}
	case <-time.After(waitTimeout):
		c.t.Fatal("server did not close the connection in time")
	}
}

func (c *testConn) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.endErr
}

func (c *testConn) send(n node.Node) {
	c.t.Helper()
	b, err := node.MarshalPayload(n)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(b)
}

func (c *testConn) sendRaw(b []byte) {
	c.t.Helper()
	if err := c.tr.Send(b); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// iq builds a client IQ to the server.
func iq(id, typ, xmlns string, children ...node.Node) node.Node {
	return node.IQ(id, jid.ServerJID, typ, xmlns, children...)
}

// expectResult reads the server's answer to IQ id and checks its type.
func (c *testConn) expectResult(id, typ string) node.Node {
	c.t.Helper()
	n := c.expectTag("iq")
	gotID, _ := n.Attr("id")
	gotType, _ := n.Attr("type")
	if gotID != id || gotType != typ {
		c.t.Fatalf("got %v, want iq id=%s type=%s", n, id, typ)
	}
	if from, ok := n.AttrJID("from"); !ok || from != jid.ServerJID {
		c.t.Fatalf("iq from is not the server JID (as a JID): %v", n)
	}
	return n
}

// pairDevice reads pair-device, checks its shape, acks it and returns refs.
func (c *testConn) pairDevice() []string {
	c.t.Helper()
	n := c.expectTag("iq")
	if from, ok := n.AttrJID("from"); !ok || from != jid.ServerJID {
		c.t.Fatalf("pair-device from is not the server JID as a JID: %v", n)
	}
	if x, _ := n.Attr("xmlns"); x != "md" {
		c.t.Fatalf("pair-device xmlns %q", x)
	}
	pd, ok := n.Child("pair-device")
	if !ok {
		c.t.Fatalf("got %v, want pair-device", n)
	}
	var refs []string
	for _, r := range pd.Children() {
		b, ok := r.Bytes()
		if r.Tag != "ref" || !ok {
			c.t.Fatalf("pair-device child %v is not a <ref> with bytes", r)
		}
		ref := string(b)
		if !strings.HasPrefix(ref, "2@") || strings.Contains(ref, ",") {
			c.t.Fatalf("ref does not look like 2@…: %d bytes", len(ref))
		}
		refs = append(refs, ref)
	}
	id, _ := n.Attr("id")
	c.send(iq(id, "result", ""))
	return refs
}

// scanResult is the outcome of a Scan run in the background.
type scanResult struct {
	linked emulator.Linked
	err    error
}

func scanAsync(srv *emulator.Server, code string) <-chan scanResult {
	ch := make(chan scanResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		l, err := srv.Phone().Scan(ctx, code)
		ch <- scanResult{l, err}
	}()
	return ch
}

func waitScan(t testing.TB, ch <-chan scanResult) scanResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(2 * waitTimeout):
		t.Fatal("Scan did not return")
	}
	return scanResult{}
}

func qrCode(t testing.TB, ref string, d *testDevice) string {
	t.Helper()
	s, err := qr.Build(ref, d.noise.Pub, d.identity.Pub, d.adv, qr.ClientChrome)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// pairSuccess reads pair-success and runs the client's ADV procedure on it.
func (c *testConn) pairSuccess(d *testDevice) (id string, pairing *crypto.ADVPairing, err error) {
	c.t.Helper()
	n := c.expectTag("iq")
	id, _ = n.Attr("id")
	ps, ok := n.Child("pair-success")
	if !ok {
		c.t.Fatalf("got %v, want pair-success", n)
	}
	if from, ok := n.AttrJID("from"); !ok || from != jid.ServerJID {
		c.t.Fatalf("pair-success from is not the server JID as a JID: %v", n)
	}
	dev, ok := ps.Child("device")
	if !ok {
		c.t.Fatalf("pair-success without <device>: %v", n)
	}
	pn, ok1 := dev.AttrJID("jid")
	lid, ok2 := dev.AttrJID("lid")
	if !ok1 || !ok2 {
		c.t.Fatalf("<device> jid/lid are not JIDs: %v", dev)
	}
	d.jid, d.lid = pn, lid
	if p, ok := ps.Child("platform"); !ok {
		c.t.Fatalf("pair-success without <platform>: %v", n)
	} else if name, _ := p.Attr("name"); name == "" {
		c.t.Fatalf("<platform> without name")
	}
	di, ok := ps.Child("device-identity")
	if !ok {
		c.t.Fatalf("pair-success without <device-identity>")
	}
	container, ok := di.Bytes()
	if !ok {
		c.t.Fatalf("<device-identity> is not bytes")
	}
	pairing, err = crypto.VerifyADVPairing(container, d.adv[:], d.identity)
	return id, pairing, err
}

// pair registers d, scans its first code with the phone, completes the
// client side and checks the 515 that ends the stream.
func pair(t testing.TB, srv *emulator.Server, d *testDevice) emulator.Linked {
	t.Helper()
	c := register(t, srv, d)
	refs := c.pairDevice()
	ch := scanAsync(srv, qrCode(t, refs[0], d))
	id, p, err := c.pairSuccess(d)
	if err != nil {
		t.Fatalf("client ADV check: %v", err)
	}
	d.account = marshal(t, p.Account)
	c.send(iq(id, "result", "", node.New("pair-device-sign").WithChildren(
		node.New("device-identity", node.IntAttr("key-index", int64(p.KeyIndex))).WithBytes(p.Reply))))
	se := c.expectTag("stream:error")
	if code, _ := se.Attr("code"); code != "515" {
		t.Fatalf("got %v, want stream:error 515", se)
	}
	c.expectClosed()
	r := waitScan(t, ch)
	if r.err != nil {
		t.Fatalf("Scan: %v", r.err)
	}
	if r.linked.JID != d.jid || r.linked.LID != d.lid {
		t.Fatalf("Scan linked %v/%v, pair-success said %v/%v", r.linked.JID, r.linked.LID, d.jid, d.lid)
	}
	return r.linked
}

// httpJSON does a control request and decodes the JSON answer.
func httpJSON(t testing.TB, method, url, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: content type %q", method, url, ct)
	}
	var out map[string]any
	if len(b) > 0 && b[0] == '{' {
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s %s: bad JSON %q: %v", method, url, b, err)
		}
	}
	return resp.StatusCode, out
}
