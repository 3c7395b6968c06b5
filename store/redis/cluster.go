package redis

import (
	"context"
	"slices"

	goredis "github.com/redis/go-redis/v9"
)

// FollowFailovers makes a Cluster client read the slot map again whenever
// a command or a pipeline fails without an answer from Redis (a node that
// refuses connections or times out). go-redis reloads the map by itself
// only on a MOVED or ASK redirect, which a dead master never sends, or
// once a minute: after a master fails over to its replica, the client
// would go on sending that master's slots to the dead node for up to a
// minute, and every lease in those slots would be lost meanwhile. The
// reload runs in the background, at most one at a time (go-redis's
// LazyReload).
func FollowFailovers(c *goredis.ClusterClient) {
	c.AddHook(reloadOnFailure{c})
}

type reloadOnFailure struct{ c *goredis.ClusterClient }

func (h reloadOnFailure) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h reloadOnFailure) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		err := next(ctx, cmd)
		if unanswered(err) {
			h.c.ReloadState(ctx)
		}
		return err
	}
}

func (h reloadOnFailure) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		err := next(ctx, cmds)
		if unanswered(err) || slices.ContainsFunc(cmds, func(cmd goredis.Cmder) bool { return unanswered(cmd.Err()) }) {
			h.c.ReloadState(ctx)
		}
		return err
	}
}

// unanswered reports whether err is a failure other than Redis's answer.
func unanswered(err error) bool { return err != nil && !isReplyError(err) }
