package redis

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Defaults of LeaseOptions.
const (
	DefaultLeaseTTL     = 15 * time.Second
	DefaultChunkSize    = 500
	DefaultAcquireBatch = 1000
	DefaultRenewBatch   = 10000
)

// tripsAtOnce bounds the round trips of one Tick or Close in flight at
// once (the pool's other connections stay free for device writes).
const tripsAtOnce = 4

// LeaseOptions configures NewLeases.
type LeaseOptions struct {
	// Prefix starts every key; it must match the Store's. Default "wafleet".
	Prefix string
	// Instance names this instance (fleet.instance_id). Required; no spaces.
	Instance string
	// TTL is the lifetime of a lease and of a membership heartbeat without
	// renewal. Default 15s.
	TTL time.Duration
	// Margin: a lease counts as lost locally once Margin is left before it
	// could expire in Redis, so the connection is closed before another
	// instance can take the account. Its local deadline is the send time of
	// the last successful renewal + TTL - Margin, on the monotonic clock.
	// Default TTL/3. Renew more often than every (TTL-Margin)/2.
	Margin time.Duration
	// Timeout bounds each round trip. Default TTL/5.
	Timeout time.Duration
	// ChunkSize is how many leases one renew script covers on a single node
	// (a round trip of Tick carries several). Default 500.
	ChunkSize int
	// RenewBatch is how many leases one round trip of Tick renews (or of
	// Close and GiveBack releases): up to that many, a Tick is one round
	// trip; each RenewBatch more add one, sent in parallel, each bounded
	// by Timeout. (One pipeline of 100,000 renewals took longer than the
	// tick's period on a busy Redis, and a pipeline fails as a whole:
	// every lease then went unrenewed.) Default 10,000.
	RenewBatch int
	// AcquireBatch is how many acquisitions one round trip of Acquire
	// carries; more take a round trip per batch. Default 1000.
	AcquireBatch int
	// Now is the local clock. Default time.Now.
	Now func() time.Time
}

// Lease is one account's lease held by this instance.
type Lease struct {
	Account string
	// Value is what the lease key holds. Writes fenced by this lease
	// succeed only while the key holds exactly this.
	Value LeaseValue
	// Token is the fencing token of Value.
	Token FenceToken
	// ValidUntil (local clock) is when this instance must have stopped
	// using the account unless a renewal succeeded meanwhile.
	ValidUntil time.Time
	// NotBefore (local clock) is when the account may connect: zero, unless
	// the previous holder's lease expired (it did not release it) and that
	// instance may still think it holds it. See guardUntil.
	NotBefore time.Time
}

// LeaseValue is what an account's lease key holds, "INSTANCE:TOKEN.NONCE":
// the holder, the fencing token of the acquisition and a nonce of its own.
// "" is no lease (an unfenced write).
type LeaseValue string

// Holder returns the instance part of the value.
func (v LeaseValue) Holder() string {
	if i := strings.LastIndexByte(string(v), ':'); i >= 0 {
		return string(v[:i])
	}
	return ""
}

// token returns the fencing token of the value.
func (v LeaseValue) token() (FenceToken, error) {
	i := strings.LastIndexByte(string(v), ':')
	if i < 0 {
		return 0, fmt.Errorf("%w: lease value without token", ErrProtocol)
	}
	tok, _, _ := strings.Cut(string(v[i+1:]), ".")
	n, err := strconv.ParseUint(tok, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: lease token: %v", ErrProtocol, err)
	}
	return FenceToken(n), nil
}

// FenceToken is an account's fencing token: it grows with every
// acquisition of the account (re-seeded above the device's last writer
// after Redis lost the counter), and a device write carrying a token lower
// than the last writer's is refused.
type FenceToken uint64

// String returns the token in decimal, as the scripts take it.
func (t FenceToken) String() string { return strconv.FormatUint(uint64(t), 10) }

// beatSeen is an instance's heartbeat count and the local time of the
// first Tick that saw it: the instance has neither renewed nor acquired a
// lease since before that time.
type beatSeen struct {
	count string
	since time.Time
}

