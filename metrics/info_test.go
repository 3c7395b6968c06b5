package metrics

import (
	"errors"
	"testing"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/internal/buildinfo"
	"github.com/wafleet/wafleet/status"
)

// TestDisconnectsByReason: every reason is exported from the start (at 0),
// and each event of a connection's end counts once under its reason;
// events without a reason count nowhere.
func TestDisconnectsByReason(t *testing.T) {
	m := New(nil)
	fams := gather(t, m)
	if n := len(fams["wafleet_disconnects_total"].GetMetric()); n != len(events.Reasons) {
		t.Fatalf("%d disconnect series, want one per reason (%d)", n, len(events.Reasons))
	}
	m.Publish(events.Event{Account: "a", Kind: events.KindDisconnected, From: events.StateConnected, State: events.StateBackoff, Reason: events.ReasonKeepaliveTimeout})
	m.Publish(events.Event{Account: "b", Kind: events.KindDisconnected, State: events.StateBackoff, Reason: events.ReasonKeepaliveTimeout})
	m.Publish(events.Event{Account: "a", Kind: events.KindLoggedOut, State: events.StateLoggedOut, Reason: events.ReasonLoggedOut})
	m.Publish(events.Event{Account: "a", Kind: events.KindState, State: events.StateConnecting})
	fams = gather(t, m)
	for reason, want := range map[events.Reason]float64{events.ReasonKeepaliveTimeout: 2, events.ReasonLoggedOut: 1, events.ReasonNetwork: 0} {
		if got := value(t, fams, "wafleet_disconnects_total", "reason", string(reason)); got != want {
			t.Errorf("disconnects_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
}

func TestBuildInfo(t *testing.T) {
	m := New(nil)
	b := buildinfo.Info{Version: "v1.2.3", Revision: "abcdef012345", Dirty: true, Go: "go1.26"}
	if err := m.ExportBuild(b); err != nil {
		t.Fatal(err)
	}
	fams := gather(t, m)
	if got := value(t, fams, "wafleet_build_info", "version", "v1.2.3", "revision", "abcdef012345-dirty", "go", "go1.26"); got != 1 {
		t.Fatalf("build_info = %v, want 1", got)
	}
	if err := m.ExportBuild(b); !errors.Is(err, ErrRegister) {
		t.Fatalf("second ExportBuild: %v, want ErrRegister", err)
	}
}

// TestAccountInfo: one series per account the board holds, with its
// current state and the instance; a state change replaces the series, a
// handed-over account disappears.
func TestAccountInfo(t *testing.T) {
	board := status.NewBoard()
	m := New(board)
	if err := m.ExportAccountInfo(board.List, "inst-a"); err != nil {
		t.Fatal(err)
	}
	board.Publish(events.Event{Account: "a", Kind: events.KindConnected, State: events.StateConnected})
	board.Publish(events.Event{Account: "b", Kind: events.KindState, State: events.StatePairing})
	fams := gather(t, m)
	if n := len(fams["wafleet_account_info"].GetMetric()); n != 2 {
		t.Fatalf("%d account_info series, want 2", n)
	}
	if got := value(t, fams, "wafleet_account_info", "account", "a", "state", "connected", "instance", "inst-a"); got != 1 {
		t.Fatalf("account_info{a} = %v", got)
	}
	board.Publish(events.Event{Account: "a", Kind: events.KindDisconnected, State: events.StateBackoff})
	board.Publish(events.Event{Account: "b", Kind: events.KindLeaseLost, State: events.StateStopped, Error: "handed over"})
	fams = gather(t, m)
	if n := len(fams["wafleet_account_info"].GetMetric()); n != 1 {
		t.Fatalf("%d account_info series after a hand-over, want 1", n)
	}
	if got := value(t, fams, "wafleet_account_info", "account", "a", "state", "backoff"); got != 1 {
		t.Fatalf("account_info{a,backoff} = %v", got)
	}
}
