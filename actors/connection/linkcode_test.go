package connection

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/internal/testkit"
	"github.com/wafleet/wafleet/store"
)

const testLinkPhone = "15557654321"

var shownCode = regexp.MustCompile(`^[1-9A-HJ-NP-TV-Z]{4}-[1-9A-HJ-NP-TV-Z]{4}$`)

// waitLinkCode waits for a link code from event index from and checks it.
func waitLinkCode(t *testing.T, h *harness, from int) (events.Event, int) {
	t.Helper()
	ev, i := h.rec.WaitFrom(t, from, "link code", kindIs(events.KindLinkCode))
	if !shownCode.MatchString(ev.LinkCode) || !ev.LinkCodeExpires.After(time.Now()) || ev.State != events.StatePairing {
		t.Fatalf("link code event %q expires %v state %s", ev.LinkCode, ev.LinkCodeExpires, ev.State)
	}
	return ev, i
}

// otherCode is a valid code that is not code.
func otherCode(code string) string {
	if code == "1111-1111" {
		return "2222-2222"
	}
	return "1111-1111"
}

// unpairedStore checks that the store holds no paired device for id.
func unpairedStore(t *testing.T, h *harness, id string) {
	t.Helper()
	dev, err := h.store.Load(context.Background(), id)
	if errors.Is(err, store.ErrNotFound) {
		return
	}
	if err != nil || dev.Paired() {
		t.Fatalf("store after a failed link code: %v, %v", dev, err)
	}
}

func TestLinkCodePairLoginRestart(t *testing.T) {
	h := newHarness(t)
	srv := emutest.Start(t, emulator.Options{})
	d := h.deps("bycode")
	d.LinkPhone = testLinkPhone
	pid := h.spawn(emulatorDeps(d, srv))

	ev, _ := waitLinkCode(t, h, 0)
	view, _ := h.board.Get("bycode")
	if view.State != events.StatePairing {
		t.Errorf("board view while the code shows: %+v", view)
	}
	if res := h.request(pid, &Pair{}); res.OK || !strings.Contains(res.Reason, "type its link code on the phone") {
		t.Errorf("Pair (QR) while a link code shows: %+v", res)
	}
	linked, err := srv.Phone().EnterLinkCode(ctxT(t), testLinkPhone, ev.LinkCode)
	if err != nil {
		t.Fatalf("EnterLinkCode: %v", err)
	}
	if linked.JID.User != testLinkPhone {
		t.Errorf("linked to %v, want the number %s", linked.JID, testLinkPhone)
	}
	h.rec.WaitFrom(t, 0, "connected", kindIs(events.KindConnected))
	for _, e := range h.rec.Events() {
		if e.Kind == events.KindQR {
			t.Errorf("pairing by code showed a QR code:\n%s", testkit.Describe(h.rec.Events()))
		}
	}
	dev, err := h.store.Load(context.Background(), "bycode")
	if err != nil || dev.JID != linked.JID.String() {
		t.Fatalf("stored device %v, %v", dev, err)
	}
	st := srv.Stats()
	if st.LinkCodeRequests != 1 || st.LinkCodePairings != 1 || st.Logins != 1 || len(st.Violations) != 0 {
		t.Errorf("emulator stats %+v", st)
	}

	// A kick: it reconnects from the store.
	from := len(h.rec.Events())
	if err := srv.Phone().Kick(linked.JID, "503"); err != nil {
		t.Fatal(err)
	}
	h.rec.WaitFrom(t, from, "reconnected", kindIs(events.KindConnected))

	// A restart logs in with the stored device: no new code.
	h.stop(pid)
	_, from = h.rec.WaitFrom(t, from, "stopped", stateIs(events.StateStopped))
	h.spawn(emulatorDeps(d, srv))
	h.rec.WaitFrom(t, from, "connected after restart", kindIs(events.KindConnected))
	for _, e := range h.rec.Events()[from:] {
		if e.Kind == events.KindLinkCode || e.Kind == events.KindQR {
			t.Errorf("a paired account showed a code after a restart: %s", e.Kind)
		}
	}
	if st := srv.Stats(); st.LinkCodeRequests != 1 || st.Pairings != 1 {
		t.Errorf("emulator stats after restart %+v", st)
	}
}

