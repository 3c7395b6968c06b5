package events

import (
	"sync"
	"sync/atomic"
)

// Bus fans events out to sinks and subscribers.
//
// Sinks are called synchronously, in order, inside Publish: they must be
// fast and never block (the status board is one). Subscribers receive
// events on a buffered channel; a subscriber that falls behind loses events
// (counted by Dropped) instead of slowing the publisher down.
type Bus struct {
	mu      sync.RWMutex
	sinks   []Publisher
	subs    map[*Subscription]struct{}
	dropped atomic.Uint64
}

// NewBus returns a Bus that delivers to sinks.
func NewBus(sinks ...Publisher) *Bus {
	return &Bus{sinks: sinks, subs: make(map[*Subscription]struct{})}
}

// Subscription is one subscriber's channel of events.
type Subscription struct {
	bus  *Bus
	ch   chan Event
	once sync.Once
}

// C returns the channel on which events arrive. It is closed by Close.
func (s *Subscription) C() <-chan Event { return s.ch }

// Close ends the subscription and closes its channel. It is idempotent.
func (s *Subscription) Close() {
	s.once.Do(func() {
		s.bus.mu.Lock()
		delete(s.bus.subs, s)
		close(s.ch)
		s.bus.mu.Unlock()
	})
}

// Subscribe returns a subscription whose channel buffers up to buffer events.
func (b *Bus) Subscribe(buffer int) *Subscription {
	s := &Subscription{bus: b, ch: make(chan Event, buffer)}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

// Publish delivers e to every sink, then offers it to every subscriber.
func (b *Bus) Publish(e Event) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, sink := range b.sinks {
		sink.Publish(e)
	}
	for s := range b.subs {
		select {
		case s.ch <- e:
		default:
			b.dropped.Add(1)
		}
	}
}

// Dropped returns how many events subscribers have missed by being slow.
func (b *Bus) Dropped() uint64 { return b.dropped.Load() }
