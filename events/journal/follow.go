package journal

import (
	"context"
	"errors"
	"time"

	"github.com/wafleet/wafleet/store"
)

// Subscription receives the outbox entries the journal reads, in order.
// A subscriber that falls behind loses entries from its channel instead
// of slowing the others; Lagged then tells it to read them back from the
// outbox (Outbox.After its last id).
type Subscription struct {
	j      *Journal
	ch     chan store.OutboxEntry
	lagged chan struct{} // holds a token after an entry was lost
}

// C returns the channel of entries. It is closed when the journal closes.
func (s *Subscription) C() <-chan store.OutboxEntry { return s.ch }

// Lagged receives a token when entries were lost since the last one.
func (s *Subscription) Lagged() <-chan struct{} { return s.lagged }

// Close ends the subscription. Idempotent.
func (s *Subscription) Close() {
	s.j.mu.Lock()
	defer s.j.mu.Unlock()
	if _, ok := s.j.subs[s]; ok {
		delete(s.j.subs, s)
		close(s.ch)
	}
}

// Subscribe returns a subscription whose channel buffers up to buffer
// entries. It starts with the next entry read; what came before is the
// outbox's (After).
func (j *Journal) Subscribe(buffer int) *Subscription {
	s := &Subscription{j: j, ch: make(chan store.OutboxEntry, max(buffer, 1)), lagged: make(chan struct{}, 1)}
	j.mu.Lock()
	defer j.mu.Unlock()
	select {
	case <-j.tailDone:
		close(s.ch) // closed journal: an ended subscription
	default:
		j.subs[s] = struct{}{}
	}
	return s
}

// After reads the outbox: up to n entries after id (Outbox.After), for a
// subscriber that resumes or lagged.
func (j *Journal) After(ctx context.Context, id string, n int) ([]store.OutboxEntry, error) {
	return j.out.After(ctx, id, n)
}

// Changed returns a channel that is closed once new entries are in the
// outbox (appended here, or seen appended by another instance). Take it
// before reading the outbox, wait on it when the read found nothing:
//
//	for {
//		changed := j.Changed()
//		entries, _ := outbox.Next(ctx, endpoint, me, 100)
//		if len(entries) == 0 {
//			<-changed // or a timer, or ctx.Done()
//		}
//		…
//	}
func (j *Journal) Changed() <-chan struct{} {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.changed
}

// follow is the follower goroutine: from last on (the newest entry when
// the journal started, unless the outbox could not say: known false), it
// reads the outbox after each local append and every Poll, and fans the
// entries out.
func (j *Journal) follow(last string, known bool) {
	defer func() {
		j.mu.Lock()
		for s := range j.subs {
			delete(j.subs, s)
			close(s.ch)
		}
		close(j.tailDone)
		close(j.changed)
		j.changed = make(chan struct{})
		j.mu.Unlock()
	}()
	var tick <-chan time.Time
	if j.o.Poll > 0 {
		t := time.NewTicker(j.o.Poll)
		defer t.Stop()
		tick = t.C
	}
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	others := j.watch(watchCtx)
	for {
		select {
		case <-j.poke:
		case <-others: // nil while not subscribed: never ready
		case <-tick:
			if others == nil {
				others = j.watch(watchCtx)
			}
		case <-j.done: // the writer is finished: read its last appends, then stop
			if known {
				j.read(&last)
			}
			return
		}
		if !known {
			// The outbox could not say where it ended: start from now on.
			// Subscribers resume what they missed by id.
			last, known = j.startPosition()
			continue
		}
		j.read(&last)
	}
}

// watch subscribes to the appends of others (Options.Watch); nil when
// there is nothing to watch or the subscription failed.
func (j *Journal) watch(ctx context.Context) <-chan struct{} {
	if j.o.Watch == nil {
		return nil
	}
	ch, err := j.o.Watch(ctx)
	if err != nil {
		j.o.Logger.Warn("journal: cannot watch the outbox for other instances' entries; reading it every "+j.o.Poll.String(), "err", err)
		return nil
	}
	return ch
}

// read fans out every entry after *last and advances it.
func (j *Journal) read(last *string) {
	for {
		ctx, cancel := context.WithTimeout(j.abortCtx, j.o.Timeout)
		entries, err := j.out.After(ctx, *last, maxRead)
		cancel()
		if err != nil && !errors.Is(err, store.ErrTrimmed) {
			j.o.Logger.Warn("journal: cannot read the outbox", "err", err)
			return
		}
		if len(entries) == 0 {
			return
		}
		j.fanOut(entries, err != nil)
		*last = entries[len(entries)-1].ID
		if len(entries) < maxRead {
			return
		}
	}
}

// fanOut hands entries to every subscriber and wakes Changed's waiters.
// gap says that entries before these were trimmed unread.
func (j *Journal) fanOut(entries []store.OutboxEntry, gap bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for s := range j.subs {
		lost := gap
		for _, e := range entries {
			select {
			case s.ch <- e:
			default:
				lost = true
			}
		}
		if lost {
			select {
			case s.lagged <- struct{}{}:
			default:
			}
		}
	}
	close(j.changed)
	j.changed = make(chan struct{})
}
