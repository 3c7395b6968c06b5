package connection

import "sync"

// storeQueue runs the actor's store calls one at a time, in the order the
// actor asked for them, off the actor's goroutine. The actor is the only
// writer of its account's device: nothing else (not the pairing child)
// calls the store for it, so an undo queued after a save always runs after
// it, and a wipe queued after an attempt ended runs after that attempt's
// last write. A goroutine runs only while jobs wait.
type storeQueue struct {
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
			return
		}
		job := q.jobs[0]
		q.jobs[0] = nil
		q.jobs = q.jobs[1:]
		q.mu.Unlock()
		job()
	}
}
