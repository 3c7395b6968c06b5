package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wafleet/wafleet/store"
)

// OutboxHistory is the history (entries kept once every queue has
// delivered them) that stores under RunOutbox must be opened with.
const OutboxHistory = 8

// OutboxFixture is one store under RunOutbox.
type OutboxFixture struct {
	// Outbox is a fresh, empty outbox with a history of OutboxHistory.
	Outbox store.Outbox
	// Reopen returns a new store object on the same data, as after a
	// restart of the process; the old one is not used again.
	Reopen func(t *testing.T) store.Outbox
	// Sealed says the store seals secrets; then Raw returns every byte it
	// holds at rest (file, keys and values).
	Sealed bool
	Raw    func(t *testing.T) []byte
}

// RunOutbox runs the contract every store.Outbox must satisfy. open must
// return a fresh fixture for each call and clean it up itself.
func RunOutbox(t *testing.T, open func(t *testing.T) OutboxFixture) {
	tests := []struct {
		name string
		fn   func(t *testing.T, f OutboxFixture)
	}{
		{"AppendOrder", testOutboxAppendOrder},
		{"InvalidInput", testOutboxInvalidInput},
		{"Trimmed", testOutboxTrimmed},
		{"QueuesIndependent", testOutboxQueuesIndependent},
		{"HandedOutOnce", testOutboxHandedOutOnce},
		{"RedeliveryAfterRestart", testOutboxRedeliveryAfterRestart},
		{"DeadLetters", testOutboxDeadLetters},
		{"CloseEndpoint", testOutboxCloseEndpoint},
		{"Endpoints", testOutboxEndpoints},
		{"ConcurrentAppends", testOutboxConcurrentAppends},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

// outboxTime is a time every store keeps exactly (milliseconds, UTC).
var outboxTime = time.Date(2026, 11, 30, 6, 0, 0, 123_000_000, time.UTC)

// outboxRec returns a record of account with a body naming n.
func outboxRec(account string, n int) store.OutboxRecord {
	return store.OutboxRecord{
		Account: account, Kind: "state", Instance: "inst-a",
		Time: outboxTime.Add(time.Duration(n) * time.Millisecond),
		Body: fmt.Appendf(nil, `{"n":%d}`, n),
	}
}

func mustAppend(t *testing.T, o store.Outbox, recs ...store.OutboxRecord) []string {
	t.Helper()
	ids, err := o.Append(t.Context(), recs...)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if len(ids) != len(recs) {
		t.Fatalf("Append of %d records returned %d ids", len(recs), len(ids))
	}
	return ids
}

func mustNext(t *testing.T, o store.Outbox, endpoint string, n int) []store.OutboxEntry {
	t.Helper()
	got, err := o.Next(t.Context(), endpoint, "deliverer-1", n)
	if err != nil {
		t.Fatalf("Next(%s): %v", endpoint, err)
	}
	return got
}

func mustOpen(t *testing.T, o store.Outbox, endpoint string) {
	t.Helper()
	if err := o.OpenEndpoint(t.Context(), endpoint); err != nil {
		t.Fatalf("OpenEndpoint(%s): %v", endpoint, err)
	}
}

func mustAck(t *testing.T, o store.Outbox, endpoint string, ids ...string) {
	t.Helper()
	if err := o.Ack(t.Context(), endpoint, ids...); err != nil {
		t.Fatalf("Ack(%s, %v): %v", endpoint, ids, err)
	}
}

// bodies returns the bodies of entries, as strings.
func bodies(entries []store.OutboxEntry) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = string(e.Body)
	}
	return out
}

func wantBodies(t *testing.T, what string, entries []store.OutboxEntry, ns ...int) {
	t.Helper()
	want := make([]string, len(ns))
	for i, n := range ns {
		want[i] = fmt.Sprintf(`{"n":%d}`, n)
	}
	if got := bodies(entries); !slices.Equal(got, want) {
		t.Fatalf("%s: bodies %q, want %q", what, got, want)
	}
}

func ids(entries []store.OutboxEntry) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.ID
	}
	return out
}

