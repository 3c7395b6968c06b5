package wire

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/waproto"
)

// vectorNow returns a time inside both certificate windows of the vector.
func vectorNow(t testing.TB, v *noiseVector) time.Time {
	t.Helper()
	var lo, hi uint64 = 0, ^uint64(0)
	for _, h := range []string{v.IntermediateDetails, v.LeafDetails} {
		var d waproto.CertChain_NoiseCertificate_Details
		if err := proto.Unmarshal(unhex(t, h), &d); err != nil {
			t.Fatal(err)
		}
		lo, hi = max(lo, d.GetNotBefore()), min(hi, d.GetNotAfter())
	}
	if lo >= hi {
		t.Fatalf("vector certificate windows do not overlap")
	}
	return time.Unix(int64(lo)+1, 0)
}

func fixedEphemeral(kp *crypto.KeyPair) func() (*crypto.KeyPair, error) {
	return func() (*crypto.KeyPair, error) { return kp, nil }
}

// TestClientHandshakeVector reproduces noise_handshake.json on the wire: the
// client, given the vector's keys, must send byte-identical ClientHello,
// ClientFinish and transport frames, and decrypt the server's frame.
func TestClientHandshakeVector(t *testing.T) {
	var v noiseVector
	loadJSON(t, "noise_handshake.json", &v)
	fr := v.Frames
	if len(fr) != 6 {
		t.Fatalf("vector has %d frames, want 6", len(fr))
	}
	sent := make(chan []byte, 8)
	srv := serveRaw(t, func(ws *websocket.Conn) {
		read := func() bool {
			_, b, err := ws.ReadMessage()
			if err != nil {
				return false
			}
			sent <- b
			return true
		}
		write := func(h string) { ws.WriteMessage(websocket.BinaryMessage, unhex(t, h)) }
		if !read() {
			return
		}
		write(fr[1].WireHex) // ServerHello
		if !read() {         // ClientFinish
			return
		}
		write(fr[3].WireHex) // first transport frame
		for read() {
		}
	})
	c := dialT(t, wsURL(srv), DialOptions{})
	tr, err := ClientHandshake(context.Background(), c, ClientHandshakeConfig{
		NoiseKey:     keyPair(t, v.ClientStaticPriv),
		Payload:      unhex(t, v.ClientPayloadPlain),
		RootKey:      unhex(t, v.TestRootPub),
		Now:          func() time.Time { return vectorNow(t, &v) },
		newEphemeral: fixedEphemeral(keyPair(t, v.ClientEphemeralPriv)),
	})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer tr.Close()
	for _, i := range []int{0, 2} {
		if got := <-sent; !bytes.Equal(got, unhex(t, fr[i].WireHex)) {
			t.Fatalf("%s on the wire:\n got %x\nwant %s", fr[i].Kind, got, fr[i].WireHex)
		}
	}
	pt, err := tr.Receive()
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	if !bytes.Equal(pt, unhex(t, fr[3].PlainHex)) {
		t.Fatalf("transport plaintext %x, want %s", pt, fr[3].PlainHex)
	}
	for _, f := range fr[4:] {
		if err := tr.Send(unhex(t, f.PlainHex)); err != nil {
			t.Fatal(err)
		}
		if got := <-sent; !bytes.Equal(got, unhex(t, f.WireHex)) {
			t.Fatalf("%s on the wire:\n got %x\nwant %s", f.Kind, got, f.WireHex)
		}
	}
}

