package connection

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/internal/testkit"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/wire/node"
	"github.com/wafleet/wafleet/wire/payload"
)

// dayOne is a strict emulator for the tests: bursts and a steady stream of
// stanzas, pings every 5 s (each must be answered before the next), and an
// ack deadline short enough to kill a client that does not ack, long
// enough for a loaded machine to ack in time.
var dayOne = emulator.DayOne{Enabled: true, PushRate: 20, PushBurst: 100, AckDeadline: 10 * time.Second, PingInterval: 5 * time.Second}

// TestDayOneKeepsAccountsHealthy: against a server that pushes, pings and
// enforces acks from the first login, paired accounts upload prekeys, ack
// everything correctly and answer every ping, with one login per device.
func TestDayOneKeepsAccountsHealthy(t *testing.T) {
	h := newHarness(t)
	srv := emutest.Start(t, emulator.Options{DayOne: dayOne})
	const accounts = 3
	for i := range accounts {
		d := h.deps(fmt.Sprint("d1-", i))
		h.spawn(emulatorDeps(d, srv))
		qrEv, _ := h.rec.WaitFrom(t, 0, "qr", func(e events.Event) bool { return e.Kind == events.KindQR && e.Account == d.AccountID })
		if _, err := srv.Phone().Scan(ctxT(t), qrEv.QR); err != nil {
			t.Fatalf("scan: %v", err)
		}
		h.rec.WaitFrom(t, 0, "connected", func(e events.Event) bool { return e.Kind == events.KindConnected && e.Account == d.AccountID })
	}
	st := emutest.WaitStats(t, srv, 3*waitTimeout, "sustained traffic", func(s emulator.Stats) bool {
		return s.AcksOK >= int64(3*accounts*dayOne.PushBurst) && s.ServerPingsAnswered >= accounts && s.DevicesWithPrekeys == accounts
	})
	if st.AcksMalformed != 0 || st.AckDeadlineKills != 0 || len(st.Violations) != 0 {
		t.Errorf("malformed %d, ack kills %d, violations %v", st.AcksMalformed, st.AckDeadlineKills, st.Violations)
	}
	if st.Logins != accounts || st.MaxConnectionsPerDevice != 1 {
		t.Errorf("logins %d, max connections per device %d; want one login per device", st.Logins, st.MaxConnectionsPerDevice)
	}
	if st.PrekeyUploads < accounts {
		t.Errorf("prekey uploads %d", st.PrekeyUploads)
	}
	// Day-one's messages come from emulated contacts and decrypt: each
	// gets a delivery receipt, none a retry receipt.
	if st.Receipts == 0 || st.RetryReceipts != 0 || st.DecryptFailures != 0 {
		t.Errorf("receipts %d, retry receipts %d, decrypt failures %d; want receipts only", st.Receipts, st.RetryReceipts, st.DecryptFailures)
	}
	for i := range accounts {
		// The server counts the keys before it answers the upload; the
		// actor marks them uploaded in the store once the answer is in.
		// The contacts' pkmsgs used some up: the client forgot those.
		waitFor(t, fmt.Sprintf("account %d's prekeys marked uploaded", i), func() bool {
			c, err := h.store.PreKeyCounts(context.Background(), fmt.Sprint("d1-", i))
			return err == nil && c.MaxID >= initialPreKeys && c.Uploaded == c.Stored && c.Stored < int(c.MaxID)
		})
	}
	for _, e := range h.rec.Events() {
		if e.Kind == events.KindDisconnected {
			t.Errorf("a connection ended: %s", testkit.Describe(h.rec.Events()))
			break
		}
	}
}

// tapDialer wraps a dialer: every stanza the actor sends goes through
// onSend first, which may swallow it (return false).
type tapDialer struct {
	next   Dialer
	onSend func(node.Node) bool
	held   atomic.Pointer[chan struct{}] // while set, dials wait for it to close
}