func testOutboxAppendOrder(t *testing.T, f OutboxFixture) {
	o := f.Outbox
	if last, err := o.Last(t.Context()); err != nil || last != "" {
		t.Fatalf("Last of an empty outbox = %q, %v; want \"\"", last, err)
	}
	got := mustAppend(t, o, outboxRec("a", 1), outboxRec("b", 2), outboxRec("a", 3))
	got = append(got, mustAppend(t, o, outboxRec("c", 4))...)
	got = append(got, mustAppend(t, o, outboxRec("a", 5))...)
	if len(slices.Compact(slices.Clone(got))) != 5 {
		t.Fatalf("ids %v are not unique", got)
	}
	all, err := o.After(t.Context(), "", 100)
	if err != nil {
		t.Fatal(err)
	}
	wantBodies(t, `After("")`, all, 1, 2, 3, 4, 5)
	if !slices.Equal(ids(all), got) {
		t.Fatalf("After returned ids %v, Append %v", ids(all), got)
	}
	want := outboxRec("b", 2)
	e := all[1]
	if e.Account != want.Account || e.Kind != want.Kind || e.Instance != want.Instance || !e.Time.Equal(want.Time) {
		t.Fatalf("entry %+v, want the record %+v", e.OutboxRecord, want)
	}
	page, err := o.After(t.Context(), got[1], 2)
	if err != nil {
		t.Fatal(err)
	}
	wantBodies(t, "After(2nd, 2)", page, 3, 4)
	if last, err := o.Last(t.Context()); err != nil || last != got[4] {
		t.Fatalf("Last = %q, %v; want %q", last, err, got[4])
	}
	for i := range 4 {
		if !store.OutboxIDLess(got[i], got[i+1]) || store.OutboxIDLess(got[i+1], got[i]) {
			t.Fatalf("OutboxIDLess does not order %s before %s", got[i], got[i+1])
		}
	}
	if rest, err := o.After(t.Context(), got[4], 10); err != nil || len(rest) != 0 {
		t.Fatalf("After(last) = %v, %v; want nothing", bodies(rest), err)
	}
}

func testOutboxInvalidInput(t *testing.T, f OutboxFixture) {
	o, ctx := f.Outbox, t.Context()
	if _, err := o.Append(ctx, store.OutboxRecord{Kind: "state"}); !errors.Is(err, store.ErrInvalidOutboxRecord) {
		t.Fatalf("Append without an account: %v, want ErrInvalidOutboxRecord", err)
	}
	big := outboxRec("a", 1)
	big.Body = bytes.Repeat([]byte("x"), store.MaxOutboxBodyLen+1)
	if _, err := o.Append(ctx, outboxRec("a", 0), big); !errors.Is(err, store.ErrInvalidOutboxRecord) {
		t.Fatalf("Append of a body too long: %v, want ErrInvalidOutboxRecord", err)
	}
	if all, _ := o.After(ctx, "", 10); len(all) != 0 {
		t.Fatalf("a refused batch wrote %q", bodies(all))
	}
	if _, err := o.After(ctx, "not an id!", 10); !errors.Is(err, store.ErrInvalidOutboxID) {
		t.Fatalf("After(garbage): %v, want ErrInvalidOutboxID", err)
	}
	if err := o.OpenEndpoint(ctx, "has space"); !errors.Is(err, store.ErrInvalidEndpoint) {
		t.Fatalf("OpenEndpoint(\"has space\"): %v, want ErrInvalidEndpoint", err)
	}
	if _, err := o.Next(ctx, "never-opened", "d", 10); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Next of an endpoint never opened: %v, want ErrNotFound", err)
	}
}

func testOutboxTrimmed(t *testing.T, f OutboxFixture) {
	o, ctx := f.Outbox, t.Context()
	var first, last string
	for i := 1; i <= 4*OutboxHistory; i++ {
		id := mustAppend(t, o, outboxRec("a", i))[0]
		if i == 1 {
			first = id
		}
		last = id
	}
	got, err := o.After(ctx, first, 100)
	if !errors.Is(err, store.ErrTrimmed) {
		t.Fatalf("After(first) with %d entries and a history of %d: %v, want ErrTrimmed", 4*OutboxHistory, OutboxHistory, err)
	}
	if len(got) < OutboxHistory || got[len(got)-1].ID != last {
		t.Fatalf("After(first) returned %q: want at least the last %d, up to the last", bodies(got), OutboxHistory)
	}
	if kept, err := o.After(ctx, "", 100); err != nil || len(kept) != len(got) {
		t.Fatalf(`After("") = %d entries, %v; want the %d kept, no error`, len(kept), err, len(got))
	}
	// Entries a queue still holds are never trimmed.
	mustOpen(t, o, "slow")
	for i := 1; i <= 4*OutboxHistory; i++ {
		mustAppend(t, o, outboxRec("b", 100+i))
	}
	queued := mustNext(t, o, "slow", 1000)
	if len(queued) != 4*OutboxHistory || string(queued[0].Body) != `{"n":101}` {
		t.Fatalf("the slow queue holds %d entries starting with %q; want all %d since it opened", len(queued), bodies(queued[:min(1, len(queued))]), 4*OutboxHistory)
	}
	if all, err := o.After(ctx, last, 1000); err != nil || len(all) != 4*OutboxHistory {
		t.Fatalf("After(last before the queue opened) = %d entries, %v; want all %d, no error", len(all), err, 4*OutboxHistory)
	}
}