// Leases holds this instance's membership and account leases. It is a
// passive state machine over Redis: the caller (package fleet's
// Coordinator) calls Tick on a timer, Expire whenever NextDeadline passes,
// and Acquire/Release as it decides. Safe for concurrent use.
type Leases struct {
	c       goredis.UniversalClient
	k       keys
	o       LeaseOptions
	cluster bool
	nonce   func() string // per acquisition; replaced by tests

	mu         sync.Mutex
	held       map[string]Lease
	beats      map[string]beatSeen // by instance, from the last Tick
	members    []string
	epoch      string
	graceUntil time.Time
	closed     bool
}

// NewLeases returns the lease manager of one instance on c.
func NewLeases(c goredis.UniversalClient, o LeaseOptions) (*Leases, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: nil client", ErrConfig)
	}
	k, err := newKeys(o.Prefix)
	if err != nil {
		return nil, err
	}
	if o.Instance == "" || strings.ContainsAny(o.Instance, " \t\r\n") {
		return nil, fmt.Errorf("%w: instance id %q must be non-empty without whitespace", ErrConfig, o.Instance)
	}
	if o.TTL <= 0 {
		o.TTL = DefaultLeaseTTL
	}
	if o.Margin <= 0 {
		o.Margin = o.TTL / 3
	}
	if o.Margin >= o.TTL {
		return nil, fmt.Errorf("%w: margin %v must be shorter than the lease TTL %v", ErrConfig, o.Margin, o.TTL)
	}
	if o.Timeout <= 0 {
		o.Timeout = o.TTL / 5
	}
	if o.ChunkSize <= 0 {
		o.ChunkSize = DefaultChunkSize
	}
	if o.AcquireBatch <= 0 {
		o.AcquireBatch = DefaultAcquireBatch
	}
	if o.RenewBatch <= 0 {
		o.RenewBatch = DefaultRenewBatch
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	_, cluster := c.(*goredis.ClusterClient)
	return &Leases{c: c, k: k, o: o, cluster: cluster, nonce: nonce, held: map[string]Lease{}, beats: map[string]beatSeen{}}, nil
}

// Instance returns this instance's id.
func (m *Leases) Instance() string { return m.o.Instance }

// TTL returns the lease TTL.
func (m *Leases) TTL() time.Duration { return m.o.TTL }

// Get returns the lease held for acct, if it is still valid locally (its
// NotBefore may not have come yet).
func (m *Leases) Get(acct string) (Lease, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.held[acct]
	if !ok || !m.o.Now().Before(l.ValidUntil) {
		return Lease{}, false
	}
	return l, true
}

// Usable reports whether acct may be connected now: its lease is held and
// valid locally, and its NotBefore has come.
func (m *Leases) Usable(acct string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.held[acct]
	now := m.o.Now()
	return ok && now.Before(l.ValidUntil) && !now.Before(l.NotBefore)
}

// Held returns the leases held, sorted by account.
func (m *Leases) Held() []Lease {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Lease, 0, len(m.held))
	for _, l := range m.held {
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b Lease) int { return strings.Compare(a.Account, b.Account) })
	return out
}

// Members returns the live members seen by the last Tick, sorted.
func (m *Leases) Members() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.members)
}

// InGrace reports whether acquisitions wait out the grace period after
// Redis lost its data, and until when.
func (m *Leases) InGrace() (bool, time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.o.Now().Before(m.graceUntil), m.graceUntil
}

// NextDeadline returns the earliest ValidUntil of the held leases (zero
// when none is held): call Expire then at the latest.
func (m *Leases) NextDeadline() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	var t time.Time
	for _, l := range m.held {
		if t.IsZero() || l.ValidUntil.Before(t) {
			t = l.ValidUntil
		}
	}
	return t
}

// Expire drops and returns every lease whose ValidUntil has passed: the
// caller must stop those accounts at once (the margin is what is left
// before another instance may take them).
func (m *Leases) Expire() []Lease {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.o.Now()
	var out []Lease
	for a, l := range m.held {
		if !now.Before(l.ValidUntil) {
			out = append(out, l)
			delete(m.held, a)
		}
	}
	slices.SortFunc(out, func(a, b Lease) int { return strings.Compare(a.Account, b.Account) })
	return out
}

func (m *Leases) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return withTimeout(ctx, m.o.Timeout)
}

// Start reads the epoch marker, creating it when missing. Creating it means
// Redis is new or lost its data: acquisitions then wait one TTL (the grace
// period) so that instances still holding leases from before can reassert
// them first. Acquire and Tick call Start when it has not succeeded yet.
func (m *Leases) Start(ctx context.Context) error {
	ctx, cancel := m.ctx(ctx)
	defer cancel()
	return m.adoptEpoch(ctx)
}

