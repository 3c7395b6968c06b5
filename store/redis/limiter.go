package redis

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// LimiterOptions configures NewLimiter. Every instance of a fleet uses the
// same Prefix, Name, Rate and Burst, so the whole fleet shares one budget:
// each instance gets a share of it by taking turns, not a fixed split.
type LimiterOptions struct {
	// Prefix starts the key. Default "wafleet".
	Prefix string
	// Name of the limit. Default "connect".
	Name string
	// Rate is the fleet-wide number of events per second. Default 20.
	Rate float64
	// Burst is how many may go at once after a quiet period. Default 1.
	Burst int
	// Timeout bounds each reservation round trip. Default 2s.
	Timeout time.Duration
}

// Limiter is a fleet-wide rate limit (GCRA on Redis server time, one round
// trip per Take or Wait). It satisfies the connection actor's Limiter interface.
// When Redis cannot be reached it falls back to a local limit at the same
// rate, so an outage slows connects down instead of letting them storm.
type Limiter struct {
	c        goredis.UniversalClient
	key      string
	interval time.Duration
	burst    int
	timeout  time.Duration

	mu       sync.Mutex
	localTAT time.Time
}

// NewLimiter returns a Limiter on c.
func NewLimiter(c goredis.UniversalClient, o LimiterOptions) (*Limiter, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: nil client", ErrConfig)
	}
	k, err := newKeys(o.Prefix)
	if err != nil {
		return nil, err
	}
	if o.Name == "" {
		o.Name = "connect"
	}
	if o.Rate == 0 {
		o.Rate = 20
	}
	if !(o.Rate > 0) || math.IsInf(o.Rate, 0) || o.Rate > 1e6 {
		return nil, fmt.Errorf("%w: rate %v must be in (0, 1e6]", ErrConfig, o.Rate)
	}
	if o.Burst <= 0 {
		o.Burst = 1
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	return &Limiter{
		c: c, key: k.rate(o.Name), burst: o.Burst, timeout: o.Timeout,
		interval: time.Duration(float64(time.Second) / o.Rate),
	}, nil
}

// Reserve takes the next slot and returns how long to wait before using
// it. A slot is spent even if the caller gives up waiting.
func (l *Limiter) Reserve(ctx context.Context) (time.Duration, error) {
	rctx, cancel := withTimeout(ctx, l.timeout)
	defer cancel()
	us, err := reserve.Run(rctx, l.c, []string{l.key}, l.interval.Microseconds(), l.burst).Int64()
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return l.reserveLocal(), fmt.Errorf("redis: rate limit: %w", err)
	}
	return time.Duration(us) * time.Microsecond, nil
}

// reserveLocal is the same GCRA on the local clock.
func (l *Limiter) reserveLocal() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if l.localTAT.Before(now) {
		l.localTAT = now
	}
	wait := l.localTAT.Sub(now) - time.Duration(l.burst-1)*l.interval
	l.localTAT = l.localTAT.Add(l.interval)
	return max(wait, 0)
}

// Take is Reserve for the connection actor (connection.Limiter): a Redis
// error is not returned, the local fallback's wait applies. A slot taken
// cannot be given back (the returned cancel is nil).
func (l *Limiter) Take(ctx context.Context) (time.Duration, func(), error) {
	d, err := l.Reserve(ctx)
	if err != nil && ctx.Err() != nil {
		return 0, nil, ctx.Err()
	}
	return d, nil, nil
}

// Wait blocks until the caller may go, or ctx ends (returning its error).
// Redis errors are not returned: the local fallback limit applies.
func (l *Limiter) Wait(ctx context.Context) error {
	d, _, err := l.Take(ctx)
	if err != nil {
		return err
	}
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
