package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wafleet/wafleet/store"
)

// The outbox on Redis (store.Outbox):
//
//	PREFIX:events                  the log: a stream, one entry per event with
//	                               fields instance, account, kind, time
//	                               (RFC 3339) and body (events.Wire JSON);
//	                               one consumer group per open endpoint
//	{PREFIX:events}:trimmed        string: the newest entry id trimmed
//	PREFIX:{outbox}:endpoints      hash: name -> store.EncodeEndpoint (sealed secret)
//	PREFIX:{outbox}:dead           stream of dead letters: endpoint, entry (its
//	                               id), the entry's fields, attempts, reason, at
//	PREFIX:{outbox}:redrive:EP     list: redriven entries of endpoint EP (JSON)
//	PREFIX:{outbox}:lock:EP        string: the deliverer serving EP, PX OutboxLockTTL
//	PREFIX:events:appended         pub/sub channel: every Append announces its
//	                               last id there (WatchOutbox)
//
// Next hands an endpoint's entries to one deliverer at a time, the one
// holding its lock: order per account needs one deliverer. Each Next
// renews the lock; a deliverer that stops calling Next (dead, or cut off
// from Redis) loses it after OutboxLockTTL, and the next caller takes
// over: it first claims every entry still pending in the group (handed
// out and never acknowledged, by whoever), then reads new ones, then
// the redriven ones. Acknowledgements are not fenced by the lock: an
// entry may be delivered twice around a handover, never lost
// (at-least-once).
//
// Append trims the log in the same script: it keeps OutboxHistory
// entries, and never an entry a group has not acknowledged or not read
// yet, and records the newest entry it trimmed in {PREFIX:events}:trimmed
// (in the stream's hash slot), by which After tells a resume from a
// trimmed id (store.ErrTrimmed).

// DefaultOutboxLockTTL is how long an endpoint stays with a deliverer that
// stopped calling Next.
const DefaultOutboxLockTTL = 30 * time.Second

// maxOutboxRead bounds the entries one call reads.
const maxOutboxRead = 10000

func (k keys) eventsTrimmed() string          { return "{" + k.events() + "}:trimmed" }
func (k keys) eventsChannel() string          { return k.events() + ":appended" }
func (k keys) outboxEndpoints() string        { return k.p + ":{outbox}:endpoints" }
func (k keys) outboxDead() string             { return k.p + ":{outbox}:dead" }
func (k keys) outboxRedrive(ep string) string { return k.p + ":{outbox}:redrive:" + ep }
func (k keys) outboxLock(ep string) string    { return k.p + ":{outbox}:lock:" + ep }

var _ store.Outbox = (*Store)(nil)

// outboxState is what the Store remembers in memory of the outbox, per
// endpoint.
type outboxState struct {
	mu  sync.Mutex
	eps map[string]*endpointState
}

// endpointState holds the entries Next handed out for one endpoint and
// that are not acknowledged yet: id -> the redrive list element, "" for
// a stream entry.
type endpointState struct {
	mu     sync.Mutex // held by Next throughout: two calls never hand out one entry twice
	handed map[string]string
}

// endpoint returns the state of endpoint, created when missing.
func (o *outboxState) endpoint(name string) *endpointState {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.eps == nil {
		o.eps = make(map[string]*endpointState)
	}
	ep := o.eps[name]
	if ep == nil {
		ep = &endpointState{handed: make(map[string]string)}
		o.eps[name] = ep
	}
	return ep
}

// drop forgets endpoint (closed).
func (o *outboxState) drop(name string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.eps, name)
}

