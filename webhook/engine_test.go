package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wafleet/wafleet/internal/testkit"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/webhook"
	"github.com/wafleet/wafleet/webhook/webhooktest"
)

const secret = "s3cret-0123456789abcdef-webhooks"

// outboxes are the Outbox implementations every engine test runs on:
// open returns a fresh one, restart the same outbox as a new process
// finds it after a crash.
var outboxes = []struct {
	name    string
	open    func(t *testing.T) store.Outbox
	restart func(t *testing.T, ob store.Outbox) store.Outbox
}{
	{"bbolt", func(t *testing.T) store.Outbox {
		return openBolt(t, filepath.Join(t.TempDir(), "wafleet.db"))
	}, func(t *testing.T, ob store.Outbox) store.Outbox {
		b := ob.(boltOutbox)
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		return openBolt(t, b.path)
	}},
}

// boltOutbox is the embedded store's outbox and the file it is in.
type boltOutbox struct {
	*store.BoltStore
	path string
}

func openBolt(t *testing.T, path string) boltOutbox {
	t.Helper()
	st, err := store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return boltOutbox{st, path}
}

func forEachOutbox(t *testing.T, test func(t *testing.T, ob store.Outbox)) {
	for _, o := range outboxes {
		t.Run(o.name, func(t *testing.T) { test(t, o.open(t)) })
	}
}

type harness struct {
	stop func() // ends the engine's Run and waits for it
	eng  *webhook.Engine
	ob   store.Outbox
	logs *testkit.LogBuffer
	reg  *prometheus.Registry
}

// start runs an engine on ob with fast retries until the test ends.
func start(t *testing.T, ob store.Outbox, endpoints ...webhook.Endpoint) *harness {
	t.Helper()
	return startWith(t, ob, nil, endpoints...)
}

// startWith is start with the engine's configuration changed by edit.
func startWith(t *testing.T, ob store.Outbox, edit func(*webhook.Config), endpoints ...webhook.Endpoint) *harness {
	t.Helper()
	h := &harness{ob: ob, logs: &testkit.LogBuffer{}, reg: prometheus.NewRegistry()}
	cfg := webhook.Config{
		Outbox:     ob,
		Instance:   "test-1",
		Endpoints:  endpoints,
		Registerer: h.reg,
		Logger:     slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Backoff:    webhook.Backoff{Initial: 5 * time.Millisecond, Max: 40 * time.Millisecond},
		Poll:       20 * time.Millisecond,
		Refresh:    50 * time.Millisecond,
	}
	if edit != nil {
		edit(&cfg)
	}
	eng, err := webhook.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.eng = eng
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { eng.Run(ctx); close(done) }()
	h.stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(func() {
		h.stop()
		if logs := h.logs.String(); strings.Contains(logs, secret) || strings.Contains(logs, "query-secret") {
			t.Errorf("a secret reached the log:\n%s", logs)
		}
	})
	return h
}

func endpoint(name string, r *webhooktest.Receiver) webhook.Endpoint {
	return webhook.Endpoint{Name: name, URL: r.URL, Secret: secret}
}

// waitOpen waits until the engine runs a queue for every endpoint named,
// so that the entries appended next are theirs.
func (h *harness) waitOpen(t *testing.T, names ...string) {
	t.Helper()
	h.waitStatus(t, "queues open", func(list []webhook.Status) bool {
		open := 0
		for _, s := range list {
			if s.Running && slices.Contains(names, s.Name) {
				open++
			}
		}
		return open == len(names)
	})
}

