package connection

import (
	"context"
	"sync"
)

// storeQueue runs the actor's store calls one at a time, in the order the
// actor asked for them, off the actor's goroutine. The actor is the only
// writer of its account's device: nothing else (not the pairing child)
// calls the store for it, so an undo queued after a save always runs after
// it, and a wipe queued after an attempt ended runs after that attempt's
// last write. Every incarnation of an account's actor shares its queue, so
// the calls an incarnation left running finish before the next one's. A
// queue with jobs waits its turn for one of the instance's store workers
// (storeWorkers).
type storeQueue struct {
	calls *StoreCalls // may be nil

	mu   sync.Mutex
	jobs []func()
	busy bool // queued for a worker, or being worked
}

// run queues job and hands the queue to a worker if none has it.
func (q *storeQueue) run(job func()) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.jobs = append(q.jobs, job)
	if !q.busy {
		q.busy = true
		q.calls.begin()
		storeWorkers.add(q)
	}
}

// work runs the queue's jobs until it is empty.
func (q *storeQueue) work() {
	for {
		q.mu.Lock()
		job, ok := popFront(&q.jobs)
		if !ok {
			q.busy = false
			q.mu.Unlock()
			q.calls.end()
			return
		}
		q.mu.Unlock()
		job()
	}
}

// maxStoreWorkers bounds the goroutines running store calls at once, for all
// the accounts of the process. Each call's timeout starts when it runs, so
// when the store hangs, calls queued behind the workers wait for the
// workers' timeouts first: at 1,024 workers and a 2 s timeout, 20,000
// accounts' calls drain in about 40 s, where a goroutine each failed
// together after 2 s; the descriptors kept stay under 0.5 MiB.
const maxStoreWorkers = 1024

// storeWorkers runs the queues that have jobs, on at most maxStoreWorkers
// goroutines started while queues wait (none when all are idle). A cold
// start queues every account's device load at once: a goroutine each would
// leave the runtime one goroutine descriptor per account for good (it keeps
// every descriptor it ever allocated, for reuse). A queue is in the list at
// most once (storeQueue.busy), so its jobs still run one at a time, in
// order.
var storeWorkers workers

type workers struct {
	mu      sync.Mutex
	ready   []*storeQueue
	running int
}

func (w *workers) add(q *storeQueue) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ready = append(w.ready, q)
	if w.running < maxStoreWorkers {
		w.running++
		go w.loop()
	}
}

func (w *workers) loop() {
	for {
		w.mu.Lock()
		q, ok := popFront(&w.ready)
		if !ok {
			w.running--
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		q.work()
	}
}

// popFront takes the first element of *s, clearing its slot; on an empty
// *s it reports false and lets the backing array go. The caller holds the
// lock of *s.
func popFront[T any](s *[]T) (T, bool) {
	var zero T
	if len(*s) == 0 {
		*s = nil
		return zero, false
	}
	v := (*s)[0]
	(*s)[0] = zero
	*s = (*s)[1:]
	return v, true
}

// StoreCalls counts the accounts whose store calls are under way, so that
// the process waits for them before it closes the store: they outlive a
// stopped actor by design (a save once begun completes, and the undo of a
// pairing runs after it). The zero value is ready; a nil *StoreCalls
// counts nothing.
type StoreCalls struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to 0; made by a waiter
}

func (s *StoreCalls) begin() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.n++
	s.mu.Unlock()
}

func (s *StoreCalls) end() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.n--
	if s.n == 0 && s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
	s.mu.Unlock()
}

// Wait returns when no store call is under way, or ctx's error when it
// ends first.
func (s *StoreCalls) Wait(ctx context.Context) error {
	s.mu.Lock()
	if s.n == 0 {
		s.mu.Unlock()
		return nil
	}
	if s.idle == nil {
		s.idle = make(chan struct{})
	}
	idle := s.idle
	s.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
