package emulator

import (
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/wafleet/wafleet/wire"
	"github.com/wafleet/wafleet/wire/payload"
)

// lateCloseConn is the server's end of a pipe whose reader learns that the
// client closed only when wake is closed: a reader a loaded machine has not
// scheduled yet. ClientClosed tells the truth at once, as the kernel's
// socket state does for TCP.
type lateCloseConn struct {
	*pipeConn
	wake chan struct{}
}

func (c *lateCloseConn) ReadFrame() ([]byte, error) {
	select {
	case b := <-c.in:
		return b, nil
	case <-c.wake:
		return nil, wire.ErrClosed
	}
}

func (c *lateCloseConn) ClientClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

func TestLoginAfterTheClientClosedIsNotADouble(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newBubbleServer(t, Options{})
		d := addPipeDevice(t, s)
		a, b := newPipe()
		late := &lateCloseConn{pipeConn: b, wake: make(chan struct{})}
		var wakeOnce sync.Once
		wake := func() { wakeOnce.Do(func() { close(late.wake) }) }
		defer wake() // also when the test fails, or the bubble never empties
		first := loginOver(t, s, d, clientPolicy{ack: true, pings: true}, payload.Version{}, a, late)
		synctest.Wait()

		// The client closes its connection, then logs in again before the
		// server's reader of the first one has run.
		first.tr.Close()
		login(t, s, d, clientPolicy{ack: true, pings: true}, payload.Version{})
		synctest.Wait()
		if got := s.Stats().MaxConnectionsPerDevice; got != 1 {
			t.Fatalf("max_connections_per_device = %d after a login that followed the client's close, want 1", got)
		}
		wake()

		// A connection the client still holds is a double.
		login(t, s, d, clientPolicy{ack: true, pings: true}, payload.Version{})
		synctest.Wait()
		if got := s.Stats().MaxConnectionsPerDevice; got != 2 {
			t.Fatalf("max_connections_per_device = %d with the client's previous connection open, want 2", got)
		}
	})
}

func TestPeerClosedReadsTheSocketState(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	if peerClosed(server) {
		t.Fatal("an open connection reads as closed by its peer")
	}
	// This side closing counts too, at once.
	other, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	mine, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	mine.Close()
	if !peerClosed(mine) {
		t.Fatal("a connection this side closed reads as open")
	}
	client.Close()
	deadline := time.Now().Add(time.Minute) // the FIN is local: this is a bound, not an expectation
	for !peerClosed(server) {
		if time.Now().After(deadline) {
			t.Fatal("the peer's close never showed in the socket state")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
