package supervisor

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/wafleet/wafleet/actors/connection"
	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/internal/testkit"
	"github.com/wafleet/wafleet/status"
	"github.com/wafleet/wafleet/store"
)

// crash is a message that makes a real connection actor panic, through a
// receiver middleware the test adds to its props: production code has no
// such hook.
type crash struct{}

func panicOnCrash(next actor.ReceiverFunc) actor.ReceiverFunc {
	return func(c actor.ReceiverContext, env *actor.MessageEnvelope) {
		if _, ok := env.Message.(*crash); ok {
			panic("injected panic")
		}
		next(c, env)
	}
}

// TestPanicInRealConnectionActorRestartsItAlone runs two real connection
// actors against the emulator, pairs both, then makes one panic: that one
// is restarted (and logs in again from the store, without a QR code); the
// other keeps its connection.
func TestPanicInRealConnectionActorRestartsItAlone(t *testing.T) {
	emu := emutest.Start(t, emulator.Options{})
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "wafleet.db"), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	system := actor.NewActorSystemWithConfig(actor.Configure(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return logger })))
	rec := testkit.NewRecorder()
	board := status.NewBoard()
	bus := events.NewBus(board, rec)
	root := emu.RootPublicKey()
	props := Props(Deps{
		Props: func(a Account) *actor.Props {
			return connection.Props(connection.Deps{
				AccountID: a.ID,
				Store:     st,
				Events:    bus,
				Logger:    logger,
				Server:    connection.Server{URL: emu.URL(), RootKey: root[:]},
				Backoff:   connection.Backoff{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond},
			}).Configure(actor.WithReceiverMiddleware(panicOnCrash))
		},
		Events:         bus,
		Board:          board,
		Logger:         logger,
		RestartDelay:   100 * time.Millisecond,
		HealthInterval: time.Hour,
	})
	sup, err := system.Root.SpawnNamed(props, "supervisor")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = system.Root.StopFuture(sup).Wait()
		system.Shutdown()
	}()
	if _, err := system.Root.RequestFuture(sup, &SetAccounts{Accounts: []Account{{ID: "a"}, {ID: "b"}}}, 5*time.Second).Result(); err != nil {
		t.Fatal(err)
	}

	for _, id := range []string{"a", "b"} {
		rec.WaitFor(t, id+" qr", func(e events.Event) bool { return e.Account == id && e.Kind == events.KindQR })
		acct, _ := board.Get(id)
		if acct.QR == nil {
			t.Fatalf("%s shows no QR", id)
		}
		if _, err := emu.Phone().Scan(context.Background(), *acct.QR); err != nil {
			t.Fatalf("scan %s: %v", id, err)
		}
		rec.WaitFor(t, id+" connected", func(e events.Event) bool { return e.Account == id && e.Kind == events.KindConnected })
	}

	before := len(rec.Events())
	system.Root.Send(sup, &Forward{ID: "a", Message: &crash{}})
	rec.WaitFor(t, "a restart", func(e events.Event) bool { return e.Account == "a" && e.Kind == events.KindRestart })
	rec.WaitForN(t, 2, "a connected again", func(e events.Event) bool { return e.Account == "a" && e.Kind == events.KindConnected })

	evs := rec.Events()
	for _, e := range evs[before:] {
		if e.Account == "b" {
			t.Errorf("b was disturbed by a's panic: %+v", e)
		}
	}
	qrs := 0
	for _, e := range evs {
		if e.Account == "a" && e.Kind == events.KindQR {
			qrs++
		}
	}
	if qrs != 1 {
		t.Errorf("a showed %d QR codes; the restarted actor should log in from the store", qrs)
	}
	if acct, _ := board.Get("a"); acct.Restarts != 1 {
		t.Errorf("a restarts = %d, want 1", acct.Restarts)
	}
	if s := emu.Stats(); s.MaxConnectionsPerDevice > 1 {
		t.Errorf("max_connections_per_device = %d: the restarted actor overlapped its old connection", s.MaxConnectionsPerDevice)
	}
}