// appendScript appends records, announces them on the outbox's channel
// (so that other instances read them at once: WatchOutbox) and trims the
// stream, recording the newest entry it trimmed.
// KEYS[1] stream, KEYS[2] its trimmed marker. ARGV: history, count,
// channel, then 5 fields per record.
var appendScript = goredis.NewScript(`
local function less(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
local ids = {}
local n = tonumber(ARGV[2])
for i = 0, n - 1 do
  local b = 4 + i * 5
  ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', 'instance', ARGV[b], 'account', ARGV[b+1],
    'kind', ARGV[b+2], 'time', ARGV[b+3], 'body', ARGV[b+4])
end
redis.call('PUBLISH', ARGV[3], ids[#ids])
local history = tonumber(ARGV[1])
local len = redis.call('XLEN', KEYS[1])
if len <= history then return ids end
local r = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', math.min(len - history, 1000) + 1)
local keep = r[#r][1]
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, pending, last
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i+1]
    elseif g[i] == 'pending' then pending = g[i+1]
    elseif g[i] == 'last-delivered-id' then last = g[i+1] end
  end
  if less(last, keep) then keep = last end
  if pending > 0 then
    local p = redis.call('XPENDING', KEYS[1], name, '-', '+', 1)
    if #p > 0 and less(p[1][1], keep) then keep = p[1][1] end
  end
end
if not less(r[1][1], keep) then return ids end
local gone = redis.call('XREVRANGE', KEYS[1], '(' .. keep, '-', 'COUNT', 1)
if #gone > 0 then
  redis.call('SET', KEYS[2], gone[1][1])
  redis.call('XTRIM', KEYS[1], 'MINID', keep)
end
return ids
`)

// lockScript takes or renews an endpoint's lock for a deliverer.
// KEYS[1] lock. ARGV: deliverer, ttl ms. Returns 1 when held.
var lockScript = goredis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v == false or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
`)

// unlockScript drops an endpoint's lock if deliverer holds it.
// KEYS[1] lock. ARGV: deliverer.
var unlockScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
`)

func (s *Store) history() int {
	if s.outboxHistory > 0 {
		return s.outboxHistory
	}
	return store.DefaultOutboxHistory
}

func (s *Store) lockTTL() time.Duration {
	if s.outboxLockTTL > 0 {
		return s.outboxLockTTL
	}
	return DefaultOutboxLockTTL
}

// WatchOutbox signals the appends of every instance to the outbox, as
// WatchAccounts does the registry's changes: coalesced, and lost while
// the subscription is down, so pair it with a periodic read.
func (s *Store) WatchOutbox(ctx context.Context) (<-chan struct{}, error) {
	return s.watch(ctx, s.k.eventsChannel(), "watch the outbox")
}

// Append implements store.Outbox: one script adds the batch (so that it
// stays together) and trims the log.
func (s *Store) Append(ctx context.Context, recs ...store.OutboxRecord) ([]string, error) {
	if err := store.ValidateOutboxRecords(recs); err != nil {
		return nil, fmt.Errorf("redis: outbox append: %w", err)
	}
	if len(recs) == 0 {
		return nil, nil
	}
	ctx, cancel, err := s.begin(ctx, "outbox append")
	if err != nil {
		return nil, err
	}
	defer cancel()
	args := make([]any, 0, 3+5*len(recs))
	args = append(args, s.history(), len(recs), s.k.eventsChannel())
	for _, r := range recs {
		t := ""
		if !r.Time.IsZero() {
			t = r.Time.UTC().Format(time.RFC3339Nano)
		}
		args = append(args, r.Instance, r.Account, r.Kind, t, r.Body)
	}
	cl := &call{script: appendScript, keys: []string{s.k.events(), s.k.eventsTrimmed()}, args: args}
	if err := runCalls(ctx, s.c, []*call{cl}, nil); err != nil {
		return nil, fmt.Errorf("redis: outbox append: %w", err)
	}
	ids, err := replyStrings(cl.cmd)
	if err != nil {
		return nil, fmt.Errorf("redis: outbox append: %w", err)
	}
	if len(ids) != len(recs) {
		return nil, fmt.Errorf("redis: outbox append: %w: %d ids for %d records", ErrProtocol, len(ids), len(recs))
	}
	return ids, nil
}

// validStreamID reports whether id has the form of a stream id ("MS-SEQ"
// or "MS").
func validStreamID(id string) bool {
	ms, seq, hasSeq := strings.Cut(id, "-")
	if _, err := strconv.ParseUint(ms, 10, 64); err != nil {
		return false
	}
	if hasSeq {
		if _, err := strconv.ParseUint(seq, 10, 64); err != nil {
			return false
		}
	}
	return true
}

