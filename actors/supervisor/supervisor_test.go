package supervisor

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/goleak"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/internal/testkit"
	"github.com/wafleet/wafleet/status"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeAccount is a stand-in for a connection actor: it publishes a
// "connected" event when started, panics on "panic", and echoes *probe.
type fakeAccount struct {
	account Account
	events  events.Publisher
	starts  *startCounter
	heard   *startCounter
}

type probe struct{}

// shout is broadcast; each account counts the shouts it heard.
type shout struct{}
type probeReply struct {
	account Account
	self    *actor.PID
}

type startCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *startCounter) add(id string) {
	c.mu.Lock()
	c.counts[id]++
	c.mu.Unlock()
}

func (c *startCounter) get(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[id]
}

func (f *fakeAccount) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
		f.starts.add(f.account.ID)
		f.events.Publish(events.Event{Account: f.account.ID, Kind: events.KindConnected, State: events.StateConnected})
	case string:
		panic("injected panic")
	case *probe:
		ctx.Respond(&probeReply{account: f.account, self: ctx.Self()})
	case *shout:
		f.heard.add(f.account.ID)
	}
}

type fixture struct {
	system *actor.ActorSystem
	pid    *actor.PID
	rec    *testkit.Recorder
	board  *status.Board
	starts *startCounter
	heard  *startCounter
}

// newFixture starts a supervisor of fake accounts; options change its Deps.
func newFixture(t *testing.T, options ...func(*Deps)) *fixture {
	t.Helper()
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	system := actor.NewActorSystemWithConfig(actor.Configure(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return logger }),
		// A dead letter's throttle outlives the test by this long.
		actor.WithDeadLetterThrottleInterval(time.Millisecond)))
	f := &fixture{system: system, rec: testkit.NewRecorder(), board: status.NewBoard(), starts: &startCounter{counts: map[string]int{}}, heard: &startCounter{counts: map[string]int{}}}
	bus := events.NewBus(f.board, f.rec)
	deps := Deps{
		Props: func(a Account) *actor.Props {
			return actor.PropsFromProducer(func() actor.Actor { return &fakeAccount{account: a, events: bus, starts: f.starts, heard: f.heard} })
		},
		Events:         bus,
		Board:          f.board,
		Logger:         logger,
		RestartDelay:   50 * time.Millisecond,
		HealthInterval: time.Hour,
	}
	for _, o := range options {
		o(&deps)
	}
	pid, err := system.Root.SpawnNamed(Props(deps), "supervisor")
	if err != nil {
		t.Fatal(err)
	}
	f.pid = pid
	t.Cleanup(func() {
		if err := system.Root.StopFuture(pid).Wait(); err != nil {
			t.Errorf("stop supervisor: %v", err)
		}
		system.Shutdown()
	})
	return f
}

func (f *fixture) setAccounts(t *testing.T, accounts ...Account) *Applied {
	t.Helper()
	res, err := f.system.Root.RequestFuture(f.pid, &SetAccounts{Accounts: accounts}, 5*time.Second).Result()
	if err != nil {
		t.Fatal(err)
	}
	return res.(*Applied)
}

// forward sends msg to account id through the supervisor and returns the
// answer: the account actor's reply, or the supervisor's *Forwarded error.
func (f *fixture) forward(t *testing.T, id string, msg any) (any, error) {
	t.Helper()
	res, err := f.system.Root.RequestFuture(f.pid, &Forward{ID: id, Message: msg}, 5*time.Second).Result()
	if err != nil {
		t.Fatal(err)
	}
	if fwd, ok := res.(*Forwarded); ok {
		return nil, fwd.Err
	}
	return res, nil
}

// send delivers msg to account id through the supervisor without waiting
// for an answer.
func (f *fixture) send(id string, msg any) {
	f.system.Root.Send(f.pid, &Forward{ID: id, Message: msg})
}

func (f *fixture) probe(t *testing.T, id string) Account {
	t.Helper()
	return f.probePID(t, id).account
}

// probePID asks account id's actor, through the supervisor, for its
// account and PID.
func (f *fixture) probePID(t *testing.T, id string) *probeReply {
	t.Helper()
	res, err := f.forward(t, id, &probe{})
	if err != nil {
		t.Fatalf("probe %s: %v", id, err)
	}
	return res.(*probeReply)
}

