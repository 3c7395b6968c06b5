package api

import (
	"errors"
	"net"
	"net/http"
	"sync"
)

// Why a stream slot is refused.
var (
	errStreamsFull   = errors.New("too many event streams")
	errClientStreams = errors.New("too many event streams from this address")
)

// streamSlots hands out the slots of GET /api/events: at most total
// streams at once, of which the last reserved go only to the dashboard's
// streams, and at most perClient of the other streams per client address.
// The dashboard's streams have no per-client cap: on a loopback API every
// local program shares the dashboard's address, and behind a proxy every
// operator does.
type streamSlots struct {
	total, reserved, perClient int

	mu       sync.Mutex
	open     int            // every open stream
	byClient map[string]int // open streams that are not the dashboard's, by address
}

func newStreamSlots(total, reserved, perClient int) *streamSlots {
	return &streamSlots{total: total, reserved: reserved, perClient: perClient, byClient: map[string]int{}}
}

// acquire takes a slot for a stream from client (an address); dashboard
// says it is the dashboard's. It returns the function that gives the slot
// back, or errStreamsFull or errClientStreams.
func (s *streamSlots) acquire(client string, dashboard bool) (release func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	limit := s.total
	if !dashboard {
		limit -= s.reserved
	}
	switch {
	case s.open >= limit:
		return nil, errStreamsFull
	case !dashboard && s.byClient[client] >= s.perClient:
		return nil, errClientStreams
	}
	s.open++
	if !dashboard {
		s.byClient[client]++
	}
	return func() { s.release(client, dashboard) }, nil
}

func (s *streamSlots) release(client string, dashboard bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.open--
	if dashboard {
		return
	}
	if s.byClient[client]--; s.byClient[client] == 0 {
		delete(s.byClient, client)
	}
}

// clientAddress is the IP address a request came from (the whole
// RemoteAddr when it has no port).
func clientAddress(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}
