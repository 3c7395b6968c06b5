package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// call is one script invocation queued on a pipeline.
type call struct {
	script *goredis.Script
	keys   []string
	args   []any
	cmd    *goredis.Cmd
}

// runCalls sends every call (and whatever extra queues) in ONE pipeline:
// one round trip on a single node, one per node in parallel on a Cluster.
// Calls that fail with NOSCRIPT (Redis restarted or SCRIPT FLUSH) are sent
// again with EVAL in a second pipeline; nothing else is retried. It returns
// the first error that is not a per-command Redis reply error; check each
// call's cmd for those.
func runCalls(ctx context.Context, c goredis.UniversalClient, calls []*call, extra func(goredis.Pipeliner)) error {
	pipe := c.Pipeline()
	if extra != nil {
		extra(pipe)
	}
	for _, cl := range calls {
		cl.cmd = cl.script.EvalSha(ctx, pipe, cl.keys, cl.args...)
	}
	_, err := pipe.Exec(ctx)
	if err != nil && !isReplyError(err) {
		return err
	}
	var again []*call
	for _, cl := range calls {
		if goredis.HasErrorPrefix(cl.cmd.Err(), "NOSCRIPT") {
			again = append(again, cl)
		}
	}
	if len(again) == 0 {
		return nil
	}
	pipe = c.Pipeline()
	for _, cl := range again {
		cl.cmd = cl.script.Eval(ctx, pipe, cl.keys, cl.args...)
	}
	if _, err := pipe.Exec(ctx); err != nil && !isReplyError(err) {
		return err
	}
	return nil
}

// isReplyError reports whether err is an error reply of Redis to one
// command (as opposed to a network or context failure).
func isReplyError(err error) bool {
	var re goredis.Error
	return errors.As(err, &re) && !errors.Is(err, goredis.ErrClosed)
}

// withTimeout bounds ctx by d unless it already ends sooner.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

func nonce() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b[:])
}

// replyStrings reads a script's array reply of strings and integers.
func replyStrings(cmd *goredis.Cmd) ([]string, error) {
	v, err := cmd.Result()
	if err != nil {
		return nil, err
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: script reply is %T, not an array", ErrProtocol, v)
	}
	out := make([]string, len(arr))
	for i, e := range arr {
		switch e := e.(type) {
		case string:
			out[i] = e
		case int64:
			out[i] = fmt.Sprint(e)
		case nil:
		default:
			return nil, fmt.Errorf("%w: script reply element is %T", ErrProtocol, e)
		}
	}
	return out, nil
}
