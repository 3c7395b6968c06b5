package webhook

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/wafleet/wafleet/store"
)

// Delivery is the JSON body of every POST to an endpoint.
type Delivery struct {
	// ID is the same on every attempt of one entry to one endpoint, also
	// after a restart or when another instance takes over, so a receiver
	// can drop duplicates by it.
	ID string `json:"id"`
	// EventID is the event's id in the outbox (the same for every
	// endpoint; in fleet mode a Redis stream id).
	EventID  string          `json:"event_id"`
	Kind     string          `json:"kind"`
	Account  string          `json:"account"`
	Instance string          `json:"instance"` // the instance that wrote the event
	Time     time.Time       `json:"time"`     // when the event happened, RFC 3339
	Payload  json.RawMessage `json:"payload"`  // the event, as the outbox keeps it
}

// deliveryID derives the delivery id of entry to endpoint: 128 bits of a
// SHA-256 over the endpoint, the entry's id and its time, so a retry by
// any instance carries the same id, and an outbox started afresh (ids
// counting from 1 again) does not repeat ids a receiver has seen.
func deliveryID(endpoint string, e store.OutboxEntry) string {
	h := sha256.New()
	for _, part := range []string{"wafleet-delivery", endpoint, e.ID, e.Time.UTC().Format(time.RFC3339Nano), e.Account} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func newDelivery(endpoint string, e store.OutboxEntry) ([]byte, string, error) {
	id := deliveryID(endpoint, e)
	payload := json.RawMessage(e.Body)
	if len(payload) == 0 {
		payload = json.RawMessage("null")
	}
	body, err := json.Marshal(Delivery{ID: id, EventID: e.ID, Kind: e.Kind, Account: e.Account, Instance: e.Instance, Time: e.Time.UTC(), Payload: payload})
	if err != nil {
		return nil, id, fmt.Errorf("encode the delivery: %w", err)
	}
	return body, id, nil
}

// outcome is what one attempt leads to.
type outcome int

const (
	delivered outcome = iota // 2xx: acknowledge
	retry                    // try again later, unless attempts are spent
	reject                   // dead letter at once: the receiver will not change its mind
)

// attemptResult is one POST's outcome. reason describes a failure in
// words that hold no secret (no URL query, no secret).
type attemptResult struct {
	outcome    outcome
	reason     string
	retryAfter time.Duration
}

// maxResponseBody bounds the part of a response body that is read (and
// discarded) so the connection can be reused.
const maxResponseBody = 64 << 10

// newClient returns the HTTP client of deliveries: it never follows a
// redirect (the endpoint's URL is the one that must answer); each
// request's deadline is its endpoint's timeout.
func newClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 8
	return &http.Client{
		Transport: t,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// post sends one attempt of a delivery.
func post(ctx context.Context, client *http.Client, ep *Endpoint, id, kind string, body []byte, now time.Time) attemptResult {
	ctx, cancel := context.WithTimeout(ctx, ep.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		return attemptResult{outcome: reject, reason: "cannot build the request: " + describe(err)}
	}
	ts := now.Unix()
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "wafleet-webhook")
	h.Set(HeaderDelivery, id)
	h.Set(HeaderEvent, kind)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	h.Set(HeaderSignature, Sign(ep.Secret, ts, body))
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
			return attemptResult{outcome: retry, reason: fmt.Sprintf("no answer within %s", ep.Timeout)}
		}
		return attemptResult{outcome: retry, reason: describe(err)}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody))
	resp.Body.Close()
	return classify(resp.StatusCode, resp.Header.Get("Retry-After"), now)
}

// classify maps a response status to what follows: 2xx is delivered;
// 408, 429 and 5xx are retried (429 and 503 after Retry-After, when it
// says); everything else (other 4xx, redirects) is rejected for good.
func classify(code int, retryAfter string, now time.Time) attemptResult {
	reason := fmt.Sprintf("HTTP %d %s", code, http.StatusText(code))
	switch {
	case code >= 200 && code < 300:
		return attemptResult{outcome: delivered}
	case code == http.StatusRequestTimeout || code >= 500:
		return attemptResult{outcome: retry, reason: reason, retryAfter: parseRetryAfter(retryAfter, now)}
	case code == http.StatusTooManyRequests:
		return attemptResult{outcome: retry, reason: reason, retryAfter: parseRetryAfter(retryAfter, now)}
	case code >= 300 && code < 400:
		return attemptResult{outcome: reject, reason: reason + " (redirects are not followed: configure the final URL)"}
	default:
		return attemptResult{outcome: reject, reason: reason}
	}
}

// parseRetryAfter reads a Retry-After header: delay seconds or an HTTP
// date; 0 when absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(min(s, int64(24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// describe renders a request error without the URL (whose query may hold
// a token): a *url.Error keeps only its operation's cause.
func describe(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// Backoff spaces the attempts of one delivery: exponential with full
// jitter, the n-th retry waiting a random time up to min(Max, Initial ×
// 2^(n-1)); a Retry-After the receiver sent is honoured up to Max.
type Backoff struct {
	Initial time.Duration
	Max     time.Duration
}

// DefaultBackoff is the backoff of deliveries: 1 s doubling up to 5 min.
var DefaultBackoff = Backoff{Initial: time.Second, Max: 5 * time.Minute}

// delay returns the wait after the attempt-th failed attempt. rnd returns
// a uniform value in [0, n).
func (b Backoff) delay(attempt int, retryAfter time.Duration, rnd func(n int64) int64) time.Duration {
	ceiling := b.Max
	if attempt-1 < 32 {
		if c := b.Initial << (attempt - 1); c > 0 && c < b.Max {
			ceiling = c
		}
	}
	d := time.Duration(rnd(int64(ceiling) + 1))
	if retryAfter > d {
		d = min(retryAfter, b.Max)
	}
	return d
}

func jitter(n int64) int64 { return rand.Int64N(n) }