// TestServerHandshakeReplaysE2ESession plays the recorded whatsmeow client
// frames of e2e_session.json against our server side: given the recorded
// server keys, every server frame must come out byte-identical, and every
// client frame must decrypt to its recorded plaintext.
func TestServerHandshakeReplaysE2ESession(t *testing.T) {
	var v noiseVector
	loadJSON(t, "noise_handshake.json", &v)
	var e e2eVector
	loadJSON(t, "e2e_session.json", &e)
	static := keyPair(t, v.ServerStaticPriv)
	payloads := map[int]string{0: e.RegistrationPayload, 1: e.LoginPayload}
	for _, hs := range e.Handshakes {
		t.Run("conn"+string(rune('0'+hs.Conn)), func(t *testing.T) {
			var frames []vecFrame
			for _, f := range e.Frames {
				if f.Conn == hs.Conn {
					frames = append(frames, f)
				}
			}
			serverErr := make(chan error, 1)
			srv := serveFrames(t, func(_ *http.Request, c *Conn) {
				serverErr <- func() error {
					sh, err := AcceptHandshake(context.Background(), c, ServerHandshakeConfig{ephemeral: keyPair(t, hs.ServerEphemeralPriv)})
					if err != nil {
						return err
					}
					if err := sh.Respond(unhex(t, hs.CertChainPlain), static); err != nil {
						return err
					}
					res, err := sh.Finish(context.Background())
					if err != nil {
						return err
					}
					if !bytes.Equal(res.ClientStatic[:], unhex(t, e.ClientKeys.NoisePub)) {
						return errors.New("client static key differs from the recorded noise key")
					}
					if !bytes.Equal(res.ClientPayload, unhex(t, payloads[hs.Conn])) {
						return errors.New("client payload differs from the recorded one")
					}
					for _, f := range frames[3:] {
						if f.Dir == "s2c" {
							if err := res.Transport.Send(unhex(t, f.PlainHex)); err != nil {
								return err
							}
							continue
						}
						pt, err := res.Transport.Receive()
						if err != nil {
							return err
						}
						if !bytes.Equal(pt, unhex(t, f.PlainHex)) {
							return errors.New(f.Kind + ": plaintext differs")
						}
					}
					return nil
				}()
			})
			ws, _, err := websocket.DefaultDialer.Dial(wsURL(srv), http.Header{"Origin": {DefaultOrigin}})
			if err != nil {
				t.Fatal(err)
			}
			defer ws.Close()
			for _, f := range frames {
				if f.Dir == "c2s" {
					if err := ws.WriteMessage(websocket.BinaryMessage, unhex(t, f.WireHex)); err != nil {
						t.Fatal(err)
					}
					continue
				}
				_, got, err := ws.ReadMessage()
				if err != nil {
					t.Fatalf("%s: %v (server: %v)", f.Kind, err, <-serverErr)
				}
				if !bytes.Equal(got, unhex(t, f.WireHex)) {
					t.Fatalf("%s on the wire:\n got %x\nwant %s", f.Kind, got, f.WireHex)
				}
			}
			if err := <-serverErr; err != nil {
				t.Fatalf("server: %v", err)
			}
		})
	}
}

