package wire

// errWouldBlock is what a socket read in readiness mode returns when no
// byte waits. It is a net.Error whose Temporary and Timeout are true, so
// that crypto/tls keeps its state across it (it poisons a connection only
// on an error that is not Temporary) and the layers of this package pass it
// up without failing: a frame not all there is read again, from where it
// stopped, when the socket is ready.
var errWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "wire: no data ready" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// Watch hands every frame the transport receives, decrypted, to onFrame, in
// order, and then the error that ends receiving (what Receive would have
// returned) to onEnd, once; it returns at once. The slice onFrame gets is
// valid only until it returns. Receive must not be called after Watch.
// onFrame and onEnd must not block for long: they run on goroutines
// shared by many connections.
//
// On Linux, a client Conn over a TCP socket is read when its socket is
// ready (epoll), by a small pool of goroutines shared by all connections:
// an idle connection has no goroutine of its own, nor its stack. A Conn's
// Close ends its watch as it ends a blocked Receive: onEnd gets ErrClosed.
// Elsewhere, and for other frame connections, one goroutine per transport
// calls Receive until it fails.
func (t *Transport) Watch(onFrame func([]byte), onEnd func(error)) {
	if c, ok := t.conn.(*Conn); ok && c.pc != nil && pollWatch(t, c, onFrame, onEnd) {
		return
	}
	go func() {
		for {
			pt, err := t.Receive()
			if err != nil {
				onEnd(err)
				return
			}
			onFrame(pt)
		}
	}()
}
