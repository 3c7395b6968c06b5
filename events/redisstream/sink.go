package redisstream

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wafleet/wafleet/events"
	wredis "github.com/wafleet/wafleet/store/redis"
)

// Options configures New.
type Options struct {
	// Prefix starts the key. Default "wafleet".
	Prefix string
	// Key of the stream. Default PREFIX:events ("wafleet:events").
	Key string
	// Instance is written into every entry. Required.
	Instance string
	// MaxLen caps the stream (XADD MAXLEN ~). Default 100000.
	MaxLen int64
	// Buffer is how many events may wait for Redis. Default 4096.
	Buffer int
	// Batch is how many events one pipeline carries at most. Default 256.
	Batch int
	// Timeout bounds each write. Default 2s.
	Timeout time.Duration
}

// Stats counts what a Sink did.
type Stats struct {
	Written uint64 // appended to the stream
	Dropped uint64 // refused because the buffer was full (Redis slow or down) or the sink closed
	Failed  uint64 // lost because the write to Redis failed
}

// Sink is an events.Publisher that appends every event to a Redis
// stream, with fields instance, account, kind, state and, when set, jid,
// error, attempt, delay_ms; time is RFC 3339. The QR content is never
// written (it holds the ADV secret). Publish never blocks: events wait in a
// buffer for one writer goroutine, and are dropped (counted) when it is
// full.
type Sink struct {
	c    goredis.UniversalClient
	key  string
	o    Options
	ch   chan events.Event
	stop chan struct{}
	done chan struct{}
	once sync.Once

	written, dropped, failed atomic.Uint64
}

var _ events.Publisher = (*Sink)(nil)

// New starts the sink's writer. Close it to flush and stop. Configuration
// errors wrap wredis.ErrConfig, as the other Redis constructors' do.
func New(c goredis.UniversalClient, o Options) (*Sink, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: nil client", wredis.ErrConfig)
	}
	key, err := wredis.EventsKey(o.Prefix)
	if err != nil {
		return nil, err
	}
	if o.Instance == "" {
		return nil, fmt.Errorf("%w: stream sink needs the instance id", wredis.ErrConfig)
	}
	if o.Key == "" {
		o.Key = key
	}
	if o.MaxLen <= 0 {
		o.MaxLen = 100000
	}
	if o.Buffer <= 0 {
		o.Buffer = 4096
	}
	if o.Batch <= 0 {
		o.Batch = 256
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	s := &Sink{
		c: c, key: o.Key, o: o,
		ch: make(chan events.Event, o.Buffer), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go s.run()
	return s, nil
}

// Publish queues e without blocking.
func (s *Sink) Publish(e events.Event) {
	select {
	case <-s.stop:
		s.dropped.Add(1)
		return
	default:
	}
	select {
	case s.ch <- e:
	default:
		s.dropped.Add(1)
	}
}

// Stats returns the counters.
func (s *Sink) Stats() Stats {
	return Stats{Written: s.written.Load(), Dropped: s.dropped.Load(), Failed: s.failed.Load()}
}

// Close stops accepting events, writes those still buffered until ctx ends
// (the rest count as dropped), and waits for the writer. Idempotent.
func (s *Sink) Close(ctx context.Context) error {
	s.once.Do(func() { close(s.stop) })
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("redisstream: close: %w", ctx.Err())
	}
}

func (s *Sink) run() {
	defer close(s.done)
	batch := make([]events.Event, 0, s.o.Batch)
	for {
		select {
		case e := <-s.ch:
			s.write(s.fill(append(batch[:0], e)))
		case <-s.stop:
			// Flush what is buffered, then leave.
			for {
				batch = s.fill(batch[:0])
				if len(batch) == 0 {
					return
				}
				s.write(batch)
			}
		}
	}
}

// fill appends to batch the events already buffered, up to the batch size,
// without waiting for more.
func (s *Sink) fill(batch []events.Event) []events.Event {
	for len(batch) < s.o.Batch {
		select {
		case e := <-s.ch:
			batch = append(batch, e)
		default:
			return batch
		}
	}
	return batch
}

func (s *Sink) write(batch []events.Event) {
	ctx, cancel := context.WithTimeout(context.Background(), s.o.Timeout)
	defer cancel()
	pipe := s.c.Pipeline()
	for _, e := range batch {
		pipe.XAdd(ctx, &goredis.XAddArgs{Stream: s.key, MaxLen: s.o.MaxLen, Approx: true, Values: s.fields(e)})
	}
	cmds, _ := pipe.Exec(ctx)
	for _, c := range cmds {
		if c.Err() != nil {
			s.failed.Add(1)
		} else {
			s.written.Add(1)
		}
	}
	if len(cmds) < len(batch) {
		s.failed.Add(uint64(len(batch) - len(cmds)))
	}
}

func (s *Sink) fields(e events.Event) []any {
	t := e.Time
	if t.IsZero() {
		t = time.Now()
	}
	f := []any{
		"instance", s.o.Instance, "account", e.Account, "kind", string(e.Kind),
		"state", string(e.State), "time", t.UTC().Format(time.RFC3339Nano),
	}
	if e.JID != "" {
		f = append(f, "jid", e.JID)
	}
	if e.Error != "" {
		f = append(f, "error", e.Error)
	}
	if e.Alarm != "" {
		f = append(f, "alarm", string(e.Alarm))
	}
	if e.Attempt != 0 {
		f = append(f, "attempt", strconv.Itoa(e.Attempt))
	}
	if e.Delay != 0 {
		f = append(f, "delay_ms", strconv.FormatInt(e.Delay.Milliseconds(), 10))
	}
	return f
}