// adoptEpoch reads or creates the epoch marker and enters grace if it is
// not the one known so far.
func (m *Leases) adoptEpoch(ctx context.Context) error {
	pipe := m.c.Pipeline()
	created := pipe.SetNX(ctx, m.k.epoch(), m.o.Instance+"-"+nonce(), 0)
	get := pipe.Get(ctx, m.k.epoch())
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redis: read epoch: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if get.Val() != m.epoch {
		if created.Val() || m.epoch != "" {
			m.graceUntil = m.o.Now().Add(m.o.TTL)
		}
		m.epoch = get.Val()
	}
	return nil
}

func (m *Leases) currentEpoch(ctx context.Context) (string, error) {
	m.mu.Lock()
	e := m.epoch
	m.mu.Unlock()
	if e != "" {
		return e, nil
	}
	if err := m.adoptEpoch(ctx); err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.epoch, nil
}

// AcquireResult says what Acquire got.
type AcquireResult struct {
	// Acquired are the new leases (also those already held, unchanged).
	Acquired []Lease
	// HeldBy maps each account held by another instance to its holder.
	HeldBy map[string]string
}

// Acquire tries to take the lease of every account: in one round trip for
// up to AcquireBatch accounts, one per batch beyond, each bounded by
// Timeout. (One pipeline for tens of thousands of accounts could outlast
// the timeout on a busy Redis: the leases it took would then stay taken,
// unknown to anyone, for a TTL.) An account already held by this instance
// is returned as is. During the grace period after Redis lost its data it
// acquires nothing and returns an error wrapping ErrEpochChanged. On an
// error the leases taken by then are held and returned with it.
func (m *Leases) Acquire(ctx context.Context, accounts ...string) (AcquireResult, error) {
	res := AcquireResult{HeldBy: map[string]string{}}
	ectx, cancel := m.ctx(ctx)
	epoch, err := m.currentEpoch(ectx)
	cancel()
	if err != nil {
		return res, err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return res, ErrClosed
	}
	if m.o.Now().Before(m.graceUntil) {
		until := m.graceUntil
		m.mu.Unlock()
		return res, fmt.Errorf("%w (until %s)", ErrEpochChanged, until.Format(time.RFC3339))
	}
	var todo []string
	seen := make(map[string]struct{}, len(accounts))
	for _, a := range accounts {
		if _, dup := seen[a]; dup {
			continue
		}
		seen[a] = struct{}{}
		if l, ok := m.held[a]; ok {
			res.Acquired = append(res.Acquired, l)
		} else {
			todo = append(todo, a)
		}
	}
	m.mu.Unlock()
	for batch := range slices.Chunk(todo, m.o.AcquireBatch) {
		if err := m.acquireBatch(ctx, batch, epoch, &res); err != nil {
			return res, err
		}
	}
	return res, nil
}

// acquireBatch takes the leases of accounts in one round trip and adds
// them to res.
func (m *Leases) acquireBatch(ctx context.Context, accounts []string, epoch string, res *AcquireResult) error {
	ctx, cancel := m.ctx(ctx)
	defer cancel()
	got, heldBy, changed, err := m.acquire(ctx, accounts, epoch)
	if changed {
		// The acquisitions may predate the change: give them back before
		// anything connects, and wait out the grace period.
		_ = m.release(ctx, got, nil)
		if err := m.adoptEpoch(ctx); err != nil {
			return err
		}
		m.mu.Lock()
		m.graceUntil = m.o.Now().Add(m.o.TTL)
		m.mu.Unlock()
		return ErrEpochChanged
	}
	m.mu.Lock()
	for _, l := range got {
		m.held[l.Account] = l
		res.Acquired = append(res.Acquired, l)
	}
	m.mu.Unlock()
	maps.Copy(res.HeldBy, heldBy)
	return err
}

