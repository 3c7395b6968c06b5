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