func TestLinkCodeWrongCodeThenPairAgain(t *testing.T) {
	h := newHarness(t)
	srv := emutest.Start(t, emulator.Options{})
	d := h.deps("wrong")
	d.LinkPhone = testLinkPhone
	pid := h.spawn(emulatorDeps(d, srv))

	ev, _ := waitLinkCode(t, h, 0)
	if _, err := srv.Phone().EnterLinkCode(ctxT(t), testLinkPhone, otherCode(ev.LinkCode)); !errors.Is(err, emulator.ErrLinkCodeMismatch) {
		t.Fatalf("EnterLinkCode with another code: %v", err)
	}
	un, i := h.rec.WaitFrom(t, 0, "unpaired", stateIs(events.StateUnpaired))
	if !strings.Contains(un.Error, "rejected the link code") || strings.Contains(un.Error, ev.LinkCode) {
		t.Errorf("unpaired error %q", un.Error)
	}
	unpairedStore(t, h, "wrong")
	if snap := h.inspect(pid); snap.Want || snap.Child {
		t.Errorf("failed account still busy: %+v", snap)
	}

	if res := h.request(pid, &Pair{Phone: testLinkPhone}); !res.OK {
		t.Fatalf("Pair by phone refused after a failure: %+v", res)
	}
	ev2, _ := waitLinkCode(t, h, i)
	if ev2.LinkCode == ev.LinkCode {
		t.Error("a new attempt showed the same code")
	}
	if _, err := srv.Phone().EnterLinkCode(ctxT(t), testLinkPhone, ev2.LinkCode); err != nil {
		t.Fatalf("EnterLinkCode: %v", err)
	}
	h.rec.WaitFrom(t, i, "connected", kindIs(events.KindConnected))
	if st := srv.Stats(); st.LinkCodeFailures != 1 || st.LinkCodePairings != 1 || len(st.Violations) != 0 {
		t.Errorf("emulator stats %+v", st)
	}
}

// TestPairByPhoneWhileShowingQR: an account showing QR codes switches to a
// link code when asked.
func TestPairByPhoneWhileShowingQR(t *testing.T) {
	h := newHarness(t)
	srv := emutest.Start(t, emulator.Options{})
	pid := h.spawn(emulatorDeps(h.deps("switch"), srv))
	_, i := h.rec.WaitFrom(t, 0, "qr", kindIs(events.KindQR))
	if res := h.request(pid, &Pair{Phone: testLinkPhone}); !res.OK {
		t.Fatalf("Pair by phone while pairing refused: %+v", res)
	}
	ev, _ := waitLinkCode(t, h, i)
	if _, err := srv.Phone().EnterLinkCode(ctxT(t), testLinkPhone, ev.LinkCode); err != nil {
		t.Fatalf("EnterLinkCode: %v", err)
	}
	h.rec.WaitFrom(t, i, "connected", kindIs(events.KindConnected))
	if res := h.request(pid, &Pair{}); res.OK {
		t.Errorf("Pair on a connected account: %+v", res)
	}
}

