package journal

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/store"
)

const wait = 30 * time.Second // generous: a loaded 2-core machine

func openBolt(t *testing.T) (*store.BoltStore, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "devices.db")
	s, err := store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newJournal(t *testing.T, out store.Outbox, o Options) *Journal {
	t.Helper()
	o.Instance = "inst-a"
	o.Logger = quiet()
	j, err := New(out, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = j.Close(ctx)
	})
	return j
}

func closeJournal(t *testing.T, j *Journal) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := j.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// gated is an Outbox whose Append waits for the gate and records the
// size of each batch.
type gated struct {
	store.Outbox
	gate    chan struct{}
	mu      sync.Mutex
	batches []int
}

func (g *gated) Append(ctx context.Context, recs ...store.OutboxRecord) ([]string, error) {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	g.mu.Lock()
	g.batches = append(g.batches, len(recs))
	g.mu.Unlock()
	return g.Outbox.Append(ctx, recs...)
}

// Events reach the outbox in the order published, several to a batch,
// in their wire form.
func TestAppendsInOrderInBatches(t *testing.T) {
	s, _ := openBolt(t)
	g := &gated{Outbox: s, gate: make(chan struct{})}
	j := newJournal(t, g, Options{Batch: 64, Timeout: wait})
	const n = 300
	for i := range n {
		j.Publish(events.Event{Account: "acct", Kind: events.KindReconnect, State: events.StateBackoff, Attempt: i + 1})
	}
	close(g.gate) // the first append waited: the rest gathered meanwhile
	closeJournal(t, j)
	if st := j.Stats(); st.Appended != n || st.Dropped != 0 || st.Failed != 0 {
		t.Fatalf("stats %+v, want %d appended", st, n)
	}
	got, err := s.After(t.Context(), "", n+1)
	if err != nil || len(got) != n {
		t.Fatalf("the outbox holds %d entries (%v), want %d", len(got), err, n)
	}
	for i, e := range got {
		var w events.Wire
		if err := json.Unmarshal(e.Body, &w); err != nil {
			t.Fatal(err)
		}
		if w.Attempt != i+1 || w.Account != "acct" || w.Kind != events.KindReconnect || w.Instance != "inst-a" ||
			e.Account != "acct" || e.Kind != "reconnect" || e.Instance != "inst-a" || e.Time.IsZero() {
			t.Fatalf("entry %d: %+v with body %s, want attempt %d of acct", i, e.OutboxRecord, e.Body, i+1)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.batches) >= n/2 {
		t.Fatalf("%d appends for %d events (%v): no group commit", len(g.batches), n, g.batches)
	}
	for _, b := range g.batches {
		if b > 64 {
			t.Fatalf("a batch of %d, over the limit of 64", b)
		}
	}
}

// The QR content never reaches the outbox, not even the file's bytes.
func TestNoQRContentAtRest(t *testing.T) {
	s, path := openBolt(t)
	j := newJournal(t, s, Options{})
	const qr = "2@QR-REF-abcdef,NOISE-KEY-b64,IDENTITY-b64,ADV-SECRET-b64"
	j.Publish(events.Event{Account: "bob", Kind: events.KindQR, State: events.StatePairing, QR: qr})
	closeJournal(t, j)
	got, err := s.After(t.Context(), "", 10)
	if err != nil || len(got) != 1 || got[0].Kind != "qr" {
		t.Fatalf("outbox: %+v, %v; want the qr event", got, err)
	}
	if bytes.Contains(got[0].Body, []byte("ADV-SECRET")) || bytes.Contains(got[0].Body, []byte(`"qr":`)) {
		t.Fatalf("the stored body holds the QR: %s", got[0].Body)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("ADV-SECRET")) || bytes.Contains(raw, []byte("QR-REF")) {
		t.Fatal("the QR content is in the store file")
	}
}

// A stalled outbox never blocks Publish: the buffer fills, the rest is
// dropped and counted, and Close gives up when its context ends.
func TestNeverBlocksOnAStalledOutbox(t *testing.T) {
	s, _ := openBolt(t)
	g := &gated{Outbox: s, gate: make(chan struct{})} // never opened
	const buffer, batch, n = 16, 4, 200
	j := newJournal(t, g, Options{Buffer: buffer, Batch: batch, Timeout: time.Hour})
	published := make(chan struct{})
	go func() {
		for i := range n {
			j.Publish(events.Event{Account: "a", Kind: events.KindState, Attempt: i})
		}
		close(published)
	}()
	select {
	case <-published:
	case <-time.After(wait):
		t.Fatal("Publish blocked on a stalled outbox")
	}
	if st := j.Stats(); st.Dropped < n-buffer-batch || st.Appended != 0 {
		t.Fatalf("stats %+v: want at least %d dropped, none appended", st, n-buffer-batch)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := j.Close(ctx); err == nil {
		t.Fatal("Close flushed into a stalled outbox")
	}
	if st := j.Stats(); st.Dropped+st.Appended != n {
		t.Fatalf("stats after Close %+v: every event is appended or dropped, want %d in all", st, n)
	}
	j.Publish(events.Event{Account: "a", Kind: events.KindState}) // after Close: dropped, no panic
}

// Subscribers get the entries appended, in order, and Changed wakes.
func TestSubscribersFollowTheOutbox(t *testing.T) {
	s, _ := openBolt(t)
	if _, err := s.Append(t.Context(), store.OutboxRecord{Account: "old", Kind: "state", Body: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	j := newJournal(t, s, Options{})
	sub := j.Subscribe(100)
	changed := j.Changed()
	for i := range 5 {
		j.Publish(events.Event{Account: "a", Kind: events.KindReconnect, Attempt: i + 1})
	}
	select {
	case <-changed:
	case <-time.After(wait):
		t.Fatal("Changed did not wake after an append")
	}
	for i := range 5 {
		select {
		case e := <-sub.C():
			var w events.Wire
			if err := json.Unmarshal(e.Body, &w); err != nil || w.Attempt != i+1 {
				t.Fatalf("entry %d: %s (%v), want attempt %d (the older entry is not replayed)", i, e.Body, err, i+1)
			}
		case <-time.After(wait):
			t.Fatalf("entry %d never came", i)
		}
	}
	closeJournal(t, j)
	if _, ok := <-sub.C(); ok {
		t.Fatal("the subscription stays open after Close")
	}
}

// With Poll, entries another writer appends to a shared outbox reach the
// subscribers too.
func TestPollSeesOtherWriters(t *testing.T) {
	s, _ := openBolt(t)
	j := newJournal(t, s, Options{Poll: 10 * time.Millisecond})
	sub := j.Subscribe(10)
	if _, err := s.Append(t.Context(), store.OutboxRecord{Account: "remote", Kind: "state", Instance: "inst-b", Body: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-sub.C():
		if e.Account != "remote" || e.Instance != "inst-b" {
			t.Fatalf("got %+v, want the remote entry", e.OutboxRecord)
		}
	case <-time.After(wait):
		t.Fatal("the remote entry never came")
	}
}

// With Watch, an entry another writer announces reaches the subscribers
// at once, without waiting for Poll.
func TestWatchSeesOtherWritersAtOnce(t *testing.T) {
	s, _ := openBolt(t)
	announce := make(chan struct{}, 1)
	watch := func(context.Context) (<-chan struct{}, error) { return announce, nil }
	j := newJournal(t, s, Options{Poll: time.Hour, Watch: watch})
	sub := j.Subscribe(10)
	if _, err := s.Append(t.Context(), store.OutboxRecord{Account: "remote", Kind: "state", Instance: "inst-b", Body: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	announce <- struct{}{}
	select {
	case e := <-sub.C():
		if e.Account != "remote" {
			t.Fatalf("got %+v, want the remote entry", e.OutboxRecord)
		}
	case <-time.After(wait):
		t.Fatal("the announced entry never came")
	}
}

// A Watch that failed is tried again at the next Poll.
func TestWatchRetriedAfterFailure(t *testing.T) {
	s, _ := openBolt(t)
	tried := make(chan struct{}, 10)
	watch := func(context.Context) (<-chan struct{}, error) {
		select {
		case tried <- struct{}{}:
		default:
		}
		return nil, errors.New("redis down")
	}
	newJournal(t, s, Options{Poll: 10 * time.Millisecond, Watch: watch})
	for i := range 2 {
		select {
		case <-tried:
		case <-time.After(wait):
			t.Fatalf("Watch tried %d times, want it tried again after failing", i)
		}
	}
}

// A subscriber that does not read loses entries, and Lagged says so.
func TestSlowSubscriberLags(t *testing.T) {
	s, _ := openBolt(t)
	j := newJournal(t, s, Options{})
	sub := j.Subscribe(1)
	for range 3 {
		j.Publish(events.Event{Account: "a", Kind: events.KindState})
	}
	select {
	case <-sub.Lagged():
	case <-time.After(wait):
		t.Fatal("Lagged never fired for a full subscriber")
	}
	sub.Close()
	sub.Close()
}

// failingLast is an Outbox whose Last fails until ok is set.
type failingLast struct {
	store.Outbox
	mu sync.Mutex
	ok bool
}

func (f *failingLast) Last(ctx context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.ok {
		return "", errors.New("redis: connection refused")
	}
	return f.Outbox.Last(ctx)
}

// A journal that could not learn where the outbox ended when it started
// never replays the history to its subscribers: it starts from now on
// once the outbox answers.
func TestNoReplayWhenTheStartIsUnknown(t *testing.T) {
	s, _ := openBolt(t)
	for i := range 5 {
		if _, err := s.Append(t.Context(), store.OutboxRecord{Account: "old", Kind: "state", Body: fmt.Appendf(nil, `{"n":%d}`, i)}); err != nil {
			t.Fatal(err)
		}
	}
	f := &failingLast{Outbox: s}
	j := newJournal(t, f, Options{Poll: 5 * time.Millisecond})
	sub := j.Subscribe(100)
	f.mu.Lock()
	f.ok = true
	f.mu.Unlock()
	changed := j.Changed()
	deadline := time.After(wait)
	for { // the follower asks Last again, then follows
		j.Publish(events.Event{Account: "new", Kind: events.KindState})
		select {
		case <-changed:
		case <-time.After(20 * time.Millisecond):
			continue
		case <-deadline:
			t.Fatal("the journal never followed the outbox")
		}
		break
	}
	e := <-sub.C()
	if e.Account != "new" {
		t.Fatalf("the subscriber got %s's entry %s: the history was replayed", e.Account, e.Body)
	}
}

// A record its publisher appended itself (Record, then Written) is
// followed like the journal's own appends, and the Journaled event
// published afterwards is not appended a second time; subscribers see it
// once.
func TestRecordWrittenByThePublisherIsNotRepeated(t *testing.T) {
	s, _ := openBolt(t)
	j := newJournal(t, s, Options{})
	sub := j.Subscribe(10)
	e := events.Event{Account: "a", Kind: events.KindMessage, Message: &events.Message{ID: "3EB0AA", Chat: "1555@s.whatsapp.net", Type: "text", Text: "hi"}}
	if _, err := s.Append(t.Context(), j.Record(e)); err != nil {
		t.Fatal(err)
	}
	j.Written(1)
	got, err := s.After(t.Context(), "", 10)
	if err != nil || len(got) != 1 {
		t.Fatalf("the outbox holds %d entries (%v), want 1", len(got), err)
	}
	var w events.Wire
	if err := json.Unmarshal(got[0].Body, &w); err != nil || w.Message == nil || w.Message.ID != "3EB0AA" || w.Message.Text != "hi" {
		t.Fatalf("entry %s (%v), want the message", got[0].Body, err)
	}
	if got[0].Instance != "inst-a" || got[0].Account != "a" || got[0].Kind != "message" {
		t.Fatalf("entry %+v, want the journal's instance, the account and the kind", got[0].OutboxRecord)
	}
	e.Journaled = true
	j.Publish(e)
	j.Publish(events.Event{Account: "a", Kind: events.KindReconnect, Attempt: 1})
	closeJournal(t, j)
	got, err = s.After(t.Context(), "", 10)
	if err != nil || len(got) != 2 || got[1].Kind != "reconnect" {
		t.Fatalf("the outbox holds %d entries (%v), want the message once and the reconnect", len(got), err)
	}
	if st := j.Stats(); st.Appended != 2 {
		t.Fatalf("stats %+v, want 2 appended", st)
	}
	var kinds []string
	for e := range sub.C() {
		kinds = append(kinds, e.Kind)
	}
	if len(kinds) != 2 || kinds[0] != "message" || kinds[1] != "reconnect" {
		t.Fatalf("the subscriber saw %v, want [message reconnect]", kinds)
	}
}
