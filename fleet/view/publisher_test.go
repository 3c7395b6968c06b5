package view

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/status"
)

// TestPublisherBatchesChangesWithoutQR: the views that changed go to Redis
// in one round trip per flush, a flush with nothing changed (a QR code
// rotating included) sends nothing, no QR content ever reaches Redis, and
// a view leaves Redis when its account leaves the instance.
func TestPublisherBatchesChangesWithoutQR(t *testing.T) {
	shared, prefix := redistest(t)
	c, rec := client(t, shared)
	k := viewKeys(t, prefix)
	board, held := status.NewBoard(), newHoldings()
	p := newPublisher(t, c, k, "inst-a", board, held)
	bus := events.NewBus(board, p)
	now := time.Now()

	for i, id := range []string{"a1", "a2", "a3"} {
		held.set(id, 7)
		bus.Publish(events.Event{Account: id, Kind: events.KindQR, State: events.StatePairing, QR: "2@SECRET-QR-" + id, Time: now})
		if i == 1 { // pairing by phone number: the link code is a secret too
			bus.Publish(events.Event{Account: id, Kind: events.KindLinkCode, State: events.StatePairing,
				LinkCode: "SECRET-LC", LinkCodeExpires: now.Add(time.Minute), Time: now})
		}
		if i == 2 {
			bus.Publish(events.Event{Account: id, Kind: events.KindConnected, State: events.StateConnected, JID: "1555:1@s.whatsapp.net", Time: now})
		}
	}
	before := rec.roundTrips()
	mustFlush(t, p)
	if n := rec.roundTrips() - before; n != 1 {
		t.Fatalf("a flush of 3 views took %d round trips, want 1", n)
	}
	raw := shared.HGetAll(t.Context(), k.Accounts()).Val()
	if len(raw) != 3 {
		t.Fatalf("published %d views, want 3: %v", len(raw), raw)
	}
	for id, v := range raw {
		if strings.Contains(v, "SECRET") {
			t.Fatalf("the view of %s in Redis holds the QR code: %s", id, v)
		}
		got, err := decode(v)
		if err != nil {
			t.Fatal(err)
		}
		if got.Instance != "inst-a" || got.QR != nil || got.LinkCode != nil || got.LinkCodeExpiresAt != nil {
			t.Errorf("view of %s: %+v", id, got)
		}
		if want := id != "a3"; got.QRShowing != want {
			t.Errorf("view of %s: qr_showing = %v, want %v", id, got.QRShowing, want)
		}
	}
	if rec.sent("SECRET") {
		t.Fatal("a command sent to Redis carried a QR code")
	}

	before = rec.roundTrips()
	mustFlush(t, p)
	bus.Publish(events.Event{Account: "a1", Kind: events.KindQR, State: events.StatePairing, QR: "2@SECRET-QR-next", Time: now})
	mustFlush(t, p)
	if n := rec.roundTrips() - before; n != 0 {
		t.Fatalf("flushes without a changed view took %d round trips, want 0", n)
	}

	bus.Publish(events.Event{Account: "a2", Kind: events.KindDisconnected, State: events.StateBackoff, Error: "read: EOF", Time: now})
	before = rec.roundTrips()
	mustFlush(t, p)
	if n := rec.roundTrips() - before; n != 1 {
		t.Fatalf("a flush of one changed view took %d round trips, want 1", n)
	}
	if v, _ := decode(shared.HGet(t.Context(), k.Accounts(), "a2").Val()); v.State != events.StateBackoff || v.LastError != "read: EOF" {
		t.Fatalf("a2 after its change: %+v", v)
	}

	// a3 is handed over: its view leaves Redis, the others stay.
	held.set("a3", 0)
	bus.Publish(events.Event{Account: "a3", Kind: events.KindLeaseLost, State: events.StateStopped, Time: now})
	mustFlush(t, p)
	if n := shared.HLen(t.Context(), k.Accounts()).Val(); n != 2 {
		t.Fatalf("%d views after a3 left, want 2", n)
	}
	if shared.HExists(t.Context(), k.Accounts(), "a3").Val() {
		t.Fatal("the view of the handed-over a3 is still published")
	}
	t.Logf("Redis memory of one published view: %d bytes", shared.MemoryUsage(t.Context(), k.Accounts()).Val()/2)
}