func TestLinkCodeFailures(t *testing.T) {
	t.Run("the phone never answers", func(t *testing.T) {
		h := newHarness(t)
		f, _ := emulator.ParseFaults("link-code-no-answer")
		srv := emutest.Start(t, emulator.Options{Faults: f, RefCount: 2})
		d := h.deps("silent")
		d.LinkPhone = testLinkPhone
		d.QR = QRSchedule{First: 300 * time.Millisecond, Next: 100 * time.Millisecond}
		h.spawn(emulatorDeps(d, srv))
		ev, _ := waitLinkCode(t, h, 0)
		if got := time.Until(ev.LinkCodeExpires); got > 400*time.Millisecond {
			t.Errorf("code expires in %v, want the refs' 400 ms", got)
		}
		entered := make(chan struct{})
		go func() {
			defer close(entered)
			_, _ = srv.Phone().EnterLinkCode(context.Background(), testLinkPhone, ev.LinkCode) // the server never forwards it: the code expires
		}()
		defer func() { <-entered }() // the phone's PBKDF2 may outlive the attempt; the leak check runs after
		un, _ := h.rec.WaitFrom(t, 0, "unpaired", stateIs(events.StateUnpaired))
		if !strings.Contains(un.Error, "link code expired") {
			t.Errorf("unpaired error %q", un.Error)
		}
		unpairedStore(t, h, "silent")
	})
	t.Run("malformed primary hello", func(t *testing.T) {
		h := newHarness(t)
		f, _ := emulator.ParseFaults("link-code-bad-primary-hello")
		srv := emutest.Start(t, emulator.Options{Faults: f})
		d := h.deps("malformed")
		d.LinkPhone = testLinkPhone
		pid := h.spawn(emulatorDeps(d, srv))
		ev, _ := waitLinkCode(t, h, 0)
		if _, err := srv.Phone().EnterLinkCode(ctxT(t), testLinkPhone, ev.LinkCode); !errors.Is(err, emulator.ErrPairAborted) {
			t.Errorf("EnterLinkCode: %v, want ErrPairAborted (the companion hung up)", err)
		}
		un, _ := h.rec.WaitFrom(t, 0, "unpaired", stateIs(events.StateUnpaired))
		if !strings.Contains(un.Error, "malformed link-code notification") {
			t.Errorf("unpaired error %q", un.Error)
		}
		unpairedStore(t, h, "malformed")
		if res := h.request(pid, &Pair{Phone: testLinkPhone}); !res.OK {
			t.Errorf("Pair after a malformed hello: %+v", res)
		}
	})
	t.Run("a refused hello", func(t *testing.T) {
		h := newHarness(t)
		srv := emutest.Start(t, emulator.Options{})
		d := h.deps("refused")
		d.LinkPhone = "0123" // not a number the server takes
		h.spawn(emulatorDeps(d, srv))
		un, _ := h.rec.WaitFrom(t, 0, "unpaired", stateIs(events.StateUnpaired))
		if !strings.Contains(un.Error, "refused the link-code request") {
			t.Errorf("unpaired error %q", un.Error)
		}
		unpairedStore(t, h, "refused")
	})
}

// TestLinkCodeExpiresWithTheServersWindow: when the server closes the
// pairing connection at the end of its window before the client's own
// timer fires, last_error still speaks of the link code.
func TestLinkCodeExpiresWithTheServersWindow(t *testing.T) {
	h := newHarness(t)
	// The server's window (FirstRefTTL + NextRefTTL) must leave room for the
	// code's PBKDF2 on a loaded machine under -race: a window shorter than
	// that closes before any code shows, and the account only reconnects.
	srv := emutest.Start(t, emulator.Options{RefCount: 2, FirstRefTTL: 4 * time.Second, NextRefTTL: 2 * time.Second})
	d := h.deps("window")
	d.LinkPhone = testLinkPhone
	d.QR = QRSchedule{First: 10 * time.Millisecond, Next: time.Minute} // on the last ref at once; its own expiry far away
	h.spawn(emulatorDeps(d, srv))
	waitLinkCode(t, h, 0)
	un, _ := h.rec.WaitFrom(t, 0, "unpaired", stateIs(events.StateUnpaired))
	if !strings.Contains(un.Error, "link code expired") {
		t.Errorf("unpaired error %q", un.Error)
	}
	unpairedStore(t, h, "window")
}
