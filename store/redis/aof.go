package redis

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// aofPoll is how often RewriteAOF reads INFO persistence while it waits.
const aofPoll = 50 * time.Millisecond

// aofRewriteTimeout bounds one background rewrite (aofRewriter).
const aofRewriteTimeout = 10 * time.Minute

// RewriteAOF asks Redis to rewrite its append-only file (BGREWRITEAOF) and
// waits until the rewrite has finished, so that values replaced before the
// call (secrets in the clear replaced by sealed ones) are no longer in the
// AOF. A rewrite already running may have started before those writes: it
// waits for it and starts another. It reports false, and does nothing,
// when the server has no AOF (appendonly no). On a Cluster it rewrites the
// AOF of every master. RDB snapshots and replicas are not touched.
func RewriteAOF(ctx context.Context, c goredis.UniversalClient) (bool, error) {
	if cc, ok := c.(*goredis.ClusterClient); ok {
		var on atomic.Bool
		err := cc.ForEachMaster(ctx, func(ctx context.Context, m *goredis.Client) error {
			aof, err := rewriteOne(ctx, m)
			if aof {
				on.Store(true)
			}
			return err
		})
		return on.Load(), err
	}
	return rewriteOne(ctx, c)
}

func rewriteOne(ctx context.Context, c goredis.Cmdable) (bool, error) {
	f, err := persistenceInfo(ctx, c)
	if err != nil {
		return false, err
	}
	if f["aof_enabled"] != "1" {
		return false, nil
	}
	for {
		err := c.BgRewriteAOF(ctx).Err() // "started" or "scheduled"
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "already in progress") {
			return true, fmt.Errorf("redis: BGREWRITEAOF: %w", err)
		}
		if _, err := waitForRewrite(ctx, c); err != nil {
			return true, err
		}
	}
	f, err = waitForRewrite(ctx, c)
	if err != nil {
		return true, err
	}
	if status := f["aof_last_bgrewrite_status"]; status != "ok" {
		return true, fmt.Errorf("redis: the AOF rewrite failed (aof_last_bgrewrite_status %q; the Redis log says why)", status)
	}
	return true, nil
}

// waitForRewrite reads INFO persistence until no AOF rewrite is running or
// scheduled, and returns its last reading.
func waitForRewrite(ctx context.Context, c goredis.Cmdable) (map[string]string, error) {
	tick := time.NewTicker(aofPoll)
	defer tick.Stop()
	for {
		f, err := persistenceInfo(ctx, c)
		if err != nil {
			return nil, err
		}
		if f["aof_rewrite_in_progress"] != "1" && f["aof_rewrite_scheduled"] != "1" {
			return f, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("redis: wait for the AOF rewrite: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

func persistenceInfo(ctx context.Context, c goredis.Cmdable) (map[string]string, error) {
	info, err := c.Info(ctx, "persistence").Result()
	if err != nil {
		return nil, fmt.Errorf("redis: INFO persistence: %w", err)
	}
	return infoFields(info), nil
}

// infoFields splits the text of INFO into its fields.
func infoFields(info string) map[string]string {
	fields := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			fields[k] = v
		}
	}
	return fields
}

// aofRewriter runs RewriteAOF in the background once an account's owner
// has sealed records written in the clear (view.Load), so that the
// plaintext leaves the AOF. Requests coalesce: one made while a rewrite
// runs gets one more rewrite after it, so every sealing write is followed
// by a rewrite that started after it. The goroutine lives only while there
// are requests.
type aofRewriter struct {
	c      goredis.UniversalClient
	logger *slog.Logger

	mu      sync.Mutex
	running bool // a goroutine is rewriting
	again   bool // a request came while it was

	toldNoAOF atomic.Bool // the info log about appendonly no was written
}

func (r *aofRewriter) request() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running {
		r.again = true
		return
	}
	r.running = true
	go r.run()
}

func (r *aofRewriter) run() {
	for {
		r.rewrite()
		r.mu.Lock()
		if !r.again {
			r.running = false
			r.mu.Unlock()
			return
		}
		r.again = false
		r.mu.Unlock()
	}
}

func (r *aofRewriter) rewrite() {
	ctx, cancel := context.WithTimeout(context.Background(), aofRewriteTimeout)
	defer cancel()
	on, err := RewriteAOF(ctx, r.c)
	switch {
	case err != nil:
		r.logger.Error("AOF rewrite after sealing records written in the clear failed: the AOF keeps their old values until its next rewrite", "error", err)
	case !on:
		if !r.toldNoAOF.Swap(true) {
			r.logger.Info("records written in the clear are sealed now; Redis has no AOF to rewrite (appendonly no), RDB snapshots taken before keep the old values")
		}
	default:
		r.logger.Info("rewrote the Redis AOF after sealing records written in the clear")
	}
}
