//go:build linux

package wire

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pollConn is the TCP socket at the bottom of a client Conn: under TLS and
// under a proxy's tunnel, when there are. Until its Conn is watched, Read
// waits for bytes as net.Conn's does (the dial and the handshake read this
// way); once watched, Read returns only what is there, errWouldBlock when
// nothing is, and never parks its goroutine.
type pollConn struct {
	net.Conn
	raw      syscall.RawConn
	nonblock bool // set by pollWatch before the first read in readiness mode

	// One read in readiness mode: its buffer and outcome, and the function
	// RawConn.Read runs, made once (a closure per read would be an
	// allocation per read). Only one goroutine reads at a time.
	p      []byte
	n      int
	errno  error
	readFn func(fd uintptr) bool
}

// newPollConn wraps nc when it is a socket whose descriptor the poller can
// watch; else it returns nil.
func newPollConn(nc net.Conn) *pollConn {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	c := &pollConn{Conn: nc, raw: raw}
	c.readFn = c.readFd
	return c
}

// readFd reads into c.p from the socket fd, which the runtime's poller
// keeps non-blocking: the read returns at once, and returning true tells
// RawConn not to wait. It never blocks, so it is a raw system call: one
// that tells the scheduler nothing (entering a system call wakes the
// runtime's monitor thread when it sleeps, a futex call each).
func (c *pollConn) readFd(fd uintptr) bool {
	var p unsafe.Pointer
	if len(c.p) > 0 {
		p = unsafe.Pointer(&c.p[0])
	}
	for {
		n, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(p), uintptr(len(c.p)))
		if e == unix.EINTR {
			continue
		}
		c.n, c.errno = int(n), nil
		if e != 0 {
			c.n, c.errno = 0, e
		}
		return true
	}
}

func (c *pollConn) Read(p []byte) (int, error) {
	if !c.nonblock || len(p) == 0 {
		return c.Conn.Read(p)
	}
	c.p = p
	err := c.raw.Read(c.readFn)
	n, errno := c.n, c.errno
	c.p = nil
	switch {
	case err != nil: // closed
		return 0, err
	case errno == unix.EAGAIN:
		return 0, errWouldBlock
	case errno != nil:
		return 0, &net.OpError{Op: "read", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", errno)}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// States of a watch. One goroutine at a time drains a watch (running),
// which keeps each connection's frames in order; a wake-up that comes
// while it drains makes it drain once more (again) before it goes back to
// waiting for the socket (idle).
const (
	watchIdle    int32 = iota // waiting for the socket
	watchRunning              // a pooled goroutine drains it
	watchAgain                // running, and woken again meanwhile
	watchDone                 // onEnd was called
)

// watch is one transport read when its socket is ready.
type watch struct {
	t       *Transport
	c       *Conn
	onFrame func([]byte)
	onEnd   func(error)
	id      uint64 // its key in the poller's watches and its epoll data
	state   atomic.Int32
}

// pollWatch starts reading c, t's connection, when its socket is ready.
// It reports false, having changed nothing, when the socket cannot be
// watched: the caller reads it with a goroutine.
func pollWatch(t *Transport, c *Conn, onFrame func([]byte), onEnd func(error)) bool {
	p := thePoller()
	if p == nil {
		return false
	}
	w := &watch{t: t, c: c, onFrame: onFrame, onEnd: onEnd}
	// Running from the start: the first drain takes what the dial and the
	// handshake left in the buffers above the socket (TLS records, a
	// proxy's bytes, WebSocket frames), which no readiness would announce.
	w.state.Store(watchRunning)
	c.pc.nonblock = true
	if !p.add(w) {
		c.pc.nonblock = false
		return false
	}
	c.w.Store(w)
	submit(w)
	return true
}

// wakeWatch makes a watched Conn's reader see that it was closed.
func (c *Conn) wakeWatch() {
	if w := c.w.Load(); w != nil {
		w.wake()
	}
}

// wake asks for the watch to be drained: by a pooled goroutine if it is
// idle, or once more by the one draining it.
func (w *watch) wake() {
	for {
		switch s := w.state.Load(); s {
		case watchIdle:
			if w.state.CompareAndSwap(s, watchRunning) {
				submit(w)
				return
			}
		case watchRunning:
			if w.state.CompareAndSwap(s, watchAgain) {
				return
			}
		default: // woken already, or done
			return
		}
	}
}

// run drains the watch until nothing is there to read, and again if it
// was woken meanwhile: the socket is edge-triggered, so bytes that come
// after the read that found none announce themselves, during the drain
// (again) or after it (idle).
func (w *watch) run(p *poller) {
	for {
		if !w.drain() {
			p.remove(w)
			return
		}
		if w.state.CompareAndSwap(watchRunning, watchIdle) {
			return
		}
		w.state.Store(watchRunning) // woken meanwhile
	}
}

// drain hands over every frame that is there to read without waiting. It
// reports false once receiving has ended (onEnd was called).
func (w *watch) drain() bool {
	for {
		pt, err := w.t.Receive()
		if errors.Is(err, errWouldBlock) {
			return true
		}
		if err != nil {
			w.state.Store(watchDone)
			w.onEnd(err)
			return false
		}
		w.onFrame(pt)
	}
}

// poller watches the sockets of every watched Conn with one epoll
// instance, and one goroutine waiting for it while any is watched. Each
// socket is edge-triggered (EPOLLET: an event when bytes arrive, not
// while they wait), and a watch is drained until a read finds nothing, so
// no event is lost and none needs re-arming; an event hands its watch to
// the pool unless it is being drained already (then it is drained once
// more). The runtime's own poller watches the same descriptors; the two
// do not interfere, as a watched socket is never read by a goroutine that
// parks.
//
// The epoll instance is itself watched by the runtime's poller (an epoll
// descriptor is readable while events wait): the poll goroutine collects
// events without waiting (epoll_wait with a zero timeout) and parks like
// any goroutine waiting for a socket when there are none, rather than
// block a thread in epoll_wait, which would cost a thread hand-off at
// every wake-up.
type poller struct {
	epfd  int
	ep    syscall.RawConn // epfd, as the runtime's poller sees it
	evfd  int             // an eventfd that wakes the poll goroutine (epoll data 0)
	mu    sync.Mutex
	all   map[uint64]*watch
	next  uint64
	alive bool // the poll goroutine runs
	file  *os.File
}

var (
	pollerOnce sync.Once
	pollerP    *poller
)

// thePoller returns the process's poller, nil if epoll is not available.
func thePoller() *poller {
	pollerOnce.Do(func() {
		epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			return
		}
		evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err != nil {
			unix.Close(epfd)
			return
		}
		if unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &unix.EpollEvent{Events: unix.EPOLLIN}) != nil || unix.SetNonblock(epfd, true) != nil {
			unix.Close(evfd)
			unix.Close(epfd)
			return
		}
		// Non-blocking, so the runtime's poller takes it; the File is
		// never closed (pollerP keeps it from its finalizer).
		f := os.NewFile(uintptr(epfd), "wire-epoll")
		ep, err := f.SyscallConn()
		if err != nil {
			f.Close()
			unix.Close(evfd)
			return
		}
		pollerP = &poller{epfd: epfd, ep: ep, evfd: evfd, all: map[uint64]*watch{}, file: f}
	})
	return pollerP
}

// ctl adds pc's socket to the epoll set, its events carrying id. Control
// keeps the descriptor open for the call: it never reaches a number
// reused by another socket.
func (p *poller) ctl(pc *pollConn, id uint64) error {
	ev := unix.EpollEvent{
		Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET,
		Fd:     int32(uint32(id)),
		Pad:    int32(uint32(id >> 32)),
	}
	var err error
	if cerr := pc.raw.Control(func(fd uintptr) {
		err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	}); cerr != nil {
		return cerr
	}
	return err
}

// add registers w and its socket.
func (p *poller) add(w *watch) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next++
	w.id = p.next
	if p.ctl(w.c.pc, w.id) != nil {
		return false
	}
	p.all[w.id] = w
	if !p.alive {
		p.alive = true
		go p.poll()
	}
	return true
}