func TestStartsOneActorPerAccount(t *testing.T) {
	f := newFixture(t)
	applied := f.setAccounts(t, Account{ID: "a"}, Account{ID: "b", Proxy: "socks5://127.0.0.1:1"})
	if len(applied.Started) != 2 {
		t.Fatalf("started %v", applied.Started)
	}
	if got := f.probe(t, "b"); got.Proxy != "socks5://127.0.0.1:1" {
		t.Fatalf("account b got %+v", got)
	}
	// Applying the same list again changes nothing.
	if again := f.setAccounts(t, Account{ID: "a"}, Account{ID: "b", Proxy: "socks5://127.0.0.1:1"}); len(again.Started)+len(again.Stopped) != 0 {
		t.Fatalf("second apply changed %+v", again)
	}
	f.probe(t, "a") // its mailbox is FIFO: Started has been handled
	if f.starts.get("a") != 1 {
		t.Fatalf("a started %d times", f.starts.get("a"))
	}
}

func TestRemovedAccountStops(t *testing.T) {
	f := newFixture(t)
	f.setAccounts(t, Account{ID: "a"}, Account{ID: "b"})
	f.rec.WaitFor(t, "b connected", func(e events.Event) bool { return e.Account == "b" && e.Kind == events.KindConnected })
	applied := f.setAccounts(t, Account{ID: "a"})
	if len(applied.Stopped) != 1 || applied.Stopped[0] != "b" {
		t.Fatalf("stopped %v", applied.Stopped)
	}
	f.rec.WaitFor(t, "b stopped", func(e events.Event) bool { return e.Account == "b" && e.State == events.StateStopped })
	if _, err := f.forward(t, "b", &probe{}); !errors.Is(err, ErrUnknownAccount) {
		t.Fatalf("forward to removed account: %v", err)
	}
}

func TestChangedAccountRestarts(t *testing.T) {
	f := newFixture(t)
	f.setAccounts(t, Account{ID: "a"})
	f.setAccounts(t, Account{ID: "a", Proxy: "http://127.0.0.1:3128"})
	f.rec.WaitForN(t, 2, "a connected twice", func(e events.Event) bool { return e.Account == "a" && e.Kind == events.KindConnected })
	if got := f.probe(t, "a"); got.Proxy != "http://127.0.0.1:3128" {
		t.Fatalf("restarted with %+v", got)
	}
}

// A goroutine of a stopped actor (a timer, a store job) may still send to
// its PID: that must reach dead letters, never the account's next actor,
// which could take it for its own or, spawned a moment before, panic on
// it (protoactor registers a name before its mailbox can take a message).
func TestStalePIDDoesNotReachTheNextActor(t *testing.T) {
	f := newFixture(t)
	f.setAccounts(t, Account{ID: "a"})
	old := f.probePID(t, "a").self
	f.setAccounts(t, Account{ID: "a", Proxy: "http://127.0.0.1:3128"})
	f.rec.WaitForN(t, 2, "a connected twice", func(e events.Event) bool { return e.Account == "a" && e.Kind == events.KindConnected })
	next := f.probePID(t, "a")
	if next.account.Proxy != "http://127.0.0.1:3128" {
		t.Fatalf("restarted with %+v", next.account)
	}
	if next.self.Equal(old) {
		t.Fatalf("the next actor has the stopped one's PID %s", old.Id)
	}
	// Sent before the probe by this goroutine: had it reached the actor,
	// the actor would have handled it before answering the probe.
	f.system.Root.Send(old, &shout{})
	f.probe(t, "a")
	if n := f.heard.get("a"); n != 0 {
		t.Fatalf("the next actor heard %d message(s) sent to the stopped one", n)
	}
}

func TestChangedDeviceNameRestarts(t *testing.T) {
	f := newFixture(t)
	f.setAccounts(t, Account{ID: "a", DeviceName: "Front desk"})
	applied := f.setAccounts(t, Account{ID: "a", DeviceName: "Back office"})
	if len(applied.Stopped) != 1 {
		t.Fatalf("a changed device name did not restart the account: %+v", applied)
	}
	f.rec.WaitForN(t, 2, "a connected twice", func(e events.Event) bool { return e.Account == "a" && e.Kind == events.KindConnected })
	if got := f.probe(t, "a"); got.DeviceName != "Back office" {
		t.Fatalf("restarted with %+v", got)
	}
}