// After implements store.Outbox.
func (s *Store) After(ctx context.Context, id string, n int) ([]store.OutboxEntry, error) {
	if id != "" && (len(id) > 41 || !validStreamID(id)) {
		return nil, fmt.Errorf("redis: outbox after: %w: want a stream id MS-SEQ", store.ErrInvalidOutboxID)
	}
	n = min(n, maxOutboxRead)
	if n <= 0 {
		return nil, nil
	}
	ctx, cancel, err := s.begin(ctx, "outbox after")
	if err != nil {
		return nil, err
	}
	defer cancel()
	start := "-"
	if id != "" {
		start = "(" + id
	}
	pipe := s.c.Pipeline()
	rng := pipe.XRangeN(ctx, s.k.events(), start, "+", int64(n))
	trimmed := pipe.Get(ctx, s.k.eventsTrimmed())
	_, _ = pipe.Exec(ctx)
	msgs, err := rng.Result()
	if err != nil {
		return nil, fmt.Errorf("redis: outbox after %s: %w", id, err)
	}
	out, err := entriesOf(msgs)
	if err != nil {
		return nil, fmt.Errorf("redis: outbox after %s: %w", id, err)
	}
	if id == "" {
		return out, nil
	}
	deleted, err := trimmed.Result()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, fmt.Errorf("redis: outbox after %s: %w", id, err)
	}
	if deleted != "" && store.OutboxIDLess(id, deleted) {
		return out, fmt.Errorf("redis: outbox after %s: %w", id, store.ErrTrimmed)
	}
	return out, nil
}

