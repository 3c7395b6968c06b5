package connection

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/internal/testkit"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/storetest"
	"github.com/wafleet/wafleet/waproto"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
	"github.com/wafleet/wafleet/wire/payload"
)

// countingObserver records what the actor reports for metrics.
type countingObserver struct {
	acks, undecodable, streamAcks, preKeys atomic.Int64

	mu            sync.Mutex
	decryptFailed map[string]int
}

func (o *countingObserver) AckSent(string)        { o.acks.Add(1) }
func (o *countingObserver) StanzaUndecodable()    { o.undecodable.Add(1) }
func (o *countingObserver) StreamErrorAck()       { o.streamAcks.Add(1) }
func (o *countingObserver) PreKeysUploaded(n int) { o.preKeys.Add(int64(n)) }
func (o *countingObserver) DecryptFailed(reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.decryptFailed == nil {
		o.decryptFailed = make(map[string]int)
	}
	o.decryptFailed[reason]++
}

func (o *countingObserver) failures(reason string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.decryptFailed[reason]
}

// fakeVersions is a VersionSource the test moves on.
type fakeVersions struct {
	mu      sync.Mutex
	current payload.Version
	refused chan payload.Version
}

func (v *fakeVersions) Current() payload.Version {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.current
}

func (v *fakeVersions) Refused(r payload.Version) { v.refused <- r }

func (v *fakeVersions) set(n payload.Version) {
	v.mu.Lock()
	v.current = n
	v.mu.Unlock()
}

const ownPN = "15550001234"

// pairedFake stores a paired device and returns deps that dial fakes, with
// a backoff long enough that no retry happens by itself.
func pairedFake(t *testing.T, h *harness, id string) (Deps, *fakeDialer, *countingObserver, *store.Device) {
	t.Helper()
	dev, err := NewDevice(id) // with a real signed-prekey signature
	if err != nil {
		t.Fatal(err)
	}
	storetest.Pair(dev, ownPN, "", 4)
	if err = h.store.Save(context.Background(), dev); err != nil {
		t.Fatal(err)
	}
	fd := newFakeDialer()
	obs := &countingObserver{}
	d := h.deps(id)
	d.Dialer = fd.dial
	d.Observer = obs
	d.Backoff = Backoff{Initial: time.Hour, Max: time.Hour, StableAfter: time.Hour}
	return d, fd, obs, dev
}

// dialFake answers the next dial with a fresh fake session.
func dialFake(t *testing.T, fd *fakeDialer) (*fakeSession, DialRequest) {
	t.Helper()
	req := recvReq(t, fd)
	s := newFakeSession()
	fd.results <- dialResult{sess: s}
	return s, req
}

// nextIQ returns the next IQ the actor sent in namespace xmlns, skipping
// everything else (acks, pings).
func nextIQ(t *testing.T, s *fakeSession, xmlns string) node.Node {
	t.Helper()
	for {
		n := s.next(t, "iq "+xmlns)
		if x, _ := n.Attr("xmlns"); n.Tag == "iq" && x == xmlns {
			return n
		}
	}
}

func idOf(n node.Node) string { id, _ := n.Attr("id"); return id }