// testPKI is a test root, intermediate and server static key with a valid
// chain for now.
type testPKI struct {
	root, inter, static *crypto.KeyPair
	now                 time.Time
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	p := &testPKI{now: time.Unix(1_800_000_000, 0)}
	for _, kp := range []**crypto.KeyPair{&p.root, &p.inter, &p.static} {
		var err error
		if *kp, err = crypto.GenerateKeyPair(); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func (p *testPKI) specs() (inter, leaf crypto.CertSpec) {
	inter = crypto.CertSpec{Serial: 1, IssuerSerial: 0, NotBefore: p.now.Add(-time.Hour), NotAfter: p.now.Add(time.Hour)}
	leaf = crypto.CertSpec{Serial: 2, IssuerSerial: 1, Key: p.static.Pub[:], NotBefore: p.now.Add(-time.Hour), NotAfter: p.now.Add(time.Hour)}
	return inter, leaf
}

func (p *testPKI) chain(t testing.TB) []byte {
	t.Helper()
	is, ls := p.specs()
	chain, err := crypto.IssueCertChain(p.root, p.inter, is, ls)
	if err != nil {
		t.Fatal(err)
	}
	return chain
}

func (p *testPKI) clientConfig(t testing.TB) ClientHandshakeConfig {
	t.Helper()
	noise, err := crypto.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	return ClientHandshakeConfig{
		NoiseKey: noise,
		Payload:  []byte("client payload"),
		RootKey:  p.root.Pub[:],
		Now:      func() time.Time { return p.now },
	}
}

// serveHandshake runs the server side over conn and returns its outcome.
func serveHandshake(ctx context.Context, conn FrameConn, chain []byte, static *crypto.KeyPair) (*ServerResult, error) {
	sh, err := AcceptHandshake(ctx, conn, ServerHandshakeConfig{})
	if err != nil {
		return nil, err
	}
	if err := sh.Respond(chain, static); err != nil {
		return nil, err
	}
	return sh.Finish(ctx)
}

func TestHandshakeOverWebSocket(t *testing.T) {
	p := newTestPKI(t)
	chain := p.chain(t)
	type result struct {
		res *ServerResult
		err error
	}
	results := make(chan result, 1)
	echoErr := make(chan error, 1)
	srv := serveFrames(t, func(_ *http.Request, c *Conn) {
		res, err := serveHandshake(context.Background(), c, chain, p.static)
		results <- result{res, err}
		if err != nil {
			return
		}
		// Echo every frame back with a marker, until the client hangs up.
		for {
			pt, err := res.Transport.Receive()
			if err != nil {
				echoErr <- err
				return
			}
			if err := res.Transport.Send(append([]byte("echo:"), pt...)); err != nil {
				echoErr <- err
				return
			}
		}
	})
	c := dialT(t, wsURL(srv), DialOptions{})
	cfg := p.clientConfig(t)
	tr, err := ClientHandshake(context.Background(), c, cfg)
	if err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	r := <-results
	if r.err != nil {
		t.Fatalf("server handshake: %v", r.err)
	}
	if r.res.ClientStatic != cfg.NoiseKey.Pub {
		t.Fatal("server learned a client static key that is not the noise key")
	}
	if string(r.res.ClientPayload) != "client payload" {
		t.Fatalf("server got payload %q", r.res.ClientPayload)
	}
	for _, n := range []int{0, 1, 1024, 100_000} {
		msg := bytes.Repeat([]byte{byte(n)}, n)
		if err := tr.Send(msg); err != nil {
			t.Fatalf("send %d: %v", n, err)
		}
		got, err := tr.Receive()
		if err != nil {
			t.Fatalf("receive %d: %v", n, err)
		}
		if !bytes.Equal(got, append([]byte("echo:"), msg...)) {
			t.Fatalf("echo of %d bytes differs", n)
		}
	}
	tr.Close()
	if err := <-echoErr; !errors.Is(err, ErrClosed) {
		t.Fatalf("server after client close: %v, want ErrClosed", err)
	}
}

func TestClientRejectsBadCertificates(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(p *testPKI, other *crypto.KeyPair, inter, leaf *crypto.CertSpec) (signer *crypto.KeyPair)
		raw    []byte // if set, sent instead of an issued chain
		want   error
	}{
		{name: "intermediate signed by another root", want: crypto.ErrCertRootSignature,
			mutate: func(p *testPKI, other *crypto.KeyPair, _, _ *crypto.CertSpec) *crypto.KeyPair { return other }},
		{name: "intermediate issuer serial not 0", want: crypto.ErrCertIntermediateIssuer,
			mutate: func(p *testPKI, _ *crypto.KeyPair, i, _ *crypto.CertSpec) *crypto.KeyPair {
				i.IssuerSerial = 7
				return p.root
			}},
		{name: "intermediate key not 32 bytes", want: crypto.ErrCertIntermediateKey,
			mutate: func(p *testPKI, _ *crypto.KeyPair, i, _ *crypto.CertSpec) *crypto.KeyPair {
				i.Key = p.inter.Pub[:31]
				return p.root
			}},
		{name: "leaf not signed by the intermediate key", want: crypto.ErrCertLeafSignature,
			mutate: func(p *testPKI, other *crypto.KeyPair, i, _ *crypto.CertSpec) *crypto.KeyPair {
				i.Key = other.Pub[:]
				return p.root
			}},
		{name: "intermediate expired", want: crypto.ErrCertIntermediateExpired,
			mutate: func(p *testPKI, _ *crypto.KeyPair, i, _ *crypto.CertSpec) *crypto.KeyPair {
				i.NotAfter = p.now.Add(-time.Second)
				return p.root
			}},
		{name: "intermediate not yet valid", want: crypto.ErrCertIntermediateExpired,
			mutate: func(p *testPKI, _ *crypto.KeyPair, i, _ *crypto.CertSpec) *crypto.KeyPair {
				i.NotBefore = p.now.Add(time.Minute)
				return p.root
			}},
		{name: "leaf issuer serial is not the intermediate's", want: crypto.ErrCertLeafIssuer,
			mutate: func(p *testPKI, _ *crypto.KeyPair, _, l *crypto.CertSpec) *crypto.KeyPair {
				l.IssuerSerial = 9
				return p.root
			}},
		{name: "leaf key is not the server static key", want: crypto.ErrCertLeafKeyMismatch,
			mutate: func(p *testPKI, other *crypto.KeyPair, _, l *crypto.CertSpec) *crypto.KeyPair {
				l.Key = other.Pub[:]
				return p.root
			}},
		{name: "leaf expired", want: crypto.ErrCertLeafExpired,
			mutate: func(p *testPKI, _ *crypto.KeyPair, _, l *crypto.CertSpec) *crypto.KeyPair {
				l.NotAfter = p.now.Add(-time.Second)
				return p.root
			}},
		{name: "leaf not yet valid", want: crypto.ErrCertLeafExpired,
			mutate: func(p *testPKI, _ *crypto.KeyPair, _, l *crypto.CertSpec) *crypto.KeyPair {
				l.NotBefore = p.now.Add(time.Minute)
				return p.root
			}},
		{name: "chain is not a CertChain", raw: []byte{0xff, 0xff, 0xff}, want: crypto.ErrCertMalformed},
		{name: "chain is empty", raw: []byte{}, want: crypto.ErrCertMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestPKI(t)
			other, err := crypto.GenerateKeyPair()
			if err != nil {
				t.Fatal(err)
			}
			chain := tt.raw
			if chain == nil {
				is, ls := p.specs()
				signer := tt.mutate(p, other, &is, &ls)
				if chain, err = crypto.IssueCertChain(signer, p.inter, is, ls); err != nil {
					t.Fatal(err)
				}
			}
			cc, sc := memPipe()
			serverDone := make(chan error, 1)
			go func() {
				_, err := serveHandshake(context.Background(), sc, chain, p.static)
				serverDone <- err
			}()
			_, err = ClientHandshake(context.Background(), cc, p.clientConfig(t))
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), "verify certificate") {
				t.Fatalf("error %q does not name the failed step", err)
			}
			if !cc.isClosed() {
				t.Fatal("client did not close the connection")
			}
			if err := <-serverDone; !errors.Is(err, ErrClosed) {
				t.Fatalf("server: got %v, want ErrClosed", err)
			}
		})
	}
	t.Run("valid chain is accepted", func(t *testing.T) {
		p := newTestPKI(t)
		cc, sc := memPipe()
		serverDone := make(chan error, 1)
		go func() {
			_, err := serveHandshake(context.Background(), sc, p.chain(t), p.static)
			serverDone <- err
		}()
		if _, err := ClientHandshake(context.Background(), cc, p.clientConfig(t)); err != nil {
			t.Fatal(err)
		}
		if err := <-serverDone; err != nil {
			t.Fatal(err)
		}
	})
}

