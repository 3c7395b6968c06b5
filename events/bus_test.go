package events

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestBusDeliversToSinksAndSubscribers(t *testing.T) {
	var sunk []Event
	bus := NewBus(PublisherFunc(func(e Event) { sunk = append(sunk, e) }))
	sub := bus.Subscribe(4)
	defer sub.Close()

	bus.Publish(Event{Account: "a", Kind: KindConnected, State: StateConnected})
	if len(sunk) != 1 || sunk[0].Account != "a" {
		t.Fatalf("sink got %+v", sunk)
	}
	got := <-sub.C()
	if got.Kind != KindConnected {
		t.Fatalf("subscriber got %+v", got)
	}
}

func TestSlowSubscriberNeverBlocksPublisher(t *testing.T) {
	bus := NewBus()
	sub := bus.Subscribe(1)
	defer sub.Close()
	for i := 0; i < 10; i++ {
		bus.Publish(Event{Account: "a", Kind: KindState})
	}
	if bus.Dropped() != 9 {
		t.Fatalf("Dropped = %d, want 9", bus.Dropped())
	}
}

func TestSubscriptionCloseIsIdempotent(t *testing.T) {
	bus := NewBus()
	sub := bus.Subscribe(1)
	sub.Close()
	sub.Close()
	if _, open := <-sub.C(); open {
		t.Fatal("channel still open after Close")
	}
	bus.Publish(Event{Account: "a"}) // must not panic on a closed subscription
}

func TestLogValueOmitsQR(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	logger.Info("event", "event", Event{Account: "a", Kind: KindQR, State: StatePairing, QR: "2@secret,NOISE,IDENT,ADVSECRET"})
	if strings.Contains(buf.String(), "ADVSECRET") || strings.Contains(buf.String(), "2@secret") {
		t.Fatalf("log line leaks the QR: %s", buf.String())
	}
	if !strings.Contains(buf.String(), `"kind":"qr"`) {
		t.Fatalf("log line misses the kind: %s", buf.String())
	}
}

func TestLinkCodeStaysOutOfLogsAndWire(t *testing.T) {
	e := Event{Account: "a", Kind: KindLinkCode, State: StatePairing, LinkCode: "QW7R-9XKP", LinkCodeExpires: time.Now()}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("event", "event", e)
	wire := string(Marshal(e, "inst"))
	for _, out := range []string{buf.String(), wire} {
		if strings.Contains(out, "QW7R") || strings.Contains(out, "9XKP") {
			t.Fatalf("the link code leaks: %s", out)
		}
		if !strings.Contains(out, `"kind":"link_code"`) {
			t.Fatalf("the kind is missing: %s", out)
		}
	}
}
