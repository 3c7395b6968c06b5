package store

import (
	"sync"

	bolt "go.etcd.io/bbolt"
)

// Group commit of the writes that come per message (ApplySignal, with its
// events, Outbox.Append and SendLog.ClaimSend): calls made at the same
// time by many accounts share one bbolt transaction, hence one fsync,
// where each would otherwise pay its own (bbolt has one writer at a time, so they
// would also queue for it).
//
// Unlike bolt.DB.Batch there is no timer: a call made when none is under
// way commits at once, alone and on its own goroutine, so a lone
// account's message waits for no one; the calls made while a transaction
// commits wait for it, then share the next one (at most maxGroupCommit
// each). A call returns only once its transaction is committed. A call
// whose function fails rolls the shared transaction back and gets its
// error, having written nothing; the others are committed again without
// it. So a function may run more than once,
// and must reset whatever it reports at each run (as with bolt.DB.Batch).
//
// The order of calls is kept: they run in the order they were made, and
// an account's calls are made one at a time (its actor's store queue), so
// its changes are written in order.
type groupCommit struct {
	mu      sync.Mutex
	pending []*commitCall
	running bool // a goroutine commits: the pending calls wait for it
}

// maxGroupCommit bounds the calls of one transaction, hence the memory a
// transaction holds (a call's changes are at most MaxSignalApplyLen).
const maxGroupCommit = 128

type commitCall struct {
	db   *bolt.DB
	fn   func(*bolt.Tx) error
	done chan error
}

// update runs fn in a write transaction of db, shared with the calls made
// meanwhile, and returns once it is committed: fn's error, or the
// commit's. The caller holds the store's shared lock, so that db is the
// same for every call pending (Reseal and Close take the lock
// exclusively).
//
// A call made when none is under way commits on its own goroutine, at
// once; the calls made meanwhile are committed after it by a goroutine
// started then, which stops when none is left.
func (g *groupCommit) update(db *bolt.DB, fn func(*bolt.Tx) error) error {
	c := &commitCall{db: db, fn: fn, done: make(chan error, 1)}
	g.mu.Lock()
	g.pending = append(g.pending, c)
	if g.running {
		g.mu.Unlock()
		return <-c.done
	}
	g.running = true
	g.mu.Unlock()
	group, _ := g.next(nil) // c first: none was pending
	commitGroup(group)
	g.mu.Lock()
	if len(g.pending) > 0 {
		go g.run()
	} else {
		g.running = false
	}
	g.mu.Unlock()
	return <-c.done
}

// run commits the pending calls, a group at a time, until none is left.
func (g *groupCommit) run() {
	group := make([]*commitCall, 0, maxGroupCommit)
	for {
		var ok bool
		if group, ok = g.next(group[:0]); !ok {
			return
		}
		commitGroup(group)
		clear(group)
	}
}

// next moves the oldest pending calls (at most maxGroupCommit) into
// group; with none pending it reports false and clears running.
func (g *groupCommit) next(group []*commitCall) ([]*commitCall, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := min(len(g.pending), maxGroupCommit)
	if n == 0 {
		g.pending = nil
		g.running = false
		return group, false
	}
	group = append(group, g.pending[:n]...)
	rest := copy(g.pending, g.pending[n:])
	clear(g.pending[rest:])
	g.pending = g.pending[:rest]
	return group, true
}

// commitGroup runs the functions of group in one transaction; when one
// fails, it is answered with its error and the rest run again without it.
func commitGroup(group []*commitCall) {
	for len(group) > 0 {
		failed, ferr := -1, error(nil)
		err := group[0].db.Update(func(tx *bolt.Tx) error {
			for i, c := range group {
				if err := c.fn(tx); err != nil {
					failed, ferr = i, err
					return err
				}
			}
			return nil
		})
		if failed < 0 {
			for _, c := range group {
				c.done <- err // nil, or the commit's failure: nothing written
			}
			return
		}
		group[failed].done <- ferr
		group = append(group[:failed], group[failed+1:]...)
	}
}