// remove forgets a watch whose reading ended. Its socket is closed (the
// transport closes its connection on every error), which takes it out of
// the epoll set; an event already taken for it finds no watch. The last
// one stops the poll goroutine.
func (p *poller) remove(w *watch) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.all, w.id)
	if len(p.all) == 0 {
		one := [8]byte{1}
		unix.Write(p.evfd, one[:]) // cannot fail: the counter is far from its limit
	}
}

// poll waits for readiness and wakes the watches that are ready. It
// returns once no watch is left.
func (p *poller) poll() {
	events := make([]unix.EpollEvent, 128)
	var werr error
	err := p.ep.Read(func(fd uintptr) bool {
		for {
			n, err := epollWaitNow(int(fd), events)
			switch {
			case err == unix.EINTR:
				continue
			case err != nil:
				werr = err
				return true
			case n > 0 && p.dispatch(events[:n]):
				return true // no watch left
			case n < len(events):
				// All taken: park until the runtime sees the epoll
				// descriptor readable again, which an event added
				// since it last looked makes it.
				return false
			}
		}
	})
	if err == nil {
		err = werr
	}
	if err != nil {
		panic(fmt.Sprintf("wire: epoll_wait: %v", err)) // a bad descriptor or buffer: a bug here
	}
}

// epollWaitNow takes the events waiting in epfd, without waiting for
// any: a raw system call, as in readFd. (epoll_pwait: epoll_wait is not on
// every architecture.)
func epollWaitNow(epfd int, events []unix.EpollEvent) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// dispatch wakes the watches of events. It reports true, having marked
// the poll goroutine gone, when no watch is left.
func (p *poller) dispatch(events []unix.EpollEvent) bool {
	var ready [16]*watch
	woken := ready[:0]
	p.mu.Lock()
	for _, ev := range events {
		id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
		if id == 0 {
			var b [8]byte
			unix.Read(p.evfd, b[:]) // resets the counter
			continue
		}
		if w := p.all[id]; w != nil {
			woken = append(woken, w)
		}
	}
	if len(p.all) == 0 {
		p.alive = false
		p.mu.Unlock()
		return true
	}
	p.mu.Unlock()
	for _, w := range woken {
		w.wake()
	}
	return false
}

// The pool of goroutines that drain watches: at most maxDrainers at once,
// started when watches wait and ending when none does.
var drainers struct {
	mu      sync.Mutex
	queue   []*watch
	head    int
	running int
}

var maxDrainers = max(4, 2*runtime.GOMAXPROCS(0))

// submit queues a watch to be drained.
func submit(w *watch) {
	d := &drainers
	d.mu.Lock()
	d.queue = append(d.queue, w)
	start := d.running < maxDrainers
	if start {
		d.running++
	}
	d.mu.Unlock()
	if start {
		go drainQueued()
	}
}

// drainQueued drains queued watches until the queue is empty.
func drainQueued() {
	d := &drainers
	p := thePoller()
	for {
		d.mu.Lock()
		if d.head == len(d.queue) {
			d.queue, d.head = d.queue[:0], 0
			d.running--
			d.mu.Unlock()
			return
		}
		w := d.queue[d.head]
		d.queue[d.head] = nil
		d.head++
		d.mu.Unlock()
		w.run(p)
	}
}
