package connection

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/internal/testkit"
	"github.com/wafleet/wafleet/store/storetest"
	"github.com/wafleet/wafleet/wire/qr"
)

// pairAccount spawns an unpaired account against srv, scans its first QR
// code with the emulator's phone and waits until it is connected.
func pairAccount(t *testing.T, h *harness, srv *emulator.Server, d Deps) (*actor.PID, emulator.Linked) {
	t.Helper()
	pid := h.spawn(emulatorDeps(d, srv))
	qrEv, _ := h.rec.WaitFrom(t, 0, "qr", kindIs(events.KindQR))
	linked, err := srv.Phone().Scan(ctxT(t), qrEv.QR)
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	h.rec.WaitFrom(t, 0, "connected", kindIs(events.KindConnected))
	return pid, linked
}

func TestPairThenConnect(t *testing.T) {
	h := newHarness(t)
	srv := emutest.Start(t, emulator.Options{BusinessName: "Shop"})
	pid, linked := pairAccount(t, h, srv, h.deps("acct1"))

	evs := h.rec.Events()
	// The QR code is the device's, in the current form.
	code, err := qr.Parse(firstOf(evs, events.KindQR).QR)
	if err != nil {
		t.Fatalf("QR does not parse: %v", err)
	}
	if code.Legacy {
		t.Error("QR code in the legacy form")
	}
	// The 515 after pairing is expected: no backoff, no error, no counted reconnect.
	for _, e := range evs {
		if e.State == events.StateBackoff || e.Kind == events.KindReconnect || e.Kind == events.KindDisconnected {
			t.Errorf("pairing path produced %s/%s (%q):\n%s", e.Kind, e.State, e.Error, testkit.Describe(evs))
		}
	}
	paired := firstOf(evs, events.KindPaired)
	if paired.JID != linked.JID.String() {
		t.Errorf("paired event JID %q, phone linked %q", paired.JID, linked.JID)
	}
	view, _ := h.board.Get("acct1")
	if view.State != events.StateConnected || view.JID != linked.JID.String() || view.ConnectedSince == nil || view.QR != nil {
		t.Errorf("board view %+v", view)
	}

	dev, err := h.store.Load(context.Background(), "acct1")
	if err != nil {
		t.Fatal(err)
	}
	if dev.JID != linked.JID.String() || dev.LID != linked.LID.String() {
		t.Errorf("stored JID/LID %q/%q, want %q/%q", dev.JID, dev.LID, linked.JID, linked.LID)
	}
	if dev.BusinessName != "Shop" || dev.Platform != emulator.DefaultPlatform || dev.PairedAt.IsZero() || len(dev.Account) == 0 {
		t.Errorf("stored pairing fields incomplete: %v", dev)
	}
	if dev.NoiseKey.Pub != code.NoisePub || dev.IdentityKey.Pub != code.IdentityPub {
		t.Error("QR keys are not the stored device's")
	}
	pn, err := h.store.PNForLID(context.Background(), linked.LID.User)
	if err != nil || pn != linked.JID.User {
		t.Errorf("LID mapping %q, %v; want %q", pn, err, linked.JID.User)
	}
	st := srv.Stats()
	if st.Pairings != 1 || st.Logins != 1 || len(st.Violations) != 0 || st.MaxConnectionsPerDevice > 1 {
		t.Errorf("emulator stats %+v", st)
	}

	// A restarted actor logs in with the stored device: no new QR code.
	h.stop(pid)
	if last := h.rec.Events(); last[len(last)-1].State != events.StateStopped {
		t.Errorf("stop did not publish stopped: %s", testkit.Describe(last))
	}
	_, from := h.rec.WaitFrom(t, 0, "stopped", stateIs(events.StateStopped))
	h.spawn(emulatorDeps(h.deps("acct1"), srv))
	h.rec.WaitFrom(t, from, "connected again", kindIs(events.KindConnected))
	for _, e := range h.rec.Events()[from:] {
		if e.Kind == events.KindQR {
			t.Error("a paired account showed a QR code after a restart")
		}
	}
}

func firstOf(evs []events.Event, k events.Kind) events.Event {
	for _, e := range evs {
		if e.Kind == k {
			return e
		}
	}
	return events.Event{}
}