// waitFor polls cond until it holds or the wait times out.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, waitTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPreKeysUploadedAfterLogin(t *testing.T) {
	h := newHarness(t)
	d, fd, obs, dev := pairedFake(t, h, "pk")
	h.spawn(d)
	s, _ := dialFake(t, fd)
	lid := jid.JID{User: "100000000000042", Device: 4, Server: jid.HiddenUserServer}
	s.push(t, node.New("success", node.StrAttr("t", "1767225660"), node.JIDAttr("lid", lid)))

	count := nextIQ(t, s, "encrypt")
	if typ, _ := count.Attr("type"); typ != "get" {
		t.Fatalf("count IQ %v", count)
	}
	if _, ok := count.Child("count"); !ok {
		t.Fatalf("count IQ without <count/>: %v", count)
	}
	s.push(t, serverResult(idOf(count), node.New("count", node.IntAttr("value", 0))))

	// The reference order: count, upload, then <active/>, then connected.
	upload := nextIQ(t, s, "encrypt")
	ids := checkUpload(t, h, dev, upload)
	if len(ids) != initialPreKeys || ids[0] != 1 || ids[len(ids)-1] != initialPreKeys {
		t.Fatalf("first upload: %d keys, %v…; want 1..%d", len(ids), ids[:3], initialPreKeys)
	}
	counts, err := h.store.PreKeyCounts(context.Background(), "pk")
	if err != nil || counts.Stored != initialPreKeys || counts.Uploaded != 0 {
		t.Fatalf("stored before the answer: %+v, %v", counts, err)
	}
	for _, e := range h.rec.Events() {
		if e.Kind == events.KindConnected {
			t.Fatal("connected reported before the prekeys were uploaded")
		}
	}
	s.push(t, serverResult(idOf(upload)))
	active := nextIQ(t, s, "passive")
	if _, ok := active.Child("active"); !ok {
		t.Fatalf("passive IQ without <active/>: %v", active)
	}
	for _, e := range h.rec.Events() {
		if e.Kind == events.KindConnected {
			t.Fatal("connected reported before <active/> was answered")
		}
	}
	s.push(t, serverResult(idOf(active)))
	h.rec.WaitFrom(t, 0, "connected", kindIs(events.KindConnected))
	waitFor(t, "keys marked uploaded", func() bool {
		c, err := h.store.PreKeyCounts(context.Background(), "pk")
		return err == nil && c.Uploaded == initialPreKeys
	})

	// The server says it runs low: ack, then 50 more, numbered on.
	s.push(t, node.New("notification", node.JIDAttr("from", jid.ServerJID), node.StrAttr("id", "n1"), node.StrAttr("type", "encrypt")).
		WithChildren(node.New("count", node.IntAttr("value", 3))))
	ack := s.next(t, "ack of the encrypt notification")
	if want := node.New("ack", node.StrAttr("class", "notification"), node.StrAttr("id", "n1"), node.JIDAttr("to", jid.ServerJID), node.StrAttr("type", "encrypt")); !ack.Equal(want) {
		t.Fatalf("ack %v, want %v", ack, want)
	}
	upload = nextIQ(t, s, "encrypt")
	ids = checkUpload(t, h, dev, upload)
	if len(ids) != preKeyBatch || ids[0] != initialPreKeys+1 {
		t.Fatalf("second upload: %d keys from %d; want %d from %d", len(ids), ids[0], preKeyBatch, initialPreKeys+1)
	}
	s.push(t, serverResult(idOf(upload)))
	waitFor(t, "observer counts", func() bool { return obs.preKeys.Load() == initialPreKeys+preKeyBatch && obs.acks.Load() == 1 })

	// <success lid> was stored.
	waitFor(t, "LID saved", func() bool {
		got, err := h.store.Load(context.Background(), "pk")
		return err == nil && got.LID == lid.String()
	})
}

// checkUpload checks an upload as the emulator and PROTOCOL.md 9.8 do and
// that every key is one the store holds; it returns the key IDs.
func checkUpload(t *testing.T, h *harness, dev *store.Device, n node.Node) []uint32 {
	t.Helper()
	if typ, _ := n.Attr("type"); typ != "set" {
		t.Fatalf("upload type %q", typ)
	}
	child := func(p *node.Node, tag string) []byte {
		c, ok := p.Child(tag)
		if !ok {
			t.Fatalf("upload lacks <%s>", tag)
		}
		b, _ := c.Bytes()
		return b
	}
	if reg := child(&n, "registration"); len(reg) != 4 || binary.BigEndian.Uint32(reg) != dev.RegistrationID {
		t.Errorf("registration %x, want %d", reg, dev.RegistrationID)
	}
	if typ := child(&n, "type"); !bytes.Equal(typ, []byte{5}) {
		t.Errorf("type %x", typ)
	}
	if id := child(&n, "identity"); !bytes.Equal(id, dev.IdentityKey.Pub[:]) {
		t.Error("identity is not the device's")
	}
	skey, _ := n.Child("skey")
	if !bytes.Equal(child(skey, "id"), id3(dev.SignedPreKey.ID)) || !bytes.Equal(child(skey, "value"), dev.SignedPreKey.Pub[:]) {
		t.Error("signed prekey is not the device's")
	}
	if !crypto.Verify(dev.IdentityKey.Pub[:], append([]byte{5}, child(skey, "value")...), child(skey, "signature")) {
		t.Error("signed prekey signature does not verify")
	}
	list, _ := n.Child("list")
	var ids []uint32
	for k := range list.ChildrenByTag("key") {
		raw := child(k, "id")
		if len(raw) != 3 {
			t.Fatalf("key id %x is not 3 bytes", raw)
		}
		id := uint32(raw[0])<<16 | uint32(raw[1])<<8 | uint32(raw[2])
		stored, err := h.store.PreKey(context.Background(), dev.ID, id)
		if err != nil {
			t.Fatalf("uploaded key %d not stored: %v", id, err)
		}
		if !bytes.Equal(child(k, "value"), stored.Pub[:]) {
			t.Fatalf("uploaded key %d is not the stored one", id)
		}
		if len(ids) > 0 && id <= ids[len(ids)-1] {
			t.Fatalf("key ids not ascending: %d after %d", id, ids[len(ids)-1])
		}
		ids = append(ids, id)
	}
	return ids
}