func TestBroadcastReachesEveryRunningAccount(t *testing.T) {
	f := newFixture(t)
	f.setAccounts(t, Account{ID: "a"}, Account{ID: "b"}, Account{ID: "c"})
	if _, err := f.system.Root.RequestFuture(f.pid, &Disown{IDs: []string{"c"}}, 5*time.Second).Result(); err != nil {
		t.Fatal(err)
	}
	f.system.Root.Send(f.pid, &Broadcast{Message: &shout{}})
	f.system.Root.Send(f.pid, &Broadcast{Message: &shout{}})
	// A forward from the supervisor reaches each account after the
	// broadcasts it sent before.
	for _, id := range []string{"a", "b"} {
		if _, err := f.forward(t, id, &probe{}); err != nil {
			t.Fatal(err)
		}
		if n := f.heard.get(id); n != 2 {
			t.Errorf("%s heard %d broadcasts, want 2", id, n)
		}
	}
	if n := f.heard.get("c"); n != 0 {
		t.Errorf("stopped account c heard %d broadcasts", n)
	}
}

func TestForwardAnswersFromTheAccount(t *testing.T) {
	f := newFixture(t)
	f.setAccounts(t, Account{ID: "a", Proxy: "http://127.0.0.1:1"})
	res, err := f.forward(t, "a", &probe{})
	if err != nil {
		t.Fatal(err)
	}
	if reply, ok := res.(*probeReply); !ok || reply.account.Proxy != "http://127.0.0.1:1" {
		t.Fatalf("reply %#v", res)
	}
}

func TestForwardUnknownAccount(t *testing.T) {
	f := newFixture(t)
	if _, err := f.forward(t, "nobody", &probe{}); !errors.Is(err, ErrUnknownAccount) {
		t.Fatalf("err = %v, want ErrUnknownAccount", err)
	}
}

func TestPanicRestartsThatActorAlone(t *testing.T) {
	f := newFixture(t)
	f.setAccounts(t, Account{ID: "a"}, Account{ID: "b"})
	f.rec.WaitFor(t, "a connected", func(e events.Event) bool { return e.Account == "a" && e.Kind == events.KindConnected })
	f.rec.WaitFor(t, "b connected", func(e events.Event) bool { return e.Account == "b" && e.Kind == events.KindConnected })

	f.send("a", "boom")
	f.rec.WaitFor(t, "a restart", func(e events.Event) bool { return e.Account == "a" && e.Kind == events.KindRestart })
	f.rec.WaitForN(t, 2, "a connected after restart", func(e events.Event) bool { return e.Account == "a" && e.Kind == events.KindConnected })
	f.probe(t, "a") // answers again after the restart
	if f.starts.get("b") != 1 {
		t.Fatalf("b started %d times; a panic in a restarted b too", f.starts.get("b"))
	}
	if acct, _ := f.board.Get("a"); acct.Restarts != 1 {
		t.Fatalf("board shows %d restarts for a", acct.Restarts)
	}
}

func TestDisownRepliesAfterTermination(t *testing.T) {
	f := newFixture(t)
	f.setAccounts(t, Account{ID: "a"}, Account{ID: "b"}, Account{ID: "c"})
	f.rec.WaitFor(t, "a connected", func(e events.Event) bool { return e.Account == "a" && e.Kind == events.KindConnected })
	res, err := f.system.Root.RequestFuture(f.pid, &Disown{IDs: []string{"a", "c", "nobody"}}, 5*time.Second).Result()
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := res.(*Disowned); !ok || len(got.IDs) != 3 {
		t.Fatalf("reply %#v", res)
	}
	// By the time of the reply the actors are gone: a forward finds nothing.
	for _, id := range []string{"a", "c"} {
		if _, err := f.forward(t, id, &probe{}); !errors.Is(err, ErrUnknownAccount) {
			t.Fatalf("forward to %s after stop: %v", id, err)
		}
	}
	// Stopping accounts that are not running replies at once.
	if _, err := f.system.Root.RequestFuture(f.pid, &Disown{IDs: []string{"nobody"}}, 5*time.Second).Result(); err != nil {
		t.Fatal(err)
	}
	f.probe(t, "b")
}

