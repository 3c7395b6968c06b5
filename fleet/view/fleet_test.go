package view

import (
	"errors"
	"testing"
	"time"

	"github.com/wafleet/wafleet/api"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/status"
)

// TestFleetMergesEveryInstance: an instance lists its own accounts from its
// board (with the QR code), the others' as they published them (without),
// a listed account nobody publishes as stopped without instance, and the
// accounts of an instance that left the membership, or a view of its own
// it does not run (left from before a restart), as not alive.
func TestFleetMergesEveryInstance(t *testing.T) {
	c, prefix := redistest(t)
	k := viewKeys(t, prefix)
	listed := []string{"a1", "b1", "b2", "d1", "none", "s1"}
	a := startRouter(t, c, k, "inst-a", listed, true)
	b := startRouter(t, c, k, "inst-b", listed, true)
	boardA, boardB, boardD := status.NewBoard(), status.NewBoard(), status.NewBoard()
	pubB := newPublisher(t, c, k, "inst-b", boardB, b.held)
	held := newHoldings()
	pubD := newPublisher(t, c, k, "inst-dead", boardD, held)
	join(t, c, k, "inst-a", time.Minute)
	join(t, c, k, "inst-b", time.Minute)

	boardA.Publish(events.Event{Account: "a1", Kind: events.KindQR, State: events.StatePairing, QR: "2@local"})
	for _, id := range []string{"b1", "b2"} {
		b.held.set(id, 2)
		lease(t, c, k, id, "inst-b")
	}
	boardB.Publish(events.Event{Account: "b1", Kind: events.KindConnected, State: events.StateConnected, JID: "1:1@s.whatsapp.net"})
	boardB.Publish(events.Event{Account: "b2", Kind: events.KindQR, State: events.StatePairing, QR: "2@remote"})
	b.qr["b2"] = "2@remote"
	pubB.Publish(events.Event{Account: "b1"})
	pubB.Publish(events.Event{Account: "b2"})
	mustFlush(t, pubB)
	held.set("d1", 1)
	boardD.Publish(events.Event{Account: "d1", Kind: events.KindConnected, State: events.StateConnected})
	pubD.Publish(events.Event{Account: "d1"})
	mustFlush(t, pubD)
	before, beforeHeld := status.NewBoard(), newHoldings() // inst-a before it restarted
	pubBefore := newPublisher(t, c, k, "inst-a", before, beforeHeld)
	beforeHeld.set("s1", 1)
	before.Publish(events.Event{Account: "s1", Kind: events.KindConnected, State: events.StateConnected})
	pubBefore.Publish(events.Event{Account: "s1"})
	mustFlush(t, pubBefore)

	f, err := NewFleet(FleetConfig{Client: c, Keys: k, Instance: "inst-a", Board: boardA, Accounts: func() []string { return listed }, Router: a.r})
	if err != nil {
		t.Fatal(err)
	}
	list, err := f.Accounts(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		state    events.State
		instance string
		alive    bool
		qr       bool
		showing  bool
	}
	want := map[string]row{
		"a1":   {events.StatePairing, "inst-a", true, true, true},
		"b1":   {events.StateConnected, "inst-b", true, false, false},
		"b2":   {events.StatePairing, "inst-b", true, false, true},
		"d1":   {events.StateConnected, "inst-dead", false, false, false},
		"none": {events.StateStopped, "", false, false, false},
		"s1":   {events.StateConnected, "inst-a", false, false, false},
	}
	if len(list) != len(want) {
		t.Fatalf("listed %d accounts, want %d: %+v", len(list), len(want), list)
	}
	for _, v := range list {
		got := row{v.State, v.Instance, v.InstanceAlive != nil && *v.InstanceAlive, v.QR != nil, v.QRShowing}
		if got != want[v.ID] {
			t.Errorf("%s: %+v, want %+v", v.ID, got, want[v.ID])
		}
	}

	// One account pairing elsewhere: its QR code comes from its owner.
	v, err := f.Account(t.Context(), "b2")
	if err != nil || v.QR == nil || *v.QR != "2@remote" || v.Instance != "inst-b" {
		t.Fatalf("Account(b2) = %+v, %v; want inst-b's QR code", v, err)
	}
	if _, err := f.Account(t.Context(), "ghost"); !errors.Is(err, api.ErrUnknownAccount) {
		t.Fatalf("Account(ghost) = %v, want ErrUnknownAccount", err)
	}
	if v, err := f.Account(t.Context(), "none"); err != nil || v.State != events.StateStopped || v.Instance != "" {
		t.Fatalf("Account(none) = %+v, %v; want stopped without instance", v, err)
	}
}

// TestFleetInstances: the live members with their lease counts, TTL and
// last renewal; the one answering marked self; a departed one absent.
func TestFleetInstances(t *testing.T) {
	c, prefix := redistest(t)
	k := viewKeys(t, prefix)
	a := startRouter(t, c, k, "inst-a", nil, false)
	for _, name := range []string{"inst-a", "inst-b", "inst-gone"} {
		held := newHoldings()
		for i := range len(name) - 5 {
			held.set(name+string(rune('0'+i)), 1)
		}
		mustFlush(t, newPublisher(t, c, k, name, status.NewBoard(), held))
	}
	join(t, c, k, "inst-a", 15*time.Second)
	join(t, c, k, "inst-b", 15*time.Second)
	join(t, c, k, "inst-gone", -time.Second) // its membership expired

	f, err := NewFleet(FleetConfig{Client: c, Keys: k, Instance: "inst-a", Board: status.NewBoard(), Accounts: func() []string { return nil }, Router: a.r})
	if err != nil {
		t.Fatal(err)
	}
	list, err := f.Instances(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != "inst-a" || list[1].ID != "inst-b" {
		t.Fatalf("instances = %+v, want inst-a and inst-b", list)
	}
	now := c.Time(t.Context()).Val()
	for i, inst := range list {
		if inst.Self != (i == 0) || inst.Accounts != 1 || inst.LeaseTTLSeconds != 15 {
			t.Errorf("%s: %+v", inst.ID, inst)
		}
		if d := now.Sub(inst.LastRenewal); d < 0 || d > time.Minute {
			t.Errorf("%s: last renewal %s, %s before Redis's now", inst.ID, inst.LastRenewal, d)
		}
	}
}
