package fleet

import (
	"context"
	"time"

	"github.com/wafleet/wafleet/store/redis"
)

// Leases is the lease table of one instance, the state the Coordinator
// drives: store/redis.Leases keeps it in Redis (see there for the meaning
// of each call); the package's tests also use one in memory. It must be
// safe for concurrent use: the watchdog and Sockets read it beside Step.
type Leases interface {
	// Instance is this instance's id; TTL the lifetime of a lease.
	Instance() string
	TTL() time.Duration

	// Get returns the lease held for acct while it is valid locally;
	// Usable also requires its NotBefore to have come; Held returns every
	// lease held, sorted by account.
	Get(acct string) (redis.Lease, bool)
	Usable(acct string) bool
	Held() []redis.Lease

	// NextDeadline is the earliest local deadline of the held leases (zero
	// for none); Expire drops and returns the leases past theirs.
	NextDeadline() time.Time
	Expire() []redis.Lease

	// Tick heartbeats and renews every held lease (and reads who holds the
	// watched accounts); Acquire tries to take leases.
	Tick(ctx context.Context, watch ...string) (redis.TickResult, error)
	Acquire(ctx context.Context, accounts ...string) (redis.AcquireResult, error)

	// Drop forgets leases locally (their connections are closed next) and
	// GiveBack releases them; Close releases every lease and leaves.
	Drop(accounts ...string) []redis.Lease
	GiveBack(ctx context.Context, ls ...redis.Lease) error
	Close(ctx context.Context) error
}

var _ Leases = (*redis.Leases)(nil)