// acquire runs the acquire script for each account in one pipeline.
func (m *Leases) acquire(ctx context.Context, accounts []string, epoch string) (got []Lease, heldBy map[string]string, epochChanged bool, err error) {
	heldBy = map[string]string{}
	calls := make([]*call, len(accounts))
	for i, a := range accounts {
		keys := []string{m.k.lease(a), m.k.fence(a), m.k.device(a), m.k.holder(a)}
		arg := ""
		if !m.cluster {
			keys = append(keys, m.k.epoch(), m.k.beats())
			arg = epoch
		}
		calls[i] = &call{script: acquire, keys: keys, args: []any{m.o.Instance, m.nonce(), m.o.TTL.Milliseconds(), arg}}
	}
	var epochCmd *goredis.StringCmd
	extra := func(p goredis.Pipeliner) {
		if m.cluster {
			epochCmd = p.Get(ctx, m.k.epoch())
		}
	}
	sent := m.o.Now()
	if err := runCalls(ctx, m.c, calls, extra); err != nil {
		return nil, nil, false, fmt.Errorf("redis: acquire leases: %w", err)
	}
	answered := m.o.Now()
	if epochCmd != nil && epochCmd.Val() != epoch {
		epochChanged = true
	}
	var firstErr error
	for i, cl := range calls {
		r, err := replyStrings(cl.cmd)
		if err == nil && len(r) != 2 && len(r) != 4 {
			err = fmt.Errorf("%w: acquire answered %d values", ErrProtocol, len(r))
		}
		if err != nil {
			firstErr = cmpErr(firstErr, fmt.Errorf("redis: acquire %q: %w", accounts[i], err))
			continue
		}
		switch r[0] {
		case "1":
			value := LeaseValue(r[1])
			tok, err := value.token()
			if err == nil && len(r) != 4 {
				err = fmt.Errorf("%w: acquire answered %d values", ErrProtocol, len(r))
			}
			if err != nil {
				firstErr = cmpErr(firstErr, err)
				continue
			}
			got = append(got, Lease{
				Account: accounts[i], Value: value, Token: tok, ValidUntil: sent.Add(m.o.TTL - m.o.Margin),
				NotBefore: m.guardUntil(r[2], r[3], answered),
			})
		case "0":
			value := LeaseValue(r[1])
			if strings.HasSuffix(r[1], "."+cl.args[1].(string)) && value.Holder() == m.o.Instance {
				// Our own acquisition, answered twice (the client retried
				// after a network error). The first answer, with the
				// previous holder, is lost: guard as if it was alive.
				tok, err := value.token()
				if err == nil {
					got = append(got, Lease{
						Account: accounts[i], Value: value, Token: tok, ValidUntil: sent.Add(m.o.TTL - m.o.Margin),
						NotBefore: answered.Add(m.o.TTL - m.o.Margin/2),
					})
					continue
				}
			}
			heldBy[accounts[i]] = value.Holder()
		case "-1":
			epochChanged = true
		}
	}
	return got, heldBy, epochChanged, firstErr
}

