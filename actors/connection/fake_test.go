package connection

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wafleet/wafleet/wire/node"
)

var errFakeClosed = errors.New("fake session closed")

// fakeSession is a Session scripted by the test: it receives what the test
// pushes and records what the actor sends.
type fakeSession struct {
	in       chan []byte
	sent     chan node.Node
	closed   chan struct{}
	once     sync.Once
	failSend func(node.Node) error
}

func newFakeSession() *fakeSession {
	return &fakeSession{in: make(chan []byte, 16), sent: make(chan node.Node, 64), closed: make(chan struct{})}
}

// watchReceive is Session.Watch for the test's sessions: a goroutine hands
// what receive returns to onFrame until it fails, then the error to onEnd.
func watchReceive(receive func() ([]byte, error), onFrame func([]byte), onEnd func(error)) {
	go func() {
		for {
			b, err := receive()
			if err != nil {
				onEnd(err)
				return
			}
			onFrame(b)
		}
	}()
}

func (s *fakeSession) Watch(onFrame func([]byte), onEnd func(error)) {
	watchReceive(s.receive, onFrame, onEnd)
}

func (s *fakeSession) receive() ([]byte, error) {
	select {
	case b := <-s.in:
		return b, nil
	case <-s.closed:
		return nil, errFakeClosed
	}
}

func (s *fakeSession) Send(b []byte) error {
	select {
	case <-s.closed:
		return errFakeClosed
	default:
	}
	n, err := node.UnmarshalPayload(b)
	if err != nil {
		return err
	}
	if s.failSend != nil {
		if err := s.failSend(n); err != nil {
			return err
		}
	}
	select {
	case s.sent <- n:
		return nil
	case <-s.closed:
		return errFakeClosed
	}
}

func (s *fakeSession) Close() error {
	s.once.Do(func() { close(s.closed) })
	return nil
}

func (s *fakeSession) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

// push sends a stanza to the actor.
func (s *fakeSession) push(t *testing.T, n node.Node) {
	t.Helper()
	b, err := node.MarshalPayload(n)
	if err != nil {
		t.Fatal(err)
	}
	s.in <- b
}

// next returns the next stanza the actor sent.
func (s *fakeSession) next(t *testing.T, what string) node.Node {
	t.Helper()
	select {
	case n := <-s.sent:
		return n
	case <-time.After(waitTimeout):
		t.Fatalf("the actor sent no %s within %v", what, waitTimeout)
		return node.Node{}
	}
}

// fakeDialer hands out scripted results, one per dial.
type fakeDialer struct {
	calls   atomic.Int32
	results chan dialResult
	reqs    chan DialRequest
}

type dialResult struct {
	sess Session
	err  error
}

func newFakeDialer() *fakeDialer {
	return &fakeDialer{results: make(chan dialResult, 16), reqs: make(chan DialRequest, 16)}
}

func (d *fakeDialer) dial(ctx context.Context, req DialRequest) (Session, error) {
	d.calls.Add(1)
	d.reqs <- req
	select {
	case r := <-d.results:
		return r.sess, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// fakeLimiter counts the slots taken and given back. Every slot is wait
// away; with hold, Take first blocks until released (a slow round trip).
// Each Take signals waiting, when set.
type fakeLimiter struct {
	takes, cancels atomic.Int32
	wait           time.Duration
	hold           bool
	waiting        chan struct{}
	release        chan struct{}
}

func (l *fakeLimiter) Take(ctx context.Context) (time.Duration, func(), error) {
	l.takes.Add(1)
	if l.waiting != nil {
		l.waiting <- struct{}{}
	}
	if l.hold {
		select {
		case <-l.release:
		case <-ctx.Done():
			return 0, nil, ctx.Err()
		}
	}
	return l.wait, func() { l.cancels.Add(1) }, nil
}