// waitStatus waits until cond holds for the engine's endpoint list.
func (h *harness) waitStatus(t *testing.T, what string, cond func([]webhook.Status) bool) []webhook.Status {
	t.Helper()
	deadline := time.Now().Add(webhooktest.WaitTimeout)
	for {
		list, err := h.eng.Endpoints(context.Background())
		if err == nil && cond(list) {
			return list
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s: %+v (%v)", what, webhooktest.WaitTimeout, list, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitSettled waits until no endpoint holds an entry undelivered here.
func (h *harness) waitSettled(t *testing.T) {
	t.Helper()
	h.waitStatus(t, "settled queues", func(list []webhook.Status) bool {
		for _, s := range list {
			if s.Pending != 0 {
				return false
			}
		}
		return true
	})
}

type payload struct {
	Account string `json:"account"`
	Seq     int    `json:"seq"`
}

// appendEvents appends events from..from+n-1 for each account,
// interleaved, and returns the ids.
func appendEvents(t *testing.T, ob store.Outbox, accounts []string, from, n int, kind string) []string {
	t.Helper()
	var ids []string
	for i := from; i < from+n; i++ {
		for _, a := range accounts {
			body, _ := json.Marshal(payload{Account: a, Seq: i})
			got, err := ob.Append(context.Background(), store.OutboxRecord{Account: a, Kind: kind, Instance: "i-1", Time: time.Now(), Body: body})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, got...)
		}
	}
	return ids
}

// checkInOrder fails unless the deliveries hold every account's payloads
// 0..n-1 exactly once, in order.
func checkInOrder(t *testing.T, got []webhook.Delivery, accounts []string, n int) {
	t.Helper()
	next := make(map[string]int)
	seen := make(map[string]bool)
	for _, d := range got {
		if seen[d.ID] {
			t.Errorf("delivery %s (event %s) accepted twice", d.ID, d.EventID)
		}
		seen[d.ID] = true
		var p payload
		if err := json.Unmarshal(d.Payload, &p); err != nil {
			t.Fatalf("payload %s: %v", d.Payload, err)
		}
		if p.Account != d.Account || d.Instance != "i-1" || d.Kind == "" || d.Time.IsZero() || d.EventID == "" {
			t.Errorf("delivery %+v does not describe its event", d)
		}
		if p.Seq != next[p.Account] {
			t.Errorf("account %s: event %d arrived when %d was due", p.Account, p.Seq, next[p.Account])
		}
		next[p.Account] = p.Seq + 1
	}
	for _, a := range accounts {
		if next[a] != n {
			t.Errorf("account %s: %d of %d events delivered", a, next[a], n)
		}
	}
}

func counter(t *testing.T, h *harness, endpoint, outcome string) float64 {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "wafleet_webhook_deliveries_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["endpoint"] == endpoint && labels["outcome"] == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func sampleCount(t *testing.T, h *harness, name string) uint64 {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				n += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return n
}

func TestEveryEventDeliveredOnceInOrderPerAccount(t *testing.T) {
	forEachOutbox(t, func(t *testing.T, ob store.Outbox) {
		r := webhooktest.NewReceiver(t, secret)
		h := start(t, ob, endpoint("main", r))
		h.waitOpen(t, "main")
		accounts := []string{"a", "b", "c", "d", "e"}
		const n = 40
		appendEvents(t, ob, accounts, 0, n/2, "state")
		h.eng.Notify()
		appendEvents(t, ob, accounts, n/2, n/2, "state") // more while delivering
		h.eng.Notify()
		r.WaitDelivered(t, len(accounts)*n)
		h.waitSettled(t)
		got := r.Delivered()
		if len(got) != len(accounts)*n {
			t.Fatalf("%d deliveries accepted, want %d", len(got), len(accounts)*n)
		}
		checkInOrder(t, got, accounts, n)
		for _, d := range got {
			if a := r.Attempts(d.ID); a != 1 {
				t.Errorf("delivery %s arrived %d times", d.ID, a)
			}
		}
		if p := r.Problems(); len(p) > 0 {
			t.Fatalf("receiver refused deliveries: %v", p)
		}
		if c := counter(t, h, "main", "delivered"); c != float64(len(got)) {
			t.Errorf("delivered counter = %v, want %d", c, len(got))
		}
		if c := sampleCount(t, h, "wafleet_webhook_latency_seconds"); c != uint64(len(got)) {
			t.Errorf("latency histogram counts %d attempts, want %d", c, len(got))
		}
	})
}

func TestFailingReceiverIsRetriedWithTheSameDeliveryID(t *testing.T) {
	forEachOutbox(t, func(t *testing.T, ob store.Outbox) {
		r := webhooktest.NewReceiver(t, secret)
		statuses := []int{http.StatusInternalServerError, http.StatusTooManyRequests, http.StatusRequestTimeout}
		r.Respond(func(d webhook.Delivery, attempt int) int {
			if attempt <= len(statuses) {
				return statuses[attempt-1]
			}
			return http.StatusOK
		})
		h := start(t, ob, endpoint("flaky", r))
		h.waitOpen(t, "flaky")
		accounts := []string{"a", "b"}
		appendEvents(t, ob, accounts, 0, 5, "connected")
		h.eng.Notify()
		r.WaitDelivered(t, 10)
		h.waitSettled(t)
		got := r.Delivered()
		checkInOrder(t, got, accounts, 5)
		for _, d := range got {
			if a := r.Attempts(d.ID); a != 4 {
				t.Errorf("delivery %s arrived %d times, want 4 (3 failures, 1 success) under one id", d.ID, a)
			}
		}
		if c := counter(t, h, "flaky", "retried"); c != 30 {
			t.Errorf("retried counter = %v, want 30", c)
		}
		if c := counter(t, h, "flaky", "dead_lettered"); c != 0 {
			t.Errorf("dead_lettered counter = %v, want 0", c)
		}
	})
}

func TestRestartDeliversWhatWasPending(t *testing.T) {
	for _, o := range outboxes {
		t.Run(o.name, func(t *testing.T) {
			ob := o.open(t)
			r := webhooktest.NewReceiver(t, secret)
			r.FailWith(http.StatusBadGateway)
			ep := endpoint("main", r)
			ep.MaxAttempts = 50 // with at most 0.5 s between them: not spent before the stop
			slow := func(c *webhook.Config) {
				c.Backoff = webhook.Backoff{Initial: 100 * time.Millisecond, Max: 500 * time.Millisecond}
			}
			h := startWith(t, ob, slow, ep)
			h.waitOpen(t, "main")
			accounts := []string{"a", "b"}
			appendEvents(t, ob, accounts, 0, 5, "state")
			h.eng.Notify()
			r.WaitUntil(t, "failed attempts", func([]webhook.Delivery) bool { return r.Requests() >= 2 })
			h.stop()
			before := r.Attempted()

			r.Recover()
			ob = o.restart(t, ob)
			h2 := startWith(t, ob, slow, ep)
			h2.waitOpen(t, "main")
			appendEvents(t, ob, accounts, 5, 5, "state")
			h2.eng.Notify()
			r.WaitDelivered(t, 20)
			h2.waitSettled(t)
			got := r.Delivered()
			checkInOrder(t, got, accounts, 10)
			accepted := make(map[string]bool)
			for _, d := range got {
				accepted[d.ID] = true
			}
			for id, n := range before {
				if !accepted[id] || r.Attempts(id) <= n {
					t.Errorf("delivery %s, refused %d times before the restart, was not attempted again under its id (accepted %v, %d attempts)", id, n, accepted[id], r.Attempts(id))
				}
			}
		})
	}
}

// TestChangedWakesTheQueues: with polling all but off, the outbox's
// change signal alone gets new entries delivered.
func TestChangedWakesTheQueues(t *testing.T) {
	forEachOutbox(t, func(t *testing.T, ob store.Outbox) {
		r := webhooktest.NewReceiver(t, secret)
		var mu sync.Mutex
		changed := make(chan struct{})
		signal := func() {
			mu.Lock()
			close(changed)
			changed = make(chan struct{})
			mu.Unlock()
		}
		h := startWith(t, ob, func(c *webhook.Config) {
			c.Poll = time.Hour
			c.Changed = func() <-chan struct{} {
				mu.Lock()
				defer mu.Unlock()
				return changed
			}
		}, endpoint("main", r))
		h.waitOpen(t, "main")
		for i := range 3 {
			appendEvents(t, ob, []string{"a"}, i, 1, "state")
			signal()
			r.WaitDelivered(t, i+1)
		}
		checkInOrder(t, r.Delivered(), []string{"a"}, 3)
	})
}

func TestSlowEndpointDoesNotDelayAnother(t *testing.T) {
	forEachOutbox(t, func(t *testing.T, ob store.Outbox) {
		slow := webhooktest.NewReceiver(t, secret)
		release := make(chan struct{})
		var once sync.Once
		t.Cleanup(func() { once.Do(func() { close(release) }) })
		slow.Respond(func(webhook.Delivery, int) int {
			<-release
			return http.StatusOK
		})
		fast := webhooktest.NewReceiver(t, secret)
		slowEP := endpoint("slow", slow)
		slowEP.Timeout = time.Minute
		h := start(t, ob, slowEP, endpoint("fast", fast))
		h.waitOpen(t, "slow", "fast")
		accounts := []string{"a", "b", "c"}
		appendEvents(t, ob, accounts, 0, 10, "state")
		h.eng.Notify()
		checkInOrder(t, fast.WaitDelivered(t, 30), accounts, 10)
		if n := len(slow.Delivered()); n != 0 {
			t.Fatalf("the slow receiver accepted %d deliveries while held", n)
		}
		once.Do(func() { close(release) })
		checkInOrder(t, slow.WaitDelivered(t, 30), accounts, 10)
	})
}

func TestDeadLettersAndRedrive(t *testing.T) {
	forEachOutbox(t, func(t *testing.T, ob store.Outbox) {
		r := webhooktest.NewReceiver(t, secret)
		var mu sync.Mutex
		answer := http.StatusServiceUnavailable
		r.Respond(func(d webhook.Delivery, attempt int) int {
			mu.Lock()
			defer mu.Unlock()
			if d.Kind == "paired" && answer != http.StatusOK {
				return http.StatusGone // rejected at once
			}
			return answer
		})
		ep := endpoint("down", r)
		ep.MaxAttempts = 3
		h := start(t, ob, ep)
		h.waitOpen(t, "down")
		appendEvents(t, ob, []string{"a"}, 0, 2, "state")
		appendEvents(t, ob, []string{"a"}, 0, 1, "paired")
		h.eng.Notify()
		var dead []store.DeadLetter
		waitFor(t, "3 dead letters", func() bool {
			var err error
			dead, err = h.eng.DeadLetters(context.Background(), "down", 10)
			return err == nil && len(dead) == 3
		})
		for _, d := range dead {
			switch d.Entry.Kind {
			case "state":
				if d.Attempts != 3 || !strings.Contains(d.Reason, "503") || !strings.Contains(d.Reason, "after 3 attempts") {
					t.Errorf("dead letter %+v: want 3 attempts ending in 503", d)
				}
			case "paired":
				if d.Attempts != 1 || !strings.Contains(d.Reason, "410") {
					t.Errorf("dead letter %+v: want 1 attempt rejected with 410", d)
				}
			}
			if d.Endpoint != "down" || d.ID == "" {
				t.Errorf("dead letter %+v lacks its endpoint or id", d)
			}
			if strings.Contains(d.Reason, "query-secret") {
				t.Errorf("dead letter reason shows the URL's query: %s", d.Reason)
			}
		}
		if c := counter(t, h, "down", "dead_lettered"); c != 3 {
			t.Errorf("dead_lettered counter = %v, want 3", c)
		}
		list := h.waitStatus(t, "dead letters counted", func(l []webhook.Status) bool { return len(l) == 1 && l[0].DeadLetters == 3 })
		if strings.Contains(list[0].URL, "query-secret") {
			t.Errorf("status shows the URL's query: %s", list[0].URL)
		}
		if len(r.Delivered()) != 0 {
			t.Fatalf("accepted %d deliveries from a failing receiver", len(r.Delivered()))
		}

		mu.Lock()
		answer = http.StatusOK
		mu.Unlock()
		for _, d := range dead {
			if err := h.eng.Redrive(context.Background(), d.ID); err != nil {
				t.Fatal(err)
			}
		}
		got := r.WaitDelivered(t, 3)
		ids := map[string]bool{}
		for _, d := range got {
			ids[d.EventID] = true
		}
		for _, d := range dead {
			if !ids[d.Entry.ID] {
				t.Errorf("redriven entry %s not delivered", d.Entry.ID)
			}
		}
		if left, _ := h.eng.DeadLetters(context.Background(), "", 10); len(left) != 0 {
			t.Errorf("dead letters left after redrive: %+v", left)
		}
		if err := h.eng.Redrive(context.Background(), dead[0].ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("second redrive: %v, want ErrNotFound", err)
		}
	})
}

func TestReceiverThatGoesAwayDeadLetters(t *testing.T) {
	forEachOutbox(t, func(t *testing.T, ob store.Outbox) {
		r := webhooktest.NewReceiver(t, secret)
		ep := endpoint("gone", r)
		ep.MaxAttempts = 2
		h := start(t, ob, ep)
		h.waitOpen(t, "gone")
		r.Close()
		appendEvents(t, ob, []string{"a", "b"}, 0, 2, "state")
		h.eng.Notify()
		waitFor(t, "4 dead letters", func() bool {
			dead, err := h.eng.DeadLetters(context.Background(), "gone", 10)
			return err == nil && len(dead) == 4
		})
		dead, _ := h.eng.DeadLetters(context.Background(), "gone", 10)
		for _, d := range dead {
			if d.Attempts != 2 || strings.Contains(d.Reason, "query-secret") || !strings.Contains(d.Reason, "refused") {
				t.Errorf("dead letter %+v: want 2 attempts, connection refused, no query", d)
			}
		}
	})
}

func TestFiltersByKindAndAccount(t *testing.T) {
	forEachOutbox(t, func(t *testing.T, ob store.Outbox) {
		r := webhooktest.NewReceiver(t, secret)
		all := webhooktest.NewReceiver(t, secret)
		ep := endpoint("filtered", r)
		ep.Events = []string{"connected", "alarm"}
		ep.Accounts = []string{"a"}
		h := start(t, ob, ep, endpoint("all", all))
		h.waitOpen(t, "filtered", "all")
		for _, kind := range []string{"state", "connected", "qr", "alarm"} {
			appendEvents(t, ob, []string{"a", "b"}, 0, 1, kind)
		}
		h.eng.Notify()
		all.WaitDelivered(t, 8)
		h.waitSettled(t)
		got := r.Delivered()
		if len(got) != 2 || got[0].Kind != "connected" || got[1].Kind != "alarm" || got[0].Account != "a" || got[1].Account != "a" {
			t.Fatalf("filtered endpoint got %+v, want a's connected and alarm", got)
		}
	})
}

func TestAccountEndpoints(t *testing.T) {
	forEachOutbox(t, func(t *testing.T, ob store.Outbox) {
		r1 := webhooktest.NewReceiver(t, secret)
		r2 := webhooktest.NewReceiver(t, secret)
		h := start(t, ob)
		ctx := context.Background()

		_, err := h.eng.SetAccountEndpoints(ctx, "a", []webhook.Endpoint{{URL: r1.URL, Secret: secret}, {URL: "ftp://x", Secret: secret}})
		var fe *webhook.FieldError
		if !errors.As(err, &fe) || fe.Field != "webhooks[1].url" {
			t.Fatalf("bad url: %v, want a FieldError on webhooks[1].url", err)
		}
		_, err = h.eng.SetAccountEndpoints(ctx, "a", []webhook.Endpoint{{URL: r1.URL, Secret: "tiny-sec"}})
		if !errors.As(err, &fe) || fe.Field != "webhooks[0].secret" || strings.Contains(err.Error(), "tiny-sec") {
			t.Fatalf("short secret: %v, want a FieldError on webhooks[0].secret without the secret", err)
		}
		if list, _ := h.eng.AccountEndpoints(ctx, "a"); len(list) != 0 {
			t.Fatalf("a refused list stored %+v", list)
		}

		set, err := h.eng.SetAccountEndpoints(ctx, "a", []webhook.Endpoint{{URL: r1.URL, Secret: secret}, {URL: r2.URL + "&second", Secret: secret, Events: []string{"connected"}}})
		if err != nil {
			t.Fatal(err)
		}
		h.waitOpen(t, set[0].Name, set[1].Name)
		appendEvents(t, ob, []string{"a", "b"}, 0, 3, "connected")
		h.eng.Notify()
		checkInOrder(t, r1.WaitDelivered(t, 3), []string{"a"}, 3)
		checkInOrder(t, r2.WaitDelivered(t, 3), []string{"a"}, 3)

		// Replacing the list keeps r1's queue and drops r2's.
		r1.Respond(func(webhook.Delivery, int) int { return http.StatusBadRequest })
		appendEvents(t, ob, []string{"a"}, 0, 1, "state") // dead letter for r1
		h.eng.Notify()
		waitFor(t, "r1's dead letter", func() bool {
			d, _ := h.eng.DeadLetters(ctx, set[0].Name, 10)
			return len(d) == 1
		})
		again, err := h.eng.SetAccountEndpoints(ctx, "a", []webhook.Endpoint{{URL: r1.URL, Secret: secret, MaxAttempts: 3}})
		if err != nil {
			t.Fatal(err)
		}
		if again[0].Name != set[0].Name {
			t.Fatalf("the same URL got a new name: %s, was %s", again[0].Name, set[0].Name)
		}
		if d, _ := h.eng.DeadLetters(ctx, set[0].Name, 10); len(d) != 1 {
			t.Fatalf("replacing the list lost r1's dead letter: %+v", d)
		}
		list, err := h.eng.AccountEndpoints(ctx, "a")
		if err != nil || len(list) != 1 || list[0].MaxAttempts != 3 {
			t.Fatalf("account endpoints after replace: %+v, %v", list, err)
		}
		h.waitStatus(t, "r2's queue gone", func(l []webhook.Status) bool { return len(l) == 1 && l[0].Name == set[0].Name })

		if _, err := h.eng.SetAccountEndpoints(ctx, "a", nil); err != nil {
			t.Fatal(err)
		}
		if list, _ := h.eng.AccountEndpoints(ctx, "a"); len(list) != 0 {
			t.Fatalf("endpoints left after delete: %+v", list)
		}
		if d, _ := h.eng.DeadLetters(ctx, "", 10); len(d) != 0 {
			t.Fatalf("dead letters left after the endpoint was deleted: %+v", d)
		}
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(webhooktest.WaitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s", what, webhooktest.WaitTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNewRefusesBadEndpoints(t *testing.T) {
	for _, eps := range [][]webhook.Endpoint{
		{{Name: "", URL: "http://x", Secret: secret}},
		{{Name: "a", URL: "http://x", Secret: secret}, {Name: "a", URL: "http://y", Secret: secret}},
		{{Name: "a", URL: "http://x", Secret: "short"}},
	} {
		if _, err := webhook.New(webhook.Config{Outbox: openBolt(t, filepath.Join(t.TempDir(), "wafleet.db")), Endpoints: eps}); err == nil {
			t.Errorf("New accepted %+v", eps)
		} else if strings.Contains(err.Error(), secret) {
			t.Errorf("error shows the secret: %v", err)
		}
	}
	if _, err := webhook.New(webhook.Config{}); !errors.Is(err, webhook.ErrNoOutbox) {
		t.Errorf("New without outbox: %v", err)
	}
}

// TestRemovedEndpointsQueueIsClosed: a queue left by an endpoint no
// longer configured nor stored is closed at start, with its dead
// letters; the queues of defined endpoints stay.
func TestRemovedEndpointsQueueIsClosed(t *testing.T) {
	forEachOutbox(t, func(t *testing.T, ob store.Outbox) {
		ctx := context.Background()
		r := webhooktest.NewReceiver(t, secret)
		for _, name := range []string{"gone", "kept", "a:0123456789ab"} {
			if err := ob.OpenEndpoint(ctx, name); err != nil {
				t.Fatal(err)
			}
		}
		if err := ob.SaveEndpoint(ctx, store.Endpoint{Name: "a:0123456789ab", Account: "a", URL: r.URL, Secret: secret, Timeout: time.Second, MaxAttempts: 1}); err != nil {
			t.Fatal(err)
		}
		appendEvents(t, ob, []string{"a"}, 0, 1, "state")
		got, err := ob.Next(ctx, "gone", "test-0", 1)
		if err != nil || len(got) != 1 {
			t.Fatalf("Next: %v, %v", got, err)
		}
		if err := ob.Bury(ctx, store.DeadLetter{Endpoint: "gone", Entry: got[0], Attempts: 1, Reason: "test"}); err != nil {
			t.Fatal(err)
		}
		h := start(t, ob, endpoint("kept", r))
		h.waitOpen(t, "kept", "a:0123456789ab")
		waitFor(t, "the removed endpoint's queue and dead letters gone", func() bool {
			q, err := ob.Queues(ctx)
			d, derr := ob.DeadLetters(ctx, "", 10)
			return err == nil && !slices.Contains(q, "gone") && derr == nil && len(d) == 0
		})
		q, err := ob.Queues(ctx)
		if err != nil || !slices.Contains(q, "kept") || !slices.Contains(q, "a:0123456789ab") {
			t.Fatalf("queues after the prune: %v, %v", q, err)
		}
	})
}