func TestClientHandshakeServerNeverAnswers(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
		cancel  bool // cancel the context once the server has the hello
		want    error
	}{
		{"timeout", 50 * time.Millisecond, false, ErrHandshakeTimeout},
		{"context canceled", time.Minute, true, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			srv := serveFrames(t, func(_ *http.Request, c *Conn) {
				if _, err := c.ReadFrame(); err != nil {
					return
				}
				if tt.cancel {
					cancel()
				}
				c.ReadFrame() // never answer; returns when the client hangs up
			})
			c := dialT(t, wsURL(srv), DialOptions{})
			cfg := newTestPKI(t).clientConfig(t)
			cfg.Timeout = tt.timeout
			_, err := ClientHandshake(ctx, c, cfg)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), "read server hello") {
				t.Fatalf("error %q does not name the step", err)
			}
		})
	}
}

func TestClientHandshakeServerClosesAfterHello(t *testing.T) {
	srv := serveFrames(t, func(_ *http.Request, c *Conn) {
		c.ReadFrame()
		c.Close()
	})
	c := dialT(t, wsURL(srv), DialOptions{})
	_, err := ClientHandshake(context.Background(), c, newTestPKI(t).clientConfig(t))
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("got %v, want ErrClosed", err)
	}
	if errors.Is(err, ErrHandshakeTimeout) {
		t.Fatalf("a hang-up was reported as a timeout: %v", err)
	}
	if !strings.Contains(err.Error(), "read server hello") {
		t.Fatalf("error %q does not name the step", err)
	}
}

