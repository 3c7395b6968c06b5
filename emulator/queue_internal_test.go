package emulator

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestIDRanges(t *testing.T) {
	var r idRanges
	for id := uint32(1); id <= 812; id++ {
		r.add(id)
	}
	if len(r) != 1 || r[0] != (idRange{1, 813}) {
		t.Fatalf("812 consecutive IDs: %v, want one range", r)
	}
	// Random IDs against a map, in a small space so neighbours meet.
	rnd := rand.New(rand.NewPCG(1, 2))
	var set idRanges
	ref := map[uint32]bool{}
	for range 5000 {
		id := rnd.Uint32N(3000)
		if set.contains(id) != ref[id] {
			t.Fatalf("contains(%d) = %v, want %v", id, !ref[id], ref[id])
		}
		if !ref[id] {
			set.add(id)
			ref[id] = true
		}
	}
	for id := range uint32(3001) {
		if set.contains(id) != ref[id] {
			t.Fatalf("contains(%d) after inserts: %v", id, set.contains(id))
		}
	}
	for i, x := range set {
		if x.lo >= x.hi || (i > 0 && set[i-1].hi >= x.lo) {
			t.Fatalf("ranges not sorted, disjoint and apart at %d: %v", i, set[max(i-1, 0):i+1])
		}
	}
}

// TestPendingStaysSmall: a client that leaves one stanza unacked and acks
// everything after it keeps the device's bookkeeping proportional to what
// is pending, not to what was pushed.
func TestPendingStaysSmall(t *testing.T) {
	var ds deviceState
	now := time.Now()
	first := &pendingStanza{tag: "message", id: "first", sentAt: now}
	ds.add(first)
	for i := range 100_000 {
		p := &pendingStanza{tag: "notification", id: serverStanzaID(uint64(i), 1), sentAt: now}
		ds.add(p)
		ds.settle(p)
	}
	if len(ds.pending) != 1 || len(ds.order) > 64 {
		t.Fatalf("pending %d, order %d", len(ds.pending), len(ds.order))
	}
	if ds.oldest() != first {
		t.Fatal("the oldest unacked stanza is lost")
	}
	// A receipt stops the deadline; redelivery forgets it.
	first.receipted = true
	if ds.oldest() != nil {
		t.Fatal("a receipted message still has a deadline")
	}
	if out := ds.takeOver(nil, now); len(out) != 0 || len(ds.pending) != 0 {
		t.Fatalf("redelivery of a receipted message: %d, pending %d", len(out), len(ds.pending))
	}
}