func testOutboxQueuesIndependent(t *testing.T, f OutboxFixture) {
	o := f.Outbox
	mustAppend(t, o, outboxRec("a", 0)) // before any queue: in none
	mustOpen(t, o, "one")
	mustOpen(t, o, "two")
	mustOpen(t, o, "two") // a no-op
	mustAppend(t, o, outboxRec("a", 1), outboxRec("a", 2), outboxRec("b", 3))
	one := mustNext(t, o, "one", 10)
	wantBodies(t, "Next(one)", one, 1, 2, 3)
	mustAck(t, o, "one", ids(one)...)
	wantBodies(t, "Next(one) after its acks", mustNext(t, o, "one", 10))
	two := mustNext(t, o, "two", 2)
	wantBodies(t, "Next(two, 2)", two, 1, 2)
	mustOpen(t, o, "three") // starts with the next entry
	mustAppend(t, o, outboxRec("a", 4))
	wantBodies(t, "Next(three)", mustNext(t, o, "three", 10), 4)
	wantBodies(t, "Next(two) again", mustNext(t, o, "two", 10), 3, 4)
	wantBodies(t, "Next(one) after a new append", mustNext(t, o, "one", 10), 4)
}

func testOutboxHandedOutOnce(t *testing.T, f OutboxFixture) {
	o := f.Outbox
	mustOpen(t, o, "ep")
	mustAppend(t, o, outboxRec("a", 1), outboxRec("a", 2), outboxRec("a", 3))
	first := mustNext(t, o, "ep", 2)
	wantBodies(t, "Next(2)", first, 1, 2)
	wantBodies(t, "Next while 1 and 2 are out", mustNext(t, o, "ep", 10), 3)
	wantBodies(t, "Next while all are out", mustNext(t, o, "ep", 10))
	mustAck(t, o, "ep", first[0].ID)
	mustAck(t, o, "ep", first[0].ID) // twice: a no-op
	mustAppend(t, o, outboxRec("a", 4))
	wantBodies(t, "Next after an ack and an append", mustNext(t, o, "ep", 10), 4)
}

func testOutboxRedeliveryAfterRestart(t *testing.T, f OutboxFixture) {
	o := f.Outbox
	mustOpen(t, o, "ep")
	mustAppend(t, o, outboxRec("a", 1), outboxRec("a", 2), outboxRec("a", 3))
	got := mustNext(t, o, "ep", 10)
	mustAck(t, o, "ep", got[0].ID)
	o = f.Reopen(t)
	again := mustNext(t, o, "ep", 10)
	wantBodies(t, "Next after a restart", again, 2, 3)
	if !slices.Equal(ids(again), ids(got[1:])) {
		t.Fatalf("redelivered ids %v, handed out %v", ids(again), ids(got[1:]))
	}
	mustAck(t, o, "ep", ids(again)...)
	o = f.Reopen(t)
	wantBodies(t, "Next after acks and a restart", mustNext(t, o, "ep", 10))
}

