package store

import (
	"encoding/json"
	"fmt"
	"time"
)

// Limits of the outbox, shared by every implementation.
const (
	MaxEndpointNameLen = 128       // 1..128 bytes of printable ASCII, no space
	MaxEndpointURLLen  = 2048      // bytes
	MaxEndpointSecret  = 1024      // bytes
	MaxEndpointEvents  = 64        // kinds in Endpoint.Events
	MaxOutboxBodyLen   = 64 * 1024 // bytes of OutboxRecord.Body
	MaxOutboxFieldLen  = 256       // bytes of OutboxRecord's Account, Kind and Instance
	// MaxDeadLetterReasonLen bounds DeadLetter.Reason; longer ones are cut.
	MaxDeadLetterReasonLen = 512
)

// ValidateEndpointName checks the name of an endpoint's queue. Errors wrap
// ErrInvalidEndpoint and do not echo the name.
func ValidateEndpointName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrInvalidEndpoint)
	}
	if len(name) > MaxEndpointNameLen {
		return fmt.Errorf("%w: name is %d bytes long, at most %d allowed", ErrInvalidEndpoint, len(name), MaxEndpointNameLen)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("%w: name byte %d is not printable ASCII (or is a space)", ErrInvalidEndpoint, i)
		}
	}
	return nil
}

// Validate checks an endpoint before it is saved; errors wrap
// ErrInvalidEndpoint, name the field and never echo the secret.
func (e Endpoint) Validate() error {
	if err := ValidateEndpointName(e.Name); err != nil {
		return err
	}
	switch {
	case e.Account == "" || len(e.Account) > MaxOutboxFieldLen:
		return fmt.Errorf("%w: account: want 1 to %d bytes", ErrInvalidEndpoint, MaxOutboxFieldLen)
	case e.URL == "" || len(e.URL) > MaxEndpointURLLen:
		return fmt.Errorf("%w: url: want 1 to %d bytes", ErrInvalidEndpoint, MaxEndpointURLLen)
	case len(e.Secret) > MaxEndpointSecret:
		return fmt.Errorf("%w: secret: at most %d bytes", ErrInvalidEndpoint, MaxEndpointSecret)
	case len(e.Events) > MaxEndpointEvents:
		return fmt.Errorf("%w: events: at most %d kinds", ErrInvalidEndpoint, MaxEndpointEvents)
	case e.Timeout < 0:
		return fmt.Errorf("%w: timeout: must not be negative", ErrInvalidEndpoint)
	case e.MaxAttempts < 0:
		return fmt.Errorf("%w: max_attempts: must not be negative", ErrInvalidEndpoint)
	}
	for i, k := range e.Events {
		if k == "" || len(k) > MaxOutboxFieldLen {
			return fmt.Errorf("%w: events[%d]: want 1 to %d bytes", ErrInvalidEndpoint, i, MaxOutboxFieldLen)
		}
	}
	return nil
}

// ValidateOutboxRecords checks records before an Append: account and kind
// set, every field within its limit. Errors wrap ErrInvalidOutboxRecord;
// stores write nothing when it fails.
func ValidateOutboxRecords(recs []OutboxRecord) error {
	for i, r := range recs {
		if problem := outboxRecordProblem(r); problem != "" {
			return fmt.Errorf("%w: record %d: %s", ErrInvalidOutboxRecord, i, problem)
		}
	}
	return nil
}

// outboxRecordProblem says what is wrong with r, or "" when an Append may
// take it; callers wrap it in their own sentinel error.
func outboxRecordProblem(r OutboxRecord) string {
	switch {
	case r.Account == "" || len(r.Account) > MaxOutboxFieldLen:
		return fmt.Sprintf("account: want 1 to %d bytes", MaxOutboxFieldLen)
	case r.Kind == "" || len(r.Kind) > MaxOutboxFieldLen:
		return fmt.Sprintf("kind: want 1 to %d bytes", MaxOutboxFieldLen)
	case len(r.Instance) > MaxOutboxFieldLen:
		return fmt.Sprintf("instance: at most %d bytes", MaxOutboxFieldLen)
	case len(r.Body) > MaxOutboxBodyLen:
		return fmt.Sprintf("body is %d bytes, at most %d allowed", len(r.Body), MaxOutboxBodyLen)
	}
	return ""
}

