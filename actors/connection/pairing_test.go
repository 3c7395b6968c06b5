package connection

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
	"github.com/wafleet/wafleet/wire/qr"
)

// startPairing spawns an account on a fake server (whose session s answers
// every write with s.failSend) and brings it to the pair-success of lid's
// device; it returns the actor, the session and the QR code shown.
func startPairing(t *testing.T, h *harness, d Deps, failSend func(node.Node) error) (*actor.PID, *fakeSession, qr.Code) {
	t.Helper()
	fd := newFakeDialer()
	d.Dialer = fd.dial
	d.Backoff = Backoff{Initial: time.Hour, Max: time.Hour, StableAfter: time.Hour}
	pid := h.spawn(d)

	recvReq(t, fd)
	s := newFakeSession()
	s.failSend = failSend
	fd.results <- dialResult{sess: s}
	s.push(t, node.New("iq", node.JIDAttr("from", jid.ServerJID), node.StrAttr("id", "pd1"), node.StrAttr("type", "set"), node.StrAttr("xmlns", "md")).
		WithChildren(node.New("pair-device").WithChildren(node.New("ref").WithBytes([]byte("2@ref-one")))))
	qrEv, _ := h.rec.WaitFrom(t, 0, "qr", kindIs(events.KindQR))
	ack := s.next(t, "pair-device ack")
	if typ, _ := ack.Attr("type"); typ != "result" {
		t.Fatalf("ack %v", ack)
	}
	code, err := qr.Parse(qrEv.QR)
	if err != nil {
		t.Fatal(err)
	}
	s.push(t, pairSuccess(t, code, "15550001111:3@s.whatsapp.net", "100000000000001:3@lid"))
	return pid, s, code
}

// failSignReply fails the write of pair-device-sign.
func failSignReply(n node.Node) error {
	if _, ok := n.Child("pair-device-sign"); ok {
		return errors.New("broken pipe")
	}
	return nil
}

// TestPairReplyNotSentUndoesPairing: if pair-device-sign cannot be
// written, the saved pairing is removed again.
func TestPairReplyNotSentUndoesPairing(t *testing.T) {
	h := newHarness(t)
	pid, _, code := startPairing(t, h, h.deps("undo"), failSignReply)

	ev, _ := h.rec.WaitFrom(t, 0, "pairing undone", func(e events.Event) bool { return strings.Contains(e.Error, "pairing was undone") })
	if ev.State != events.StateBackoff {
		t.Errorf("state after a failed reply %s", ev.State)
	}
	if strings.Contains(ev.Error, "restoring the store failed") {
		t.Errorf("the undo reported a failure: %s", ev.Error)
	}
	dev, err := h.store.Load(context.Background(), "undo")
	if err != nil {
		t.Fatal(err)
	}
	if dev.Paired() || dev.NoiseKey.Pub != code.NoisePub {
		t.Errorf("store after undo: %v", dev)
	}
	if _, err := h.store.PNForLID(context.Background(), "100000000000001"); err == nil {
		t.Error("the LID mapping of an undone pairing survived")
	}
	if snap := h.inspect(pid); snap.Paired {
		t.Errorf("actor still paired: %+v", snap)
	}
	for _, e := range h.rec.Events() {
		if e.Kind == events.KindPaired {
			t.Error("paired published for a reply that was never sent")
		}
	}
}

// pairingFailStore fails the saves of paired devices (failPaired) or the
// saves that would unpair a stored pairing (failUndo).
type pairingFailStore struct {
	store.Store
	failPaired, failUndo bool
}

var errDiskFull = errors.New("disk full")

func (s *pairingFailStore) Save(ctx context.Context, d *store.Device) error {
	if s.failPaired && d.Paired() {
		return errDiskFull
	}
	if s.failUndo && !d.Paired() {
		if cur, err := s.Store.Load(ctx, d.ID); err == nil && cur.Paired() {
			return errDiskFull
		}
	}
	return s.Store.Save(ctx, d)
}

// TestPairUndoFailureInLastError: a pairing whose reply was not written and
// whose undo fails says both in last_error; the store keeps the pairing
// (the next login's 401 pairs the account again).
func TestPairUndoFailureInLastError(t *testing.T) {
	h := newHarness(t)
	d := h.deps("undofail")
	d.Store = &pairingFailStore{Store: h.store, failUndo: true}
	startPairing(t, h, d, failSignReply)

	ev, _ := h.rec.WaitFrom(t, 0, "failed undo", func(e events.Event) bool { return strings.Contains(e.Error, "restoring the store failed") })
	if !strings.Contains(ev.Error, errDiskFull.Error()) || !strings.Contains(ev.Error, "pairing was undone") {
		t.Errorf("last_error %q does not say what failed", ev.Error)
	}
	if st, ok := h.board.Get("undofail"); !ok || st.LastError != ev.Error {
		t.Errorf("status last_error %q; want %q", st.LastError, ev.Error)
	}
	if dev, err := h.store.Load(context.Background(), "undofail"); err != nil || !dev.Paired() {
		t.Errorf("store after a failed undo: %v, %v", dev, err)
	}
}