func marshalHS(t testing.TB, m *waproto.HandshakeMessage) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestClientRejectsBadServerHello(t *testing.T) {
	eph, err := crypto.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	hello := func(e, s, p []byte) []byte {
		return marshalHS(t, &waproto.HandshakeMessage{ServerHello: &waproto.HandshakeMessage_ServerHello{Ephemeral: e, Static: s, Payload: p}})
	}
	tests := []struct {
		name  string
		frame []byte
		want  error
	}{
		{"not a protobuf", []byte{0xff, 0xff, 0xff}, ErrHandshakeMessage},
		{"empty frame", []byte{}, ErrHandshakeMessage},
		{"client hello instead", marshalHS(t, &waproto.HandshakeMessage{ClientHello: &waproto.HandshakeMessage_ClientHello{Ephemeral: eph.Pub[:]}}), ErrHandshakeMessage},
		{"short ephemeral", hello(eph.Pub[:31], randBytes(48), randBytes(40)), ErrHandshakeMessage},
		{"long ephemeral", hello(append(eph.Pub[:], 0), randBytes(48), randBytes(40)), ErrHandshakeMessage},
		{"missing static", hello(eph.Pub[:], nil, randBytes(40)), ErrHandshakeMessage},
		{"missing payload", hello(eph.Pub[:], randBytes(48), nil), ErrHandshakeMessage},
		{"garbage ciphertexts", hello(eph.Pub[:], randBytes(48), randBytes(40)), crypto.ErrNoiseDecrypt},
		{"low-order ephemeral", hello(make([]byte, 32), randBytes(48), randBytes(40)), crypto.ErrLowOrderKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc, sc := memPipe()
			go func() {
				if _, err := sc.ReadFrame(); err == nil {
					sc.WriteFrame(tt.frame)
				}
			}()
			_, err := ClientHandshake(context.Background(), cc, newTestPKI(t).clientConfig(t))
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), "server hello") {
				t.Fatalf("error %q does not name the step", err)
			}
			if !cc.isClosed() {
				t.Fatal("client did not close the connection")
			}
		})
	}
}

