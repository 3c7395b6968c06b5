package connection

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/goleak"

	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/internal/testkit"
	"github.com/wafleet/wafleet/status"
	"github.com/wafleet/wafleet/store"
)

// waitTimeout bounds every wait of the tests; nothing waits by sleeping.
// It only stops a hung test: under -race on a loaded 2-core machine, a
// first prekey upload (812 keys generated and stored) has taken over 10 s.
const waitTimeout = testkit.WaitTimeout

func kindIs(k events.Kind) func(events.Event) bool {
	return func(e events.Event) bool { return e.Kind == k }
}

func stateIs(s events.State) func(events.Event) bool {
	return func(e events.Event) bool { return e.State == s }
}

// harness is one actor system, one store, one recorder and the status
// board that the same events update.
type harness struct {
	t      *testing.T
	system *actor.ActorSystem
	store  *store.BoltStore
	rec    *testkit.Recorder
	board  *status.Board

	mu      sync.Mutex
	stopped map[*actor.PID]bool
	spawned int
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(io.Discard, nil))
}

// waitStoreQueues waits for the store calls that stopped actors left
// running: by design they finish after the actor (each bounded by
// Deps.StoreTimeout), and generating and checking hundreds of prekeys can
// take seconds on a loaded machine. A call still running after the
// deadline is reported by the leak check that follows.
func waitStoreQueues(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	buf := make([]byte, 1<<20)
	for time.Now().Before(deadline) {
		if !bytes.Contains(buf[:runtime.Stack(buf, true)], []byte("(*storeQueue).work")) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// diagramGuard is a quiet log handler that fails the test when the actor
// changes phase along an edge that transitions (and so the package doc's
// diagram) lacks.
type diagramGuard struct{ t *testing.T }

func (g diagramGuard) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }
func (g diagramGuard) WithAttrs([]slog.Attr) slog.Handler           { return g }
func (g diagramGuard) WithGroup(string) slog.Handler                { return g }
func (g diagramGuard) Handle(_ context.Context, r slog.Record) error {
	if r.Message == msgUndocumentedPhase {
		var edge []string
		r.Attrs(func(a slog.Attr) bool { edge = append(edge, a.String()); return true })
		g.t.Errorf("%s: %v", r.Message, edge)
	}
	return nil
}

// newHarness builds the system and store and registers, first, the leak
// check that runs after every other cleanup.
func newHarness(t *testing.T) *harness {
	t.Helper()
	t.Cleanup(func() {
		waitStoreQueues(t)
		goleak.VerifyNone(t)
	})
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "wafleet.db"), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	// The dead-letter throttle runs a goroutine for its interval after a
	// dead letter; keep it short so that it ends before the leak check.
	sys := actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quietLogger() }),
		actor.WithDeadLetterThrottleInterval(time.Millisecond),
	)
	t.Cleanup(sys.Shutdown)
	h := &harness{t: t, system: sys, store: st, rec: testkit.NewRecorder(), board: status.NewBoard()}
	// A dead letter that is not expected is a bug in the actors'
	// lifecycle. Expected: late messages of goroutines (they say so with
	// IgnoreDeadLetterLogging) and the system's own second Stop to a
	// pairing child that the connection actor stopped just before it was
	// stopped itself (the child's Terminated was still on its way).
	sub := sys.EventStream.Subscribe(func(m any) {
		if d, ok := m.(*actor.DeadLetterEvent); ok {
			_, stop := d.Message.(*actor.Stop)
			if _, ignore := d.Message.(actor.IgnoreDeadLetterLogging); !ignore && !stop {
				t.Errorf("dead letter %T to %s", d.Message, d.PID.Id)
			}
		}
	})
	t.Cleanup(func() { sys.EventStream.Unsubscribe(sub) })
	return h
}

// deps returns test defaults: tiny backoff, the harness's store, and its
// board then its recorder for the events (the board is up to date when a
// wait for an event returns).
func (h *harness) deps(id string) Deps {
	return Deps{
		AccountID: id,
		Store:     h.store,
		Events:    events.NewBus(h.board, h.rec),
		Logger:    slog.New(diagramGuard{h.t}),
		Backoff:   Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond, StableAfter: time.Minute},
		// Limits far above what an idle machine needs: a test that is
		// about a timeout sets its own.
		Keepalive:        Keepalive{Interval: time.Minute, Timeout: 20 * time.Second},
		HandshakeTimeout: 20 * time.Second,
		StoreTimeout:     20 * time.Second,
	}
}

// spawn starts a connection actor and stops it (waiting) at cleanup. Like
// the supervisor, it names each actor afresh ("ACCOUNT#N"): a stopped
// actor's goroutines may still send to its PID.
func (h *harness) spawn(d Deps) *actor.PID {
	h.t.Helper()
	h.mu.Lock()
	h.spawned++
	name := d.AccountID + "#" + strconv.Itoa(h.spawned)
	h.mu.Unlock()
	pid, err := h.system.Root.SpawnNamed(Props(d), name)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { h.stop(pid) })
	return pid
}

// stop stops the actor once and waits for it (a second Stop would be a
// dead letter).
func (h *harness) stop(pid *actor.PID) {
	h.t.Helper()
	h.mu.Lock()
	done := h.stopped[pid]
	if h.stopped == nil {
		h.stopped = map[*actor.PID]bool{}
	}
	h.stopped[pid] = true
	h.mu.Unlock()
	if done {
		return
	}
	if err := h.system.Root.StopFuture(pid).Wait(); err != nil {
		h.t.Fatal(err)
	}
}

// inspect returns the actor's snapshot; since the mailbox is FIFO, every
// message sent before has been handled.
func (h *harness) inspect(pid *actor.PID) *snapshot {
	h.t.Helper()
	res, err := h.system.Root.RequestFuture(pid, &inspect{}, waitTimeout).Result()
	if err != nil {
		h.t.Fatal(err)
	}
	return res.(*snapshot)
}

func (h *harness) request(pid *actor.PID, msg any) *Result {
	h.t.Helper()
	res, err := h.system.Root.RequestFuture(pid, msg, waitTimeout).Result()
	if err != nil {
		h.t.Fatal(err)
	}
	return res.(*Result)
}

// emulatorDeps points deps at srv.
func emulatorDeps(d Deps, srv *emulator.Server) Deps {
	root := srv.RootPublicKey()
	d.Server = Server{URL: srv.URL(), RootKey: root[:]}
	return d
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// sendAndWait sends m through the account's actor and waits, from event
// index from on, for its message_sent event in m.To's chat; a refusal, a
// duplicate or a message_failed fails the test. It returns the message's
// id and the index to wait from next.
func sendAndWait(t *testing.T, h *harness, pid *actor.PID, m *SendText, from int) (string, int) {
	t.Helper()
	res, err := h.system.Root.RequestFuture(pid, m, waitTimeout).Result()
	if err != nil {
		t.Fatal(err)
	}
	r := res.(*SendResult)
	if r.Err != nil || r.ID == "" || r.Duplicate {
		t.Fatalf("send %q: %+v", m.Text, r)
	}
	e, i := h.rec.WaitFrom(t, from, "message_sent "+r.ID, func(e events.Event) bool {
		return (e.Kind == events.KindMessageSent || e.Kind == events.KindMessageFailed) && e.MessageID == r.ID
	})
	if e.Kind != events.KindMessageSent || e.Chat != m.To.String() {
		t.Fatalf("got %s for %s (chat %q): %s", e.Kind, r.ID, e.Chat, e.Error)
	}
	return r.ID, i
}
