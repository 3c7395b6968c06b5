//go:build linux

package wire

import (
	"testing"
	"time"
)

// requirePolled fails unless c is read when its socket is ready.
func requirePolled(t *testing.T, c *Conn) {
	t.Helper()
	if c.pc == nil || c.w.Load() == nil {
		t.Fatal("the connection is not watched through epoll")
	}
}

// waitArmed waits until c's watch has drained what there was and waits
// for its socket.
func waitArmed(t *testing.T, c *Conn) {
	t.Helper()
	deadline := time.Now().Add(watchDeadline)
	for c.w.Load().state.Load() != watchIdle {
		if time.Now().After(deadline) {
			t.Fatal("the watch never went back to waiting for its socket")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWatchedIdleConnHoldsNoReadBuffer: a watched connection that has read
// all it was sent, a frame larger than the lent buffer among it, keeps no
// read buffer while it waits for its socket. (That reading goes on after
// the buffer is released, other tests show: one byte at a time, many
// connections.)
func TestWatchedIdleConnHoldsNoReadBuffer(t *testing.T) {
	s := startWatchServer(t, false)
	c, sc := s.dial(t, DialOptions{})
	recv, send := keys(t)
	w := watchT(NewTransport(c, nil, recv))
	requirePolled(t, c)
	const n = 7 // message(6) is 200 KiB
	for i := range n {
		writeWS(t, sc, send.frame(t, message(i)))
	}
	checkMessages(t, w.waitFrames(t, n), n)
	waitArmed(t, c)
	if in := &c.r.in; in.buf != nil || in.small != nil || in.lent != nil {
		t.Fatalf("an idle watched reader holds %d bytes (small %d, lent %v)", len(in.buf), len(in.small), in.lent != nil)
	}
}