func (d *tapDialer) dial(ctx context.Context, req DialRequest) (Session, error) {
	if held := d.held.Load(); held != nil {
		select {
		case <-*held:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	s, err := d.next(ctx, req)
	if err != nil {
		return nil, err
	}
	return &tapSession{Session: s, onSend: d.onSend}, nil
}

// hold makes dials wait until release is called (once or more).
func (d *tapDialer) hold() (release func()) {
	ch := make(chan struct{})
	d.held.Store(&ch)
	var once sync.Once
	return func() { once.Do(func() { d.held.Store(nil); close(ch) }) }
}

type tapSession struct {
	Session
	onSend func(node.Node) bool
}

func (s *tapSession) Send(b []byte) error {
	if n, err := node.UnmarshalPayload(b); err == nil && !s.onSend(n) {
		return nil
	}
	return s.Session.Send(b)
}

// TestUnackedStanzasRedelivered: a connection whose acks never arrive is
// ended by the server (stream:error ack: recognised, counted, backoff); the
// next login gets the pending stanzas first and acks them.
func TestUnackedStanzasRedelivered(t *testing.T) {
	h := newHarness(t)
	srv := emutest.Start(t, emulator.Options{DayOne: dayOne})
	var drop atomic.Bool // acks are swallowed, as by a client without acks
	tap := &tapDialer{next: WireDialer, onSend: func(n node.Node) bool { return n.Tag != "ack" || !drop.Load() }}
	obs := &countingObserver{}
	d := h.deps("redeliver")
	d.Dialer = tap.dial
	d.Observer = obs
	pairAccount(t, h, srv, d)

	// The connected account stops acking, under a short deadline; its next
	// connection waits until acks flow again under the usual deadline, so
	// exactly one connection is killed however slow the machine.
	release := tap.hold()
	defer release()
	drop.Store(true)
	short := dayOne
	short.AckDeadline = time.Second
	if err := srv.SetDayOne(short); err != nil {
		t.Fatal(err)
	}
	ev, _ := h.rec.WaitFrom(t, 0, "ack kill", func(e events.Event) bool {
		return e.Kind == events.KindDisconnected && strings.Contains(e.Error, ErrUnacked.Error())
	})
	if ev.State != events.StateBackoff || !strings.Contains(ev.Error, "ack class=") {
		t.Errorf("ack kill event %+v", ev)
	}
	drop.Store(false)
	if err := srv.SetDayOne(dayOne); err != nil {
		t.Fatal(err)
	}
	release()

	st := emutest.WaitStats(t, srv, 3*waitTimeout, "redelivered and acked", func(s emulator.Stats) bool {
		return s.Redeliveries > 0 && s.Logins >= 2 && s.AcksOK >= s.Redeliveries
	})
	if st.AckDeadlineKills != 1 {
		t.Errorf("ack deadline kills = %d, want 1", st.AckDeadlineKills)
	}
	if obs.streamAcks.Load() < 1 {
		t.Error("the stream error ack was not counted")
	}
	// From now on nothing is killed: every pending stanza was acked.
	before := st.AcksOK
	st = emutest.WaitStats(t, srv, 3*waitTimeout, "traffic after the redelivery", func(s emulator.Stats) bool { return s.AcksOK >= before+int64(2*dayOne.PushBurst) })
	if st.AckDeadlineKills != 1 || st.AcksMalformed != 0 {
		t.Errorf("after redelivery: kills %d (want 1), malformed %d", st.AckDeadlineKills, st.AcksMalformed)
	}
}

// TestServerStallingPongsWithinWindow: pongs that stop for less than the
// window cost no reconnect (TestKeepalive covers a stall past the window).
func TestServerStallingPongsWithinWindow(t *testing.T) {
	h := newHarness(t)
	srv := emutest.Start(t, emulator.Options{})
	var pingsSent atomic.Int64
	tap := &tapDialer{next: WireDialer, onSend: func(n node.Node) bool {
		if x, _ := n.Attr("xmlns"); x == "w:p" {
			pingsSent.Add(1)
		}
		return true
	}}
	d := h.deps("stall")
	d.Dialer = tap.dial
	d.Keepalive = Keepalive{Interval: 50 * time.Millisecond, Timeout: 50 * time.Millisecond, Window: time.Minute}
	pairAccount(t, h, srv, d)
	if err := srv.SetFaults(emulator.Faults{DropPongs: true}); err != nil {
		t.Fatal(err)
	}
	// Several pings go unanswered: each one's timeout passes before the
	// next is sent.
	sent, answered := pingsSent.Load(), srv.Stats().Pings
	waitFor(t, "pings during the stall", func() bool { return pingsSent.Load() >= sent+5 })
	if got := srv.Stats().Pings; got > answered+1 { // one may have been answered as the fault came
		t.Fatalf("%d pings answered during the stall", got-answered)
	}
	if err := srv.SetFaults(emulator.Faults{}); err != nil {
		t.Fatal(err)
	}
	answered = srv.Stats().Pings
	emutest.WaitStats(t, srv, 3*waitTimeout, "pings answered again", func(s emulator.Stats) bool { return s.Pings >= answered+5 })
	for _, e := range h.rec.Events() {
		if e.Kind == events.KindDisconnected {
			t.Fatalf("a stall shorter than the window reconnected: %s", testkit.Describe(h.rec.Events()))
		}
	}
	if st := srv.Stats(); st.Logins != 1 {
		t.Errorf("logins %d, want 1", st.Logins)
	}
}

// TestServerFailuresEndToEnd: the emulator's failure faults lead to their
// documented state, alarm and store change.
func TestServerFailuresEndToEnd(t *testing.T) {
	tests := []struct {
		name   string
		faults emulator.Faults
		match  func(events.Event) bool
		wiped  bool
	}{
		{"403 locked", emulator.Faults{LoginFailure403: true}, func(e events.Event) bool {
			return e.Alarm == events.AlarmBanned && e.State == events.StateLoggedOut
		}, true},
		{"406 banned", emulator.Faults{LoginFailure406: true}, func(e events.Event) bool {
			return e.Alarm == events.AlarmBanned && strings.Contains(e.Error, "406")
		}, true},
		{"402 temporary ban", emulator.Faults{LoginFailure402: time.Hour}, func(e events.Event) bool {
			return e.State == events.StateBackoff && strings.Contains(e.Error, ErrTemporarilyBanned.Error()) && e.Delay > 50*time.Minute
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			srv := emutest.Start(t, emulator.Options{})
			pid, linked := pairAccount(t, h, srv, h.deps("fail"))
			_, from := h.rec.WaitFrom(t, 0, "connected", kindIs(events.KindConnected))
			if err := srv.SetFaults(tt.faults); err != nil {
				t.Fatal(err)
			}
			if err := srv.Phone().Kick(linked.JID, "503"); err != nil {
				t.Fatal(err)
			}
			h.rec.WaitFrom(t, from, tt.name, tt.match)
			if tt.wiped {
				waitFor(t, "device wiped", func() bool {
					_, err := h.store.Load(context.Background(), "fail")
					return errors.Is(err, store.ErrNotFound)
				})
				if snap := h.inspect(pid); snap.Want || snap.Timer {
					t.Errorf("a banned account plans to reconnect: %+v", snap)
				}
			} else if dev, err := h.store.Load(context.Background(), "fail"); err != nil || !dev.Paired() {
				t.Errorf("store after %s: %v, %v", tt.name, dev, err)
			}
		})
	}
}

// TestStreamError401KeepsDevice: a stream error 401 without device_removed
// reconnects and lets the login decide: the device is kept and logs in.
func TestStreamError401KeepsDevice(t *testing.T) {
	h := newHarness(t)
	srv := emutest.Start(t, emulator.Options{})
	_, linked := pairAccount(t, h, srv, h.deps("s401"))
	_, from := h.rec.WaitFrom(t, 0, "connected", kindIs(events.KindConnected))
	if err := srv.Phone().Kick(linked.JID, "401"); err != nil {
		t.Fatal(err)
	}
	ev, i := h.rec.WaitFrom(t, from+1, "disconnected", kindIs(events.KindDisconnected))
	if ev.State != events.StateBackoff || !strings.Contains(ev.Error, "401") {
		t.Errorf("disconnect %+v", ev)
	}
	h.rec.WaitFrom(t, i, "connected again", kindIs(events.KindConnected))
	for _, e := range h.rec.Events()[from:] {
		if e.Kind == events.KindLoggedOut || e.Kind == events.KindQR {
			t.Fatalf("stream error 401 wiped the device: %s", testkit.Describe(h.rec.Events()))
		}
	}
	if st := srv.Stats(); st.Pairings != 1 {
		t.Errorf("pairings %d, want 1", st.Pairings)
	}
}

// TestOutdatedVersionRefused: a client below the server's minimum version
// is refused with 405 and waits (here with no newer version to be had) in
// backoff, without reconnecting.
func TestOutdatedVersionRefused(t *testing.T) {
	h := newHarness(t)
	srv := emutest.Start(t, emulator.Options{MinVersion: "2.3000.2000000000"})
	refused := make(chan struct{}, 1)
	d := h.deps("old")
	d.Versions = refusedRecorder{refused}
	h.spawn(emulatorDeps(d, srv))
	ev, _ := h.rec.WaitFrom(t, 0, "refused", kindIs(events.KindDisconnected))
	if ev.State != events.StateBackoff || !strings.Contains(ev.Error, "405") {
		t.Errorf("event %+v", ev)
	}
	select {
	case <-refused:
	case <-time.After(waitTimeout):
		t.Fatal("the refusal was not reported to the VersionSource")
	}
}

// refusedRecorder offers the built-in version and reports refusals.
type refusedRecorder struct{ ch chan struct{} }

func (refusedRecorder) Current() payload.Version { return payload.DefaultVersion() }
func (r refusedRecorder) Refused(payload.Version) {
	select {
	case r.ch <- struct{}{}:
	default:
	}
}

// TestRestartEveryLoginBacksOff: a server that ends every connection with
// 515 right after login gets one immediate reconnect, then backoff with a
// growing attempt count, not a storm at the connect rate.
func TestRestartEveryLoginBacksOff(t *testing.T) {
	h := newHarness(t)
	srv := emutest.Start(t, emulator.Options{})
	_, linked := pairAccount(t, h, srv, h.deps("storm"))
	_, from := h.rec.WaitFrom(t, 0, "connected", kindIs(events.KindConnected))
	if err := srv.SetFaults(emulator.Faults{RestartAfterActive: true}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Phone().Kick(linked.JID, "515"); err != nil { // the first 515 of a stable-ish connection
		t.Fatal(err)
	}
	first, i := h.rec.WaitFrom(t, from+1, "the first 515", kindIs(events.KindDisconnected))
	if first.State != events.StateConnecting {
		t.Errorf("the first 515 went to %s, want an immediate reconnect", first.State)
	}
	var attempts []int
	for len(attempts) < 3 {
		var ev events.Event
		ev, i = h.rec.WaitFrom(t, i+1, "a 515 after login", kindIs(events.KindDisconnected))
		if ev.State != events.StateBackoff || !strings.Contains(ev.Error, "515") {
			t.Fatalf("a repeated 515 went to %s (%q), want backoff:\n%s", ev.State, ev.Error, testkit.Describe(h.rec.Events()))
		}
		r, j := h.rec.WaitFrom(t, i+1, "the reconnect", kindIs(events.KindReconnect))
		attempts, i = append(attempts, r.Attempt), j
	}
	if attempts[0] >= attempts[1] || attempts[1] >= attempts[2] {
		t.Errorf("reconnect attempts %v do not grow", attempts)
	}
}