// TestPublisherNeverOverwritesANewerOwner: an instance that lost an
// account (an older fencing token) can neither overwrite the view the new
// owner published nor delete it.
func TestPublisherNeverOverwritesANewerOwner(t *testing.T) {
	c, prefix := redistest(t)
	k := viewKeys(t, prefix)
	oldBoard, oldHeld := status.NewBoard(), newHoldings()
	newBoard, newHeld := status.NewBoard(), newHoldings()
	oldPub := newPublisher(t, c, k, "inst-old", oldBoard, oldHeld)
	newPub := newPublisher(t, c, k, "inst-new", newBoard, newHeld)
	oldBus, newBus := events.NewBus(oldBoard, oldPub), events.NewBus(newBoard, newPub)

	oldHeld.set("x", 3)
	oldBus.Publish(events.Event{Account: "x", Kind: events.KindConnected, State: events.StateConnected})
	mustFlush(t, oldPub)
	newHeld.set("x", 4)
	newBus.Publish(events.Event{Account: "x", Kind: events.KindLeaseAcquired, State: events.StateConnecting})
	mustFlush(t, newPub)

	// The old owner still believes it holds x (its lease runs out later)
	// and publishes a change, then lets it go.
	oldBus.Publish(events.Event{Account: "x", Kind: events.KindDisconnected, State: events.StateBackoff})
	mustFlush(t, oldPub)
	oldHeld.set("x", 0)
	oldBus.Publish(events.Event{Account: "x", Kind: events.KindLeaseLost, State: events.StateStopped})
	mustFlush(t, oldPub)

	v, err := decode(c.HGet(t.Context(), k.Accounts(), "x").Val())
	if err != nil {
		t.Fatal(err)
	}
	if v.Instance != "inst-new" || v.State != events.StateConnecting {
		t.Fatalf("view of x = %+v, want the new owner's", v)
	}
}

// TestPublisherInstanceRecord: the record of the instance (its lease count
// and TTL) is written when it changes and removed on Close.
func TestPublisherInstanceRecord(t *testing.T) {
	c, prefix := redistest(t)
	k := viewKeys(t, prefix)
	board, held := status.NewBoard(), newHoldings()
	p := newPublisher(t, c, k, "inst-a", board, held)
	held.set("a", 1)
	held.set("b", 1)
	mustFlush(t, p)
	if got := c.HGet(t.Context(), k.Instances(), "inst-a").Val(); got != `{"accounts":2,"lease_ttl_ms":15000}` {
		t.Fatalf("instance record = %q", got)
	}
	if err := p.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if c.HExists(t.Context(), k.Instances(), "inst-a").Val() {
		t.Fatal("the instance record outlived Close")
	}
}

// TestPublisherRunFlushes: Run writes what changed by itself, and Close
// removes the views of the accounts gone meanwhile.
func TestPublisherRunFlushes(t *testing.T) {
	c, prefix := redistest(t)
	k := viewKeys(t, prefix)
	board, held := status.NewBoard(), newHoldings()
	p, err := NewPublisher(PublisherConfig{Client: c, Keys: k, Instance: "inst-a", LeaseTTL: time.Second, Board: board, Leases: held, Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	bus := events.NewBus(board, p)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	for i := range 50 {
		id := fmt.Sprintf("acct-%02d", i)
		held.set(id, 1)
		bus.Publish(events.Event{Account: id, Kind: events.KindConnected, State: events.StateConnected})
	}
	deadline := time.Now().Add(30 * time.Second)
	for c.HLen(t.Context(), k.Accounts()).Val() != 50 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 50 views published", c.HLen(t.Context(), k.Accounts()).Val())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	for i := range 50 { // shutdown: every account stopped
		id := fmt.Sprintf("acct-%02d", i)
		held.set(id, 0)
		bus.Publish(events.Event{Account: id, Kind: events.KindLeaseLost, State: events.StateStopped})
	}
	if err := p.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := c.HLen(t.Context(), k.Accounts()).Val(); n != 0 {
		t.Fatalf("%d views left after Close", n)
	}
}

// TestPublishedViewMemory: a published view costs Redis a few hundred
// bytes (1000 connected accounts measured; README quotes the figure).
func TestPublishedViewMemory(t *testing.T) {
	c, prefix := redistest(t)
	k := viewKeys(t, prefix)
	board, held := status.NewBoard(), newHoldings()
	p := newPublisher(t, c, k, "inst-1", board, held)
	bus := events.NewBus(board, p)
	const n = 1000
	for i := range n {
		id := fmt.Sprintf("acct-%04d", i)
		held.set(id, 12345)
		bus.Publish(events.Event{Account: id, Kind: events.KindConnected, State: events.StateConnected, JID: "15550001234:12@s.whatsapp.net", Time: time.Now()})
	}
	mustFlush(t, p)
	bytes, err := c.MemoryUsage(t.Context(), k.Accounts(), 0).Result()
	if err != nil {
		t.Fatal(err)
	}
	per := bytes / n
	t.Logf("Redis memory per published view: %d bytes (%d views)", per, n)
	if per > 400 {
		t.Fatalf("a published view takes %d bytes of Redis memory, want at most 400", per)
	}
}
