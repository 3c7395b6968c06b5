package webhook_test

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/wafleet/wafleet/store"
)

// memOutbox is a store.Outbox in memory for the engine's tests: one
// process, entries handed out stay so until crash forgets them.
type memOutbox struct {
	mu        sync.Mutex
	seq       int
	entries   map[string]store.OutboxEntry
	order     []string
	queues    map[string]*memQueue
	dead      []store.DeadLetter
	deadSeq   int
	endpoints map[string]store.Endpoint
}

type memQueue struct {
	pending []string        // ids not acknowledged, in queue order
	handed  map[string]bool // handed out by Next, not acknowledged
}

var _ store.Outbox = (*memOutbox)(nil)

func newMemOutbox() *memOutbox {
	return &memOutbox{entries: map[string]store.OutboxEntry{}, queues: map[string]*memQueue{}, endpoints: map[string]store.Endpoint{}}
}

// crash forgets what was handed out, as a restart of the process does.
func (o *memOutbox) crash() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, q := range o.queues {
		q.handed = map[string]bool{}
	}
}

func (o *memOutbox) Append(_ context.Context, recs ...store.OutboxRecord) ([]string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ids := make([]string, len(recs))
	for i, r := range recs {
		o.seq++
		id := fmt.Sprintf("%020d", o.seq)
		o.entries[id] = store.OutboxEntry{ID: id, OutboxRecord: r}
		o.order = append(o.order, id)
		for _, q := range o.queues {
			q.pending = append(q.pending, id)
		}
		ids[i] = id
	}
	return ids, nil
}

func (o *memOutbox) After(_ context.Context, id string, n int) ([]store.OutboxEntry, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var list []store.OutboxEntry
	for _, e := range o.order {
		if e > id && len(list) < n {
			list = append(list, o.entries[e])
		}
	}
	return list, nil
}

func (o *memOutbox) OpenEndpoint(_ context.Context, endpoint string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.queues[endpoint] == nil {
		o.queues[endpoint] = &memQueue{handed: map[string]bool{}}
	}
	return nil
}

func (o *memOutbox) CloseEndpoint(_ context.Context, endpoint string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.queues, endpoint)
	o.dead = slices.DeleteFunc(o.dead, func(d store.DeadLetter) bool { return d.Endpoint == endpoint })
	return nil
}

func (o *memOutbox) Next(_ context.Context, endpoint, _ string, n int) ([]store.OutboxEntry, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	q := o.queues[endpoint]
	if q == nil {
		return nil, fmt.Errorf("mem outbox: no queue %s", endpoint)
	}
	var list []store.OutboxEntry
	for _, id := range q.pending {
		if len(list) == n {
			break
		}
		if !q.handed[id] {
			q.handed[id] = true
			list = append(list, o.entries[id])
		}
	}
	return list, nil
}

func (o *memOutbox) Ack(_ context.Context, endpoint string, ids ...string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	q := o.queues[endpoint]
	if q == nil {
		return fmt.Errorf("mem outbox: no queue %s", endpoint)
	}
	for _, id := range ids {
		q.pending = slices.DeleteFunc(q.pending, func(p string) bool { return p == id })
		delete(q.handed, id)
	}
	return nil
}

func (o *memOutbox) Bury(ctx context.Context, d store.DeadLetter) error {
	if err := o.Ack(ctx, d.Endpoint, d.Entry.ID); err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.deadSeq++
	d.ID = fmt.Sprintf("dl-%d", o.deadSeq)
	o.dead = append(o.dead, d)
	return nil
}

func (o *memOutbox) DeadLetters(_ context.Context, endpoint string, n int) ([]store.DeadLetter, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var list []store.DeadLetter
	for _, d := range o.dead {
		if (endpoint == "" || d.Endpoint == endpoint) && len(list) < n {
			list = append(list, d)
		}
	}
	return list, nil
}

func (o *memOutbox) Redrive(_ context.Context, id string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	i := slices.IndexFunc(o.dead, func(d store.DeadLetter) bool { return d.ID == id })
	if i < 0 {
		return fmt.Errorf("mem outbox: dead letter %s: %w", id, store.ErrNotFound)
	}
	d := o.dead[i]
	o.dead = slices.Delete(o.dead, i, i+1)
	if q := o.queues[d.Endpoint]; q != nil {
		q.pending = append(q.pending, d.Entry.ID)
	}
	return nil
}

func (o *memOutbox) Endpoints(context.Context) ([]store.Endpoint, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var list []store.Endpoint
	for _, e := range o.endpoints {
		list = append(list, e)
	}
	return list, nil
}

func (o *memOutbox) SaveEndpoint(_ context.Context, e store.Endpoint) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.endpoints[e.Name] = e
	return nil
}

func (o *memOutbox) DeleteEndpoint(_ context.Context, name string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.endpoints[name]; !ok {
		return fmt.Errorf("mem outbox: endpoint %s: %w", name, store.ErrNotFound)
	}
	delete(o.endpoints, name)
	return nil
}