func TestServerKickReconnects(t *testing.T) {
	tests := []struct {
		reason  string
		wantErr string // in the event that ends the connection
		state   events.State
	}{
		{"515", "515 (restart required)", events.StateConnecting},
		{"503", "503 (service unavailable)", events.StateBackoff},
	}
	for _, tt := range tests {
		t.Run(tt.reason, func(t *testing.T) {
			h := newHarness(t)
			srv := emutest.Start(t, emulator.Options{})
			_, linked := pairAccount(t, h, srv, h.deps("kick"))
			_, from := h.rec.WaitFrom(t, 0, "connected", kindIs(events.KindConnected))

			if err := srv.Phone().Kick(linked.JID, tt.reason); err != nil {
				t.Fatal(err)
			}
			ev, i := h.rec.WaitFrom(t, from, "disconnected", kindIs(events.KindDisconnected))
			if ev.State != tt.state || !strings.Contains(ev.Error, tt.wantErr) {
				t.Errorf("disconnect event %s %q, want state %s and error with %q", ev.State, ev.Error, tt.state, tt.wantErr)
			}
			h.rec.WaitFrom(t, i, "reconnect", kindIs(events.KindReconnect))
			h.rec.WaitFrom(t, i, "connected again", kindIs(events.KindConnected))
			view, _ := h.board.Get("kick")
			if view.Reconnects != 1 || view.LastError != "" || view.State != events.StateConnected {
				t.Errorf("board view after reconnect %+v", view)
			}
			if st := srv.Stats(); st.Logins != 2 || st.MaxConnectionsPerDevice > 1 {
				t.Errorf("emulator stats %+v", st)
			}
		})
	}
}

func TestUnlinkGoesBackToPairing(t *testing.T) {
	h := newHarness(t)
	srv := emutest.Start(t, emulator.Options{})
	_, linked := pairAccount(t, h, srv, h.deps("unlink"))
	before, _ := h.store.Load(context.Background(), "unlink")
	_, from := h.rec.WaitFrom(t, 0, "connected", kindIs(events.KindConnected))

	if err := srv.Phone().Unlink(linked.JID); err != nil {
		t.Fatal(err)
	}
	out, i := h.rec.WaitFrom(t, from, "logged out", kindIs(events.KindLoggedOut))
	if out.State != events.StateLoggedOut || !strings.Contains(out.Error, "device_removed") {
		t.Errorf("logged-out event %s %q", out.State, out.Error)
	}
	qrEv, _ := h.rec.WaitFrom(t, i, "fresh QR", kindIs(events.KindQR))
	code, err := qr.Parse(qrEv.QR)
	if err != nil {
		t.Fatal(err)
	}
	if code.NoisePub == before.NoiseKey.Pub || code.IdentityPub == before.IdentityKey.Pub || code.AdvSecret == before.AdvSecret {
		t.Error("the fresh QR code reuses the unlinked device's keys")
	}
	after, err := h.store.Load(context.Background(), "unlink")
	if err != nil {
		t.Fatal(err)
	}
	if after.Paired() || after.NoiseKey.Pub != code.NoisePub {
		t.Errorf("store after unlink: %v", after)
	}
	view, _ := h.board.Get("unlink")
	if view.State != events.StatePairing || view.JID != "" || view.QR == nil {
		t.Errorf("board view %+v", view)
	}
}

func TestLogoutRequest(t *testing.T) {
	h := newHarness(t)
	srv := emutest.Start(t, emulator.Options{})
	pid, _ := pairAccount(t, h, srv, h.deps("logout"))
	_, from := h.rec.WaitFrom(t, 0, "connected", kindIs(events.KindConnected))

	if res := h.request(pid, &Logout{}); !res.OK {
		t.Fatalf("logout refused: %+v", res)
	}
	out, i := h.rec.WaitFrom(t, from, "logged out", kindIs(events.KindLoggedOut))
	if out.Error != "" {
		t.Errorf("a requested logout reported error %q", out.Error)
	}
	h.rec.WaitFrom(t, i, "fresh QR", kindIs(events.KindQR))
	if d, err := h.store.Load(context.Background(), "logout"); err != nil || d.Paired() {
		t.Errorf("store after logout: %v, %v", d, err)
	}
	if devs := srv.Devices(); len(devs) != 0 {
		t.Errorf("the server still lists the device after the unlink request: %+v", devs)
	}
	// Nothing to unlink any more.
	if res := h.request(pid, &Logout{}); res.OK {
		t.Errorf("logout of an unpaired account accepted: %+v", res)
	}
}

