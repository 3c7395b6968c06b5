package redis

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/storetest"
)

func newOutboxStore(t testing.TB, c goredis.UniversalClient, prefix string, sealer store.Sealer, lockTTL time.Duration) *Store {
	t.Helper()
	s, err := New(c, Options{Prefix: prefix, Sealer: sealer, OutboxHistory: storetest.OutboxHistory, OutboxLockTTL: lockTTL})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestOutboxContract(t *testing.T) {
	testOutboxContract(t, sharedTarget)
}

func testOutboxContract(t *testing.T, tg target) {
	for _, sealed := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "sealed"}[sealed]
		t.Run(name, func(t *testing.T) {
			storetest.RunOutbox(t, func(t *testing.T) storetest.OutboxFixture {
				c, prefix := tg.open(t)
				var sealer store.Sealer
				if sealed {
					sealer = testSealer(t, 3)
				}
				return storetest.OutboxFixture{
					Outbox: newOutboxStore(t, c, prefix, sealer, 0),
					Reopen: func(t *testing.T) store.Outbox { return newOutboxStore(t, c, prefix, sealer, 0) },
					Sealed: sealed,
					Raw:    func(t *testing.T) []byte { return rawValues(t, c, prefix) },
				}
			})
		})
	}
}

// rawValues returns every key and value under prefix, as Redis holds them.
func rawValues(t *testing.T, c goredis.UniversalClient, prefix string) []byte {
	t.Helper()
	ctx := t.Context()
	var out []byte
	for _, k := range scanAll(t, c, prefix+":*") {
		out = append(out, k...)
		switch typ := c.Type(ctx, k).Val(); typ {
		case "string":
			out = append(out, c.Get(ctx, k).Val()...)
		case "hash":
			for f, v := range c.HGetAll(ctx, k).Val() {
				out = append(out, f+v...)
			}
		case "list":
			for _, v := range c.LRange(ctx, k, 0, -1).Val() {
				out = append(out, v...)
			}
		case "stream":
			for _, m := range c.XRange(ctx, k, "-", "+").Val() {
				out = append(out, fmt.Sprint(m.Values)...)
			}
		case "zset":
			for _, v := range c.ZRange(ctx, k, 0, -1).Val() {
				out = append(out, v...)
			}
		default:
			t.Fatalf("key %s of type %s: add it to rawValues", k, typ)
		}
	}
	return out
}

// scanAll returns the keys matching pattern, of every master of a Cluster.
func scanAll(t *testing.T, c goredis.UniversalClient, pattern string) []string {
	t.Helper()
	var (
		mu  sync.Mutex
		out []string
	)
	scan := func(ctx context.Context, c goredis.Cmdable) error {
		iter := c.Scan(ctx, 0, pattern, 100).Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			out = append(out, iter.Val())
			mu.Unlock()
		}
		return iter.Err()
	}
	var err error
	if cc, ok := c.(*goredis.ClusterClient); ok {
		err = cc.ForEachMaster(t.Context(), func(ctx context.Context, m *goredis.Client) error { return scan(ctx, m) })
	} else {
		err = scan(t.Context(), c)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Deliverer A takes entries and stops without acknowledging them; once
// its lock has expired, deliverer B (another instance, its own Store) gets
// them, in order, before the newer ones, and A gets nothing while B
// serves the endpoint.
func TestOutboxDelivererHandover(t *testing.T) {
	testOutboxDelivererHandover(t, sharedTarget)
}

func testOutboxDelivererHandover(t *testing.T, tg target) {
	c, prefix := tg.open(t)
	const ttl = 300 * time.Millisecond
	a := newOutboxStore(t, c, prefix, nil, ttl)
	b := newOutboxStore(t, c, prefix, nil, ttl)
	ctx := t.Context()
	if err := a.OpenEndpoint(ctx, "ep"); err != nil {
		t.Fatal(err)
	}
	recs := func(from, to int) []store.OutboxRecord {
		var out []store.OutboxRecord
		for i := from; i <= to; i++ {
			out = append(out, store.OutboxRecord{Account: "acct", Kind: "state", Body: fmt.Appendf(nil, "%d", i)})
		}
		return out
	}
	if _, err := a.Append(ctx, recs(1, 3)...); err != nil {
		t.Fatal(err)
	}
	got, err := a.Next(ctx, "ep", "inst-a", 2)
	if err != nil || len(got) != 2 {
		t.Fatalf("A's Next = %d, %v; want 2", len(got), err)
	}
	if none, err := b.Next(ctx, "ep", "inst-b", 10); err != nil || len(none) != 0 {
		t.Fatalf("B's Next while A holds the endpoint = %d entries, %v; want none", len(none), err)
	}
	if _, err := a.Append(ctx, recs(4, 4)...); err != nil {
		t.Fatal(err)
	}
	// A stops calling Next. B takes over once the lock has expired.
	deadline := time.Now().Add(30 * time.Second)
	var took []store.OutboxEntry
	for len(took) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("B never took the endpoint over")
		}
		time.Sleep(ttl / 3)
		if took, err = b.Next(ctx, "ep", "inst-b", 10); err != nil {
			t.Fatal(err)
		}
	}
	var bodies []string
	for _, e := range took {
		bodies = append(bodies, string(e.Body))
	}
	if fmt.Sprint(bodies) != "[1 2 3 4]" {
		t.Fatalf("B got %v, want A's unacknowledged 1 and 2 first, then 3 and 4", bodies)
	}
	if none, err := a.Next(ctx, "ep", "inst-a", 10); err != nil || len(none) != 0 {
		t.Fatalf("A's Next after the handover = %d entries, %v; want none", len(none), err)
	}
	var ids []string
	for _, e := range took {
		ids = append(ids, e.ID)
	}
	if err := b.Ack(ctx, "ep", ids...); err != nil {
		t.Fatal(err)
	}
	pending, err := c.XPending(ctx, prefix+":events", "ep").Result()
	if err != nil || pending.Count != 0 {
		t.Fatalf("pending after B's acks: %+v, %v; want none", pending, err)
	}
}

