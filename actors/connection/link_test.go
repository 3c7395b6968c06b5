package connection

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// closedSession hands over one frame, then its end, at once.
type closedSession struct{}

func (closedSession) Send([]byte) error { return nil }
func (closedSession) Close() error      { return nil }
func (closedSession) Watch(onFrame func([]byte), onEnd func(error)) {
	onFrame([]byte("frame"))
	onEnd(errors.New("closed"))
}

// What an ended link receives is not sent on: its actor may be gone, and
// its name taken by a new actor that cannot take a message yet.
func TestReceiveQuietAfterClose(t *testing.T) {
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quietLogger() }))
	got := make(chan any, 4)
	pid := sys.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		switch m := c.Message().(type) {
		case *readFailed, *frameIn:
			got <- m
		}
	}))
	defer sys.Root.Stop(pid)

	l := newLink(1, 0)
	l.close()
	l.receive(closedSession{}, pid, sys.Root)
	// Sent by the same goroutine afterwards: the mailbox keeps the order,
	// so a message of the closed link would come first.
	live := newLink(2, 0)
	live.receive(closedSession{}, pid, sys.Root)
	for _, want := range []string{"frame", "end"} {
		select {
		case m := <-got:
			switch m := m.(type) {
			case *frameIn:
				if want != "frame" || m.gen != 2 {
					t.Fatalf("got a frame of generation %d, want the live link's %s", m.gen, want)
				}
			case *readFailed:
				if want != "end" || m.gen != 2 {
					t.Fatalf("got the end of generation %d, want the live link's %s", m.gen, want)
				}
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the live link's %s never came", want)
		}
	}
}
