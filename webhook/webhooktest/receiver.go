package webhooktest

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/wafleet/wafleet/webhook"
)

// WaitTimeout bounds every wait of a Receiver: long enough for a loaded
// two-core machine, and for a fleet instance to take over an endpoint
// whose deliverer died (its lock lapses after 30 s).
const WaitTimeout = 2 * time.Minute

// Receiver is a webhook endpoint for tests. Its methods are safe for
// concurrent use.
type Receiver struct {
	// URL is where to deliver.
	URL string

	secret string
	srv    *httptest.Server

	mu        sync.Mutex
	respond   func(d webhook.Delivery, attempt int) int
	attempts  map[string]int // by delivery id
	delivered []webhook.Delivery
	problems  []string
	changed   chan struct{} // closed and replaced at every request
}

// NewReceiver starts a receiver that verifies deliveries with secret and
// answers 204 until Respond says otherwise; it is closed at cleanup.
func NewReceiver(t testing.TB, secret string) *Receiver {
	r := &Receiver{secret: secret, attempts: make(map[string]int), changed: make(chan struct{})}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	r.URL = r.srv.URL + "/hook?token=query-secret"
	t.Cleanup(r.srv.Close)
	return r
}

// Respond sets how the receiver answers a verified delivery: f gets it
// and its attempt number (1 for the first time this delivery id arrives)
// and returns the status code; 2xx counts the delivery as accepted. f may
// block (a slow receiver).
func (r *Receiver) Respond(f func(d webhook.Delivery, attempt int) int) {
	r.mu.Lock()
	r.respond = f
	r.mu.Unlock()
}

// FailWith makes the receiver answer code to every verified delivery
// (an endpoint that fails) until Recover or Respond says otherwise.
func (r *Receiver) FailWith(code int) {
	r.Respond(func(webhook.Delivery, int) int { return code })
}

// Recover makes the receiver accept every delivery again (204).
func (r *Receiver) Recover() {
	r.Respond(nil)
}

// Close makes the receiver go away: connections are refused from now on.
func (r *Receiver) Close() {
	r.srv.CloseClientConnections()
	r.srv.Close()
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	var d webhook.Delivery
	problem := ""
	switch {
	case req.Method != http.MethodPost:
		problem = "method " + req.Method
	case req.Header.Get("Content-Type") != "application/json":
		problem = "Content-Type " + req.Header.Get("Content-Type")
	case webhook.Verify(r.secret, req.Header, body, time.Now(), webhook.DefaultTolerance) != nil:
		problem = fmt.Sprintf("signature: %v", webhook.Verify(r.secret, req.Header, body, time.Now(), webhook.DefaultTolerance))
	case json.Unmarshal(body, &d) != nil:
		problem = "body is not a delivery: " + string(body)
	case d.ID == "" || req.Header.Get(webhook.HeaderDelivery) != d.ID:
		problem = fmt.Sprintf("delivery id %q, header %q", d.ID, req.Header.Get(webhook.HeaderDelivery))
	case req.Header.Get(webhook.HeaderEvent) != d.Kind:
		problem = fmt.Sprintf("kind %q, header %q", d.Kind, req.Header.Get(webhook.HeaderEvent))
	}
	r.mu.Lock()
	if problem != "" {
		r.problems = append(r.problems, problem)
		r.notifyLocked()
		r.mu.Unlock()
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.attempts[d.ID]++
	attempt, respond := r.attempts[d.ID], r.respond
	r.notifyLocked()
	r.mu.Unlock()

	code := http.StatusNoContent
	if respond != nil {
		code = respond(d, attempt)
	}
	if code >= 200 && code < 300 {
		r.mu.Lock()
		r.delivered = append(r.delivered, d)
		r.notifyLocked()
		r.mu.Unlock()
	}
	w.WriteHeader(code)
}

func (r *Receiver) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// Delivered returns the deliveries answered with 2xx, in arrival order.
func (r *Receiver) Delivered() []webhook.Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]webhook.Delivery(nil), r.delivered...)
}

// Attempts returns how often delivery id arrived (verified).
func (r *Receiver) Attempts(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.attempts[id]
}

// Attempted returns how often each delivery id arrived (verified).
func (r *Receiver) Attempted() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.attempts)
}

// Requests returns how many verified requests arrived, accepted or not.
func (r *Receiver) Requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, a := range r.attempts {
		n += a
	}
	return n
}

// Problems lists the requests that failed verification: they must be
// none.
func (r *Receiver) Problems() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.problems...)
}

// WaitDelivered waits until at least n deliveries were accepted and
// returns them; it fails the test after WaitTimeout.
func (r *Receiver) WaitDelivered(t testing.TB, n int) []webhook.Delivery {
	t.Helper()
	return r.WaitUntil(t, fmt.Sprintf("%d deliveries", n), func(d []webhook.Delivery) bool { return len(d) >= n })
}

// WaitUntil waits until cond holds for the accepted deliveries and
// returns them; it fails the test, naming what, after WaitTimeout.
func (r *Receiver) WaitUntil(t testing.TB, what string, cond func(delivered []webhook.Delivery) bool) []webhook.Delivery {
	t.Helper()
	deadline := time.NewTimer(WaitTimeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		got, changed := append([]webhook.Delivery(nil), r.delivered...), r.changed
		r.mu.Unlock()
		if cond(got) {
			return got
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("webhook receiver: no %s within %s: %d accepted, problems %v", what, WaitTimeout, len(got), r.Problems())
			return nil
		}
	}
}
