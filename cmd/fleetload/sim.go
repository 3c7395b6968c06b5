package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wafleet/wafleet/fleet"
	"github.com/wafleet/wafleet/store/redis"
)

// simConfig configures a simulated fleet (--simulate): instances
// fleet.Coordinators in this process, each with its own Redis client and
// real leases, over accounts that never connect.
type simConfig struct {
	redisAddr string
	instances int
	accounts  int
	ttl       time.Duration
	maxMoves  int
	window    time.Duration // the steady-state measurement
	timeout   time.Duration // bounds each convergence
	log       io.Writer     // progress lines; nil for none
}

// simReport is what a simulation measured.
type simReport struct {
	initial, join, death phaseReport
	steady               steadyReport
	redisKeys            int64
	violations           int64
	firstViolations      []string
}

// phaseReport is one convergence: the time until every account ran on
// its preferred member, and the moves meanwhile (an account owned by an
// instance other than its previous owner).
type phaseReport struct {
	took     time.Duration
	moved    int64
	maxMoves int64 // the most moved within one lease interval, fleet-wide
	maxBatch int   // the largest batch one instance was given in one Own
}

// steadyReport is the steady state over the window.
type steadyReport struct {
	wall                time.Duration
	commandsPerSecond   float64 // Redis total_commands_processed
	instantaneousOps    int64   // Redis instantaneous_ops_per_sec at the end
	roundTripsPerSecond []float64
	ticksPerSecond      float64       // Leases.Tick calls, fleet-wide
	redisCPU            float64       // Redis's CPU time / wall time
	renewed             int64         // leases renewed, fleet-wide
	scriptTimePerLease  time.Duration // Redis's time in scripts per lease renewed
	redisMemory         int64         // used_memory above the empty server
	processCPU          float64       // this process's CPU time / wall time
	processRSS          int64
	heapInuse           uint64
	tickMax, tickMean   time.Duration // Leases.Tick, over every instance
}

func runSimulation(ctx context.Context, o options, dir string) error {
	if o.fleet < 2 {
		return errors.New("--simulate needs --fleet 2 or more (the instances to simulate)")
	}
	addr, stop, err := startRedis(dir)
	if err != nil {
		return err
	}
	defer stop()
	cfg := simConfig{redisAddr: addr, instances: o.fleet, accounts: o.accounts, ttl: o.leaseTTL,
		maxMoves: o.maxMoves, window: o.window, timeout: o.loadTimeout, log: os.Stdout}
	r, err := simulate(ctx, cfg)
	if err != nil {
		return err
	}
	interval := cfg.ttl / 5
	n := float64(cfg.accounts)
	s := r.steady
	fmt.Printf("\naccounts                 %d on %d instances (then %d joins, then one dies)\n", cfg.accounts, cfg.instances, cfg.instances+1)
	moves := cfg.maxMoves
	if moves <= 0 {
		moves = 20 // fleet.Config's default
	}
	fmt.Printf("lease TTL                %s (a tick every %s), MaxMoves %d\n", cfg.ttl, interval, moves)
	fmt.Printf("initial convergence      %s (a fresh Redis: one TTL of grace first)\n", r.initial.took.Round(time.Millisecond))
	fmt.Printf("steady state over        %s\n", s.wall.Round(time.Millisecond))
	fmt.Printf("  redis commands         %.0f/s (instantaneous_ops_per_sec %d); Redis CPU %.0f%% of one core\n", s.commandsPerSecond, s.instantaneousOps, s.redisCPU*100)
	fmt.Printf("  renewals               %.0f leases/s; Redis spends %s in scripts per lease renewed\n", float64(s.renewed)/s.wall.Seconds(), s.scriptTimePerLease)
	var rtMin, rtMax, rtSum float64
	for i, v := range s.roundTripsPerSecond {
		if i == 0 || v < rtMin {
			rtMin = v
		}
		rtMax, rtSum = max(rtMax, v), rtSum+v
	}
	fmt.Printf("  round trips            %.3f/s per instance (%.3f to %.3f; %.2f/s in all), %.2f per tick\n", rtSum/float64(len(s.roundTripsPerSecond)), rtMin, rtMax, rtSum, rtSum/s.ticksPerSecond)
	fmt.Printf("  lease tick             %s mean, %s max (one instance's Leases.Tick: heartbeat, renewals, orphan reads)\n", s.tickMean.Round(time.Microsecond), s.tickMax.Round(time.Microsecond))
	fmt.Printf("  redis memory           %.1f MiB above empty, %.0f B per account; %d keys\n", float64(s.redisMemory)/(1<<20), float64(s.redisMemory)/n, r.redisKeys)
	fmt.Printf("  this process           CPU %.0f%% of one core; RSS %.0f MiB; heap in use %.0f MiB\n", s.processCPU*100, float64(s.processRSS)/(1<<20), float64(s.heapInuse)/(1<<20))
	for _, p := range []struct {
		name string
		r    phaseReport
	}{{"after a join", r.join}, {"after a death", r.death}} {
		fmt.Printf("%-24s converged in %s; %d accounts moved, at most %d in one tick interval (fleet-wide), largest Own batch %d\n",
			p.name, p.r.took.Round(time.Millisecond), p.r.moved, p.r.maxMoves, p.r.maxBatch)
	}
	fmt.Printf("double ownership         %d violations\n", r.violations)
	for _, v := range r.firstViolations {
		fmt.Printf("  %s\n", v)
	}
	fmt.Printf("machine                  %d CPUs, %s/%s, %s\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	if r.violations > 0 {
		return fmt.Errorf("%d accounts were owned by two instances at once, or with a stale fencing token", r.violations)
	}
	return nil
}