func TestReplacedStopsWithAlarm(t *testing.T) {
	h := newHarness(t)
	srv := emutest.Start(t, emulator.Options{})
	pid, linked := pairAccount(t, h, srv, h.deps("replaced"))
	_, from := h.rec.WaitFrom(t, 0, "connected", kindIs(events.KindConnected))

	if err := srv.Phone().Kick(linked.JID, "replaced"); err != nil {
		t.Fatal(err)
	}
	alarm, _ := h.rec.WaitFrom(t, from, "alarm", kindIs(events.KindAlarm))
	if alarm.State != events.StateStopped || !strings.Contains(alarm.Error, "replaced") {
		t.Errorf("alarm %s %q", alarm.State, alarm.Error)
	}
	snap := h.inspect(pid)
	if snap.Want || snap.Timer || snap.State != events.StateStopped {
		t.Errorf("after replaced: %+v", snap)
	}
	if d, err := h.store.Load(context.Background(), "replaced"); err != nil || !d.Paired() {
		t.Errorf("replaced must keep the device: %v, %v", d, err)
	}
	if res := h.request(pid, &Pair{}); res.OK {
		t.Error("Pair accepted on a stopped, paired account")
	}
}

// TestReplacedAfterLeaseLost: in a fleet, a "replaced" that comes once the
// account's lease is gone means that the new holder logged in: the account
// stops without an alarm and does not reconnect.
func TestReplacedAfterLeaseLost(t *testing.T) {
	h := newHarness(t)
	srv := emutest.Start(t, emulator.Options{})
	var held atomic.Bool
	held.Store(true)
	d := h.deps("handed-over")
	d.LeaseHeld = held.Load
	pid, linked := pairAccount(t, h, srv, d)
	_, from := h.rec.WaitFrom(t, 0, "connected", kindIs(events.KindConnected))

	held.Store(false)
	if err := srv.Phone().Kick(linked.JID, "replaced"); err != nil {
		t.Fatal(err)
	}
	e, _ := h.rec.WaitFrom(t, from, "stopped", stateIs(events.StateStopped))
	if e.Kind != events.KindDisconnected || !strings.Contains(e.Error, "lease lost") || !strings.Contains(e.Error, "replaced") {
		t.Errorf("event %s %s %q, want a disconnect naming the lost lease and the replacement", e.Kind, e.State, e.Error)
	}
	if e.Reason != events.ReasonHandedOver || e.From != events.StateConnected {
		t.Errorf("hand-over event from %q reason %q, want from connected, reason handed_over", e.From, e.Reason)
	}
	for _, e := range h.rec.Events()[from:] {
		if e.Kind == events.KindAlarm {
			t.Errorf("alarm raised for a hand-over: %+v", e)
		}
	}
	snap := h.inspect(pid)
	if snap.Want || snap.Timer || snap.State != events.StateStopped {
		t.Errorf("after the hand-over: %+v", snap)
	}
}