func TestServerHandshakeErrors(t *testing.T) {
	p := newTestPKI(t)
	goodHello := func(t *testing.T) []byte {
		e, err := crypto.GenerateKeyPair()
		if err != nil {
			t.Fatal(err)
		}
		return marshalHS(t, &waproto.HandshakeMessage{ClientHello: &waproto.HandshakeMessage_ClientHello{Ephemeral: e.Pub[:]}})
	}
	t.Run("garbage client hello", func(t *testing.T) {
		cc, sc := memPipe()
		cc.WriteFrame([]byte{0xff, 0x01})
		if _, err := AcceptHandshake(context.Background(), sc, ServerHandshakeConfig{}); !errors.Is(err, ErrHandshakeMessage) {
			t.Fatalf("got %v, want ErrHandshakeMessage", err)
		}
		if !sc.isClosed() {
			t.Fatal("connection left open")
		}
	})
	t.Run("short client ephemeral", func(t *testing.T) {
		cc, sc := memPipe()
		cc.WriteFrame(marshalHS(t, &waproto.HandshakeMessage{ClientHello: &waproto.HandshakeMessage_ClientHello{Ephemeral: make([]byte, 31)}}))
		if _, err := AcceptHandshake(context.Background(), sc, ServerHandshakeConfig{}); !errors.Is(err, ErrHandshakeMessage) {
			t.Fatalf("got %v, want ErrHandshakeMessage", err)
		}
	})
	t.Run("client never says hello", func(t *testing.T) {
		_, sc := memPipe()
		if _, err := AcceptHandshake(context.Background(), sc, ServerHandshakeConfig{Timeout: 20 * time.Millisecond}); !errors.Is(err, ErrHandshakeTimeout) {
			t.Fatalf("got %v, want ErrHandshakeTimeout", err)
		}
	})
	t.Run("finish before respond", func(t *testing.T) {
		cc, sc := memPipe()
		cc.WriteFrame(goodHello(t))
		sh, err := AcceptHandshake(context.Background(), sc, ServerHandshakeConfig{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sh.Finish(context.Background()); !errors.Is(err, crypto.ErrNoiseState) {
			t.Fatalf("got %v, want ErrNoiseState", err)
		}
	})
	t.Run("forged client finish", func(t *testing.T) {
		cc, sc := memPipe()
		cc.WriteFrame(goodHello(t))
		sh, err := AcceptHandshake(context.Background(), sc, ServerHandshakeConfig{})
		if err != nil {
			t.Fatal(err)
		}
		if err := sh.Respond(p.chain(t), p.static); err != nil {
			t.Fatal(err)
		}
		cc.WriteFrame(marshalHS(t, &waproto.HandshakeMessage{ClientFinish: &waproto.HandshakeMessage_ClientFinish{Static: randBytes(48), Payload: randBytes(30)}}))
		if _, err := sh.Finish(context.Background()); !errors.Is(err, crypto.ErrNoiseDecrypt) {
			t.Fatalf("got %v, want ErrNoiseDecrypt", err)
		}
	})
	t.Run("client finish missing", func(t *testing.T) {
		cc, sc := memPipe()
		cc.WriteFrame(goodHello(t))
		sh, err := AcceptHandshake(context.Background(), sc, ServerHandshakeConfig{Timeout: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := sh.Respond(p.chain(t), p.static); err != nil {
			t.Fatal(err)
		}
		if _, err := sh.Finish(context.Background()); !errors.Is(err, ErrHandshakeTimeout) {
			t.Fatalf("got %v, want ErrHandshakeTimeout", err)
		}
	})
}

// handshakePair returns both transports of a handshake over an in-memory pipe.
func handshakePair(t testing.TB) (client, server *Transport, cc, sc *memConn) {
	t.Helper()
	p := newTestPKI(t)
	cc, sc = memPipe()
	type result struct {
		res *ServerResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := serveHandshake(context.Background(), sc, p.chain(t), p.static)
		done <- result{res, err}
	}()
	client, err := ClientHandshake(context.Background(), cc, p.clientConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	return client, r.res.Transport, cc, sc
}

func TestTransport(t *testing.T) {
	t.Run("both directions", func(t *testing.T) {
		client, server, _, _ := handshakePair(t)
		for i, m := range []string{"", "a", strings.Repeat("x", 5000)} {
			if err := client.Send([]byte(m)); err != nil {
				t.Fatal(err)
			}
			if got, err := server.Receive(); err != nil || string(got) != m {
				t.Fatalf("c2s %d: %q, %v", i, got, err)
			}
			if err := server.Send([]byte(m + "!")); err != nil {
				t.Fatal(err)
			}
			if got, err := client.Receive(); err != nil || string(got) != m+"!" {
				t.Fatalf("s2c %d: %q, %v", i, got, err)
			}
		}
	})
	t.Run("tampered frame is fatal", func(t *testing.T) {
		client, _, cc, sc := handshakePair(t)
		sc.WriteFrame(randBytes(40))
		_, err := client.Receive()
		if !errors.Is(err, ErrDecrypt) || !errors.Is(err, crypto.ErrNoiseDecrypt) {
			t.Fatalf("got %v, want ErrDecrypt", err)
		}
		if !cc.isClosed() {
			t.Fatal("connection left open after a decrypt failure")
		}
		if _, err2 := client.Receive(); err2 != err {
			t.Fatalf("error not sticky: %v", err2)
		}
	})
	t.Run("replayed frame is fatal", func(t *testing.T) {
		client, server, cc, sc := handshakePair(t)
		server.Send([]byte("once"))
		frame := <-cc.in // taken off the wire, delivered twice
		sc.WriteFrame(frame)
		sc.WriteFrame(frame)
		if _, err := client.Receive(); err != nil {
			t.Fatal(err)
		}
		if _, err := client.Receive(); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("got %v, want ErrDecrypt", err)
		}
	})
	t.Run("plaintext too large", func(t *testing.T) {
		client, _, _, _ := handshakePair(t)
		if err := client.Send(make([]byte, MaxPlaintextSize+1)); !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("got %v, want ErrFrameTooLarge", err)
		}
	})
	t.Run("peer hang-up", func(t *testing.T) {
		client, server, _, _ := handshakePair(t)
		server.Close()
		if _, err := client.Receive(); !errors.Is(err, ErrClosed) {
			t.Fatalf("got %v, want ErrClosed", err)
		}
		if err := client.Send([]byte("x")); !errors.Is(err, ErrClosed) {
			t.Fatalf("send: got %v, want ErrClosed", err)
		}
	})
}

func TestTransportZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops buffers at random under the race detector")
	}
	send, recv := loopTransports(t)
	msg := bytes.Repeat([]byte{0x5a}, 1024)
	round := func() {
		if err := send.Send(msg); err != nil {
			t.Fatal(err)
		}
		got, err := recv.Receive()
		if err != nil || len(got) != len(msg) {
			t.Fatalf("receive: %d bytes, %v", len(got), err)
		}
	}
	round() // size the buffers
	if n := testing.AllocsPerRun(100, round); n != 0 {
		t.Fatalf("send+receive allocated %v times per frame, want 0", n)
	}
}

func FuzzServerHello(f *testing.F) {
	var v noiseVector
	loadJSON(f, "noise_handshake.json", &v)
	static := keyPair(f, v.ClientStaticPriv)
	eph := keyPair(f, v.ClientEphemeralPriv)
	serverStatic := unhex(f, v.ServerStaticPub)
	root := unhex(f, v.TestRootPub)
	now := vectorNow(f, &v)
	valid := unhex(f, v.Frames[1].FrameHex)
	f.Add(valid)
	f.Add(valid[:len(valid)-1])
	f.Add([]byte{0x1a, 0x00})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, frame []byte) {
		ini := crypto.NewInitiator(static, eph, []byte(ConnHeader))
		got, chain, err := readServerHello(ini, frame)
		if err == nil {
			err = crypto.VerifyCertChain(chain, root, got[:], now)
		}
		if err != nil {
			return
		}
		// Only the authentic server could produce a frame that decrypts.
		if !bytes.Equal(got[:], serverStatic) {
			t.Fatalf("accepted a server hello from an unknown server key %x", got)
		}
	})
}

// An idle Transport keeps no send buffer: after each of many connections
// sent one 40 KiB frame (a new device's prekey upload), the heap holds a
// few pooled buffers at most, not one per connection.
func TestTransportKeepsNoSendBuffer(t *testing.T) {
	const conns = 64
	big := make([]byte, 40<<10)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	keep := make([]*Transport, 0, 2*conns)
	for range conns {
		client, server, _, _ := handshakePair(t)
		if err := client.Send(big); err != nil {
			t.Fatal(err)
		}
		if _, err := server.Receive(); err != nil {
			t.Fatal(err)
		}
		keep = append(keep, client, server)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	if limit := int64(conns * 40 << 10 / 2); grew > limit {
		t.Errorf("the heap grew by %d bytes for %d idle connections that each sent 40 KiB once; want under %d (no send buffer kept per connection)", grew, conns, limit)
	}
	runtime.KeepAlive(keep)
}