// entriesOf decodes stream messages.
func entriesOf(msgs []goredis.XMessage) ([]store.OutboxEntry, error) {
	out := make([]store.OutboxEntry, 0, len(msgs))
	for _, m := range msgs {
		e, err := entryOf(m.ID, m.Values)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

func entryOf(id string, v map[string]any) (store.OutboxEntry, error) {
	str := func(k string) string { s, _ := v[k].(string); return s }
	e := store.OutboxEntry{ID: id, OutboxRecord: store.OutboxRecord{
		Account: str("account"), Kind: str("kind"), Instance: str("instance"), Body: []byte(str("body")),
	}}
	if t := str("time"); t != "" {
		var err error
		if e.Time, err = time.Parse(time.RFC3339Nano, t); err != nil {
			return e, fmt.Errorf("%w: entry %s: bad time", store.ErrCorrupt, id)
		}
	}
	return e, nil
}

// Last implements store.Outbox.
func (s *Store) Last(ctx context.Context) (string, error) {
	ctx, cancel, err := s.begin(ctx, "outbox last")
	if err != nil {
		return "", err
	}
	defer cancel()
	msgs, err := s.c.XRevRangeN(ctx, s.k.events(), "+", "-", 1).Result()
	if err != nil {
		return "", fmt.Errorf("redis: outbox last: %w", err)
	}
	if len(msgs) == 0 {
		return "", nil
	}
	return msgs[0].ID, nil
}

// OpenEndpoint implements store.Outbox: a consumer group that starts
// after the newest entry.
func (s *Store) OpenEndpoint(ctx context.Context, endpoint string) error {
	if err := store.ValidateEndpointName(endpoint); err != nil {
		return fmt.Errorf("redis: open endpoint: %w", err)
	}
	ctx, cancel, err := s.begin(ctx, "open endpoint")
	if err != nil {
		return err
	}
	defer cancel()
	err = s.c.XGroupCreateMkStream(ctx, s.k.events(), endpoint, "$").Err()
	if err != nil && !goredis.HasErrorPrefix(err, "BUSYGROUP") {
		return fmt.Errorf("redis: open endpoint %q: %w", endpoint, err)
	}
	return nil
}

// Queues implements store.Outbox: the consumer groups of the stream.
func (s *Store) Queues(ctx context.Context) ([]string, error) {
	ctx, cancel, err := s.begin(ctx, "outbox queues")
	if err != nil {
		return nil, err
	}
	defer cancel()
	groups, err := s.c.XInfoGroups(ctx, s.k.events()).Result()
	if err != nil && !strings.Contains(err.Error(), "no such key") {
		return nil, fmt.Errorf("redis: outbox queues: %w", err)
	}
	names := make([]string, 0, len(groups))
	for _, g := range groups {
		names = append(names, g.Name)
	}
	slices.Sort(names)
	return names, nil
}

// CloseEndpoint implements store.Outbox.
func (s *Store) CloseEndpoint(ctx context.Context, endpoint string) error {
	ctx, cancel, err := s.begin(ctx, "close endpoint")
	if err != nil {
		return err
	}
	defer cancel()
	if err := s.c.XGroupDestroy(ctx, s.k.events(), endpoint).Err(); err != nil && !strings.Contains(err.Error(), "no such key") {
		return fmt.Errorf("redis: close endpoint %q: %w", endpoint, err)
	}
	dead, err := s.deadLetters(ctx, endpoint, maxOutboxRead)
	if err != nil {
		return fmt.Errorf("redis: close endpoint %q: %w", endpoint, err)
	}
	pipe := s.c.TxPipeline() // the {outbox} keys share a slot
	for _, d := range dead {
		pipe.XDel(ctx, s.k.outboxDead(), d.ID)
	}
	pipe.Del(ctx, s.k.outboxRedrive(endpoint), s.k.outboxLock(endpoint))
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redis: close endpoint %q: %w", endpoint, err)
	}
	s.outbox.drop(endpoint)
	return nil
}

// errNoGroup maps Redis's NOGROUP reply to store.ErrNotFound.
func errNoGroup(err error) error {
	if goredis.HasErrorPrefix(err, "NOGROUP") {
		return fmt.Errorf("%w: the endpoint has no queue: open it first", store.ErrNotFound)
	}
	return err
}

// Next implements store.Outbox: see the comment at the top of this file.
func (s *Store) Next(ctx context.Context, endpoint, deliverer string, n int) ([]store.OutboxEntry, error) {
	if deliverer == "" {
		return nil, fmt.Errorf("redis: outbox next of %q: no deliverer name", endpoint)
	}
	n = min(n, maxOutboxRead)
	ctx, cancel, err := s.begin(ctx, "outbox next")
	if err != nil {
		return nil, err
	}
	defer cancel()
	fail := func(err error) ([]store.OutboxEntry, error) {
		return nil, fmt.Errorf("redis: outbox next of %q: %w", endpoint, errNoGroup(err))
	}
	ep := s.outbox.endpoint(endpoint)
	ep.mu.Lock()
	defer ep.mu.Unlock()
	out := ep.handed
	// Round trip 1: the lock, and the group's pending entries (read-only,
	// so harmless when the lock is another's). A closed endpoint has no
	// group: NOGROUP, ErrNotFound.
	var pend *goredis.XPendingExtCmd
	var group goredis.Cmder // the pending entries, or their summary when n is 0
	lock := &call{script: lockScript, keys: []string{s.k.outboxLock(endpoint)}, args: []any{deliverer, s.lockTTL().Milliseconds()}}
	err = runCalls(ctx, s.c, []*call{lock}, func(p goredis.Pipeliner) {
		if n > 0 {
			pend = p.XPendingExt(ctx, &goredis.XPendingExtArgs{
				Stream: s.k.events(), Group: endpoint, Start: "-", End: "+", Count: int64(n + len(out)),
			})
			group = pend
		} else {
			group = p.XPending(ctx, s.k.events(), endpoint)
		}
	})
	if err != nil {
		return fail(err)
	}
	held, err := lock.cmd.Int()
	if err != nil {
		return fail(err)
	}
	if err := group.Err(); err != nil {
		if held == 1 && goredis.HasErrorPrefix(err, "NOGROUP") {
			// Closed: leave the lock to whoever opens it again.
			_ = unlockScript.Run(ctx, s.c, []string{s.k.outboxLock(endpoint)}, deliverer).Err()
			clear(ep.handed)
		}
		return fail(err)
	}
	if held != 1 {
		clear(ep.handed) // another deliverer serves it now
		return nil, nil
	}
	var got []store.OutboxEntry
	// Pending entries not in flight here: handed out before a restart or
	// by a deliverer that lost the lock. They come first, in order.
	if pend != nil {
		var claim []string
		for _, p := range pend.Val() {
			if _, busy := out[p.ID]; !busy && len(claim) < n {
				claim = append(claim, p.ID)
			}
		}
		if len(claim) > 0 {
			msgs, err := s.c.XClaim(ctx, &goredis.XClaimArgs{
				Stream: s.k.events(), Group: endpoint, Consumer: deliverer, Messages: claim,
			}).Result()
			if err != nil {
				return fail(err)
			}
			entries, err := entriesOf(msgs)
			if err != nil {
				return fail(err)
			}
			got = append(got, entries...)
		}
	}
	for _, e := range got {
		out[e.ID] = ""
	}
	if len(got) >= n {
		return got, nil
	}
	// Round trip 2: new entries, and the redriven ones (after them).
	pipe := s.c.Pipeline()
	read := pipe.XReadGroup(ctx, &goredis.XReadGroupArgs{
		Group: endpoint, Consumer: deliverer, Streams: []string{s.k.events(), ">"}, Count: int64(n - len(got)), Block: -1,
	})
	redriven := pipe.LRange(ctx, s.k.outboxRedrive(endpoint), 0, int64(n+len(out)))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) && !isReplyError(err) {
		return fail(err)
	}
	if err := read.Err(); err != nil && !errors.Is(err, goredis.Nil) {
		return fail(err)
	}
	if err := redriven.Err(); err != nil {
		return fail(err)
	}
	for _, st := range read.Val() {
		entries, err := entriesOf(st.Messages)
		if err != nil {
			return fail(err)
		}
		for _, e := range entries {
			out[e.ID] = ""
		}
		got = append(got, entries...)
	}
	if len(got) < n {
		for _, raw := range redriven.Val() {
			e, err := decodeRedriven(raw)
			if err != nil {
				return fail(err)
			}
			if _, busy := out[e.ID]; busy || len(got) >= n {
				continue
			}
			out[e.ID] = raw
			got = append(got, e)
		}
	}
	return got, nil
}