func testOutboxDeadLetters(t *testing.T, f OutboxFixture) {
	o, ctx := f.Outbox, t.Context()
	mustOpen(t, o, "ep")
	mustOpen(t, o, "other")
	mustAppend(t, o, outboxRec("a", 1), outboxRec("a", 2), outboxRec("a", 3))
	got := mustNext(t, o, "ep", 10)
	at := outboxTime.Add(time.Hour)
	if err := o.Bury(ctx, store.DeadLetter{Endpoint: "ep", Entry: got[1], Attempts: 5, Reason: "HTTP 500", At: at}); err != nil {
		t.Fatalf("Bury: %v", err)
	}
	mustAck(t, o, "ep", got[0].ID, got[2].ID)
	o = f.Reopen(t) // the buried entry is not due again
	wantBodies(t, "Next after the acks and the burial", mustNext(t, o, "ep", 10))

	dead, err := o.DeadLetters(ctx, "ep", 10)
	if err != nil || len(dead) != 1 {
		t.Fatalf("DeadLetters(ep) = %+v, %v; want the one buried", dead, err)
	}
	d := dead[0]
	if d.ID == "" || d.Endpoint != "ep" || d.Entry.ID != got[1].ID || string(d.Entry.Body) != `{"n":2}` ||
		d.Entry.Account != "a" || d.Attempts != 5 || d.Reason != "HTTP 500" || !d.At.Equal(at) {
		t.Fatalf("dead letter %+v, want the 2nd entry after 5 attempts, HTTP 500 at %v", d, at)
	}
	if all, err := o.DeadLetters(ctx, "", 10); err != nil || len(all) != 1 {
		t.Fatalf(`DeadLetters("") = %d, %v; want 1`, len(all), err)
	}
	if none, err := o.DeadLetters(ctx, "other", 10); err != nil || len(none) != 0 {
		t.Fatalf("DeadLetters(other) = %d, %v; want none", len(none), err)
	}
	// The other queue is untouched by ep's burial.
	wantBodies(t, "Next(other)", mustNext(t, o, "other", 10), 1, 2, 3)

	mustAppend(t, o, outboxRec("a", 4))
	if err := o.Redrive(ctx, d.ID); err != nil {
		t.Fatalf("Redrive: %v", err)
	}
	if err := o.Redrive(ctx, d.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second Redrive: %v, want ErrNotFound", err)
	}
	if dead, _ := o.DeadLetters(ctx, "", 10); len(dead) != 0 {
		t.Fatalf("dead letters after the redrive: %+v", dead)
	}
	again := mustNext(t, o, "ep", 10)
	wantBodies(t, "Next after the redrive", again, 4, 2)
	if again[1].ID != got[1].ID {
		t.Fatalf("the redriven entry has id %s, want its own %s", again[1].ID, got[1].ID)
	}
	mustAck(t, o, "ep", ids(again)...)
	o = f.Reopen(t)
	wantBodies(t, "Next after the acks and a restart", mustNext(t, o, "ep", 10))
	if err := o.Redrive(ctx, "no-such-letter"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Redrive(unknown): %v, want ErrNotFound", err)
	}
}