// The entries stay in the stream the event tools read, with the fields
// README documents.
func TestOutboxIsTheEventStream(t *testing.T) {
	c, prefix := sharedClient(t)
	s := newOutboxStore(t, c, prefix, nil, 0)
	at := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	if _, err := s.Append(context.Background(), store.OutboxRecord{Account: "acct", Kind: "connected", Instance: "inst-a", Time: at, Body: []byte(`{"account":"acct"}`)}); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.XRange(t.Context(), prefix+":events", "-", "+").Result()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("stream: %v, %v", msgs, err)
	}
	want := map[string]any{"instance": "inst-a", "account": "acct", "kind": "connected", "time": "2026-11-30T06:00:00Z", "body": `{"account":"acct"}`}
	if fmt.Sprint(msgs[0].Values) != fmt.Sprint(want) {
		t.Fatalf("fields %v, want %v", msgs[0].Values, want)
	}
}

// An endpoint saved before the fleet had a key has its secret sealed the
// first time a store with the key lists the endpoints.
func TestOutboxSealsEndpointSecretsWrittenBeforeTheKey(t *testing.T) {
	c, prefix := sharedClient(t)
	const secret = "whsec-written-in-the-clear-0123456789"
	plain := newOutboxStore(t, c, prefix, nil, 0)
	if err := plain.SaveEndpoint(t.Context(), store.Endpoint{Name: "hooks", Account: "acct", URL: "https://h.example/", Secret: secret}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(rawValues(t, c, prefix), []byte(secret)) {
		t.Fatal("the secret saved without a key is not in Redis: the test reads the wrong data")
	}
	sealed := newOutboxStore(t, c, prefix, testSealer(t, 3), 0)
	got, err := sealed.Endpoints(t.Context())
	if err != nil || len(got) != 1 || got[0].Secret != secret {
		t.Fatalf("Endpoints: %d, %v; want the one saved, secret intact", len(got), err)
	}
	if bytes.Contains(rawValues(t, c, prefix), []byte(secret)) {
		t.Fatal("the secret is still in the clear after a store with the key listed it")
	}
}

// BenchmarkOutboxAppend appends batches as the journal does (one script
// each); ns/op is per event.
func BenchmarkOutboxAppend(b *testing.B) {
	storetest.BenchOutboxAppend(b, func(b *testing.B) store.Outbox {
		c, prefix := sharedClient(b)
		return newOutboxStore(b, c, prefix, nil, 0)
	})
}

// WatchOutbox signals an append made through another Store (another
// instance) on the same Redis.
func TestWatchOutboxSignalsOtherInstancesAppends(t *testing.T) {
	c, prefix := sharedClient(t)
	watcher := newOutboxStore(t, c, prefix, nil, 0)
	writer := newOutboxStore(t, c, prefix, nil, 0)
	appended, err := watcher.WatchOutbox(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := writer.Append(t.Context(), store.OutboxRecord{Account: "acct", Kind: "state", Body: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-appended:
	case <-time.After(10 * time.Second):
		t.Fatal("no signal after another instance's append")
	}
}

// An idle deliverer's Next costs two round trips (the lock with the
// pending entries, then the new and redriven ones), and renewing the lock
// alone (n = 0) one: the webhook engine calls them while idle.
func TestOutboxNextRoundTrips(t *testing.T) {
	c, prefix := sharedClient(t)
	h := &counter{}
	c.AddHook(h)
	s := newOutboxStore(t, c, prefix, nil, 0)
	ctx := t.Context()
	if err := s.OpenEndpoint(ctx, "ep"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Next(ctx, "ep", "inst", 10); err != nil { // loads the scripts
		t.Fatal(err)
	}
	for _, tc := range []struct {
		n, want int
	}{{10, 2}, {0, 1}} {
		h.Reset()
		if got, err := s.Next(ctx, "ep", "inst", tc.n); err != nil || len(got) != 0 {
			t.Fatalf("Next(%d) of an empty queue = %d entries, %v", tc.n, len(got), err)
		}
		if rt := h.RoundTrips(); rt != int64(tc.want) {
			t.Errorf("Next(%d) of an idle queue took %d round trips, want %d", tc.n, rt, tc.want)
		}
	}
}
