package supervisor

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/status"
)

// ErrUnknownAccount is returned for a command naming an account that does
// not run here.
var ErrUnknownAccount = errors.New("supervisor: unknown account")

// Account is one account this process should run. A change of any field
// restarts the account's actor, which is built from it.
type Account struct {
	ID    string
	Proxy string
	// DeviceName is the name the phone shows for the linked device. It is
	// sent only when the account registers (pairs), so a change does not
	// alter an account already linked; it still restarts the actor, like a
	// changed proxy, because the actor's settings are fixed when it is
	// built: without a restart, a later pairing (after a logout, or of an
	// account showing QR codes now) would still carry the old name.
	DeviceName string
	// LinkPhone makes the account pair by link code for this number
	// (digits) instead of by QR code (config accounts[].phone); a change
	// restarts the actor, like DeviceName.
	LinkPhone string
}

// Deps are the supervisor's dependencies.
type Deps struct {
	// Props makes the actor of one account. Required.
	Props func(Account) *actor.Props
	// Events receives restart events. Required.
	Events events.Publisher
	// Board is summarised in the health line. Required.
	Board *status.Board
	// Logger for transitions and the health line. Required.
	Logger *slog.Logger
	// RestartDelay is how long a panicked actor waits before it restarts.
	// Default: 1s.
	RestartDelay time.Duration
	// HealthInterval is the period of the health line. Default: 30s.
	HealthInterval time.Duration
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Leased: a configured account runs only while it is owned (Own,
	// Disown). Fleet mode sets it: an account runs on the instance that
	// holds its lease. Otherwise every configured account runs.
	Leased bool
}

// SetAccounts replaces the configured accounts. The accounts to run are
// the configured ones (with Deps.Leased, those of them that are owned):
// those that are new are started, those no longer listed are stopped,
// others are left alone (a changed proxy restarts the account). The reply
// is *Applied.
type SetAccounts struct {
	Accounts []Account
}

// Own adds accounts to the owned set (Deps.Leased): those configured start.
// There is no reply. Fleet mode sends it for the accounts whose lease this
// instance acquired, in batches.
type Own struct {
	IDs []string
}

// Applied answers SetAccounts.
type Applied struct {
	Started, Stopped []string
}

// Forward delivers Message to the actor of account ID with the requester
// as its sender, so the account's actor answers the requester directly.
// When no actor runs for ID, the supervisor itself answers *Forwarded.
type Forward struct {
	ID      string
	Message any
}

// Broadcast delivers Message to the actor of every account running here
// (not to those stopping). There is no reply. The app uses it to tell every
// account that a newer client version is available, or that none is.
type Broadcast struct {
	Message any
}

// Forwarded answers a Forward to an account that does not run here; Err is
// ErrUnknownAccount.
type Forwarded struct {
	Err error
}

// Disown removes accounts from the owned set and stops their actors, all
// at once. Sent as a request, it is answered *Disowned once every one has
// terminated (its socket closed). With Deps.Leased the accounts stay
// stopped until owned again; otherwise until a later SetAccounts. Fleet
// mode sends it for lost leases, hand-overs and shutdown.
type Disown struct {
	IDs []string
}

// Disowned answers Disown.
type Disowned struct {
	IDs []string
}

// healthTick asks for a health line.
type healthTick struct{}

type child struct {
	account Account
	pid     *actor.PID
}

// Supervisor is the root actor. Create it with Props.
type Supervisor struct {
	deps Deps
	// configured is the latest SetAccounts; owned (with Deps.Leased) the
	// accounts owned here. Together they say which accounts run.
	configured []Account
	owned      map[string]bool
	children   map[string]*child
	// stopping holds accounts whose actor was asked to stop and has not
	// terminated yet, with the account to start once it has (if any).
	stopping map[string]*Account
	// waiters are the Disown requests waiting for terminations.
	waiters []*stopWaiter
	// health fires the next health line; only Receive touches it
	// (protoactor's repeating scheduler reads its state without
	// synchronisation, which the race detector reports).
	health *time.Timer
	// spawned numbers the actors spawned, for their names; shared by the
	// supervisor's incarnations (a restarted supervisor must not reuse a
	// name either).
	spawned *uint64
}

// Props returns the supervisor's props, with the delayed-restart strategy
// for its children.
func Props(deps Deps) *actor.Props {
	if deps.RestartDelay <= 0 {
		deps.RestartDelay = time.Second
	}
	if deps.HealthInterval <= 0 {
		deps.HealthInterval = 30 * time.Second
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	strategy := &delayedRestart{delay: deps.RestartDelay, events: deps.Events, logger: deps.Logger, now: deps.Now}
	spawned := new(uint64)
	return actor.PropsFromProducer(func() actor.Actor {
		return &Supervisor{deps: deps, owned: map[string]bool{}, children: map[string]*child{}, stopping: map[string]*Account{}, spawned: spawned}
	}, actor.WithSupervisor(strategy))
}

// Receive handles the supervisor's messages.
func (s *Supervisor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		s.nextHealth(ctx)
	case *SetAccounts:
		s.configured = msg.Accounts
		ctx.Respond(s.apply(ctx))
	case *Own:
		for _, id := range msg.IDs {
			s.owned[id] = true
		}
		s.apply(ctx)
	case *Forward:
		c, ok := s.children[msg.ID]
		if !ok {
			ctx.Respond(&Forwarded{Err: ErrUnknownAccount})
			return
		}
		ctx.RequestWithCustomSender(c.pid, msg.Message, ctx.Sender())
	case *Broadcast:
		for _, c := range s.children {
			ctx.Send(c.pid, msg.Message)
		}
	case *Disown:
		for _, id := range msg.IDs {
			delete(s.owned, id)
		}
		s.disown(ctx, msg.IDs)
	case *actor.Terminated:
		s.terminated(ctx, msg.Who)
	case *healthTick:
		s.logHealth()
		s.nextHealth(ctx)
	case *actor.Stopping:
		if s.health != nil {
			s.health.Stop()
		}
	case *actor.Stopped, *actor.Restarting:
	default:
		s.deps.Logger.Warn("supervisor: unexpected message", "type", fmt.Sprintf("%T", msg))
	}
}

// nextHealth schedules the next health line after HealthInterval.
func (s *Supervisor) nextHealth(ctx actor.Context) {
	self, root := ctx.Self(), ctx.ActorSystem().Root
	s.health = time.AfterFunc(s.deps.HealthInterval, func() { root.Send(self, &healthTick{}) })
}

// wanted returns the accounts to run: the configured ones, or with
// Deps.Leased those of them that are owned.
func (s *Supervisor) wanted() []Account {
	if !s.deps.Leased {
		return s.configured
	}
	var run []Account
	for _, a := range s.configured {
		if s.owned[a.ID] {
			run = append(run, a)
		}
	}
	return run
}

// apply starts and stops actors so that the wanted accounts run, and logs
// what changed.
func (s *Supervisor) apply(ctx actor.Context) *Applied {
	applied := s.run(ctx, s.wanted())
	if len(applied.Started) > 0 || len(applied.Stopped) > 0 {
		// Lists, empty ones included ([] rather than null), under names of
		// their own: the health line's "stopped" is a count.
		s.deps.Logger.Info("accounts applied", "started_accounts", append([]string{}, applied.Started...),
			"stopped_accounts", append([]string{}, applied.Stopped...))
	}
	return applied
}

func (s *Supervisor) run(ctx actor.Context, accounts []Account) *Applied {
	applied := &Applied{}
	want := make(map[string]Account, len(accounts))
	for _, a := range accounts {
		want[a.ID] = a
	}
	for id, c := range s.children {
		a, keep := want[id]
		if keep && a == c.account {
			continue
		}
		// Removed, or changed: stop now; a changed account starts again
		// once the old actor has terminated (one actor per account: two
		// would take turns on the account's connection).
		var next *Account
		if keep {
			next = &a
		}
		s.stopping[id] = next
		delete(s.children, id)
		ctx.Stop(c.pid)
		applied.Stopped = append(applied.Stopped, id)
	}
	for _, a := range accounts {
		if _, running := s.children[a.ID]; running {
			continue
		}
		if _, waiting := s.stopping[a.ID]; waiting {
			acct := a
			s.stopping[a.ID] = &acct
			continue
		}
		if s.spawn(ctx, a) {
			applied.Started = append(applied.Started, a.ID)
		}
	}
	return applied
}

// stopWaiter is a Disown request: its sender and the accounts whose
// termination it still waits for.
type stopWaiter struct {
	sender  *actor.PID
	ids     []string
	pending map[string]bool
}

func (s *Supervisor) disown(ctx actor.Context, ids []string) {
	w := &stopWaiter{sender: ctx.Sender(), ids: ids, pending: map[string]bool{}}
	for _, id := range ids {
		if c, ok := s.children[id]; ok {
			s.stopping[id] = nil
			delete(s.children, id)
			ctx.Stop(c.pid)
		}
		if _, pending := s.stopping[id]; pending {
			s.stopping[id] = nil // no restart once it has terminated
			w.pending[id] = true
		}
	}
	if len(w.pending) == 0 {
		if ctx.Sender() != nil {
			ctx.Respond(&Disowned{IDs: ids})
		}
		return
	}
	if w.sender != nil {
		s.waiters = append(s.waiters, w)
	}
}

// stopped tells the waiters that account id has terminated.
func (s *Supervisor) stopped(ctx actor.Context, id string) {
	kept := s.waiters[:0]
	for _, w := range s.waiters {
		delete(w.pending, id)
		if len(w.pending) == 0 {
			ctx.Send(w.sender, &Disowned{IDs: w.ids})
			continue
		}
		kept = append(kept, w)
	}
	s.waiters = kept
}

// spawn starts account a's actor under a name no actor had before,
// "ACCOUNT#N" (see accountOf). A name is not reused because protoactor
// resolves a PID by its name once its actor has stopped: the goroutines
// that still hold a stopped actor's PID (a timer, a store job, a socket
// reader) would send to the account's next actor, which would take their
// messages for its own, or panic on one that comes between the
// registration of its name and the start of its mailbox (a nil
// dispatcher), crashing the process when the sender is not an actor. With
// a fresh name they reach dead letters.
func (s *Supervisor) spawn(ctx actor.Context, a Account) bool {
	*s.spawned++
	pid, err := ctx.SpawnNamed(s.deps.Props(a), a.ID+"#"+strconv.FormatUint(*s.spawned, 10))
	if err != nil {
		s.deps.Logger.Error("supervisor: cannot start account", "account", a.ID, "error", err)
		return false
	}
	s.children[a.ID] = &child{account: a, pid: pid}
	s.deps.Logger.Info("account started", "account", a.ID)
	return true
}

func (s *Supervisor) terminated(ctx actor.Context, who *actor.PID) {
	id := accountOf(who)
	next, waiting := s.stopping[id]
	if !waiting {
		if c, ok := s.children[id]; ok && c.pid.Equal(who) {
			// A child stopped by itself (for example after its strategy
			// gave up); forget it so a later SetAccounts or Own starts it
			// again.
			delete(s.children, id)
		}
		return
	}
	delete(s.stopping, id)
	s.stopped(ctx, id)
	if next != nil {
		s.spawn(ctx, *next)
		return
	}
	s.deps.Events.Publish(events.Event{Account: id, Kind: events.KindState, State: events.StateStopped, Time: s.deps.Now()})
	s.deps.Board.Forget(id)
	s.deps.Logger.Info("account stopped", "account", id)
}

func (s *Supervisor) logHealth() {
	sum := s.deps.Board.Summarize(s.deps.Now())
	attrs := []any{
		"accounts", sum.Total,
		"restarts", sum.Restarts,
		"reconnects", sum.Reconnects,
		"oldest_pairing", sum.OldestPairing.Round(time.Second).String(),
	}
	for _, st := range events.States {
		attrs = append(attrs, string(st), sum.ByState[st])
	}
	s.deps.Logger.Info("health", attrs...)
}

// accountOf returns the account id of a child PID ("parent/ACCOUNT#N").
func accountOf(pid *actor.PID) string {
	id := pid.GetId()
	if i := strings.LastIndexByte(id, '/'); i >= 0 {
		id = id[i+1:]
	}
	if i := strings.LastIndexByte(id, '#'); i >= 0 {
		id = id[:i]
	}
	return id
}

// delayedRestart restarts a panicked child after a fixed delay, one child
// at a time, forever: a connection actor's panic is a bug to report, not a
// reason to give an account up.
type delayedRestart struct {
	delay  time.Duration
	events events.Publisher
	logger *slog.Logger
	now    func() time.Time
}

// HandleFailure implements actor.SupervisorStrategy.
func (d *delayedRestart) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason, _ any) {
	rs.Fail()
	id := accountOf(child)
	d.logger.Error("account actor panicked; restarting after delay", "account", id, "panic", slog.AnyValue(reason), "delay", d.delay, "failures", rs.FailureCount())
	d.events.Publish(events.Event{Account: id, Kind: events.KindRestart, Error: "actor restarted after a panic", Time: d.now()})
	time.AfterFunc(d.delay, func() { sup.RestartChildren(child) })
}
