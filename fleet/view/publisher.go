package view

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/status"
	wredis "github.com/wafleet/wafleet/store/redis"
)

// ErrConfig: a required dependency is missing.
var ErrConfig = errors.New("view: invalid configuration")

// DefaultInterval is the default time between two flushes of the
// Publisher.
const DefaultInterval = 500 * time.Millisecond

// maxLastError bounds the last error of a published view.
const maxLastError = 256

// chunk bounds the accounts of one publish script call.
const chunk = 500

// Board gives this instance's account views; *status.Board is one.
type Board interface {
	Get(id string) (status.Account, bool)
	List() []status.Account
}

// Holdings are this instance's leases; *store/redis.Leases is one.
type Holdings interface {
	Get(acct string) (wredis.Lease, bool)
	Held() []wredis.Lease
}

// PublisherConfig configures a Publisher. Every field but Interval and
// Logger is required.
type PublisherConfig struct {
	Client   goredis.UniversalClient
	Keys     wredis.ViewKeys
	Instance string
	LeaseTTL time.Duration
	Board    Board
	Leases   Holdings
	// Interval between flushes. Default DefaultInterval.
	Interval time.Duration
	Logger   *slog.Logger
}

// Publisher publishes the views of the accounts this instance holds.
// Register it as a sink of the event bus (it notes which accounts changed,
// without blocking) and Run it.
type Publisher struct {
	cfg PublisherConfig
	log *slog.Logger

	mu    sync.Mutex
	dirty map[string]bool
	all   bool // republish everything (Redis lost its data)

	// Touched by flush only (one goroutine at a time: Run, then Close).
	published map[string]published
	self      string // the instance record as last written
}

// published is what Redis holds for one account, as this instance wrote it.
type published struct {
	fence wredis.FenceToken
	body  string
}

// instanceRecord is what an instance publishes about itself.
type instanceRecord struct {
	Accounts   int   `json:"accounts"`
	LeaseTTLMs int64 `json:"lease_ttl_ms"`
}

// NewPublisher returns a Publisher.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	if cfg.Client == nil || cfg.Instance == "" || cfg.Board == nil || cfg.Leases == nil || cfg.LeaseTTL <= 0 {
		return nil, fmt.Errorf("%w: Client, Instance, LeaseTTL, Board and Leases are required", ErrConfig)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Publisher{cfg: cfg, log: log, dirty: map[string]bool{}, published: map[string]published{}}, nil
}

// Publish notes that e's account may have changed. It implements
// events.Publisher and never blocks.
func (p *Publisher) Publish(e events.Event) {
	p.mu.Lock()
	p.dirty[e.Account] = true
	p.mu.Unlock()
}

// Refresh makes the next flush write every view again (Redis lost its
// data).
func (p *Publisher) Refresh() {
	p.mu.Lock()
	p.all = true
	p.mu.Unlock()
}

// Run flushes every Interval until ctx ends. A failed flush is logged
// once until one succeeds; its views are written by the next.
func (p *Publisher) Run(ctx context.Context) {
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := p.flush(ctx)
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			p.log.Warn("fleet view: publish", "error", err)
			failing = true
		case err == nil && failing:
			p.log.Info("fleet view: publishing again")
			failing = false
		}
	}
}

// Close runs a last flush (the accounts stopped on shutdown leave Redis)
// and removes the instance's record. Call it after Run returned.
func (p *Publisher) Close(ctx context.Context) error {
	err := p.flush(ctx)
	if err2 := p.cfg.Client.HDel(ctx, p.cfg.Keys.Instances(), p.cfg.Instance).Err(); err2 != nil {
		err = errors.Join(err, fmt.Errorf("view: remove the instance record: %w", err2))
	}
	return err
}