func TestRefsRunOutThenPair(t *testing.T) {
	h := newHarness(t)
	srv := emutest.Start(t, emulator.Options{RefCount: 3})
	d := h.deps("refs")
	d.QR = QRSchedule{First: 20 * time.Millisecond, Next: 5 * time.Millisecond}
	pid := h.spawn(emulatorDeps(d, srv))

	_, i := h.rec.WaitFrom(t, 0, "unpaired", stateIs(events.StateUnpaired))
	evs := h.rec.Events()
	qrs := 0
	for _, e := range evs[:i] {
		if e.Kind == events.KindQR {
			qrs++
		}
	}
	if qrs != 3 {
		t.Errorf("%d QR codes before unpaired, want 3:\n%s", qrs, testkit.Describe(evs))
	}
	if !strings.Contains(evs[i].Error, pairingExpiredText) {
		t.Errorf("unpaired event error %q", evs[i].Error)
	}
	snap := h.inspect(pid)
	if snap.Want || snap.Timer || snap.Child || snap.Dials != 1 {
		t.Errorf("unpaired account still busy: %+v", snap)
	}
	view, _ := h.board.Get("refs")
	if view.QR != nil || view.State != events.StateUnpaired {
		t.Errorf("board view %+v", view)
	}
	if _, err := srv.WaitFor(ctxT(t), func(s emulator.Stats) bool { return s.ActiveConnections == 0 }); err != nil {
		t.Errorf("socket not closed: %v", err)
	}

	if res := h.request(pid, &Pair{}); !res.OK {
		t.Fatalf("Pair refused: %+v", res)
	}
	qrEv, _ := h.rec.WaitFrom(t, i, "new QR", kindIs(events.KindQR))
	if _, err := srv.Phone().Scan(ctxT(t), qrEv.QR); err != nil {
		t.Fatalf("scan after re-arm: %v", err)
	}
	h.rec.WaitFrom(t, i, "connected", kindIs(events.KindConnected))
	if res := h.request(pid, &Pair{}); res.OK || res.State != events.StateConnected {
		t.Errorf("Pair on a connected account: %+v", res)
	}
}

const pairingExpiredText = "QR codes expired"

