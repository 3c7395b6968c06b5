package connection

import (
	"math/rand/v2"
	"time"
)

// Backoff is the reconnect policy: exponential growth with full jitter,
// capped, and reset once a connection has stayed up for StableAfter.
type Backoff struct {
	// Initial is the delay cap of the first retry. Default: 1s.
	Initial time.Duration
	// Max caps every delay. Default: 2m.
	Max time.Duration
	// StableAfter is how long a connection must last before the attempt
	// counter resets. Default: 1m.
	StableAfter time.Duration
}

// DefaultBackoff is the policy used where the configuration sets none (the
// connect.backoff_initial, backoff_max and stable_after keys default to it).
var DefaultBackoff = Backoff{Initial: time.Second, Max: 2 * time.Minute, StableAfter: time.Minute}

// Next returns the delay before retry number attempt (0 for the first retry):
// a uniformly random duration in [0, min(Max, Initial·2^attempt)] ("full
// jitter", so a fleet that lost its server does not come back in lockstep).
// rnd returns a float in [0, 1); pass rand.Float64 outside tests.
func (b Backoff) Next(attempt int, rnd func() float64) time.Duration {
	ceiling := b.Max
	if attempt < 62 {
		if grown := b.Initial << attempt; grown > 0 && grown < b.Max {
			ceiling = grown
		}
	}
	return time.Duration(rnd() * float64(ceiling+1))
}

// NextAtLeast is Next, but never shorter than floor, as when the server
// asked for a retry-after.
func (b Backoff) NextAtLeast(attempt int, floor time.Duration, rnd func() float64) time.Duration {
	return max(b.Next(attempt, rnd), floor)
}

// Stable reports whether a connection that lasted up for lived counts as
// stable, so the next failure starts again from attempt 0.
func (b Backoff) Stable(lived time.Duration) bool {
	return lived >= b.StableAfter
}

// defaultRand is the jitter source used by the actor.
func defaultRand() float64 { return rand.Float64() }