// guardUntil returns when an account just acquired may connect. At once
// (zero) when nobody held it before, or this instance, or its holder
// released it. Otherwise the previous holder let its lease expire in Redis
// — it crashed, or was paused, or Redis's clock jumped — and, if it is
// still running, it may think it holds the lease until its local deadline:
// at most TTL-Margin after it last sent a renewal. A renewal travels with
// a heartbeat, and heartbeats and acquisitions bump the instance's count
// (beat), so when this instance has watched that count unchanged since a
// local time t, the previous holder's deadline is before t+TTL-Margin;
// when not (the count moved, or it is unknown, as on a Cluster), before
// the moment this acquisition was answered + TTL-Margin. Half the margin
// more leaves the previous holder time to close its connections. Only
// local monotonic time is compared: Redis's clock plays no part.
func (m *Leases) guardUntil(prev, beat string, answered time.Time) time.Time {
	if prev == "" || prev == m.o.Instance {
		return time.Time{}
	}
	since := answered
	m.mu.Lock()
	if b, ok := m.beats[prev]; ok && beat != "" && b.count == beat {
		since = b.since
	}
	m.mu.Unlock()
	until := since.Add(m.o.TTL - m.o.Margin/2)
	if !until.After(answered) {
		return time.Time{}
	}
	return until
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// Release gives up the leases of accounts (each deleted only if still
// ours), in one round trip per RenewBatch leases. Stop the accounts'
// connections first. The leases are dropped locally even when Redis
// cannot be reached (they then expire after the TTL).
func (m *Leases) Release(ctx context.Context, accounts ...string) error {
	return m.GiveBack(ctx, m.Drop(accounts...)...)
}

// Drop forgets the leases of accounts locally and returns them: from now
// on Get refuses them. Close their connections, then GiveBack them.
func (m *Leases) Drop(accounts ...string) []Lease {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ls []Lease
	for _, a := range accounts {
		if l, ok := m.held[a]; ok {
			ls = append(ls, l)
			delete(m.held, a)
		}
	}
	return ls
}

// GiveBack deletes dropped leases in Redis (each only if still ours), in
// one round trip per RenewBatch leases, in parallel.
func (m *Leases) GiveBack(ctx context.Context, ls ...Lease) error {
	return m.release(ctx, ls, nil)
}

// release deletes the leases ls in Redis (each only if still ours), in a
// round trip per RenewBatch leases, the first also carrying leave when
// set, each bounded by Timeout.
func (m *Leases) release(ctx context.Context, ls []Lease, leave *call) error {
	if len(ls) == 0 && leave == nil {
		return nil
	}
	calls, groups := m.batch(ls, release, true, func(l Lease) any { return string(l.Value) }, nil)
	trips := m.trips(calls, groups)
	if leave != nil {
		trips[0].calls = append(trips[0].calls, leave)
		calls = append(calls, leave)
	}
	for _, err := range m.runTrips(ctx, trips, nil) {
		if err != nil {
			return fmt.Errorf("redis: release leases: %w", err)
		}
	}
	for _, cl := range calls {
		if err := cl.cmd.Err(); err != nil {
			return fmt.Errorf("redis: release leases: %w", err)
		}
	}
	return nil
}

// batch groups leases into multi-key script calls: by hash slot on a
// Cluster, in chunks of ChunkSize otherwise. Each call's keys are lease
// keys (each followed by the account's holder key with withHolder); its
// args are head followed by arg(l) per lease.
func (m *Leases) batch(ls []Lease, s *goredis.Script, withHolder bool, arg func(Lease) any, head []any) ([]*call, [][]Lease) {
	var groups [][]Lease
	if m.cluster {
		bySlot := map[uint16]int{}
		for _, l := range ls {
			sl := slot(m.k.lease(l.Account))
			i, ok := bySlot[sl]
			if !ok {
				i = len(groups)
				bySlot[sl] = i
				groups = append(groups, nil)
			}
			groups[i] = append(groups[i], l)
		}
	} else {
		for chunk := range slices.Chunk(ls, m.o.ChunkSize) {
			groups = append(groups, chunk)
		}
	}
	calls := make([]*call, len(groups))
	for i, g := range groups {
		c := &call{script: s, args: slices.Clone(head)}
		for _, l := range g {
			c.keys = append(c.keys, m.k.lease(l.Account))
			if withHolder {
				c.keys = append(c.keys, m.k.holder(l.Account))
			}
			c.args = append(c.args, arg(l))
		}
		calls[i] = c
	}
	return calls, groups
}

// TickResult says what one Tick saw.
type TickResult struct {
	// Members are the live instances (this one included), sorted.
	Members []string
	// Renewed counts the leases extended.
	Renewed int
	// Lost are leases Redis no longer holds for us: stop them now.
	Lost []Lease
	// Reasserted are leases re-taken after Redis lost its data, with new
	// values and tokens: the accounts stay connected, but their device
	// state must be saved again (Redis may have lost it).
	Reasserted []Lease
	// EpochChanged reports that Redis lost its data since the last Tick.
	EpochChanged bool
	// Holders maps each watched account to the instance holding its lease
	// ("" for none; left out when its read failed); nil when Tick watched
	// none.
	Holders map[string]string
}

// Tick heartbeats the membership, checks the epoch, renews every held
// lease and reads the holders of the watched accounts: in ONE round trip
// for up to RenewBatch leases and reads (one per node, in parallel, on a
// Cluster), plus one per RenewBatch beyond, sent in parallel, each bounded
// by Timeout. After Redis lost its data it reasserts the leases still valid
// locally (one more round trip, only then). When the heartbeat's round
// trip fails nothing is renewed; when another one fails, its leases alone
// are not, and Tick returns the leases it did renew or lost with an
// error. Leases not renewed run towards their ValidUntil (the next Tick
// tries again), and Expire drops them there.
func (m *Leases) Tick(ctx context.Context, watch ...string) (TickResult, error) {
	var res TickResult
	ectx, cancel := m.ctx(ctx)
	epoch, err := m.currentEpoch(ectx)
	cancel()
	if err != nil {
		return res, err
	}
	ls, err := m.heldForTick()
	if err != nil {
		return res, err
	}
	round, err := m.sendTick(ctx, ls, watch)
	if err != nil {
		return res, fmt.Errorf("redis: tick: %w", err)
	}
	if res.Members, err = m.noteHeartbeat(round); err != nil {
		return res, fmt.Errorf("redis: tick: %w", err)
	}
	res.Holders = round.holders()
	res.EpochChanged = round.epochChanged(epoch)
	var refused []Lease
	res.Renewed, refused = m.applyRenewals(round, !res.EpochChanged)
	renewErr := round.renewErr()
	if !res.EpochChanged {
		res.Lost = refused
		return res, renewErr
	}
	rctx, cancel := m.ctx(ctx)
	defer cancel()
	res.Reasserted, res.Lost, err = m.reassert(rctx, refused)
	return res, cmpErr(renewErr, err)
}

// heldForTick returns the leases to renew, or ErrClosed.
func (m *Leases) heldForTick() ([]Lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	ls := make([]Lease, 0, len(m.held))
	for _, l := range m.held {
		ls = append(ls, l)
	}
	return ls, nil
}

// tickRound is the round trips of a Tick and their answers: the
// heartbeat, the renewals of the held leases (by group), the epoch marker
// and the lease keys of the watched accounts.
type tickRound struct {
	heartbeat *call
	renews    []*call
	groups    [][]Lease // the leases each renew call covers
	epoch     *goredis.StringCmd
	watch     []string
	leaseKeys []*goredis.StringCmd // of watch
	// failed counts the leases of the round trips that failed, and err is
	// the first of their errors.
	failed int
	err    error
	// sent and answered are the local times around the round trips.
	sent, answered time.Time
}

// sendTick runs the tick's round trips: the first carries the heartbeat,
// the epoch and up to RenewBatch leases (none when there are more, each
// RenewBatch then going in a round trip of its own); the reads of the
// watched lease keys fill the last one's room, then trips of their own (a
// read counting as a lease); at most tripsAtOnce are in flight. It fails
// when the heartbeat failed (then no renewal may count: a renewal must
// travel with a heartbeat, see guardUntil); the other failures are in the
// round's failed and err, their leases left to applyRenewals.
func (m *Leases) sendTick(ctx context.Context, ls []Lease, watch []string) (*tickRound, error) {
	r := &tickRound{
		heartbeat: &call{script: heartbeat, keys: m.heartbeatKeys(), args: []any{m.o.Instance, m.o.TTL.Milliseconds(), "0"}},
		watch:     watch,
		leaseKeys: make([]*goredis.StringCmd, len(watch)),
	}
	r.renews, r.groups = m.batch(ls, renew, false, func(l Lease) any { return string(l.Value) }, []any{m.o.TTL.Milliseconds()})
	trips := m.trips(r.renews, r.groups)
	if len(trips) > 1 {
		// The heartbeat goes alone: a small pipeline is answered in time
		// by a Redis that the renewals keep busy, and without its answer
		// no renewal counts.
		trips = append([]trip{{}}, trips...)
	}
	trips = m.addReads(trips, len(watch))
	trips[0].calls = append([]*call{r.heartbeat}, trips[0].calls...)
	r.sent = m.o.Now()
	errs := m.runTrips(ctx, trips, func(i int, p goredis.Pipeliner) {
		if i == 0 {
			r.epoch = p.Get(ctx, m.k.epoch())
		}
		for _, j := range trips[i].reads {
			r.leaseKeys[j] = p.Get(ctx, m.k.lease(watch[j]))
		}
	})
	r.answered = m.o.Now()
	if err := cmpErr(errs[0], r.heartbeat.cmd.Err()); err != nil {
		return nil, err
	}
	for i, err := range errs[1:] {
		if err != nil && trips[i+1].leases > 0 {
			r.failed += trips[i+1].leases
			r.err = cmpErr(r.err, err)
		}
	}
	return r, nil
}

// trip is one round trip of a Tick, Close or GiveBack: script calls that
// cover leases, and reads of watched lease keys (indexes into the watched
// accounts).
type trip struct {
	calls  []*call
	leases int
	reads  []int
}

// trips splits calls, each covering the leases of its group, into round
// trips of about RenewBatch leases each (at least one, maybe empty).
func (m *Leases) trips(calls []*call, groups [][]Lease) []trip {
	trips := []trip{{}}
	for i, cl := range calls {
		t := &trips[len(trips)-1]
		if t.leases > 0 && t.leases+len(groups[i]) > m.o.RenewBatch {
			trips = append(trips, trip{})
			t = &trips[len(trips)-1]
		}
		t.calls = append(t.calls, cl)
		t.leases += len(groups[i])
	}
	return trips
}

// addReads adds n reads of watched lease keys to trips, a read counting
// as a lease: into the room the last trip has left, then into trips of
// RenewBatch reads.
func (m *Leases) addReads(trips []trip, n int) []trip {
	for j := range n {
		t := &trips[len(trips)-1]
		if t.leases+len(t.reads) >= m.o.RenewBatch {
			trips = append(trips, trip{})
			t = &trips[len(trips)-1]
		}
		t.reads = append(t.reads, j)
	}
	return trips
}

// runTrips sends each trip's calls in a pipeline of its own (with what
// extra queues for it), at most tripsAtOnce in flight, each bounded by
// Timeout, and returns each trip's error.
func (m *Leases) runTrips(ctx context.Context, trips []trip, extra func(int, goredis.Pipeliner)) []error {
	errs := make([]error, len(trips))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(len(trips), tripsAtOnce) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(trips); i = int(next.Add(1) - 1) {
				var queue func(goredis.Pipeliner)
				if extra != nil {
					queue = func(p goredis.Pipeliner) { extra(i, p) }
				}
				tctx, cancel := m.ctx(ctx)
				errs[i] = runCalls(tctx, m.c, trips[i].calls, queue)
				cancel()
			}
		})
	}
	wg.Wait()
	return errs
}

