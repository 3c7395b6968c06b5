package fleet

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

// ErrNoLease: the account may not connect here now: this instance does not
// hold its lease, the lease is past its local deadline, or its guard
// interval (Lease.NotBefore) has not ended.
var ErrNoLease = errors.New("fleet: no usable lease for the account")

// Sockets registers this instance's connections by account — sessions and
// dials in progress — and admits one only while the account's lease is
// usable. Closing the accounts' connections is the first thing done when
// a lease ends (its local deadline passed, Redis refused the renewal, a
// hand-over, shutdown), without waiting for any actor: Close returns once
// every socket is closed. Safe for concurrent use.
type Sockets struct {
	leases Leases

	mu   sync.Mutex
	open map[string]map[*tracked]struct{}
}

type tracked struct{ c io.Closer }

// NewSockets returns the register of the connections under the leases l.
func NewSockets(l Leases) *Sockets {
	return &Sockets{leases: l, open: map[string]map[*tracked]struct{}{}}
}

// Track registers c, a connection of acct or a dial in progress (then c
// cancels it). Unless the account's lease is usable, c is closed at once
// and Track fails with ErrNoLease. Call untrack when c is closed.
//
// The lease is checked under the same lock Close takes after the lease was
// dropped, so a connection is either refused here or closed by Close.
func (s *Sockets) Track(acct string, c io.Closer) (untrack func(), err error) {
	s.mu.Lock()
	if !s.leases.Usable(acct) {
		s.mu.Unlock()
		_ = c.Close()
		return nil, fmt.Errorf("%w %q", ErrNoLease, acct)
	}
	e := &tracked{c}
	if s.open[acct] == nil {
		s.open[acct] = map[*tracked]struct{}{}
	}
	s.open[acct][e] = struct{}{}
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.open[acct], e)
		if len(s.open[acct]) == 0 {
			delete(s.open, acct)
		}
		s.mu.Unlock()
	}, nil
}

// Close closes every connection of accounts, all in parallel, and returns
// once they are closed. Drop (or expire) the leases first, so that no new
// connection is admitted meanwhile.
func (s *Sockets) Close(accounts ...string) {
	var cs []io.Closer
	s.mu.Lock()
	for _, a := range accounts {
		for e := range s.open[a] {
			cs = append(cs, e.c)
		}
		delete(s.open, a)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() { _ = c.Close() })
	}
	wg.Wait()
}
