package redis

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Re-reading the slot map after a failure: every followEvery for
// followFor after the latest one. A Cluster promotes a replica a few
// seconds after its master died (cluster-node-timeout and an election);
// reading the map once, at the failure, would find the dead master still
// listed, and the fleet would learn of the promotion only after its next
// failed round trip, a lease tick later.
const (
	followEvery = 500 * time.Millisecond
	followFor   = 30 * time.Second
)

// FollowFailovers makes a Cluster client read the slot map again whenever
// a command or a pipeline fails without an answer from Redis (a node that
// refuses connections or times out), and then every followEvery until
// followFor has passed without such a failure. go-redis reloads the map by
// itself only on a MOVED or ASK redirect, which a dead master never sends,
// or once a minute: after a master fails over to its replica, the client
// would go on sending that master's slots to the dead node for up to a
// minute, and every lease in those slots would be lost meanwhile. Each
// reload runs in the background, at most one at a time (go-redis's
// LazyReload).
func FollowFailovers(c *goredis.ClusterClient) {
	c.AddHook(&reloadOnFailure{c: c})
}

type reloadOnFailure struct {
	c *goredis.ClusterClient

	mu        sync.Mutex
	until     time.Time // when the reloads stop, barring a new failure
	following bool      // a goroutine reloads every followEvery
}

func (h *reloadOnFailure) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h *reloadOnFailure) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		err := next(ctx, cmd)
		if unanswered(err) {
			h.failed()
		}
		return err
	}
}

func (h *reloadOnFailure) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		err := next(ctx, cmds)
		if unanswered(err) || slices.ContainsFunc(cmds, func(cmd goredis.Cmder) bool { return unanswered(cmd.Err()) }) {
			h.failed()
		}
		return err
	}
}

// failed reloads the map now and keeps reloading it for followFor.
func (h *reloadOnFailure) failed() {
	h.c.ReloadState(context.Background())
	h.mu.Lock()
	defer h.mu.Unlock()
	h.until = time.Now().Add(followFor)
	if h.following {
		return
	}
	h.following = true
	go h.follow()
}

func (h *reloadOnFailure) follow() {
	tick := time.NewTicker(followEvery)
	defer tick.Stop()
	for range tick.C {
		h.c.ReloadState(context.Background())
		h.mu.Lock()
		done := time.Now().After(h.until)
		if done {
			h.following = false
		}
		h.mu.Unlock()
		if done {
			return
		}
	}
}

// unanswered reports whether err is a failure other than Redis's answer,
// the client's closing or the caller's giving up.
func unanswered(err error) bool {
	return err != nil && !isReplyError(err) && !errors.Is(err, goredis.ErrClosed) && !errors.Is(err, context.Canceled)
}