// TestLeasedRunsConfiguredAndOwned: with Deps.Leased an account runs only
// while it is both configured and owned, whichever of the two changes.
func TestLeasedRunsConfiguredAndOwned(t *testing.T) {
	f := newFixture(t, func(d *Deps) { d.Leased = true })
	if applied := f.setAccounts(t, Account{ID: "a"}, Account{ID: "b"}, Account{ID: "c"}); len(applied.Started) != 0 {
		t.Fatalf("accounts started before they were owned: %+v", applied)
	}
	f.system.Root.Send(f.pid, &Own{IDs: []string{"b", "c", "unconfigured"}})
	for _, id := range []string{"b", "c"} {
		if _, err := f.forward(t, id, &probe{}); err != nil {
			t.Fatalf("owned %s: %v", id, err)
		}
	}
	for _, id := range []string{"a", "unconfigured"} {
		if _, err := f.forward(t, id, &probe{}); !errors.Is(err, ErrUnknownAccount) {
			t.Fatalf("%s runs without being configured and owned: %v", id, err)
		}
	}
	res, err := f.system.Root.RequestFuture(f.pid, &Disown{IDs: []string{"b"}}, 5*time.Second).Result()
	if got, ok := res.(*Disowned); err != nil || !ok || len(got.IDs) != 1 {
		t.Fatalf("Disown = %#v, %v", res, err)
	}
	// A new configuration neither restarts b nor stops c.
	if applied := f.setAccounts(t, Account{ID: "b"}, Account{ID: "c"}, Account{ID: "unconfigured"}); len(applied.Started) != 1 || applied.Started[0] != "unconfigured" || len(applied.Stopped) != 0 {
		t.Fatalf("applied %+v, want only the owned account now configured started", applied)
	}
	if _, err := f.forward(t, "b", &probe{}); !errors.Is(err, ErrUnknownAccount) {
		t.Fatalf("disowned b runs again: %v", err)
	}
	f.system.Root.Send(f.pid, &Own{IDs: []string{"b"}})
	if _, err := f.forward(t, "b", &probe{}); err != nil {
		t.Fatalf("b owned again: %v", err)
	}
	if n := f.starts.get("c"); n != 1 {
		t.Fatalf("c started %d times", n)
	}
}

// TestDisownCancelsAPendingStart: an account disowned, owned again and
// disowned again (usually before its first actor terminated, when the
// second Own only marks it to start again) does not run afterwards.
func TestDisownCancelsAPendingStart(t *testing.T) {
	f := newFixture(t, func(d *Deps) { d.Leased = true })
	f.setAccounts(t, Account{ID: "a"})
	f.system.Root.Send(f.pid, &Own{IDs: []string{"a"}})
	if _, err := f.forward(t, "a", &probe{}); err != nil {
		t.Fatal(err)
	}
	f.system.Root.Send(f.pid, &Disown{IDs: []string{"a"}})
	f.system.Root.Send(f.pid, &Own{IDs: []string{"a"}})
	if _, err := f.system.Root.RequestFuture(f.pid, &Disown{IDs: []string{"a"}}, 5*time.Second).Result(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.forward(t, "a", &probe{}); !errors.Is(err, ErrUnknownAccount) {
		t.Fatalf("the disowned account runs: %v", err)
	}
}

// The health line repeats every HealthInterval until the supervisor stops.
func TestHealthLineRepeats(t *testing.T) {
	logs := new(testkit.LogBuffer)
	newFixture(t, func(d *Deps) {
		d.Logger = slog.New(slog.NewJSONHandler(logs, nil))
		d.HealthInterval = 10 * time.Millisecond
	})
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(logs.String(), `"msg":"health"`) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("health lines after 10 s: %d, want at least 3", strings.Count(logs.String(), `"msg":"health"`))
		}
		time.Sleep(5 * time.Millisecond)
	}
}
