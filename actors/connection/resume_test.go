package connection

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/waproto"
	"github.com/wafleet/wafleet/wire/node"
	"github.com/wafleet/wafleet/wire/payload"
)

// wantLogin checks that a dial logs the stored device in (no registration).
func wantLogin(t *testing.T, req DialRequest) {
	t.Helper()
	var cp waproto.ClientPayload
	if err := proto.Unmarshal(req.Payload, &cp); err != nil {
		t.Fatal(err)
	}
	if cp.GetDevicePairingData() != nil || cp.GetUsername() == 0 {
		t.Fatalf("the dial is a registration, not a login of the stored device")
	}
}

// TestResumeStoppedAccount: an account stopped by the server's refusal
// comes back on Resume with the device it holds, nothing wiped; Resume is
// refused in other states, and Pair of a stopped account says to restart.
func TestResumeStoppedAccount(t *testing.T) {
	h := newHarness(t)
	d, fd, _, dev := pairedFake(t, h, "rs")
	pid := h.spawn(d)
	s, req := dialFake(t, fd)
	wantLogin(t, req)
	if res := h.request(pid, &Resume{}); res.OK || !strings.Contains(res.Reason, "not stopped") {
		t.Fatalf("Resume of a running account: %+v, want refused", res)
	}
	s.push(t, node.New("failure", node.StrAttr("reason", "409")))
	_, at := h.rec.WaitFrom(t, 0, "stopped", stateIs(events.StateStopped))
	if snap := h.inspect(pid); snap.Want || snap.Timer {
		t.Fatalf("a stopped account plans to reconnect: %+v", snap)
	}
	if res := h.request(pid, &Pair{}); res.OK || res.Reason != "account is stopped: restart it" {
		t.Fatalf("Pair of a stopped account: %+v", res)
	}
	if res := h.request(pid, &Resume{}); !res.OK {
		t.Fatalf("Resume of a stopped account refused: %+v", res)
	}
	h.rec.WaitFrom(t, at, "connecting again", stateIs(events.StateConnecting))
	_, req = dialFake(t, fd)
	wantLogin(t, req)
	got, err := h.store.Load(context.Background(), "rs")
	if err != nil || got.JID != dev.JID || !got.Paired() {
		t.Fatalf("stored device after Resume: %+v, %v; want %s kept", got, err, dev.JID)
	}
	if res := h.request(pid, &Resume{}); res.OK || !strings.Contains(res.Reason, "account is connecting") {
		t.Fatalf("a second Resume: %+v, want refused naming the state", res)
	}
}

// TestResumeAfterOutdatedAlarm: an account stopped because no newer client
// version could be had tries again on Resume, without waiting for one.
func TestResumeAfterOutdatedAlarm(t *testing.T) {
	h := newHarness(t)
	d, fd, _, _ := pairedFake(t, h, "ro")
	old := payload.Version{Primary: 2, Secondary: 3000, Tertiary: 100}
	vs := &fakeVersions{current: old, refused: make(chan payload.Version, 4)}
	d.Versions = vs
	pid := h.spawn(d)
	s, _ := dialFake(t, fd)
	s.push(t, node.New("failure", node.StrAttr("reason", "405")))
	<-vs.refused
	h.system.Root.Send(pid, &VersionUnavailable{Err: errors.New("nothing newer")})
	h.rec.WaitFrom(t, 0, "client_outdated alarm", func(e events.Event) bool { return e.Alarm == events.AlarmClientOutdated })
	if res := h.request(pid, &Resume{}); !res.OK {
		t.Fatalf("Resume refused: %+v", res)
	}
	_, req := dialFake(t, fd)
	wantLogin(t, req)
	if got := payloadVersion(t, req); got != old {
		t.Fatalf("redialed with %v, want %v", got, old)
	}
}