// TestAcksInOrderUnderBurst: an offline queue of hundreds of stanzas gets
// one ack each, in order, and the connection stays up.
func TestAcksInOrderUnderBurst(t *testing.T) {
	h := newHarness(t)
	d, fd, obs, _ := pairedFake(t, h, "burst")
	d.WriteQueue = 0 // the default must hold a burst
	h.spawn(d)
	s, _ := dialFake(t, fd)
	s.push(t, node.New("success", node.StrAttr("t", "1")))

	const burst = 1000
	peer := jid.JID{User: "15551230001", Server: jid.DefaultUserServer}
	go func() {
		for i := range burst {
			var n node.Node
			switch i % 5 {
			case 0:
				n = node.New("message", node.JIDAttr("from", peer), node.StrAttr("type", "text"))
			case 1:
				n = node.New("receipt", node.JIDAttr("from", peer), node.StrAttr("type", "read"))
			case 2:
				n = node.New("notification", node.JIDAttr("from", peer), node.StrAttr("type", "devices"))
			case 3:
				n = node.New("call", node.JIDAttr("from", peer))
			case 4:
				// Not ackable: interleaved, they must change nothing.
				s.in <- mustMarshal(node.New("presence", node.JIDAttr("from", peer), node.StrAttr("type", "available")))
				n = node.New("message", node.JIDAttr("from", peer), node.StrAttr("type", "text"))
			}
			s.in <- mustMarshal(n.WithAttr(node.StrAttr("id", fmt.Sprint("s", i))))
		}
	}()
	next := 0
	for next < burst {
		n := s.next(t, "ack")
		if n.Tag != "ack" {
			continue // the IQs after success
		}
		if id := idOf(n); id != fmt.Sprint("s", next) {
			t.Fatalf("ack %d has id %q: out of order", next, id)
		}
		next++
	}
	if got := obs.acks.Load(); got != burst {
		t.Errorf("acks counted %d, want %d", got, burst)
	}
	for _, e := range h.rec.Events() {
		if e.Kind == events.KindDisconnected {
			t.Fatalf("the burst ended the connection: %s", testkit.Describe(h.rec.Events()))
		}
	}
}

func mustMarshal(n node.Node) []byte {
	b, err := node.MarshalPayload(n)
	if err != nil {
		panic(err)
	}
	return b
}

