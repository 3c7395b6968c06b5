package store

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Errors of the outbox.
var (
	// ErrTrimmed: Outbox.After was asked for entries after an id older
	// than the oldest entry kept; some entries in between are gone. The
	// entries returned with it start at the oldest kept.
	ErrTrimmed = errors.New("store: outbox entries were trimmed")
	// ErrInvalidEndpoint: an endpoint name or definition out of bounds;
	// nothing was written.
	ErrInvalidEndpoint = errors.New("store: invalid webhook endpoint")
	// ErrInvalidOutboxRecord: Append refused a record (no account or
	// kind, a field over its limit); nothing was written.
	ErrInvalidOutboxRecord = errors.New("store: invalid outbox record")
	// ErrInvalidOutboxID: After was given an id this outbox never makes
	// (say, another store's, or garbage from a client).
	ErrInvalidOutboxID = errors.New("store: invalid outbox id")
)

// OutboxRecord is one account event as the outbox keeps it. Body is the
// event's JSON as webhooks deliver it and the event stream shows it; it
// never holds a secret (no QR content).
type OutboxRecord struct {
	Account  string
	Kind     string
	Instance string // the instance that wrote it
	Time     time.Time
	Body     []byte
}

// OutboxEntry is a record with its position in the outbox. IDs are
// unique and increase in append order within one outbox (Redis stream
// ids in fleet mode, zero-padded sequence numbers in bbolt). The log is
// bounded: entries every queue has acknowledged are trimmed beyond the
// implementation's history limit; entries still queued are never trimmed.
type OutboxEntry struct {
	ID string
	OutboxRecord
}

// OutboxIDLess reports whether entry id a was appended before b, for ids
// of one outbox: zero-padded decimals (bbolt) or Redis stream ids
// ("MS-SEQ"). An id of neither form sorts first.
func OutboxIDLess(a, b string) bool {
	am, as := splitOutboxID(a)
	bm, bs := splitOutboxID(b)
	return am < bm || am == bm && as < bs
}

func splitOutboxID(id string) (major, minor uint64) {
	ms, seq, _ := strings.Cut(id, "-")
	major, err := strconv.ParseUint(ms, 10, 64)
	if err != nil {
		return 0, 0
	}
	if seq != "" {
		if minor, err = strconv.ParseUint(seq, 10, 64); err != nil {
			return 0, 0
		}
	}
	return major, minor
}

// DeadLetter is an entry an endpoint gave up on after its last attempt.
type DeadLetter struct {
	ID       string // of the dead letter itself, for Redrive
	Endpoint string
	Entry    OutboxEntry
	Attempts int
	Reason   string // the last failure, in words; never a secret
	At       time.Time
}

// Endpoint is a stored webhook endpoint defined through the API for one
// account (configured endpoints live in the YAML file). Secret is sealed
// at rest like a device's private keys.
type Endpoint struct {
	Name        string // unique; names the endpoint's queue
	Account     string
	URL         string
	Events      []string // kinds; empty means every kind
	Secret      string
	Timeout     time.Duration
	MaxAttempts int
}

// Outbox is the durable log of account events that webhooks deliver from
// and event streams resume from: events are appended before any delivery,
// each endpoint has its own queue over the log that remembers what it has
// acknowledged, and entries an endpoint gives up on become dead letters
// that can be driven again. Implementations are safe for concurrent use;
// the embedded one keeps the log in the bbolt file, the fleet's in a Redis
// stream with a consumer group per endpoint, so that the undelivered
// entries of a dead instance are delivered by another.
type Outbox interface {
	// Append writes recs durably, in order, and returns their ids. Every
	// open endpoint's queue then holds them.
	Append(ctx context.Context, recs ...OutboxRecord) ([]string, error)

	// After returns up to n entries appended after id, oldest first; ""
	// starts at the oldest entry kept. An id older than the oldest kept
	// returns what is kept and an error wrapping ErrTrimmed.
	After(ctx context.Context, id string, n int) ([]OutboxEntry, error)
	// Last returns the id of the newest entry appended, "" when none was.
	Last(ctx context.Context) (string, error)

	// OpenEndpoint creates endpoint's queue if it has none; a new queue
	// starts with the next entry appended. Opening an open one is a no-op.
	OpenEndpoint(ctx context.Context, endpoint string) error
	// CloseEndpoint drops endpoint's queue and its dead letters.
	CloseEndpoint(ctx context.Context, endpoint string) error
	// Queues lists the endpoints that have a queue (opened, not closed),
	// sorted: a queue nobody serves holds its entries forever, so the
	// webhook engine closes those of endpoints no longer defined.
	Queues(ctx context.Context) ([]string, error)

	// Next returns up to n entries of endpoint's queue that are neither
	// acknowledged nor handed out to a live deliverer, oldest first: first
	// those handed out long ago and never acknowledged (after a crash, or
	// held by a dead instance), then new ones. deliverer names the calling
	// process (its instance id). In fleet mode one deliverer at a time
	// serves an endpoint, so that order per account holds; the others get
	// no entries until it stops calling Next (for the Redis store's
	// OutboxLockTTL). A deliverer busy with what it holds keeps its turn
	// by calling Next, with n = 0 if it wants no more.
	Next(ctx context.Context, endpoint, deliverer string, n int) ([]OutboxEntry, error)
	// Ack marks entries of endpoint's queue delivered.
	Ack(ctx context.Context, endpoint string, ids ...string) error
	// Bury acknowledges d.Entry in d.Endpoint's queue and keeps d as a
	// dead letter, in one step where the store can.
	Bury(ctx context.Context, d DeadLetter) error
	// DeadLetters lists up to n dead letters, oldest first, of endpoint
	// ("" for every endpoint).
	DeadLetters(ctx context.Context, endpoint string, n int) ([]DeadLetter, error)
	// Redrive puts a dead letter's entry back in its endpoint's queue
	// (delivered again, after the entries already queued) and removes the
	// dead letter; an unknown id wraps ErrNotFound.
	Redrive(ctx context.Context, deadLetterID string) error

	// Endpoints, SaveEndpoint and DeleteEndpoint keep the endpoints
	// defined through the API. DeleteEndpoint of an unknown name wraps
	// ErrNotFound.
	Endpoints(ctx context.Context) ([]Endpoint, error)
	SaveEndpoint(ctx context.Context, e Endpoint) error
	DeleteEndpoint(ctx context.Context, name string) error
}
