package journal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/store"
)

// Options configures New.
type Options struct {
	// Instance is written into every record. Required.
	Instance string
	// Buffer is how many events may wait for the outbox. Default 4096.
	Buffer int
	// Batch is how many events one append carries at most. Default 256.
	Batch int
	// Timeout bounds each append and read. Default 5s.
	Timeout time.Duration
	// Poll is how often the journal looks for entries appended by others
	// (a shared outbox). 0: only after its own appends.
	Poll time.Duration
	// Watch, when not nil, subscribes to the appends of others to a
	// shared outbox (the Redis store's WatchOutbox): the journal reads at
	// once when it signals, and Poll only catches what a lost
	// subscription missed. The subscription lasts until its ctx ends; a
	// failed one is tried again at every Poll.
	Watch func(ctx context.Context) (<-chan struct{}, error)
	// Logger reports failing appends and reads. Default slog.Default().
	Logger *slog.Logger
}

// Stats counts what a Journal did.
type Stats struct {
	Appended uint64 // events written to the outbox
	Dropped  uint64 // refused because the buffer was full (the store slow or down) or the journal closed
	Failed   uint64 // refused by the outbox as invalid (never retried)
}

// maxRead bounds the entries one read of the outbox returns.
const maxRead = 1000

// Journal appends events to an outbox and follows it. Create it with New,
// stop it with Close.
type Journal struct {
	out store.Outbox
	o   Options
	ch  chan events.Event

	stop     chan struct{} // closed by Close: no more events
	abortCtx context.Context
	abort    context.CancelFunc // called when Close's context ends: give up
	poke     chan struct{}      // the writer appended: read the outbox
	done     chan struct{}      // the writer finished
	tailDone chan struct{}      // the follower finished
	once     sync.Once

	appended, dropped, failed atomic.Uint64

	mu      sync.Mutex
	changed chan struct{} // closed when new entries were read
	subs    map[*Subscription]struct{}
}

var _ events.Publisher = (*Journal)(nil)