// TestFaultsBackoff: every fault of the emulator's handshake and pairing
// leads to backoff with a clear last_error, no store change, and no leak.
func TestFaultsBackoff(t *testing.T) {
	tests := []struct {
		fault   string
		wantErr []string // substrings of last_error
		pair    bool     // the fault shows when the phone scans
	}{
		{"bad-root-signature", []string{"handshake", "verify certificate", "root key"}, false},
		{"wrong-leaf-key", []string{"handshake", "verify certificate", "leaf"}, false},
		{"expired-certificate", []string{"handshake", "verify certificate", "validity"}, false},
		{"wrong-issuer-serial", []string{"handshake", "verify certificate", "issuer serial"}, false},
		{"drop-after-hello", []string{"handshake", "read server hello"}, false},
		{"stall-after-hello", []string{"handshake", "timed out"}, false},
		{"slow-server-hello=1s", []string{"handshake", "timed out"}, false},
		{"huge-server-hello", []string{"handshake", "read server hello", "frame too large"}, false},
		{"refuse-connections", []string{"dial", "503"}, false},
		{"bad-pair-hmac", []string{"pairing", "hmac-mismatch (401)"}, true},
		{"bad-account-signature", []string{"pairing", "signature-mismatch (401)"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.fault, func(t *testing.T) {
			h := newHarness(t)
			faults, err := emulator.ParseFaults(tt.fault)
			if err != nil {
				t.Fatal(err)
			}
			srv := emutest.Start(t, emulator.Options{Faults: faults})
			dev, err := NewDevice("faulty")
			if err != nil {
				t.Fatal(err)
			}
			if err := h.store.Save(context.Background(), dev); err != nil {
				t.Fatal(err)
			}
			d := h.deps("faulty")
			if strings.HasPrefix(tt.fault, "stall-after-hello") || strings.HasPrefix(tt.fault, "slow-server-hello") {
				// A stalled or slow hello must time out; the other faults
				// keep the harness's generous timeout, which a loaded
				// machine needs for the server's hello.
				d.HandshakeTimeout = 300 * time.Millisecond
			}
			d.Backoff = Backoff{Initial: time.Hour, Max: time.Hour, StableAfter: time.Hour}
			d.Rand = func() float64 { return 0.5 }
			pid := h.spawn(emulatorDeps(d, srv))

			if tt.pair {
				qrEv, _ := h.rec.WaitFrom(t, 0, "qr", kindIs(events.KindQR))
				_, err := srv.Phone().Scan(ctxT(t), qrEv.QR)
				var pe *emulator.PairError
				if !errors.As(err, &pe) || pe.Code != 401 {
					t.Errorf("phone saw %v, want the companion's 401 error IQ", err)
				}
			}
			ev, _ := h.rec.WaitFrom(t, 0, "backoff", stateIs(events.StateBackoff))
			view, _ := h.board.Get("faulty")
			for _, want := range tt.wantErr {
				if !strings.Contains(view.LastError, want) {
					t.Errorf("last_error %q lacks %q", view.LastError, want)
				}
			}
			if ev.Delay != 30*time.Minute {
				t.Errorf("backoff delay %v, want 30m (half of 1h)", ev.Delay)
			}
			// The account waits: one dial, a retry timer armed.
			if snap := h.inspect(pid); snap.Dials != 1 || !snap.Timer || !snap.Want || snap.State != events.StateBackoff {
				t.Errorf("after the fault: %+v", snap)
			}
			h.stop(pid)
			after, err := h.store.Load(context.Background(), "faulty")
			if err != nil {
				t.Fatal(err)
			}
			if diff := storetest.Diff(dev, after); len(diff) != 0 {
				t.Errorf("store changed: %v", diff)
			}
			if st := srv.Stats(); st.Pairings != 0 || len(st.Violations) != 0 {
				t.Errorf("emulator stats %+v", st)
			}
		})
	}
}

func TestLoginFailure401LogsOut(t *testing.T) {
	h := newHarness(t)
	srv := emutest.Start(t, emulator.Options{})
	_, linked := pairAccount(t, h, srv, h.deps("lf"))
	_, from := h.rec.WaitFrom(t, 0, "connected", kindIs(events.KindConnected))
	faults, _ := emulator.ParseFaults("login-failure-401")
	if err := srv.SetFaults(faults); err != nil {
		t.Fatal(err)
	}
	if err := srv.Phone().Kick(linked.JID, "515"); err != nil {
		t.Fatal(err)
	}
	out, i := h.rec.WaitFrom(t, from, "logged out", kindIs(events.KindLoggedOut))
	if !strings.Contains(out.Error, "failure 401 (logged out)") {
		t.Errorf("logged-out error %q", out.Error)
	}
	h.rec.WaitFrom(t, i, "fresh QR", kindIs(events.KindQR))
}

func TestConflictAfterSuccessStops(t *testing.T) {
	h := newHarness(t)
	srv := emutest.Start(t, emulator.Options{})
	_, linked := pairAccount(t, h, srv, h.deps("cas"))
	_, from := h.rec.WaitFrom(t, 0, "connected", kindIs(events.KindConnected))
	faults, _ := emulator.ParseFaults("conflict-after-success")
	if err := srv.SetFaults(faults); err != nil {
		t.Fatal(err)
	}
	if err := srv.Phone().Kick(linked.JID, "515"); err != nil {
		t.Fatal(err)
	}
	alarm, _ := h.rec.WaitFrom(t, from, "alarm", kindIs(events.KindAlarm))
	if alarm.State != events.StateStopped || !errorsMention(alarm.Error, ErrReplaced) {
		t.Errorf("alarm %s %q", alarm.State, alarm.Error)
	}
}

func TestRandomDisconnectReconnects(t *testing.T) {
	h := newHarness(t)
	srv := emutest.Start(t, emulator.Options{})
	_, linked := pairAccount(t, h, srv, h.deps("rd"))
	_, from := h.rec.WaitFrom(t, 0, "connected", kindIs(events.KindConnected))
	faults, _ := emulator.ParseFaults("random-disconnects=50")
	if err := srv.SetFaults(faults); err != nil {
		t.Fatal(err)
	}
	// The fault applies to later logins: the 515 gives one, which the
	// emulator then drops; the account must come back each time.
	if err := srv.Phone().Kick(linked.JID, "515"); err != nil {
		t.Fatal(err)
	}
	ev, i := h.rec.WaitFrom(t, from+1, "read error backoff", stateIs(events.StateBackoff))
	if !strings.Contains(ev.Error, "read:") {
		t.Errorf("backoff error %q, want a read error", ev.Error)
	}
	_ = srv.SetFaults(emulator.Faults{})
	h.rec.WaitFrom(t, i, "connected again", kindIs(events.KindConnected))
}

func errorsMention(s string, err error) bool { return strings.Contains(s, err.Error()) }