// renewErr says how many leases went unrenewed because their round trip
// failed, or nil.
func (r *tickRound) renewErr() error {
	if r.err == nil {
		return nil
	}
	return fmt.Errorf("redis: tick: %d of the leases not renewed: %w", r.failed, r.err)
}

// holders maps each watched account to the instance holding its lease (""
// for none), leaving out those whose read failed; nil when the tick
// watched none.
func (r *tickRound) holders() map[string]string {
	if len(r.watch) == 0 {
		return nil
	}
	out := make(map[string]string, len(r.watch))
	for i, a := range r.watch {
		if err := r.leaseKeys[i].Err(); err != nil && !errors.Is(err, goredis.Nil) {
			continue // its round trip failed: not known
		}
		out[a] = LeaseValue(r.leaseKeys[i].Val()).Holder()
	}
	return out
}

// epochChanged reports whether the epoch marker is gone or no longer the
// one known before the tick (Redis lost its data). A failed read says no.
func (r *tickRound) epochChanged(known string) bool {
	switch err := r.epoch.Err(); {
	case errors.Is(err, goredis.Nil):
		return true
	case err == nil:
		return r.epoch.Val() != known
	}
	return false
}

// noteHeartbeat records the members and their beat counts the heartbeat
// answered, and returns the members, sorted.
func (m *Leases) noteHeartbeat(r *tickRound) ([]string, error) {
	members, beats, err := parseHeartbeat(r.heartbeat.cmd)
	if err != nil {
		return nil, err
	}
	slices.Sort(members)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.members = members
	m.noteBeats(beats, r.answered)
	return members, nil
}