// flush writes the views that changed since the last flush and the
// instance record if it changed, in one pipeline; nothing when nothing
// changed.
func (p *Publisher) flush(ctx context.Context) error {
	p.mu.Lock()
	dirty, all := p.dirty, p.all
	p.dirty, p.all = map[string]bool{}, false
	p.mu.Unlock()
	if all {
		for a := range p.published {
			dirty[a] = true
		}
		for _, l := range p.cfg.Leases.Held() {
			dirty[l.Account] = true
		}
		clear(p.published)
		p.self = ""
	}
	held := p.cfg.Leases.Held()
	rec, _ := json.Marshal(instanceRecord{Accounts: len(held), LeaseTTLMs: p.cfg.LeaseTTL.Milliseconds()})
	self := string(rec)
	if self == p.self {
		self = "" // unchanged: not written
	}
	var ops []op
	for _, acct := range slices.Sorted(maps.Keys(dirty)) {
		v, shown := p.cfg.Board.Get(acct)
		l, holds := p.cfg.Leases.Get(acct)
		prev, was := p.published[acct]
		switch {
		case shown && holds:
			body := p.encode(v)
			if was && prev.fence == l.Token && prev.body == body {
				continue
			}
			ops = append(ops, op{acct: acct, pub: published{fence: l.Token, body: body}})
		case was:
			ops = append(ops, op{acct: acct, pub: prev, del: true})
		}
	}
	if self == "" && len(ops) == 0 {
		return nil
	}
	if err := p.write(ctx, self, ops); err != nil {
		p.mu.Lock() // try these again at the next flush
		for a := range dirty {
			p.dirty[a] = true
		}
		p.all = p.all || all
		p.mu.Unlock()
		return err
	}
	if self != "" {
		p.self = self
	}
	for _, o := range ops {
		if o.del {
			delete(p.published, o.acct)
		} else {
			p.published[o.acct] = o.pub
		}
	}
	return nil
}

type op struct {
	acct string
	pub  published
	del  bool
}

// encode returns the JSON of the view as published: this instance named,
// no QR code (only whether one is showing), no link code, the last error
// bounded.
func (p *Publisher) encode(v status.Account) string {
	v.QRShowing = v.QR != nil
	v.QR = nil
	v.LinkCode, v.LinkCodeExpiresAt = nil, nil
	v.Instance = p.cfg.Instance
	v.InstanceAlive = nil
	v.LastError = truncate(v.LastError, maxLastError)
	b, _ := json.Marshal(v) // a struct of plain fields: cannot fail
	return string(b)
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// write runs the publish script once per chunk of ops, in one pipeline
// (and with EVAL in a second one when Redis lost the script).
func (p *Publisher) write(ctx context.Context, self string, ops []op) error {
	keys := []string{p.cfg.Keys.Accounts(), p.cfg.Keys.Instances()}
	var calls [][]any
	for i := 0; i == 0 || i < len(ops); i += chunk {
		args := []any{p.cfg.Instance, self}
		self = "" // once
		for _, o := range ops[i:min(i+chunk, len(ops))] {
			body := o.pub.body
			if o.del {
				body = ""
			}
			args = append(args, o.acct, strconv.FormatUint(uint64(o.pub.fence), 10), body)
		}
		calls = append(calls, args)
	}
	run := func(eval bool) error {
		pipe := p.cfg.Client.Pipeline()
		for _, args := range calls {
			if eval {
				publishScript.Eval(ctx, pipe, keys, args...)
			} else {
				publishScript.EvalSha(ctx, pipe, keys, args...)
			}
		}
		_, err := pipe.Exec(ctx)
		return err
	}
	err := run(false)
	if goredis.HasErrorPrefix(err, "NOSCRIPT") {
		err = run(true)
	}
	if err != nil {
		return fmt.Errorf("view: publish %d views: %w", len(ops), err)
	}
	return nil
}

// publishScript writes an instance's record and account views. A view is
// stored as "FENCE JSON" and written only if FENCE is not older than the
// stored one's; a deletion (empty view) removes it only if it is still
// the one written under FENCE.
// KEYS: accounts hash, instances hash. ARGV: instance, its record (” to
// leave it), then ACCT, FENCE, VIEW for each account.
var publishScript = goredis.NewScript(`
if ARGV[2] ~= '' then redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) end
local written = 0
for i = 3, #ARGV, 3 do
  local acct, fence, view = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local cur = redis.call('HGET', KEYS[1], acct)
  local have = -1
  if cur then have = tonumber(string.match(cur, '^(%d+) ')) or -1 end
  if view == '' then
    if have == fence then redis.call('HDEL', KEYS[1], acct) end
  elseif fence >= have then
    redis.call('HSET', KEYS[1], acct, ARGV[i + 1] .. ' ' .. view)
    written = written + 1
  end
end
return written
`)