// New starts the journal's writer and follower on out.
func New(out store.Outbox, o Options) (*Journal, error) {
	if out == nil {
		return nil, errors.New("journal: no outbox")
	}
	if o.Instance == "" {
		return nil, errors.New("journal: no instance id")
	}
	if o.Buffer <= 0 {
		o.Buffer = 4096
	}
	if o.Batch <= 0 {
		o.Batch = 256
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	j := &Journal{
		out: out, o: o, ch: make(chan events.Event, o.Buffer),
		stop: make(chan struct{}), poke: make(chan struct{}, 1),
		done: make(chan struct{}), tailDone: make(chan struct{}),
		changed: make(chan struct{}), subs: make(map[*Subscription]struct{}),
	}
	j.abortCtx, j.abort = context.WithCancel(context.Background())
	last, known := j.startPosition() // before New returns: what is published next is after it
	go j.write()
	go j.follow(last, known)
	return j, nil
}

// startPosition returns the newest entry of the outbox, where the
// follower starts; ok is false when the outbox cannot say now (the
// follower asks again at its next wake).
func (j *Journal) startPosition() (last string, ok bool) {
	ctx, cancel := context.WithTimeout(j.abortCtx, j.o.Timeout)
	defer cancel()
	last, err := j.out.Last(ctx)
	if err != nil {
		j.o.Logger.Warn("journal: cannot read the newest outbox entry", "err", err)
		return "", false
	}
	return last, true
}

// Publish queues e without blocking; it is dropped (counted) when the
// buffer is full or the journal closed. An event its publisher already
// wrote itself (Journaled, see Record) is not appended again.
func (j *Journal) Publish(e events.Event) {
	if e.Journaled {
		return
	}
	select {
	case <-j.stop:
		j.dropped.Add(1)
		return
	default:
	}
	select {
	case j.ch <- e:
	default:
		j.dropped.Add(1)
	}
}

// Record returns e's outbox record, for a publisher that must know its
// event is durable before it goes on and so appends the record itself, in
// a write of its own: the connection actor writes a message event in the
// same store write as the Signal state the message changed
// (store.SignalChanges.Events), and that before it acknowledges the
// stanza. The publisher then calls Written and publishes e with Journaled
// set, so that Publish does not append it again.
func (j *Journal) Record(e events.Event) store.OutboxRecord { return j.record(e) }

// Written tells the journal that its publisher appended n records of
// Record to the journal's outbox: they count as appended, and the
// follower reads them for the subscribers.
func (j *Journal) Written(n int) {
	j.appended.Add(uint64(n))
	select {
	case j.poke <- struct{}{}:
	default:
	}
}

// Stats returns the counters.
func (j *Journal) Stats() Stats {
	return Stats{Appended: j.appended.Load(), Dropped: j.dropped.Load(), Failed: j.failed.Load()}
}

// Close stops accepting events, appends those still buffered until ctx
// ends (the rest count as dropped), stops following the outbox and ends
// every subscription. Call it before closing the store. Idempotent.
func (j *Journal) Close(ctx context.Context) error {
	j.once.Do(func() { close(j.stop) })
	var err error
	select {
	case <-j.done:
	case <-ctx.Done():
		err = fmt.Errorf("journal: close: %w", ctx.Err())
		j.abort()
		<-j.done
	}
	<-j.tailDone
	j.abort()
	return err
}

// write is the writer goroutine: it gathers the buffered events into
// batches and appends each.
func (j *Journal) write() {
	defer close(j.done)
	batch := make([]events.Event, 0, j.o.Batch)
	for {
		select {
		case e := <-j.ch:
			j.append(j.fill(append(batch[:0], e)))
		case <-j.stop:
			for {
				batch = j.fill(batch[:0])
				if len(batch) == 0 {
					return
				}
				j.append(batch)
			}
		}
	}
}

// fill appends to batch the events already buffered, up to the batch
// size, without waiting for more.
func (j *Journal) fill(batch []events.Event) []events.Event {
	for len(batch) < j.o.Batch {
		select {
		case e := <-j.ch:
			batch = append(batch, e)
		default:
			return batch
		}
	}
	return batch
}

// append writes batch, retrying with a growing pause until it succeeds,
// the outbox refuses it as invalid, or Close gives up.
func (j *Journal) append(batch []events.Event) {
	recs := make([]store.OutboxRecord, len(batch))
	for i, e := range batch {
		recs[i] = j.record(e)
	}
	pause := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(j.abortCtx, j.o.Timeout)
		_, err := j.out.Append(ctx, recs...)
		cancel()
		switch {
		case err == nil:
			j.appended.Add(uint64(len(recs)))
			select {
			case j.poke <- struct{}{}:
			default:
			}
			return
		case errors.Is(err, store.ErrInvalidOutboxRecord):
			j.failed.Add(uint64(len(recs)))
			j.o.Logger.Error("journal: the outbox refused events", "events", len(recs), "err", err)
			return
		}
		if j.abortCtx.Err() != nil {
			j.dropped.Add(uint64(len(recs)))
			return
		}
		j.o.Logger.Warn("journal: append to the outbox failed; retrying", "events", len(recs), "retry_in", pause, "err", err)
		select {
		case <-time.After(pause):
			pause = min(2*pause, 5*time.Second)
		case <-j.abortCtx.Done():
			j.dropped.Add(uint64(len(recs)))
			return
		}
	}
}

// record is e's outbox record.
func (j *Journal) record(e events.Event) store.OutboxRecord {
	t := e.Time
	if t.IsZero() {
		t = time.Now()
	}
	return store.OutboxRecord{
		Account: e.Account, Kind: string(e.Kind), Instance: j.o.Instance, Time: t,
		Body: events.Marshal(e, j.o.Instance),
	}
}
