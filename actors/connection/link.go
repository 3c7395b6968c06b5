package connection

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// link is one connection attempt: its generation, the context that cancels
// its goroutines, and once dialed its session and write queue. The dial
// and writer goroutines and the session's frame handlers hold only their
// link, the actor's PID, the root context and the generation.
type link struct {
	gen    uint64
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool
	sess    Session
	queue   []outFrame
	limit   int
	writing bool // a writer goroutine is running

	slot       *time.Timer // starts the dial at the limiter's slot
	cancelSlot func()      // gives the slot back (nil: it cannot be)
}

// outFrame is one serialized stanza waiting to be written. token, when not
// 0, asks the writer to report the outcome with a *written.
type outFrame struct {
	data  []byte
	token uint64
}

// newLink opens a link. Its context is not a child of the actor's: the
// actor closes every link it opens (endAttempt, also when it stops), and
// a child would keep a map of children allocated in the parent for the
// actor's whole life.
func newLink(gen uint64, limit int) *link {
	ctx, cancel := context.WithCancel(context.Background())
	return &link{gen: gen, ctx: ctx, cancel: cancel, limit: limit}
}

// deliver hands a dialed session to the link. It returns false, having
// closed the session, when the link was closed meanwhile: no session is ever
// left open by an attempt that nobody wants any more.
func (l *link) deliver(s Session) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = s.Close()
		return false
	}
	l.sess = s
	return true
}

// startAfter arranges for start to run once wait has passed: on a timer,
// so that no goroutine waits for the limiter's slot. It returns true, and
// arms nothing, when the slot is now: the caller starts at once. On a link
// closed already, nothing starts and the slot is given back.
func (l *link) startAfter(wait time.Duration, cancel func(), start func()) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		if cancel != nil {
			cancel()
		}
		return false
	case wait <= 0:
		return true
	}
	l.slot, l.cancelSlot = time.AfterFunc(wait, start), cancel
	return false
}

// close cancels the attempt, gives back a limiter slot whose time has not
// come, closes its session (ending its receiving and the writer) and
// returns the frames that were never taken by the writer. It is idempotent.
func (l *link) close() []outFrame {
	l.cancel()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	s, q := l.sess, l.queue
	l.queue = nil
	if l.slot != nil && l.slot.Stop() && l.cancelSlot != nil {
		l.cancelSlot()
	}
	l.slot, l.cancelSlot = nil, nil
	l.mu.Unlock()
	if s != nil {
		_ = s.Close()
	}
	return q
}

// send queues a frame and starts a writer if none is running. It fails with
// ErrWriteQueueFull when the queue is at its limit and reports false when the
// link is closed.
func (l *link) send(f outFrame, self *actor.PID, root *actor.RootContext) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.sess == nil {
		return false, nil
	}
	if len(l.queue) >= l.limit {
		return false, ErrWriteQueueFull
	}
	l.queue = append(l.queue, f)
	if !l.writing {
		l.writing = true
		go l.writeLoop(self, root)
	}
	return true, nil
}

// writeLoop is the one writer of the link: it runs only while frames wait,
// so an idle connection has no writer goroutine. Each frame write is bounded
// by the session's write deadline (wire.DialOptions.WriteTimeout).
func (l *link) writeLoop(self *actor.PID, root *actor.RootContext) {
	for {
		l.mu.Lock()
		if l.closed || len(l.queue) == 0 {
			l.writing = false
			l.mu.Unlock()
			return
		}
		f := l.queue[0]
		l.queue[0] = outFrame{}
		l.queue = l.queue[1:]
		if len(l.queue) == 0 {
			l.queue = nil // let the backing array go
		}
		s := l.sess
		l.mu.Unlock()

		err := s.Send(f.data)
		if err != nil {
			err = fmt.Errorf("write: %w", err)
		}
		if f.token != 0 || err != nil {
			root.Send(self, &written{gen: l.gen, token: f.token, err: err})
		}
		if err != nil {
			l.mu.Lock()
			l.writing = false
			l.mu.Unlock()
			return
		}
	}
}

// receive has the session hand each frame it receives to the actor,
// copied out of the session's read buffer, and then the error that ends
// it. The actor decodes the frames (onFrame): what hands them over only
// copies and sends, on goroutines that wire.Transport.Watch shares between
// all connections (one per connection elsewhere than on Linux), so an
// idle connection has no goroutine, nor stack, of its own.
//
// Once the link's context ends (its attempt is over) nothing is sent: the
// actor drops what an ended attempt sends anyway, and it may be stopped;
// a PID whose actor stopped resolves by name to the next actor spawned
// under it, which protoactor registers before its mailbox can take a
// message (a message then is a nil-dispatcher panic).
func (l *link) receive(s Session, self *actor.PID, root *actor.RootContext) {
	gen, ctx := l.gen, l.ctx
	s.Watch(func(b []byte) {
		if ctx.Err() == nil {
			root.Send(self, &frameIn{gen: gen, data: bytes.Clone(b)})
		}
	}, func(err error) {
		if ctx.Err() == nil {
			root.Send(self, &readFailed{gen: gen, err: fmt.Errorf("read: %w", err)})
		}
	})
}
