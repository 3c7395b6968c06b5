package emulator_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/waproto"
	"github.com/wafleet/wafleet/wire"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

func TestViolationsAfterLogin(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{})
	d := newTestDevice(t)
	pair(t, srv, d)
	tests := []struct {
		name string
		send func(c *testConn)
		want string // substring of the violation
	}{
		{name: "truncated node", send: func(c *testConn) { c.sendRaw([]byte{0x00, 0xF8, 0x05, 0x19}) }, want: "undecodable node"},
		{name: "empty payload", send: func(c *testConn) { c.sendRaw(nil) }, want: "undecodable node"},
		{name: "iq without id", send: func(c *testConn) {
			c.send(node.New("iq", node.JIDAttr("to", jid.ServerJID), node.StrAttr("type", "get"), node.StrAttr("xmlns", "w:p")))
		}, want: "iq without id"},
		{name: "iq with a bad type", send: func(c *testConn) { c.send(iq("x1", "push", "w:p")) }, want: `type "push"`},
		{name: "unsolicited result", send: func(c *testConn) { c.send(iq("x2", "result", "")) }, want: "never sent"},
		{name: "server-only tag", send: func(c *testConn) { c.send(node.New("success")) }, want: "<success>"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := login(t, srv, d)
			c.expectTag("success")
			tt.send(c)
			c.expectClosed()
			st := emutest.WaitStats(t, srv, waitTimeout, "the violation", func(s emulator.Stats) bool { return len(s.Violations) == i+1 })
			v := st.Violations[i]
			if !strings.Contains(v, tt.want) || !strings.Contains(v, d.jid.String()) {
				t.Fatalf("violation %q does not name %q and the device", v, tt.want)
			}
		})
	}
}

func TestViolationsBeforeLogin(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{})
	d := newTestDevice(t)

	badSig := &testDevice{noise: d.noise, identity: d.identity, spk: d.spk, regID: 1}
	cp := &waproto.ClientPayload{}
	if err := proto.Unmarshal(badSig.registrationPayload(t), cp); err != nil {
		t.Fatal(err)
	}
	cp.DevicePairingData.ESkeySig[5] ^= 1
	badSigPayload := marshal(t, cp)
	neither := marshal(t, &waproto.ClientPayload{Passive: proto.Bool(true)})

	tests := []struct {
		name string
		run  func(t *testing.T)
		want string
	}{
		{name: "bad signed prekey signature", want: "signed prekey signature", run: func(t *testing.T) {
			c, err := handshake(t, srv, d.noise, badSigPayload, 0)
			if err != nil {
				t.Fatal(err)
			}
			c.expectClosed()
		}},
		{name: "payload neither registration nor login", want: "neither", run: func(t *testing.T) {
			c, err := handshake(t, srv, d.noise, neither, 0)
			if err != nil {
				t.Fatal(err)
			}
			c.expectClosed()
		}},
		{name: "garbage client payload", want: "not a ClientPayload", run: func(t *testing.T) {
			c, err := handshake(t, srv, d.noise, []byte{0xFF, 0xFF, 0xFF}, 0)
			if err != nil {
				t.Fatal(err)
			}
			c.expectClosed()
		}},
		{name: "pair-device answered with an error", want: "pair-device answered", run: func(t *testing.T) {
			c := register(t, srv, d)
			n := c.expectTag("iq")
			id, _ := n.Attr("id")
			c.send(iq(id, "error", "", node.New("error", node.StrAttr("code", "500"))))
			c.expectClosed()
		}},
		{name: "bad connection header", want: "bad connection header", run: func(t *testing.T) {
			rawWS(t, srv, []byte("XA\x06\x03\x00\x00\x01\x00"))
		}},
		{name: "malformed client hello", want: "malformed handshake message", run: func(t *testing.T) {
			rawWS(t, srv, append([]byte(wire.ConnHeader), 0, 0, 3, 0x12, 0x01, 0x0a))
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(t)
			st := emutest.WaitStats(t, srv, waitTimeout, "the violation", func(s emulator.Stats) bool { return len(s.Violations) == i+1 })
			if v := st.Violations[i]; !strings.Contains(v, tt.want) {
				t.Fatalf("violation %q, want it to mention %q", v, tt.want)
			}
		})
	}
}

// rawWS sends one binary message on a bare WebSocket and waits for the
// server to close it.
func rawWS(t *testing.T, srv *emulator.Server, msg []byte) {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(srv.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteMessage(websocket.BinaryMessage, msg); err != nil {
		t.Fatal(err)
	}
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			return // closed by the server (the read has no deadline: the server must close)
		}
	}
}

// TestConcurrentHandshakes opens 500 connections (dialled at most 50 at a
// time, so the test does not depend on the kernel's SYN backlog) and then
// runs all 500 handshakes at once.
func TestConcurrentHandshakes(t *testing.T) {
	const n, dialers = 500, 50
	// Every connection is dialled before any handshake starts, so the first
	// ones wait for the last: on a loaded machine that can take longer than
	// any realistic handshake timeout. This test is about concurrency, not
	// timeouts, so both sides' limits only bound a hang.
	const patience = 5 * time.Minute
	srv := emutest.Start(t, emulator.Options{HandshakeTimeout: patience})
	d := newTestDevice(t)
	reg := d.registrationPayload(t)
	root := srv.RootPublicKey()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()

	var wg, dialled sync.WaitGroup
	dialled.Add(n)
	errs := make(chan error, n)
	sem := make(chan struct{}, dialers)
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			sem <- struct{}{}
			conn, err := wire.Dial(ctx, srv.URL(), wire.DialOptions{})
			<-sem
			dialled.Done()
			if err != nil {
				errs <- err
				return
			}
			<-start
			tr, err := wire.ClientHandshake(ctx, conn, wire.ClientHandshakeConfig{NoiseKey: d.noise, Payload: reg, RootKey: root[:], Timeout: patience})
			if err != nil {
				errs <- err
				return
			}
			defer tr.Close()
			pt, err := tr.Receive()
			if err != nil {
				errs <- err
				return
			}
			if nd, err := node.UnmarshalPayload(pt); err != nil || nd.Tag != "iq" {
				errs <- fmt.Errorf("first node %v: %v", nd, err)
			}
		})
	}
	dialled.Wait()
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("handshake: %v", err)
	}
	st := emutest.WaitStats(t, srv, waitTimeout, "all connections closed", func(s emulator.Stats) bool { return s.ActiveConnections == 0 })
	if st.Handshakes != n || st.Registrations != n || len(st.Violations) != 0 {
		t.Fatalf("stats %+v", st)
	}
}
