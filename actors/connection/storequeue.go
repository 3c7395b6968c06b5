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
// goroutine runs only while jobs wait.
type storeQueue struct {
	calls *StoreCalls // may be nil

	mu   sync.Mutex
	jobs []func()
	busy bool
}

// run queues job and starts the worker if none is running.
func (q *storeQueue) run(job func()) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.jobs = append(q.jobs, job)
	if !q.busy {
		q.busy = true
		q.calls.begin()
		go q.work()
	}
}

func (q *storeQueue) work() {
	for {
		q.mu.Lock()
		if len(q.jobs) == 0 {
			q.busy = false
			q.jobs = nil // let the backing array go
			q.mu.Unlock()
			q.calls.end()
			return
		}
		job := q.jobs[0]
		q.jobs[0] = nil
		q.jobs = q.jobs[1:]
		q.mu.Unlock()
		job()
	}
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