// simulate runs the fleet: cfg.instances members converge over the
// accounts, the steady state is measured, one member joins, then the first
// one dies (its coordinator stops without releasing its leases).
func simulate(ctx context.Context, cfg simConfig) (*simReport, error) {
	logf := func(format string, args ...any) {
		if cfg.log != nil {
			fmt.Fprintf(cfg.log, format+"\n", args...)
		}
	}
	admin := goredis.NewClient(&goredis.Options{Addr: cfg.redisAddr})
	defer admin.Close()
	base, err := redisInfo(ctx, admin)
	if err != nil {
		return nil, err
	}
	w := newSimWorld(cfg.accounts)
	f := &simFleet{cfg: cfg, w: w, accounts: make([]string, cfg.accounts)}
	for i := range f.accounts {
		f.accounts[i] = simAccount(i)
	}
	defer f.stopAll()

	var r simReport
	start := time.Now()
	// The first members join the membership (one heartbeat each) before
	// any coordinator runs, as a fleet whose instances started together:
	// none takes the others' accounts for want of seeing them.
	for range cfg.instances {
		if err := f.add(ctx, true); err != nil {
			return nil, err
		}
	}
	// Their loops start spread over one tick interval, as processes
	// started together would drift apart: in step, every instance's
	// renewals reach Redis at the same moment, and the last answers of
	// such a burst of a million leases came after the client's timeout.
	for i, in := range f.insts {
		in.run()
		if i < len(f.insts)-1 {
			time.Sleep(cfg.ttl / 5 / time.Duration(len(f.insts)))
		}
	}
	logf("%d instances started over %d accounts; waiting for them to converge...", cfg.instances, cfg.accounts)
	if r.initial, err = f.converge(ctx, start); err != nil {
		return nil, fmt.Errorf("initial convergence: %w", err)
	}
	logf("converged in %s; measuring the steady state for %s...", r.initial.took.Round(time.Millisecond), cfg.window)
	if r.steady, err = f.measure(ctx, admin, base); err != nil {
		return nil, err
	}
	if r.redisKeys, err = admin.DBSize(ctx).Result(); err != nil {
		return nil, fmt.Errorf("redis DBSIZE: %w", err)
	}

	logf("instance %d joins...", cfg.instances)
	start = time.Now()
	if err := f.add(ctx, false); err != nil {
		return nil, err
	}
	f.insts[len(f.insts)-1].run()
	if r.join, err = f.converge(ctx, start); err != nil {
		return nil, fmt.Errorf("after a join: %w", err)
	}
	logf("converged in %s; instance 0 dies...", r.join.took.Round(time.Millisecond))
	start = time.Now()
	f.kill(0)
	if r.death, err = f.converge(ctx, start); err != nil {
		return nil, fmt.Errorf("after a death: %w", err)
	}
	logf("converged in %s", r.death.took.Round(time.Millisecond))
	r.violations, r.firstViolations = w.violationCount()
	return &r, nil
}

// simFleet is the simulated instances.
type simFleet struct {
	cfg      simConfig
	w        *simWorld
	accounts []string // every instance's, sorted (their strings shared)
	insts    []*simInstance
}

// simInstance is one member: a coordinator on its own client.
type simInstance struct {
	name   string
	client *goredis.Client
	leases *timedLeases
	trips  *atomic.Int64
	run    func() // starts the coordinator's loop
	cancel context.CancelFunc
	done   chan struct{}
	dead   bool
}