// Ack implements store.Outbox.
func (s *Store) Ack(ctx context.Context, endpoint string, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	ctx, cancel, err := s.begin(ctx, "outbox ack")
	if err != nil {
		return err
	}
	defer cancel()
	if err := s.ack(ctx, s.c.Pipeline(), endpoint, ids); err != nil {
		return fmt.Errorf("redis: outbox ack of %q: %w", endpoint, err)
	}
	return nil
}

// ack acknowledges ids in the group and, for redriven ones, removes them
// from the redrive list, in pipe (and whatever it holds already).
func (s *Store) ack(ctx context.Context, pipe goredis.Pipeliner, endpoint string, ids []string) error {
	ep := s.outbox.endpoint(endpoint)
	ep.mu.Lock()
	var stream []string
	for _, id := range ids {
		if raw := ep.handed[id]; raw != "" {
			pipe.LRem(ctx, s.k.outboxRedrive(endpoint), 1, raw)
		} else if validStreamID(id) {
			stream = append(stream, id)
		}
	}
	ep.mu.Unlock()
	if len(stream) > 0 {
		pipe.XAck(ctx, s.k.events(), endpoint, stream...)
	}
	cmds, err := pipe.Exec(ctx)
	if err != nil && !goredis.HasErrorPrefix(err, "NOGROUP") {
		return err
	}
	for _, c := range cmds {
		if err := c.Err(); err != nil && !goredis.HasErrorPrefix(err, "NOGROUP") {
			return err
		}
	}
	ep.mu.Lock()
	for _, id := range ids {
		delete(ep.handed, id)
	}
	ep.mu.Unlock()
	return nil
}

// redriven is a redriven entry in its endpoint's list.
type redriven struct {
	ID       string    `json:"id"`
	Account  string    `json:"account"`
	Kind     string    `json:"kind"`
	Instance string    `json:"instance,omitempty"`
	Time     time.Time `json:"time"`
	Body     []byte    `json:"body"`
	Nonce    string    `json:"n"` // two redrives of one entry are two list elements
}

func decodeRedriven(raw string) (store.OutboxEntry, error) {
	var r redriven
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		return store.OutboxEntry{}, fmt.Errorf("%w: redriven entry: %v", store.ErrCorrupt, err)
	}
	return store.OutboxEntry{ID: r.ID, OutboxRecord: store.OutboxRecord{
		Account: r.Account, Kind: r.Kind, Instance: r.Instance, Time: r.Time, Body: r.Body,
	}}, nil
}