// storedEndpoint is an Endpoint at rest: the secret in the clear (Secret)
// or sealed (Sealed), never both.
type storedEndpoint struct {
	Name        string   `json:"name"`
	Account     string   `json:"account"`
	URL         string   `json:"url"`
	Events      []string `json:"events,omitempty"`
	Secret      string   `json:"secret,omitempty"`
	Sealed      []byte   `json:"sealed_secret,omitempty"`
	TimeoutMS   int64    `json:"timeout_ms,omitempty"`
	MaxAttempts int      `json:"max_attempts,omitempty"`
}

// sealLabelEndpoint binds a sealed secret to its endpoint's name, so that
// it cannot be moved into another endpoint's record.
const sealLabelEndpoint = "endpoint\x00"

// EncodeEndpoint encodes a validated endpoint for storage, with its secret
// sealed by sealer (in the clear when sealer is nil). Shared by the stores.
func EncodeEndpoint(e Endpoint, sealer Sealer) ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	se := storedEndpoint{
		Name: e.Name, Account: e.Account, URL: e.URL, Events: e.Events,
		TimeoutMS: e.Timeout.Milliseconds(), MaxAttempts: e.MaxAttempts,
	}
	if e.Secret != "" {
		if sealer == nil {
			se.Secret = e.Secret
		} else {
			plain := []byte(sealLabelEndpoint + e.Name + "\x00" + e.Secret)
			sealed, err := sealer.Seal(plain)
			clear(plain)
			if err != nil {
				return nil, fmt.Errorf("seal the secret of endpoint %q: %w", e.Name, err)
			}
			se.Sealed = sealed
		}
	}
	return json.Marshal(se)
}

// DecodeEndpoint decodes what EncodeEndpoint wrote. sealed reports whether
// the secret was sealed (false with a secret in the clear: a store with a
// Sealer should re-save it). A sealed secret without a sealer is an error
// wrapping ErrNoSealer.
func DecodeEndpoint(b []byte, sealer Sealer) (e Endpoint, sealed bool, err error) {
	var se storedEndpoint
	if err := json.Unmarshal(b, &se); err != nil {
		return Endpoint{}, false, fmt.Errorf("%w: endpoint record: %v", ErrCorrupt, err)
	}
	e = Endpoint{
		Name: se.Name, Account: se.Account, URL: se.URL, Events: se.Events,
		Secret: se.Secret, Timeout: time.Duration(se.TimeoutMS) * time.Millisecond, MaxAttempts: se.MaxAttempts,
	}
	switch {
	case se.Sealed != nil && sealer == nil:
		return Endpoint{}, true, fmt.Errorf("endpoint %q: %w", se.Name, ErrNoSealer)
	case se.Sealed != nil:
		plain, err := sealer.Open(se.Sealed)
		if err != nil {
			return Endpoint{}, true, fmt.Errorf("endpoint %q: %w", se.Name, err)
		}
		prefix := sealLabelEndpoint + se.Name + "\x00"
		if len(plain) < len(prefix) || string(plain[:len(prefix)]) != prefix {
			clear(plain)
			return Endpoint{}, true, fmt.Errorf("endpoint %q: %w: sealed secret belongs to another endpoint", se.Name, ErrCorrupt)
		}
		e.Secret = string(plain[len(prefix):])
		clear(plain)
		sealed = true
	default:
		sealed = se.Secret == ""
	}
	return e, sealed, nil
}

// CutDeadLetterReason bounds a dead letter's reason to
// MaxDeadLetterReasonLen bytes, as every store keeps it.
func CutDeadLetterReason(s string) string {
	if len(s) > MaxDeadLetterReasonLen {
		return s[:MaxDeadLetterReasonLen]
	}
	return s
}
