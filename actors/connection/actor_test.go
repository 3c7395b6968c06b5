package connection

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/internal/testkit"
	"github.com/wafleet/wafleet/store/storetest"
	"github.com/wafleet/wafleet/waproto"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
	"github.com/wafleet/wafleet/wire/qr"
)

func TestClassify(t *testing.T) {
	conflict := func(typ string) node.Node { return node.New("conflict", node.StrAttr("type", typ)) }
	tests := []struct {
		name  string
		n     node.Node
		out   outcome
		class error
		text  string
	}{
		{"failure 401", node.New("failure", node.StrAttr("reason", "401")), outLoggedOut, ErrLoggedOut, "failure 401 (logged out)"},
		{"failure 403", node.New("failure", node.StrAttr("reason", "403"), node.StrAttr("logout_message_header", "Account locked"), node.StrAttr("logout_message_subtext", "Open WhatsApp on your phone")),
			outBanned, ErrBanned, `failure 403 (main device gone): "Account locked": "Open WhatsApp on your phone"`},
		{"failure 406", node.New("failure", node.StrAttr("reason", "406")), outBanned, ErrBanned, "406 (banned)"},
		{"failure 402", node.New("failure", node.StrAttr("reason", "402"), node.StrAttr("code", "101"), node.StrAttr("expire", "3600")),
			outTempBanned, ErrTemporarilyBanned, "failure 402 (temporarily banned) code 101 (sent to too many people) for 1h0m0s"},
		{"failure 402 without details", node.New("failure", node.StrAttr("reason", "402")), outTempBanned, ErrTemporarilyBanned, "402"},
		{"failure 405", node.New("failure", node.StrAttr("reason", "405")), outOutdated, ErrOutdated, "client outdated"},
		{"failure 409", node.New("failure", node.StrAttr("reason", "409")), outStop, ErrRefused, "bad user agent"},
		{"failure 418", node.New("failure", node.StrAttr("reason", "418")), outStop, ErrRefused, "client unknown"},
		{"failure 501", node.New("failure", node.StrAttr("reason", "501")), outStop, ErrRefused, "experimental"},
		{"failure 402 for decades", node.New("failure", node.StrAttr("reason", "402"), node.StrAttr("expire", "9999999999")), outTempBanned, ErrTemporarilyBanned, "for 8760h0m0s"},
		{"failure without reason", node.New("failure"), outStop, ErrRefused, "failure"},
		{"failure 500", node.New("failure", node.StrAttr("reason", "500")), outBackoff, ErrServer, "internal server error"},
		{"failure 503", node.New("failure", node.StrAttr("reason", "503")), outBackoff, ErrServer, "service unavailable"},
		{"stream 515", node.New("stream:error", node.StrAttr("code", "515")), outReconnectNow, ErrRestart, "515 (restart required)"},
		{"stream 503", node.New("stream:error", node.StrAttr("code", "503")), outBackoff, ErrServer, "503"},
		{"stream 500", node.New("stream:error", node.StrAttr("code", "500")), outBackoff, ErrServer, "500"},
		{"stream no code", node.New("stream:error"), outBackoff, ErrServer, "stream:error"},
		{"stream 401 device_removed", node.New("stream:error", node.StrAttr("code", "401")).WithChildren(conflict("device_removed")), outLoggedOut, ErrLoggedOut, "device_removed"},
		{"stream device_removed", node.New("stream:error").WithChildren(conflict("device_removed")), outLoggedOut, ErrLoggedOut, "device_removed"},
		// Without device_removed a 401 is not a logout: reconnect, the login decides.
		{"stream 401", node.New("stream:error", node.StrAttr("code", "401")), outBackoff, ErrServer, "401 (unauthorized)"},
		{"stream replaced", node.New("stream:error").WithChildren(conflict("replaced")), outStop, ErrReplaced, "conflict replaced"},
		{"stream 515 replaced", node.New("stream:error", node.StrAttr("code", "515")).WithChildren(conflict("replaced")), outStop, ErrReplaced, "replaced"},
		{"stream ack", node.New("stream:error").WithChildren(node.New("ack", node.StrAttr("class", "message"), node.StrAttr("id", "3EB0"))),
			outBackoff, ErrUnacked, `ack class="message" id="3EB0"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := classify(tt.n)
			if out != tt.out {
				t.Errorf("outcome %v, want %v", out, tt.out)
			}
			if !errors.Is(err, tt.class) {
				t.Errorf("error %v does not match %v", err, tt.class)
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Errorf("error %q lacks %q", err, tt.text)
			}
		})
	}
}

func TestCurrentDropsStaleGenerations(t *testing.T) {
	const gen = 7
	msgs := []struct {
		name string
		make func(g uint64) any
	}{
		{"loaded", func(g uint64) any { return &loaded{gen: g} }},
		{"dialed", func(g uint64) any { return &dialed{gen: g} }},
		{"frameIn", func(g uint64) any { return &frameIn{gen: g} }},
		{"readFailed", func(g uint64) any { return &readFailed{gen: g} }},
		{"written", func(g uint64) any { return &written{gen: g} }},
		{"retry", func(g uint64) any { return &retry{gen: g} }},
		{"pingDue", func(g uint64) any { return &pingDue{gen: g} }},
		{"pingTimeout", func(g uint64) any { return &pingTimeout{gen: g} }},
		{"logoutTimeout", func(g uint64) any { return &logoutTimeout{gen: g} }},
		{"pairSaved", func(g uint64) any { return &pairSaved{gen: g} }},
	}
	for _, m := range msgs {
		t.Run(m.name, func(t *testing.T) {
			for _, tt := range []struct {
				g    uint64
				want bool
			}{{gen - 1, false}, {gen, true}, {gen + 1, false}, {0, false}} {
				if got := current(gen, m.make(tt.g)); got != tt.want {
					t.Errorf("current(%d, gen %d) = %v, want %v", gen, tt.g, got, tt.want)
				}
			}
		})
	}
	for _, m := range []any{&Pair{}, &Logout{}, &inspect{}, &restored{}} {
		if !current(gen, m) {
			t.Errorf("%T has no generation and must always be handled", m)
		}
	}
}

// TestStaleMessagesIgnoredByActor: a late session of an abandoned attempt
// is closed, and a stale <success> changes nothing.
func TestStaleMessagesIgnoredByActor(t *testing.T) {
	h := newHarness(t)
	fd := newFakeDialer()
	d := h.deps("stale")
	d.Dialer = fd.dial
	pid := h.spawn(d)
	recvReq(t, fd) // the first dial is waiting on fd.results

	snap := h.inspect(pid)
	late := newFakeSession()
	h.system.Root.Send(pid, &dialed{gen: snap.Gen - 1, sess: late})
	success, err := node.MarshalPayload(node.New("success", node.StrAttr("t", "1")))
	if err != nil {
		t.Fatal(err)
	}
	h.system.Root.Send(pid, &frameIn{gen: snap.Gen - 1, data: success})
	h.system.Root.Send(pid, &readFailed{gen: snap.Gen + 1, err: errors.New("stale")})
	after := h.inspect(pid)
	if !late.isClosed() {
		t.Error("a stale session was left open")
	}
	if after.State != events.StateConnecting || after.Gen != snap.Gen || after.Timer {
		t.Errorf("stale messages changed the actor: before %+v after %+v", snap, after)
	}
	for _, e := range h.rec.Events() {
		if e.Kind == events.KindConnected || e.State == events.StateBackoff {
			t.Errorf("stale message produced %s/%s", e.Kind, e.State)
		}
	}
}

func TestBackoffAndLimiterHonoured(t *testing.T) {
	h := newHarness(t)
	fd := newFakeDialer()
	lim := &fakeLimiter{}
	d := h.deps("backoff")
	d.Dialer = fd.dial
	d.Limiter = lim
	d.Backoff = Backoff{Initial: time.Millisecond, Max: 4 * time.Millisecond, StableAfter: time.Hour}
	d.Rand = func() float64 { return 0.5 }
	for range 5 {
		fd.results <- dialResult{err: errors.New("dial: connection refused")}
	}
	pid := h.spawn(d)

	from := 0
	for attempt := range 5 {
		ev, i := h.rec.WaitFrom(t, from, "backoff", stateIs(events.StateBackoff))
		from = i + 1
		if want := d.Backoff.Next(attempt, d.Rand); ev.Delay != want {
			t.Errorf("attempt %d: delay %v, want %v", attempt, ev.Delay, want)
		}
		if ev.Error != "dial: connection refused" {
			t.Errorf("attempt %d: error %q", attempt, ev.Error)
		}
		if attempt < 4 {
			h.rec.WaitFrom(t, from, "reconnect", kindIs(events.KindReconnect))
		}
	}
	snap := h.inspect(pid)
	// Every dial took a limiter slot first (a sixth may be under way).
	if takes, dials := lim.takes.Load(), fd.calls.Load(); dials < 5 || takes < dials || takes > dials+1 {
		t.Errorf("%d limiter slots for %d dials", takes, dials)
	}
	view, _ := h.board.Get("backoff")
	if view.Reconnects < 4 || view.LastError != "dial: connection refused" {
		t.Errorf("board view %+v (snapshot %+v)", view, snap)
	}
}

func TestLimiterGatesEveryDial(t *testing.T) {
	t.Run("dial waits for the limiter", func(t *testing.T) {
		h := newHarness(t)
		fd := newFakeDialer()
		lim := &fakeLimiter{hold: true, waiting: make(chan struct{}, 1), release: make(chan struct{})}
		d := h.deps("limited")
		d.Dialer = fd.dial
		d.Limiter = lim
		h.spawn(d)
		<-lim.waiting
		if n := fd.calls.Load(); n != 0 {
			t.Fatalf("dialed %d times before the limiter allowed it", n)
		}
		close(lim.release)
		recvReq(t, fd)
		fd.results <- dialResult{err: errors.New("refused")}
		h.rec.WaitFrom(t, 0, "backoff", stateIs(events.StateBackoff))
	})
	t.Run("stop while taking a slot", func(t *testing.T) {
		h := newHarness(t)
		fd := newFakeDialer()
		lim := &fakeLimiter{hold: true, waiting: make(chan struct{}, 1), release: make(chan struct{})}
		d := h.deps("limited")
		d.Dialer = fd.dial
		d.Limiter = lim
		pid := h.spawn(d)
		<-lim.waiting
		h.stop(pid) // the taking goroutine must end: goleak checks it
		if n := fd.calls.Load(); n != 0 {
			t.Errorf("dialed %d times after stop", n)
		}
	})
	t.Run("stop before the slot", func(t *testing.T) {
		h := newHarness(t)
		fd := newFakeDialer()
		lim := &fakeLimiter{wait: time.Hour, waiting: make(chan struct{}, 1)}
		d := h.deps("limited")
		d.Dialer = fd.dial
		d.Limiter = lim
		pid := h.spawn(d)
		<-lim.waiting
		h.stop(pid) // no goroutine waits for the slot: goleak checks it
		// The slot is given back once, whether the stop came before the
		// timer was armed or after.
		deadline := time.Now().Add(10 * time.Second)
		for lim.cancels.Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if n := lim.cancels.Load(); n != 1 {
			t.Errorf("slot given back %d times, want 1", n)
		}
		if n := fd.calls.Load(); n != 0 {
			t.Errorf("dialed %d times after stop", n)
		}
	})
}

// TestLimiterSlotsKeepTheRate: with LocalLimiter, dials start at the
// limiter's rate from timers (link.startAfter), one slot apart; a link
// closed before its slot never starts and gives the slot back to the
// bucket, as rate.Limiter.Wait does when its context ends.
func TestLimiterSlotsKeepTheRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := LocalLimiter(rate.NewLimiter(10, 1)) // a slot every 100 ms
		t0 := time.Now()
		var mu sync.Mutex
		started := map[int]time.Duration{}
		links := make([]*link, 6)
		take := func(i int) {
			links[i] = newLink(uint64(i), 1)
			wait, cancel, err := lim.Take(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			start := func() {
				mu.Lock()
				defer mu.Unlock()
				started[i] = time.Since(t0)
			}
			if links[i].startAfter(wait, cancel, start) {
				start()
			}
		}
		for i := range 5 {
			take(i)
		}
		time.Sleep(250 * time.Millisecond)
		links[4].close() // its slot (400 ms) has not come: given back
		take(5)          // gets it: 500 ms if it had not been given back
		time.Sleep(time.Second)
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		for i, want := range []time.Duration{0, 100, 200, 300, -1, 400} {
			got, ok := started[i]
			switch {
			case want < 0 && ok:
				t.Errorf("link %d, closed before its slot, started at %v", i, got)
			case want >= 0 && (!ok || got.Round(time.Millisecond) != want*time.Millisecond):
				t.Errorf("link %d started at %v (%v), want %v", i, got, ok, want*time.Millisecond)
			}
		}
		for _, l := range links {
			l.close()
		}
	})
}

// connectFake dials a fake session and logs it in: <success>, then the
// answers to the prekey count (plenty), to a prekey upload if one comes,
// and to <active/>.
func connectFake(t *testing.T, h *harness, fd *fakeDialer) *fakeSession {
	t.Helper()
	recvReq(t, fd)
	s := newFakeSession()
	fd.results <- dialResult{sess: s}
	s.push(t, node.New("success", node.StrAttr("t", "1")))
	for {
		n := s.next(t, "the IQs after success")
		id, _ := n.Attr("id")
		switch xmlns, _ := n.Attr("xmlns"); xmlns {
		case "encrypt":
			s.push(t, serverResult(id, node.New("count", node.IntAttr("value", 100))))
		case "passive":
			s.push(t, serverResult(id))
			return s
		}
	}
}

// recvReq returns the next dial request, failing the test when none comes.
func recvReq(t *testing.T, fd *fakeDialer) DialRequest {
	t.Helper()
	select {
	case req := <-fd.reqs:
		return req
	case <-time.After(waitTimeout):
		t.Fatalf("no dial within %v", waitTimeout)
		return DialRequest{}
	}
}

// serverResult is the server's <iq type=result> to id.
func serverResult(id string, children ...node.Node) node.Node {
	return node.New("iq", node.JIDAttr("from", jid.ServerJID), node.StrAttr("id", id), node.StrAttr("type", "result")).WithChildren(children...)
}

func TestStableConnectionResetsBackoff(t *testing.T) {
	h := newHarness(t)
	fd := newFakeDialer()
	clock := testkit.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	d := h.deps("stable")
	d.Dialer = fd.dial
	d.Now = clock.Now
	d.Rand = func() float64 { return 0.5 }
	d.Backoff = Backoff{Initial: time.Millisecond, Max: time.Second, StableAfter: time.Minute}
	fd.results <- dialResult{err: errors.New("refused")}
	fd.results <- dialResult{err: errors.New("refused")}
	h.spawn(d)
	_, i := h.rec.WaitFrom(t, 0, "first backoff", stateIs(events.StateBackoff))
	_, i = h.rec.WaitFrom(t, i+1, "second backoff", stateIs(events.StateBackoff))
	recvReq(t, fd)
	recvReq(t, fd)

	tests := []struct {
		name  string
		lived time.Duration
		want  time.Duration
	}{
		{"short-lived connection keeps growing", time.Second, d.Backoff.Next(2, d.Rand)},
		{"stable connection starts over", time.Minute, d.Backoff.Next(0, d.Rand)},
	}
	for _, tt := range tests {
		s := connectFake(t, h, fd)
		_, i = h.rec.WaitFrom(t, i, "connected", kindIs(events.KindConnected))
		clock.Advance(tt.lived)
		s.Close()
		ev, j := h.rec.WaitFrom(t, i, "backoff after drop", stateIs(events.StateBackoff))
		i = j + 1
		if ev.Delay != tt.want {
			t.Errorf("%s: delay %v, want %v", tt.name, ev.Delay, tt.want)
		}
		if !strings.Contains(ev.Error, "read:") && !strings.Contains(ev.Error, "write:") {
			t.Errorf("%s: error %q, want a read or write error", tt.name, ev.Error)
		}
	}
}

// TestKeepalive: pings go out with fresh ids; a missed pong is tolerated;
// only a Window without any answered ping closes the connection.
func TestKeepalive(t *testing.T) {
	h := newHarness(t)
	fd := newFakeDialer()
	clock := testkit.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	d := h.deps("ka")
	d.Dialer = fd.dial
	d.Now = clock.Now
	d.Keepalive = Keepalive{Interval: time.Millisecond, Timeout: 20 * time.Millisecond, Window: time.Minute}
	d.Backoff = Backoff{Initial: time.Hour, Max: time.Hour, StableAfter: time.Hour}
	h.spawn(d)
	s := connectFake(t, h, fd)
	h.rec.WaitFrom(t, 0, "connected", kindIs(events.KindConnected))

	nextPing := func() string {
		t.Helper()
		for {
			n := s.next(t, "ping")
			if x, _ := n.Attr("xmlns"); x != "w:p" {
				continue
			}
			if typ, _ := n.Attr("type"); typ != "get" {
				t.Errorf("ping type %q", typ)
			}
			if to, ok := n.AttrJID("to"); !ok || to != jid.ServerJID {
				t.Errorf("ping to %v (JID %v)", to, ok)
			}
			id, _ := n.Attr("id")
			return id
		}
	}
	first := nextPing()
	s.push(t, serverResult(first))
	// The second ping goes unanswered: the connection stays, and a third
	// ping follows its timeout.
	second := nextPing()
	third := nextPing()
	if first == second || second == third {
		t.Errorf("ping ids repeat: %q %q %q", first, second, third)
	}
	s.push(t, serverResult(third))
	for _, e := range h.rec.Events() {
		if e.State == events.StateBackoff || e.Kind == events.KindDisconnected {
			t.Fatalf("a missed pong ended the connection: %s", testkit.Describe(h.rec.Events()))
		}
	}
	// No answer for longer than the window: close, backoff.
	nextPing()
	clock.Advance(2 * time.Minute)
	ev, _ := h.rec.WaitFrom(t, 0, "keepalive backoff", stateIs(events.StateBackoff))
	if !strings.Contains(ev.Error, ErrKeepaliveTimeout.Error()) {
		t.Errorf("error %q", ev.Error)
	}
	if !s.isClosed() {
		t.Error("the session of a dead connection stayed open")
	}
}

// pairSuccess builds the phone's pair-success for the QR code's device.
func pairSuccess(t *testing.T, code qr.Code, pn, lid string) node.Node {
	t.Helper()
	primary, err := crypto.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	di := &waproto.ADVDeviceIdentity{RawID: proto.Uint32(7), Timestamp: proto.Uint64(1767225600), KeyIndex: proto.Uint32(2)}
	sdi, err := crypto.SignADVAccount(primary, di, code.IdentityPub[:])
	if err != nil {
		t.Fatal(err)
	}
	sdiBytes, err := proto.Marshal(sdi)
	if err != nil {
		t.Fatal(err)
	}
	container, err := crypto.MakeADVContainer(sdiBytes, code.AdvSecret[:], waproto.ADVEncryptionType_E2EE)
	if err != nil {
		t.Fatal(err)
	}
	pnJID, _ := jid.Parse(pn)
	lidJID, _ := jid.Parse(lid)
	return node.New("iq", node.JIDAttr("from", jid.ServerJID), node.StrAttr("id", "ps1"), node.StrAttr("type", "set"), node.StrAttr("xmlns", "md")).
		WithChildren(node.New("pair-success").WithChildren(
			node.New("device-identity").WithBytes(container),
			node.New("platform", node.StrAttr("name", "android")),
			node.New("device", node.JIDAttr("jid", pnJID), node.JIDAttr("lid", lidJID)),
		))
}

func TestNewDevice(t *testing.T) {
	a, err := NewDevice("fresh")
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewDevice("fresh")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	if a.Paired() || a.SignedPreKey.ID != 1 || a.RegistrationID == 0 || a.RegistrationID > 0x3FFF {
		t.Errorf("fresh device %v (registration id out of range or paired)", a)
	}
	if !crypto.Verify(a.IdentityKey.Pub[:], append([]byte{0x05}, a.SignedPreKey.Pub[:]...), a.SignedPreKey.Signature[:]) {
		t.Error("signed prekey signature does not verify over 05 || pub")
	}
	if a.NoiseKey == b.NoiseKey || a.IdentityKey == b.IdentityKey || a.AdvSecret == b.AdvSecret {
		t.Error("two fresh devices share key material")
	}
}

func TestResaveWritesTheDeviceAgain(t *testing.T) {
	h := newHarness(t)
	fd := newFakeDialer()
	d := h.deps("resave")
	d.Dialer = fd.dial
	pid := h.spawn(d)
	connectFake(t, h, fd)
	h.rec.WaitFrom(t, 0, "connected", kindIs(events.KindConnected))
	ctx := ctxT(t)
	want, err := h.store.Load(ctx, "resave")
	if err != nil {
		t.Fatal(err)
	}
	// The store loses the device (as Redis losing its data would).
	if err := h.store.Delete(ctx, "resave"); err != nil {
		t.Fatal(err)
	}
	h.system.Root.Send(pid, &Resave{})
	deadline := time.Now().Add(waitTimeout)
	for {
		got, err := h.store.Load(ctx, "resave")
		if err == nil {
			if diff := storetest.Diff(want, got); len(diff) != 0 {
				t.Fatalf("re-saved device differs: %v", diff)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("device not saved again: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDialUsesStoredNoiseKey(t *testing.T) {
	// Every dial, the first and a redial after a failure, hands the
	// dialer the stored noise key pair as it is: both halves from the
	// store, no derivation (the store checked them when it wrote them).
	h := newHarness(t)
	fd := newFakeDialer()
	d := h.deps("dial-noise")
	d.Dialer = fd.dial
	d.Rand = func() float64 { return 0.5 }
	d.Backoff = Backoff{Initial: time.Millisecond, Max: time.Millisecond, StableAfter: time.Minute}
	fd.results <- dialResult{err: errors.New("refused")}
	fd.results <- dialResult{err: errors.New("refused")}
	h.spawn(d)
	first, second := recvReq(t, fd), recvReq(t, fd)
	stored, err := h.store.Load(ctxT(t), "dial-noise")
	if err != nil {
		t.Fatal(err)
	}
	for i, req := range []DialRequest{first, second} {
		if req.NoiseKey == nil || req.NoiseKey.Priv != stored.NoiseKey.Priv || req.NoiseKey.Pub != stored.NoiseKey.Pub {
			t.Fatalf("dial %d: the noise key pair is not the stored one", i+1)
		}
	}
}