// Bury implements store.Outbox: the dead letter is added, then the entry
// acknowledged, in one pipeline (not atomically: the stream and the dead
// letters are in different slots; a failure between leaves the entry
// queued beside its dead letter, delivered again).
func (s *Store) Bury(ctx context.Context, d store.DeadLetter) error {
	if err := store.ValidateEndpointName(d.Endpoint); err != nil {
		return fmt.Errorf("redis: outbox bury: %w", err)
	}
	ctx, cancel, err := s.begin(ctx, "outbox bury")
	if err != nil {
		return err
	}
	defer cancel()
	if d.At.IsZero() {
		d.At = time.Now()
	}
	e := d.Entry
	t := ""
	if !e.Time.IsZero() {
		t = e.Time.UTC().Format(time.RFC3339Nano)
	}
	pipe := s.c.Pipeline()
	pipe.XAdd(ctx, &goredis.XAddArgs{Stream: s.k.outboxDead(), Values: []any{
		"endpoint", d.Endpoint, "entry", e.ID, "instance", e.Instance, "account", e.Account, "kind", e.Kind,
		"time", t, "body", e.Body, "attempts", d.Attempts, "reason", store.CutDeadLetterReason(d.Reason),
		"at", d.At.UTC().Format(time.RFC3339Nano),
	}})
	if err := s.ack(ctx, pipe, d.Endpoint, []string{e.ID}); err != nil {
		return fmt.Errorf("redis: outbox bury in %q: %w", d.Endpoint, err)
	}
	return nil
}

// DeadLetters implements store.Outbox.
func (s *Store) DeadLetters(ctx context.Context, endpoint string, n int) ([]store.DeadLetter, error) {
	ctx, cancel, err := s.begin(ctx, "outbox dead letters")
	if err != nil {
		return nil, err
	}
	defer cancel()
	out, err := s.deadLetters(ctx, endpoint, min(n, maxOutboxRead))
	if err != nil {
		return nil, fmt.Errorf("redis: outbox dead letters: %w", err)
	}
	return out, nil
}

// deadLetters reads up to n dead letters of endpoint ("" for all), in
// pages.
func (s *Store) deadLetters(ctx context.Context, endpoint string, n int) ([]store.DeadLetter, error) {
	var out []store.DeadLetter
	start := "-"
	for len(out) < n {
		msgs, err := s.c.XRangeN(ctx, s.k.outboxDead(), start, "+", 500).Result()
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			d, err := deadLetterOf(m)
			if err != nil {
				return nil, err
			}
			if (endpoint == "" || d.Endpoint == endpoint) && len(out) < n {
				out = append(out, d)
			}
		}
		if len(msgs) < 500 {
			break
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
	return out, nil
}

func deadLetterOf(m goredis.XMessage) (store.DeadLetter, error) {
	str := func(k string) string { s, _ := m.Values[k].(string); return s }
	e, err := entryOf(str("entry"), m.Values)
	if err != nil {
		return store.DeadLetter{}, err
	}
	d := store.DeadLetter{ID: m.ID, Endpoint: str("endpoint"), Entry: e, Reason: str("reason")}
	if d.Attempts, err = strconv.Atoi(str("attempts")); err != nil {
		return d, fmt.Errorf("%w: dead letter %s: bad attempts", store.ErrCorrupt, m.ID)
	}
	if d.At, err = time.Parse(time.RFC3339Nano, str("at")); err != nil {
		return d, fmt.Errorf("%w: dead letter %s: bad time", store.ErrCorrupt, m.ID)
	}
	return d, nil
}

// Redrive implements store.Outbox: the entry goes to the end of the
// endpoint's redrive list and the dead letter goes, in one transaction.
func (s *Store) Redrive(ctx context.Context, deadLetterID string) error {
	if !validStreamID(deadLetterID) {
		return fmt.Errorf("redis: outbox redrive %q: %w", deadLetterID, store.ErrNotFound)
	}
	ctx, cancel, err := s.begin(ctx, "outbox redrive")
	if err != nil {
		return err
	}
	defer cancel()
	msgs, err := s.c.XRangeN(ctx, s.k.outboxDead(), deadLetterID, deadLetterID, 1).Result()
	if err != nil {
		return fmt.Errorf("redis: outbox redrive %s: %w", deadLetterID, err)
	}
	if len(msgs) == 0 {
		return fmt.Errorf("redis: outbox redrive %s: %w", deadLetterID, store.ErrNotFound)
	}
	d, err := deadLetterOf(msgs[0])
	if err != nil {
		return fmt.Errorf("redis: outbox redrive %s: %w", deadLetterID, err)
	}
	e := d.Entry
	raw, err := json.Marshal(redriven{ID: e.ID, Account: e.Account, Kind: e.Kind, Instance: e.Instance, Time: e.Time, Body: e.Body, Nonce: nonce()})
	if err != nil {
		return fmt.Errorf("redis: outbox redrive %s: %w", deadLetterID, err)
	}
	pipe := s.c.TxPipeline() // the {outbox} keys share a slot
	pipe.RPush(ctx, s.k.outboxRedrive(d.Endpoint), raw)
	del := pipe.XDel(ctx, s.k.outboxDead(), deadLetterID)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redis: outbox redrive %s: %w", deadLetterID, err)
	}
	if del.Val() == 0 { // redriven meanwhile by another caller: undo ours
		_ = s.c.LRem(ctx, s.k.outboxRedrive(d.Endpoint), 1, raw).Err()
		return fmt.Errorf("redis: outbox redrive %s: %w", deadLetterID, store.ErrNotFound)
	}
	return nil
}