// TestUndecodableStanzaSkipped: a frame that is not a stanza is counted
// and skipped, one whose content alone does not decode is still acked by
// its tag and id; the connection goes on.
func TestUndecodableStanzaSkipped(t *testing.T) {
	h := newHarness(t)
	d, fd, obs, _ := pairedFake(t, h, "junk")
	h.spawn(d)
	s, _ := dialFake(t, fd)
	s.push(t, node.New("success", node.StrAttr("t", "1")))
	s.in <- []byte{0, 0xF8, 0xFF, 0x13, 0x37} // a list of 255 items, cut short
	peer := jid.JID{User: "15551230001", Server: jid.DefaultUserServer}
	broken := mustMarshal(node.New("message", node.JIDAttr("from", peer), node.StrAttr("id", "broken"), node.StrAttr("type", "text")).
		WithChildren(node.New("enc", node.StrAttr("type", "msg")).WithBytes([]byte("0123456789"))))
	s.in <- broken[:len(broken)-4] // its content cut short
	s.push(t, node.New("receipt", node.JIDAttr("from", jid.ServerJID), node.StrAttr("id", "after")))
	var acks []node.Node
	for len(acks) < 2 {
		if n := s.next(t, "acks after the junk"); n.Tag == "ack" {
			acks = append(acks, n)
		}
	}
	if want := node.New("ack", node.StrAttr("class", "message"), node.StrAttr("id", "broken"), node.JIDAttr("to", peer)); !acks[0].Equal(want) {
		t.Errorf("ack of the broken message %v, want %v", acks[0], want)
	}
	if idOf(acks[1]) != "after" {
		t.Errorf("second ack %v", acks[1])
	}
	if obs.undecodable.Load() != 2 {
		t.Errorf("undecodable counted %d, want 2", obs.undecodable.Load())
	}
	if s.isClosed() {
		t.Error("an undecodable stanza closed the connection")
	}
}

// TestFailurePolicy drives each login failure and stream error of README's
// table through a fake session and checks state, alarm and store.
func TestFailurePolicy(t *testing.T) {
	locked := node.New("failure", node.StrAttr("reason", "403"),
		node.StrAttr("logout_message_header", "Your account is locked"), node.StrAttr("logout_message_subtext", "Open WhatsApp on your phone"))
	tests := []struct {
		name       string
		stanza     node.Node
		autoRepair bool
		state      events.State
		kind       events.Kind
		alarm      events.Alarm
		errHas     string
		wiped      bool
		redial     bool // a new dial follows by itself (soon)
		reason     events.Reason
		from       events.State
	}{
		{"403 locked", locked, false, events.StateLoggedOut, events.KindAlarm, events.AlarmBanned, "Your account is locked", true, false, events.ReasonBanned, events.StateConnecting},
		{"406 banned", node.New("failure", node.StrAttr("reason", "406")), false, events.StateLoggedOut, events.KindAlarm, events.AlarmBanned, "406 (banned)", true, false, events.ReasonBanned, events.StateConnecting},
		{"406 banned with auto-repair", node.New("failure", node.StrAttr("reason", "406")), true, events.StateLoggedOut, events.KindAlarm, events.AlarmBanned, "406", true, true, events.ReasonBanned, events.StateConnecting},
		{"401 logged out", node.New("failure", node.StrAttr("reason", "401")), false, events.StateLoggedOut, events.KindLoggedOut, "", "401", true, true, events.ReasonLoggedOut, events.StateConnecting},
		{"409 refused", node.New("failure", node.StrAttr("reason", "409")), false, events.StateStopped, events.KindAlarm, events.AlarmRefused, "409", false, false, events.ReasonRefused, events.StateConnecting},
		{"stream 401 without device_removed", node.New("stream:error", node.StrAttr("code", "401")), false, events.StateBackoff, events.KindDisconnected, "", "401", false, false, events.ReasonServerError, events.StateConnecting},
		{"stream device_removed", node.New("stream:error", node.StrAttr("code", "401")).WithChildren(node.New("conflict", node.StrAttr("type", "device_removed"))),
			false, events.StateLoggedOut, events.KindLoggedOut, "", "device_removed", true, true, events.ReasonLoggedOut, events.StateConnecting},
		{"stream ack", node.New("stream:error").WithChildren(node.New("ack", node.StrAttr("class", "receipt"), node.StrAttr("id", "r9"))),
			false, events.StateBackoff, events.KindDisconnected, "", `class="receipt" id="r9"`, false, false, events.ReasonUnacked, events.StateConnecting},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			d, fd, obs, _ := pairedFake(t, h, "fp")
			d.AutoRepair = tt.autoRepair
			h.spawn(d)
			s, _ := dialFake(t, fd)
			if tt.stanza.Tag == "stream:error" {
				s.push(t, node.New("success", node.StrAttr("t", "1")))
			}
			s.push(t, tt.stanza)
			ev, _ := h.rec.WaitFrom(t, 0, string(tt.state), func(e events.Event) bool { return e.Kind == tt.kind && e.State == tt.state })
			if ev.Alarm != tt.alarm || !strings.Contains(ev.Error, tt.errHas) {
				t.Errorf("event alarm %q error %q; want alarm %q and %q", ev.Alarm, ev.Error, tt.alarm, tt.errHas)
			}
			if ev.Reason != tt.reason || ev.From != tt.from {
				t.Errorf("event from %q reason %q; want from %q reason %q", ev.From, ev.Reason, tt.from, tt.reason)
			}
			if tt.wiped {
				waitFor(t, "device wiped", func() bool {
					got, err := h.store.Load(context.Background(), "fp")
					return errors.Is(err, store.ErrNotFound) || (err == nil && !got.Paired())
				})
			} else if got, err := h.store.Load(context.Background(), "fp"); err != nil || !got.Paired() {
				t.Errorf("device after %s: %v, %v; want it kept", tt.name, got, err)
			}
			if tt.redial {
				req := recvReq(t, fd)
				var cp waproto.ClientPayload
				if err := proto.Unmarshal(req.Payload, &cp); err != nil || cp.GetDevicePairingData() == nil {
					t.Errorf("the dial after a wipe is not a registration (%v)", err)
				}
				fd.results <- dialResult{err: errors.New("enough")}
			}
			if tt.stanza.Tag == "stream:error" && strings.Contains(tt.name, "ack") && obs.streamAcks.Load() != 1 {
				t.Errorf("stream ack counted %d", obs.streamAcks.Load())
			}
		})
	}
}