func testOutboxCloseEndpoint(t *testing.T, f OutboxFixture) {
	o, ctx := f.Outbox, t.Context()
	mustOpen(t, o, "ep")
	mustOpen(t, o, "keep")
	mustAppend(t, o, outboxRec("a", 1), outboxRec("a", 2))
	for _, ep := range []string{"ep", "keep"} {
		got := mustNext(t, o, ep, 1)
		if err := o.Bury(ctx, store.DeadLetter{Endpoint: ep, Entry: got[0], Attempts: 1, Reason: "gone"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.CloseEndpoint(ctx, "ep"); err != nil {
		t.Fatalf("CloseEndpoint: %v", err)
	}
	if _, err := o.Next(ctx, "ep", "d", 10); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Next of a closed endpoint: %v, want ErrNotFound", err)
	}
	if dead, err := o.DeadLetters(ctx, "", 10); err != nil || len(dead) != 1 || dead[0].Endpoint != "keep" {
		t.Fatalf("dead letters after closing ep: %+v, %v; want keep's only", dead, err)
	}
	if q, err := o.Queues(ctx); err != nil || fmt.Sprint(q) != "[keep]" {
		t.Fatalf("Queues after closing ep: %v, %v; want [keep]", q, err)
	}
	mustOpen(t, o, "ep") // opened again: a new queue, from the next entry
	mustAppend(t, o, outboxRec("a", 3))
	wantBodies(t, "Next of the reopened endpoint", mustNext(t, o, "ep", 10), 3)
	if q, err := o.Queues(ctx); err != nil || fmt.Sprint(q) != "[ep keep]" {
		t.Fatalf("Queues: %v, %v; want [ep keep]", q, err)
	}
}

func testOutboxEndpoints(t *testing.T, f OutboxFixture) {
	o, ctx := f.Outbox, t.Context()
	const secret = "whsec-0123456789-contract-test-secret"
	e1 := store.Endpoint{Name: "acct1-hooks", Account: "acct1", URL: "https://hooks.example.com/in", Events: []string{"qr", "connected"},
		Secret: secret, Timeout: 5 * time.Second, MaxAttempts: 7}
	e2 := store.Endpoint{Name: "acct2-hooks", Account: "acct2", URL: "https://other.example.com/x"}
	for _, e := range []store.Endpoint{e2, e1} {
		if err := o.SaveEndpoint(ctx, e); err != nil {
			t.Fatalf("SaveEndpoint(%s): %v", e.Name, err)
		}
	}
	got, err := o.Endpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != e1.Name || got[1].Name != e2.Name {
		t.Fatalf("Endpoints = %d, want both by name", len(got))
	}
	if g := got[0]; g.Account != e1.Account || g.URL != e1.URL || !slices.Equal(g.Events, e1.Events) ||
		g.Secret != secret || g.Timeout != e1.Timeout || g.MaxAttempts != e1.MaxAttempts {
		t.Fatal("the endpoint read back differs from the one saved")
	}
	if f.Sealed {
		raw := f.Raw(t)
		if !bytes.Contains(raw, []byte(e1.URL)) {
			t.Fatal("Raw does not return the store's data: the endpoint's URL is not in it")
		}
		if bytes.Contains(raw, []byte(secret)) {
			t.Fatal("the endpoint's secret is readable at rest in a sealed store")
		}
	}
	e1.URL = "https://hooks.example.com/v2"
	if err := o.SaveEndpoint(ctx, e1); err != nil {
		t.Fatal(err)
	}
	if err := o.DeleteEndpoint(ctx, e2.Name); err != nil {
		t.Fatalf("DeleteEndpoint: %v", err)
	}
	if err := o.DeleteEndpoint(ctx, e2.Name); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DeleteEndpoint of a deleted one: %v, want ErrNotFound", err)
	}
	o = f.Reopen(t)
	got, err = o.Endpoints(ctx)
	if err != nil || len(got) != 1 || got[0].URL != e1.URL || got[0].Secret != secret {
		t.Fatalf("after a restart: %d endpoints, %v; want the changed one", len(got), err)
	}
	bad := e1
	bad.URL = ""
	if err := o.SaveEndpoint(ctx, bad); !errors.Is(err, store.ErrInvalidEndpoint) {
		t.Fatalf("SaveEndpoint without a URL: %v, want ErrInvalidEndpoint", err)
	}
}

func testOutboxConcurrentAppends(t *testing.T, f OutboxFixture) {
	o := f.Outbox
	mustOpen(t, o, "keep") // holds every entry, so none is trimmed
	const writers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				r := outboxRec(fmt.Sprintf("w%d", w), w*1000+i)
				if _, err := o.Append(t.Context(), r, r); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Append: %v", err)
	}
	all := mustNext(t, o, "keep", 10000)
	if len(all) != 2*writers*each {
		t.Fatalf("%d entries queued, want %d", len(all), 2*writers*each)
	}
	if after, err := o.After(t.Context(), "", 10000); err != nil || !slices.Equal(ids(after), ids(all)) {
		t.Fatalf("After and Next disagree on the log (err %v)", err)
	}
	last := map[string]int{}
	for i, e := range all {
		var n int
		if _, err := fmt.Sscanf(string(e.Body), `{"n":%d}`, &n); err != nil {
			t.Fatal(err)
		}
		prev, seen := last[e.Account]
		// Each batch is two equal records, one after the other.
		switch {
		case i%2 == 1 && string(all[i-1].Body) != string(e.Body):
			t.Fatalf("a batch of 2 was split: entry %d is %s after %s", i, e.Body, all[i-1].Body)
		case i%2 == 0 && seen && n <= prev:
			t.Fatalf("writer %s: %d after %d", e.Account, n, prev)
		}
		last[e.Account] = n
	}
}

// BenchOutboxAppend appends batches of 1 and 256 events as the journal
// does, to an outbox with one open queue; ns/op is per event. open returns
// a fresh outbox and cleans it up itself.
func BenchOutboxAppend(b *testing.B, open func(b *testing.B) store.Outbox) {
	for _, batch := range []int{1, 256} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s := open(b)
			if err := s.OpenEndpoint(b.Context(), "hooks"); err != nil {
				b.Fatal(err)
			}
			recs := make([]store.OutboxRecord, batch)
			for i := range recs {
				recs[i] = store.OutboxRecord{Account: "acct-0001", Kind: "state", Instance: "host-1", Time: time.Now(),
					Body: []byte(`{"account":"acct-0001","instance":"host-1","kind":"state","state":"connecting","time":"2026-11-30T06:00:00Z"}`)}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i += batch {
				if _, err := s.Append(b.Context(), recs[:min(batch, b.N-i)]...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