// Endpoints implements store.Outbox, by name. With a Sealer, it seals the
// secrets of endpoints saved before the key was set (and has the AOF
// rewritten without them), as the owner of a device does its record.
func (s *Store) Endpoints(ctx context.Context) ([]store.Endpoint, error) {
	ctx, cancel, err := s.begin(ctx, "list endpoints")
	if err != nil {
		return nil, err
	}
	defer cancel()
	all, err := s.c.HGetAll(ctx, s.k.outboxEndpoints()).Result()
	if err != nil {
		return nil, fmt.Errorf("redis: list endpoints: %w", err)
	}
	out := make([]store.Endpoint, 0, len(all))
	var reseal []any // name, sealed record: secrets written before the key
	for _, v := range all {
		e, sealed, err := store.DecodeEndpoint([]byte(v), s.sealer)
		if err != nil {
			return nil, fmt.Errorf("redis: list endpoints: %w", err)
		}
		out = append(out, e)
		if !sealed && s.sealer != nil {
			rec, err := store.EncodeEndpoint(e, s.sealer)
			if err != nil {
				return nil, fmt.Errorf("redis: list endpoints: %w", err)
			}
			reseal = append(reseal, e.Name, rec)
		}
	}
	if len(reseal) > 0 {
		if err := s.c.HSet(ctx, s.k.outboxEndpoints(), reseal...).Err(); err != nil {
			return nil, fmt.Errorf("redis: list endpoints: seal the secrets written in the clear: %w", err)
		}
		s.aof.request() // the AOF still has them in the clear
	}
	slices.SortFunc(out, func(a, b store.Endpoint) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// SaveEndpoint implements store.Outbox.
func (s *Store) SaveEndpoint(ctx context.Context, e store.Endpoint) error {
	v, err := store.EncodeEndpoint(e, s.sealer)
	if err != nil {
		return fmt.Errorf("redis: save endpoint: %w", err)
	}
	ctx, cancel, err := s.begin(ctx, "save endpoint")
	if err != nil {
		return err
	}
	defer cancel()
	if err := s.c.HSet(ctx, s.k.outboxEndpoints(), e.Name, v).Err(); err != nil {
		return fmt.Errorf("redis: save endpoint %q: %w", e.Name, err)
	}
	return nil
}

// DeleteEndpoint implements store.Outbox.
func (s *Store) DeleteEndpoint(ctx context.Context, name string) error {
	ctx, cancel, err := s.begin(ctx, "delete endpoint")
	if err != nil {
		return err
	}
	defer cancel()
	n, err := s.c.HDel(ctx, s.k.outboxEndpoints(), name).Result()
	if err != nil {
		return fmt.Errorf("redis: delete endpoint %q: %w", name, err)
	}
	if n == 0 {
		return fmt.Errorf("redis: delete endpoint %q: %w", name, store.ErrNotFound)
	}
	return nil
}