// TestBannedWaitsForPairRequest: without auto-repair a banned account
// registers again only when pairing is re-armed.
func TestBannedWaitsForPairRequest(t *testing.T) {
	h := newHarness(t)
	d, fd, _, _ := pairedFake(t, h, "ban")
	pid := h.spawn(d)
	s, _ := dialFake(t, fd)
	s.push(t, node.New("failure", node.StrAttr("reason", "406")))
	h.rec.WaitFrom(t, 0, "banned", func(e events.Event) bool { return e.Alarm == events.AlarmBanned })
	if snap := h.inspect(pid); snap.Want || snap.Timer {
		t.Fatalf("a banned account plans to reconnect: %+v", snap)
	}
	if res := h.request(pid, &Pair{}); !res.OK {
		t.Fatalf("pair refused: %+v", res)
	}
	req := recvReq(t, fd)
	var cp waproto.ClientPayload
	if err := proto.Unmarshal(req.Payload, &cp); err != nil || cp.GetDevicePairingData() == nil {
		t.Fatalf("the dial after re-arming is not a registration (%v)", err)
	}
	fd.results <- dialResult{err: errors.New("enough")}
}

// TestTemporaryBanWaitsForExpiry: failure 402 waits exactly expire, says
// until when, then reconnects by itself.
func TestTemporaryBanWaitsForExpiry(t *testing.T) {
	h := newHarness(t)
	d, fd, _, _ := pairedFake(t, h, "tb")
	h.spawn(d)
	s, _ := dialFake(t, fd)
	s.push(t, node.New("failure", node.StrAttr("reason", "402"), node.StrAttr("code", "101"), node.StrAttr("expire", "1")))
	ev, _ := h.rec.WaitFrom(t, 0, "temporary ban", stateIs(events.StateBackoff))
	if ev.Delay != time.Second || !strings.Contains(ev.Error, "sent to too many people") || !strings.Contains(ev.Error, "reconnecting by itself at") {
		t.Errorf("ban event delay %v error %q", ev.Delay, ev.Error)
	}
	// The backoff is an hour; the ban a second: the next dial is the ban's.
	s2, _ := dialFake(t, fd)
	s2.push(t, node.New("success", node.StrAttr("t", "1")))
	s2.push(t, serverResult(idOf(nextIQ(t, s2, "encrypt")), node.New("count", node.IntAttr("value", 100))))
	s2.push(t, serverResult(idOf(nextIQ(t, s2, "encrypt")))) // the store has no uploaded keys: 50 go up
	s2.push(t, serverResult(idOf(nextIQ(t, s2, "passive"))))
	h.rec.WaitFrom(t, 0, "connected after the ban", kindIs(events.KindConnected))
}