func simAccount(i int) string { return fmt.Sprintf("acct-%07d", i) }

func simIndex(acct string) int {
	i, _ := strconv.Atoi(strings.TrimPrefix(acct, "acct-"))
	return i
}

// add creates one more instance, a member at once when join is set; its
// run starts it.
func (f *simFleet) add(ctx context.Context, join bool) error {
	idx := len(f.insts)
	name := fmt.Sprintf("sim-%02d", idx)
	// The product's client timeouts (app's redisTimeout): a round trip
	// whose answer takes longer fails there too.
	client := goredis.NewClient(&goredis.Options{Addr: f.cfg.redisAddr, DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
	trips := &atomic.Int64{}
	client.AddHook(tripHook{trips})
	l, err := redis.NewLeases(client, redis.LeaseOptions{Instance: name, TTL: f.cfg.ttl})
	if err != nil {
		client.Close()
		return err
	}
	tl := &timedLeases{Leases: l}
	socks := fleet.NewSockets(tl)
	co, err := fleet.New(fleet.Config{
		Leases: tl, Sockets: socks, Owner: simOwner{f.w, idx, tl, socks}, MaxMoves: f.cfg.maxMoves,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		client.Close()
		return err
	}
	co.SetAccounts(f.accounts)
	if join {
		if _, err := l.Tick(ctx); err != nil {
			client.Close()
			return fmt.Errorf("%s joins: %w", name, err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	in := &simInstance{name: name, client: client, leases: tl, trips: trips, cancel: cancel, done: make(chan struct{})}
	in.run = func() {
		go func() {
			defer close(in.done)
			_ = co.Run(cctx) // a killed instance fails to release: expected
		}()
	}
	f.insts = append(f.insts, in)
	return nil
}

// kill ends instance i as a crash would: its Redis client closes first,
// so it renews and releases nothing more, then its coordinator stops (its
// sockets close, as the process's would). Its leases expire in Redis.
func (f *simFleet) kill(i int) {
	in := f.insts[i]
	in.dead = true
	_ = in.client.Close()
	in.cancel()
	<-in.done
}

func (f *simFleet) stopAll() {
	for _, in := range f.insts {
		if !in.dead {
			in.cancel()
			<-in.done
			_ = in.client.Close()
		}
	}
}

// live returns the names and indexes of the instances not killed.
func (f *simFleet) live() (names []string, idx []int) {
	for i, in := range f.insts {
		if !in.dead {
			names, idx = append(names, in.name), append(idx, i)
		}
	}
	return names, idx
}

// converge sets every account's target to its preferred live member and
// waits until each runs there, measuring the moves since start.
func (f *simFleet) converge(ctx context.Context, start time.Time) (phaseReport, error) {
	names, idx := f.live()
	target := make([]int32, f.cfg.accounts)
	for a := range target {
		p := fleet.Preferred(simAccount(a), names)
		for j, n := range names {
			if n == p {
				target[a] = int32(idx[j])
			}
		}
	}
	f.w.newPhase(target)
	interval := f.cfg.ttl / 5
	tick := time.NewTicker(min(interval, 100*time.Millisecond))
	defer tick.Stop()
	var p phaseReport
	lastMoved, lastAt, lastLog := int64(0), time.Now(), time.Now()
	deadline := time.Now().Add(f.cfg.timeout)
	for {
		if f.cfg.log != nil && time.Since(lastLog) >= 15*time.Second {
			fmt.Fprintf(f.cfg.log, "  %s: %d of %d accounts on their preferred member\n", time.Since(start).Round(time.Second), f.w.correctCount(), f.cfg.accounts)
			lastLog = time.Now()
		}
		done, moved, batch := f.w.progress()
		if time.Since(lastAt) >= interval || done {
			p.maxMoves = max(p.maxMoves, moved-lastMoved)
			lastMoved, lastAt = moved, time.Now()
		}
		if done {
			p.took, p.moved, p.maxBatch = time.Since(start), moved, batch
			return p, nil
		}
		if time.Now().After(deadline) {
			return p, fmt.Errorf("not converged within %s: %d of %d accounts on their preferred member", f.cfg.timeout, f.w.correctCount(), f.cfg.accounts)
		}
		select {
		case <-ctx.Done():
			return p, ctx.Err()
		case <-tick.C:
		}
	}
}

// measure reads the steady state over the window.
func (f *simFleet) measure(ctx context.Context, admin *goredis.Client, base map[string]string) (steadyReport, error) {
	var s steadyReport
	before, err := redisInfo(ctx, admin)
	if err != nil {
		return s, err
	}
	trips0 := make([]int64, len(f.insts))
	for i, in := range f.insts {
		trips0[i] = in.trips.Load()
		in.leases.reset()
	}
	cpu0, err := cpuTime(os.Getpid())
	if err != nil {
		return s, err
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return s, ctx.Err()
	case <-time.After(f.cfg.window):
	}
	after, err := redisInfo(ctx, admin)
	if err != nil {
		return s, err
	}
	cpu1, err := cpuTime(os.Getpid())
	if err != nil {
		return s, err
	}
	s.wall = time.Since(t0)
	sec := s.wall.Seconds()
	s.commandsPerSecond = float64(infoInt(after, "total_commands_processed")-infoInt(before, "total_commands_processed")) / sec
	s.instantaneousOps = infoInt(after, "instantaneous_ops_per_sec")
	s.redisCPU = (infoFloat(after, "used_cpu_user") + infoFloat(after, "used_cpu_sys") - infoFloat(before, "used_cpu_user") - infoFloat(before, "used_cpu_sys")) / sec
	s.redisMemory = infoInt(after, "used_memory") - infoInt(base, "used_memory")
	s.processCPU = (cpu1 - cpu0).Seconds() / sec
	s.processRSS, _ = rss(os.Getpid())
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s.heapInuse = ms.HeapInuse
	var n int64
	var sum time.Duration
	for i, in := range f.insts {
		s.roundTripsPerSecond = append(s.roundTripsPerSecond, float64(in.trips.Load()-trips0[i])/sec)
		c, total, longest, renewed := in.leases.stats()
		n, sum, s.tickMax, s.renewed = n+c, sum+total, max(s.tickMax, longest), s.renewed+renewed
	}
	if s.renewed > 0 {
		usec := scriptMicros(after) - scriptMicros(before)
		s.scriptTimePerLease = time.Duration(usec * 1000 / s.renewed)
	}
	if n > 0 {
		s.tickMean = sum / time.Duration(n)
	}
	s.ticksPerSecond = float64(n) / sec
	return s, nil
}

// simWorld is what the server would see: which instance runs each
// account, under which fencing token. It counts the accounts running on
// their target member, the moves, and every violation: an account owned
// by an instance while another still runs it, or with a token not above
// the previous owner's.
type simWorld struct {
	mu         sync.Mutex
	owner      []int32 // running instance, -1 for none
	prev       []int32 // the last instance that ran it, -1 for none
	token      []redis.FenceToken
	target     []int32
	correct    int
	moved      int64
	maxBatch   int
	violations int64
	first      []string
}

func newSimWorld(n int) *simWorld {
	w := &simWorld{owner: make([]int32, n), prev: make([]int32, n), token: make([]redis.FenceToken, n), target: make([]int32, n)}
	for i := range w.owner {
		w.owner[i], w.prev[i], w.target[i] = -1, -1, -1
	}
	return w
}

func (w *simWorld) violation(format string, args ...any) {
	w.violations++
	if len(w.first) < 10 {
		w.first = append(w.first, fmt.Sprintf(format, args...))
	}
}

func (w *simWorld) newPhase(target []int32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.target, w.moved, w.maxBatch, w.correct = target, 0, 0, 0
	for a, o := range w.owner {
		if o >= 0 && o == target[a] {
			w.correct++
		}
	}
}

// progress reports whether every account runs on its target, the moves
// and the largest Own batch of the phase.
func (w *simWorld) progress() (done bool, moved int64, batch int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.correct == len(w.owner), w.moved, w.maxBatch
}

func (w *simWorld) correctCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.correct
}

func (w *simWorld) violationCount() (int64, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.violations, w.first
}

// run records that inst runs account a under tok.
func (w *simWorld) run(inst int32, a int, tok redis.FenceToken) {
	if tok <= w.token[a] {
		w.violation("%s owned by sim-%02d with token %d, not above the previous %d", simAccount(a), inst, tok, w.token[a])
	}
	if w.prev[a] >= 0 && w.prev[a] != inst {
		w.moved++
	}
	if o := w.owner[a]; o != inst {
		if o >= 0 {
			w.violation("%s owned by sim-%02d while sim-%02d runs it", simAccount(a), inst, o)
			if o == w.target[a] {
				w.correct--
			}
		}
		if inst == w.target[a] {
			w.correct++
		}
	}
	w.owner[a], w.token[a] = inst, tok
}

// closed records that inst's socket of account a closed.
func (w *simWorld) closed(inst int32, a int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.owner[a] != inst {
		return
	}
	if inst == w.target[a] {
		w.correct--
	}
	w.owner[a], w.prev[a] = -1, inst
}

// simOwner runs accounts as the supervisor would, minus the connections:
// each gets a socket registered in Sockets, closed when its lease ends.
type simOwner struct {
	w       *simWorld
	inst    int
	leases  fleet.Leases
	sockets *fleet.Sockets
}

func (o simOwner) Own(accounts ...string) {
	type owned struct {
		a   int
		tok redis.FenceToken
	}
	got := make([]owned, 0, len(accounts))
	var refused []string
	for _, acct := range accounts {
		a := simIndex(acct)
		l, ok := o.leases.Get(acct)
		if !ok {
			refused = append(refused, acct)
			continue
		}
		if _, err := o.sockets.Track(acct, simSocket{o.w, int32(o.inst), a}); err != nil {
			refused = append(refused, acct)
			continue
		}
		got = append(got, owned{a, l.Token})
	}
	o.w.mu.Lock()
	defer o.w.mu.Unlock()
	o.w.maxBatch = max(o.w.maxBatch, len(accounts))
	for _, g := range got {
		o.w.run(int32(o.inst), g.a, g.tok)
	}
	for _, acct := range refused {
		o.w.violation("%s given to sim-%02d without a usable lease", acct, o.inst)
	}
}

// Disown: the sockets are closed already (Sockets.Close comes first).
func (o simOwner) Disown(accounts ...string) {
	o.w.mu.Lock()
	defer o.w.mu.Unlock()
	for _, acct := range accounts {
		if a := simIndex(acct); o.w.owner[a] == int32(o.inst) {
			o.w.violation("%s disowned by sim-%02d before its socket closed", acct, o.inst)
		}
	}
}

func (simOwner) Resave(...string) {}

// simSocket is an account's connection as the server would see it.
type simSocket struct {
	w    *simWorld
	inst int32
	a    int
}

func (s simSocket) Close() error {
	s.w.closed(s.inst, s.a)
	return nil
}

// timedLeases times every Tick of the leases it wraps and counts the
// leases renewed.
type timedLeases struct {
	fleet.Leases
	mu           sync.Mutex
	n, renewed   int64
	total, worst time.Duration
}

func (t *timedLeases) Tick(ctx context.Context, watch ...string) (redis.TickResult, error) {
	start := time.Now()
	r, err := t.Leases.Tick(ctx, watch...)
	d := time.Since(start)
	t.mu.Lock()
	t.n, t.total, t.worst, t.renewed = t.n+1, t.total+d, max(t.worst, d), t.renewed+int64(r.Renewed)
	t.mu.Unlock()
	return r, err
}

func (t *timedLeases) reset() {
	t.mu.Lock()
	t.n, t.total, t.worst, t.renewed = 0, 0, 0, 0
	t.mu.Unlock()
}

func (t *timedLeases) stats() (n int64, total, worst time.Duration, renewed int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n, t.total, t.worst, t.renewed
}

// tripHook counts round trips: single commands and whole pipelines.
type tripHook struct{ n *atomic.Int64 }

func (h tripHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h tripHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h tripHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// redisInfo reads INFO's fields.
func redisInfo(ctx context.Context, c *goredis.Client) (map[string]string, error) {
	s, err := c.Info(ctx, "stats", "memory", "cpu", "commandstats").Result()
	if err != nil {
		return nil, fmt.Errorf("redis INFO: %w", err)
	}
	out := map[string]string{}
	for line := range strings.SplitSeq(s, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = v
		}
	}
	return out, nil
}

// scriptMicros is the time Redis spent in scripts (EVALSHA and EVAL), in
// µs, from INFO commandstats.
func scriptMicros(m map[string]string) int64 {
	var total int64
	for _, k := range []string{"cmdstat_evalsha", "cmdstat_eval"} {
		for f := range strings.SplitSeq(m[k], ",") {
			if v, ok := strings.CutPrefix(f, "usec="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				total += n
			}
		}
	}
	return total
}

func infoInt(m map[string]string, k string) int64 {
	v, _ := strconv.ParseInt(m[k], 10, 64)
	return v
}

func infoFloat(m map[string]string, k string) float64 {
	v, _ := strconv.ParseFloat(m[k], 64)
	return v
}