// TestPairSaveFailureAnswered: a pairing that cannot be saved is answered
// with a 500 error IQ before any reply, and the connection backs off.
func TestPairSaveFailureAnswered(t *testing.T) {
	h := newHarness(t)
	d := h.deps("savefail")
	d.Store = &pairingFailStore{Store: h.store, failPaired: true}
	_, s, _ := startPairing(t, h, d, nil)

	reply := s.next(t, "pair-success answer")
	e, ok := reply.Child("error")
	if typ, _ := reply.Attr("type"); typ != "error" || !ok {
		t.Fatalf("answer %v; want an error IQ", reply)
	}
	if code, _ := e.Attr("code"); code != "500" {
		t.Errorf("error code %q", code)
	}
	if id, _ := reply.Attr("id"); id != "ps1" {
		t.Errorf("answer id %q", id)
	}
	ev, _ := h.rec.WaitFrom(t, 0, "backoff", stateIs(events.StateBackoff))
	if !strings.Contains(ev.Error, errDiskFull.Error()) {
		t.Errorf("last_error %q", ev.Error)
	}
	if dev, err := h.store.Load(context.Background(), "savefail"); err != nil || dev.Paired() {
		t.Errorf("store after a failed save: %v, %v", dev, err)
	}
	for _, e := range h.rec.Events() {
		if e.Kind == events.KindPaired {
			t.Error("paired published for a pairing that was not saved")
		}
	}
}

// holdPairedSave holds the save of the paired device until released and
// says when it is done.
type holdPairedSave struct {
	store.Store
	entered, release, saved chan struct{}
}

func (s *holdPairedSave) Save(ctx context.Context, d *store.Device) error {
	if !d.Paired() {
		return s.Store.Save(ctx, d)
	}
	s.entered <- struct{}{}
	<-s.release
	err := s.Store.Save(ctx, d)
	close(s.saved)
	return err
}

// TestStoppedWhileSavingPairingUndoes: an actor stopped while its pairing
// is being saved leaves the device unpaired: the undo is queued behind the
// save and runs after it.
func TestStoppedWhileSavingPairingUndoes(t *testing.T) {
	h := newHarness(t)
	d := h.deps("stopsave")
	hold := &holdPairedSave{Store: h.store, entered: make(chan struct{}, 1), release: make(chan struct{}), saved: make(chan struct{})}
	d.Store = hold
	pid, _, code := startPairing(t, h, d, nil)
	select {
	case <-hold.entered:
	case <-time.After(waitTimeout):
		t.Fatal("the paired device was not saved")
	}
	h.stop(pid)
	close(hold.release)
	select {
	case <-hold.saved:
	case <-time.After(waitTimeout):
		t.Fatal("the held save did not end")
	}
	waitFor(t, "the pairing undone", func() bool {
		dev, err := h.store.Load(context.Background(), "stopsave")
		return err == nil && !dev.Paired() && dev.NoiseKey.Pub == code.NoisePub
	})
}

// TestStoreCallsOutliveTheActor: StoreCalls.Wait, what the process does
// before it closes the store, returns only after the save under way when
// the actor stopped and the undo queued behind it have both run.
func TestStoreCallsOutliveTheActor(t *testing.T) {
	h := newHarness(t)
	d := h.deps("stopwait")
	hold := &holdPairedSave{Store: h.store, entered: make(chan struct{}, 1), release: make(chan struct{}), saved: make(chan struct{})}
	d.Store = hold
	d.StoreCalls = new(StoreCalls)
	pid, _, _ := startPairing(t, h, d, nil)
	select {
	case <-hold.entered:
	case <-time.After(waitTimeout):
		t.Fatal("the paired device was not saved")
	}
	h.stop(pid)
	early, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := d.StoreCalls.Wait(early); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with the save held = %v, want it still waiting", err)
	}
	close(hold.release)
	ctx, cancel2 := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel2()
	if err := d.StoreCalls.Wait(ctx); err != nil {
		t.Fatalf("Wait after the save was released: %v", err)
	}
	if dev, err := h.store.Load(context.Background(), "stopwait"); err != nil || dev.Paired() {
		t.Fatalf("after Wait the store holds %v, %v; want the pairing undone already", dev, err)
	}
}
