package app

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wafleet/wafleet/actors/connection"
	"github.com/wafleet/wafleet/api"
	"github.com/wafleet/wafleet/store"
)

// TestSendOutcome: the actor's answers to a send map to the API's typed
// errors; a key claim refused because the lease moved (a hand-over under
// way) is 503 to retry, not a failure.
func TestSendOutcome(t *testing.T) {
	if got, err := sendOutcome("a", &connection.SendResult{ID: "3EB0X", Duplicate: true}); err != nil || got != (api.Sent{ID: "3EB0X", Duplicate: true}) {
		t.Fatalf("a duplicate: %+v, %v", got, err)
	}
	var bad *api.BadRequest
	if _, err := sendOutcome("a", &connection.SendResult{Err: fmt.Errorf("%w: the text is 0 bytes", connection.ErrSendInput)}); !errors.As(err, &bad) {
		t.Fatalf("invalid input: %v", err)
	}
	var limited *api.RateLimited
	if _, err := sendOutcome("a", &connection.SendResult{Err: connection.ErrRateLimited, RetryAfter: time.Second}); !errors.As(err, &limited) || limited.RetryAfter != time.Second {
		t.Fatalf("rate limited: %v", err)
	}
	var refused *api.Refused
	if _, err := sendOutcome("a", &connection.SendResult{Err: connection.ErrNotConnected}); !errors.As(err, &refused) {
		t.Fatalf("not connected: %v", err)
	}
	lost := fmt.Errorf("record the idempotency key: redis: claim send of %q: no lease held: %w", "a", store.ErrLeaseLost)
	var unavailable *api.Unavailable
	if _, err := sendOutcome("a", &connection.SendResult{Err: lost}); !errors.As(err, &unavailable) || !strings.Contains(unavailable.Reason, "nothing was sent") {
		t.Fatalf("lease lost while claiming the key: %v, want Unavailable", err)
	}
	other := errors.New("redis: i/o timeout")
	if _, err := sendOutcome("a", &connection.SendResult{Err: other}); !errors.Is(err, other) {
		t.Fatalf("a store failure: %v", err)
	}
}