// applyRenewals extends the leases Redis renewed to the tick's send time +
// TTL - Margin, and returns how many, with the leases Redis refused; those
// are dropped locally when drop is set. A lease released or replaced
// during the tick is left alone, and so are the leases of a renew call
// that failed: they run to their ValidUntil. A lease whose ValidUntil
// passed before the answer (a process that lagged) is not extended either:
// Get has refused it meanwhile, so its connection may have ended as a
// hand-over; Expire drops it, as if the renewal had failed.
func (m *Leases) applyRenewals(r *tickRound, drop bool) (renewed int, refused []Lease) {
	valid := r.sent.Add(m.o.TTL - m.o.Margin)
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.o.Now()
	for j, cl := range r.renews {
		flags, err := cl.cmd.Int64Slice()
		if err != nil || len(flags) != len(r.groups[j]) {
			continue
		}
		for k, f := range flags {
			l := r.groups[j][k]
			cur, ok := m.held[l.Account]
			if !ok || cur.Value != l.Value {
				continue
			}
			if f == 1 {
				if !now.Before(cur.ValidUntil) {
					continue
				}
				if valid.After(cur.ValidUntil) {
					cur.ValidUntil = valid
					m.held[l.Account] = cur
				}
				renewed++
				continue
			}
			if drop {
				delete(m.held, l.Account)
			}
			refused = append(refused, cur)
		}
	}
	return renewed, refused
}

