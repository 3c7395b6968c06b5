package emulator

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/waproto"
	"github.com/wafleet/wafleet/wire"
	"github.com/wafleet/wafleet/wire/payload"
)

// queueConn is one end of an in-memory, non-blocking frame pipe for
// step-by-step handshakes in one goroutine: ReadFrame pops what the other end
// wrote (ErrClosed when nothing is queued).
type queueConn struct {
	in, out *[][]byte
	discard bool // drop writes (fuzzing)
}

func queuePipe() (a, b *queueConn) {
	var ab, ba [][]byte
	return &queueConn{in: &ba, out: &ab}, &queueConn{in: &ab, out: &ba}
}

func (c *queueConn) ReadFrame() ([]byte, error) {
	if len(*c.in) == 0 {
		return nil, wire.ErrClosed
	}
	f := (*c.in)[0]
	*c.in = (*c.in)[1:]
	return f, nil
}

func (c *queueConn) WriteFrame(b []byte) error {
	if c.discard {
		return nil
	}
	*c.out = append(*c.out, append([]byte(nil), b...))
	return nil
}

func (c *queueConn) Close() error { return nil }

// BenchmarkServerHandshake runs whole handshakes in memory, the client's
// steps and the server's in turn in one goroutine. ns/op is the cost of the
// client+server pair; server-µs/op times only the server's steps (read
// ClientHello, ServerHello with the emulator's chain, read ClientFinish,
// parse the ClientPayload), and server-handshakes/s is its inverse: what one
// core can serve. Run with -cpu=1.
func BenchmarkServerHandshake(b *testing.B) {
	s, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	noise, _ := crypto.GenerateKeyPair()
	cp, err := payload.Login(payload.LoginData{Username: 15550000001, Device: 1})
	if err != nil {
		b.Fatal(err)
	}
	cpBytes, _ := proto.Marshal(cp)
	chain := s.faults.Load().chain
	root := s.root.Pub
	ctx := context.Background()
	var server time.Duration

	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		cEnd, sEnd := queuePipe()
		// Client: ClientHello.
		eph, _ := crypto.GenerateKeyPair()
		ini := crypto.NewInitiator(noise, eph, []byte(wire.ConnHeader))
		hello, _ := proto.Marshal(&waproto.HandshakeMessage{ClientHello: &waproto.HandshakeMessage_ClientHello{Ephemeral: eph.Pub[:]}})
		cEnd.WriteFrame(hello)

		// Server: read ClientHello, send ServerHello.
		t0 := time.Now()
		hs, err := wire.AcceptHandshake(ctx, sEnd, wire.ServerHandshakeConfig{})
		if err != nil {
			b.Fatal(err)
		}
		if err := hs.Respond(chain, s.static); err != nil {
			b.Fatal(err)
		}
		server += time.Since(t0)

		// Client: check ServerHello and the chain, send ClientFinish.
		f, _ := cEnd.ReadFrame()
		var msg waproto.HandshakeMessage
		if err := proto.Unmarshal(f, &msg); err != nil {
			b.Fatal(err)
		}
		sh := msg.GetServerHello()
		static, certs, err := ini.ReadServerHello(sh.GetEphemeral(), sh.GetStatic(), sh.GetPayload())
		if err != nil {
			b.Fatal(err)
		}
		if err := crypto.VerifyCertChain(certs, root[:], static[:], time.Now()); err != nil {
			b.Fatal(err)
		}
		sct, pct, err := ini.WriteClientFinish(cpBytes)
		if err != nil {
			b.Fatal(err)
		}
		finish, _ := proto.Marshal(&waproto.HandshakeMessage{ClientFinish: &waproto.HandshakeMessage_ClientFinish{Static: sct, Payload: pct}})
		cEnd.WriteFrame(finish)

		// Server: read ClientFinish, parse the payload.
		t1 := time.Now()
		res, err := hs.Finish(ctx)
		if err != nil {
			b.Fatal(err)
		}
		var got waproto.ClientPayload
		if err := proto.Unmarshal(res.ClientPayload, &got); err != nil || got.GetUsername() != 15550000001 {
			b.Fatal("payload", err)
		}
		server += time.Since(t1)
	}
	perOp := float64(server.Nanoseconds()) / float64(b.N)
	b.ReportMetric(perOp/1e3, "server-µs/op")
	b.ReportMetric(1e9/perOp, "server-handshakes/s")
}