// TestOutdatedWaitsForNewerVersion: failure 405 reports the refused version
// to the VersionSource and waits; VersionUnavailable raises the alarm;
// VersionUpdated reconnects with the newer version.
func TestOutdatedWaitsForNewerVersion(t *testing.T) {
	h := newHarness(t)
	d, fd, _, _ := pairedFake(t, h, "old")
	old, newer := payload.Version{Primary: 2, Secondary: 3000, Tertiary: 100}, payload.Version{Primary: 2, Secondary: 3000, Tertiary: 200}
	vs := &fakeVersions{current: old, refused: make(chan payload.Version, 4)}
	d.Versions = vs
	pid := h.spawn(d)
	s, req := dialFake(t, fd)
	if got := payloadVersion(t, req); got != old {
		t.Fatalf("dialed with %v, want %v", got, old)
	}
	s.push(t, node.New("failure", node.StrAttr("reason", "405")))
	if got := <-vs.refused; got != old {
		t.Fatalf("refused %v reported, want %v", got, old)
	}
	ev, _ := h.rec.WaitFrom(t, 0, "outdated backoff", stateIs(events.StateBackoff))
	if !strings.Contains(ev.Error, "405") {
		t.Errorf("error %q", ev.Error)
	}
	h.system.Root.Send(pid, &VersionUnavailable{Err: errors.New("the newest version published, 2.3000.100, is still refused")})
	alarm, _ := h.rec.WaitFrom(t, 0, "client_outdated alarm", func(e events.Event) bool { return e.Alarm == events.AlarmClientOutdated })
	if alarm.State != events.StateStopped || !strings.Contains(alarm.Error, "2.3000.100") {
		t.Errorf("alarm %+v", alarm)
	}
	vs.set(newer)
	h.system.Root.Send(pid, &VersionUpdated{})
	_, req = dialFake(t, fd)
	if got := payloadVersion(t, req); got != newer {
		t.Fatalf("redialed with %v, want %v", got, newer)
	}
}

func payloadVersion(t *testing.T, req DialRequest) payload.Version {
	t.Helper()
	var cp waproto.ClientPayload
	if err := proto.Unmarshal(req.Payload, &cp); err != nil {
		t.Fatal(err)
	}
	v := cp.GetUserAgent().GetAppVersion()
	return payload.Version{Primary: v.GetPrimary(), Secondary: v.GetSecondary(), Tertiary: v.GetTertiary()}
}

// TestLogoutWhileOffline: logout of an account that is not connected
// connects to send remove-companion-device first, then wipes; when it
// cannot connect, it unlinks locally.
func TestLogoutWhileOffline(t *testing.T) {
	for _, reachable := range []bool{true, false} {
		t.Run(fmt.Sprint("reachable=", reachable), func(t *testing.T) {
			h := newHarness(t)
			d, fd, _, dev := pairedFake(t, h, "lo")
			pid := h.spawn(d)
			recvReq(t, fd)
			fd.results <- dialResult{err: errors.New("network down")}
			h.rec.WaitFrom(t, 0, "backoff", stateIs(events.StateBackoff))
			if res := h.request(pid, &Logout{}); !res.OK {
				t.Fatalf("logout refused: %+v", res)
			}
			if !reachable {
				recvReq(t, fd)
				fd.results <- dialResult{err: errors.New("still down")}
			} else {
				s, _ := dialFake(t, fd)
				s.push(t, node.New("success", node.StrAttr("t", "1")))
				iq := nextIQ(t, s, "md")
				rm, ok := iq.Child("remove-companion-device")
				if j, _ := rm.AttrJID("jid"); !ok || j.String() != dev.JID {
					t.Fatalf("unlink IQ %v", iq)
				}
				s.push(t, serverResult(idOf(iq)))
			}
			h.rec.WaitFrom(t, 0, "logged out", kindIs(events.KindLoggedOut))
			waitFor(t, "device wiped", func() bool {
				got, err := h.store.Load(context.Background(), "lo")
				return errors.Is(err, store.ErrNotFound) || (err == nil && !got.Paired())
			})
		})
	}
}