// reassert runs after Redis lost its data: it enters the grace period and
// takes back the refused leases that are still ours locally (nobody else
// can acquire during grace: their acquisitions carry the old epoch or wait
// for the new grace). They stay held meanwhile (their connections go on);
// those that cannot be taken back are lost, and dropped.
func (m *Leases) reassert(ctx context.Context, refused []Lease) (reasserted, lost []Lease, err error) {
	defer func() { m.forget(lost) }()
	if err := m.adoptEpoch(ctx); err != nil {
		return nil, refused, err
	}
	now := m.o.Now()
	var again []string
	byAcct := map[string]Lease{}
	for _, l := range refused {
		if now.Before(l.ValidUntil) {
			again = append(again, l.Account)
			byAcct[l.Account] = l
		} else {
			lost = append(lost, l)
		}
	}
	if len(again) == 0 {
		return nil, lost, nil
	}
	newEpoch, err := m.currentEpoch(ctx)
	if err != nil {
		return nil, lost, err
	}
	got, _, _, err := m.acquire(ctx, again, newEpoch)
	m.mu.Lock()
	for _, l := range got {
		m.held[l.Account] = l
		reasserted = append(reasserted, l)
		delete(byAcct, l.Account)
	}
	m.mu.Unlock()
	for _, a := range again {
		if l, ok := byAcct[a]; ok {
			lost = append(lost, l)
		}
	}
	if err != nil {
		return reasserted, lost, fmt.Errorf("redis: reassert leases: %w", err)
	}
	return reasserted, lost, nil
}

// forget drops the leases ls that are still held unchanged.
func (m *Leases) forget(ls []Lease) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, l := range ls {
		if cur, ok := m.held[l.Account]; ok && cur.Value == l.Value {
			delete(m.held, l.Account)
		}
	}
}

func (m *Leases) heartbeatKeys() []string {
	if m.cluster {
		return []string{m.k.members()}
	}
	return []string{m.k.members(), m.k.beats()}
}

// parseHeartbeat reads the heartbeat script's answer: the members and the
// beat count of every instance.
func parseHeartbeat(cmd *goredis.Cmd) (members []string, beats map[string]string, err error) {
	v, err := cmd.Slice()
	if err != nil {
		return nil, nil, err
	}
	if len(v) != 2 {
		return nil, nil, fmt.Errorf("%w: heartbeat answered %d values", ErrProtocol, len(v))
	}
	ms, ok1 := v[0].([]any)
	bs, ok2 := v[1].([]any)
	if !ok1 || !ok2 || len(bs)%2 != 0 {
		return nil, nil, fmt.Errorf("%w: heartbeat answer of an unexpected shape", ErrProtocol)
	}
	for _, x := range ms {
		s, _ := x.(string)
		members = append(members, s)
	}
	beats = make(map[string]string, len(bs)/2)
	for i := 0; i < len(bs); i += 2 {
		k, _ := bs[i].(string)
		c, _ := bs[i+1].(string)
		beats[k] = c
	}
	return members, beats, nil
}

// noteBeats records the beat counts a Tick read at local time answered,
// keeping for each unchanged count the time it was first seen. Call with
// mu held.
func (m *Leases) noteBeats(beats map[string]string, answered time.Time) {
	next := make(map[string]beatSeen, len(beats))
	for inst, count := range beats {
		b, ok := m.beats[inst]
		if !ok || b.count != count {
			b = beatSeen{count: count, since: answered}
		}
		next[inst] = b
	}
	m.beats = next
}

// Close releases every held lease and leaves the membership: one round
// trip up to RenewBatch leases, one more per RenewBatch beyond, in
// parallel. Stop the connections first. Later calls fail with ErrClosed.
func (m *Leases) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	ls := make([]Lease, 0, len(m.held))
	for _, l := range m.held {
		ls = append(ls, l)
	}
	clear(m.held)
	m.mu.Unlock()
	leave := &call{script: heartbeat, keys: m.heartbeatKeys(), args: []any{m.o.Instance, m.o.TTL.Milliseconds(), "1"}}
	return m.release(ctx, ls, leave)
}
