package status

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/wafleet/wafleet/events"
)

func TestBoardFoldsEvents(t *testing.T) {
	b := NewBoard()
	t0 := time.Unix(1000, 0)
	b.Publish(events.Event{Account: "a", Kind: events.KindState, State: events.StateConnecting, Time: t0})
	b.Publish(events.Event{Account: "a", Kind: events.KindQR, State: events.StatePairing, QR: "code-1", Time: t0})
	if a, _ := b.Get("a"); a.QR == nil || *a.QR != "code-1" || a.State != events.StatePairing {
		t.Fatalf("while pairing: %+v", a)
	}
	b.Publish(events.Event{Account: "a", Kind: events.KindPaired, State: events.StateConnecting, JID: "1555:1@s.whatsapp.net", Time: t0})
	b.Publish(events.Event{Account: "a", Kind: events.KindConnected, State: events.StateConnected, Time: t0.Add(time.Second)})
	a, _ := b.Get("a")
	if a.QR != nil || a.State != events.StateConnected || a.JID != "1555:1@s.whatsapp.net" || a.ConnectedSince == nil {
		t.Fatalf("after connect: %+v", a)
	}
	b.Publish(events.Event{Account: "a", Kind: events.KindDisconnected, State: events.StateBackoff, Error: "read: EOF", Time: t0})
	b.Publish(events.Event{Account: "a", Kind: events.KindReconnect, State: events.StateConnecting, Attempt: 1, Time: t0})
	b.Publish(events.Event{Account: "a", Kind: events.KindRestart, State: events.StateConnecting, Time: t0})
	a, _ = b.Get("a")
	if a.ConnectedSince != nil || a.LastError != "read: EOF" || a.Reconnects != 1 || a.Restarts != 1 {
		t.Fatalf("after disconnect: %+v", a)
	}
	b.Publish(events.Event{Account: "a", Kind: events.KindLoggedOut, State: events.StateLoggedOut, Time: t0})
	if a, _ := b.Get("a"); a.JID != "" {
		t.Fatalf("JID kept after logout: %+v", a)
	}
}

func TestAccountJSONNames(t *testing.T) {
	b := NewBoard()
	b.Publish(events.Event{Account: "a", Kind: events.KindQR, State: events.StatePairing, QR: "q"})
	a, _ := b.Get("a")
	raw, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	keys := []string{"id", "state", "jid", "qr", "qr_index", "qr_count", "qr_expires_at", "restarts", "reconnects", "last_error", "last_error_at", "connected_since"}
	for _, key := range keys {
		if _, ok := m[key]; !ok {
			t.Errorf("JSON lacks %q: %s", key, raw)
		}
	}
	if len(m) != len(keys) {
		t.Errorf("JSON has extra keys: %s", raw)
	}
}

func TestSummarize(t *testing.T) {
	b := NewBoard()
	now := time.Unix(10_000, 0)
	b.Publish(events.Event{Account: "a", Kind: events.KindQR, State: events.StatePairing, Time: now.Add(-90 * time.Second)})
	b.Publish(events.Event{Account: "b", Kind: events.KindQR, State: events.StatePairing, Time: now.Add(-10 * time.Second)})
	b.Publish(events.Event{Account: "c", Kind: events.KindConnected, State: events.StateConnected, Time: now})
	b.Publish(events.Event{Account: "c", Kind: events.KindRestart, State: events.StateConnected, Time: now})
	s := b.Summarize(now)
	if s.Total != 3 || s.ByState[events.StatePairing] != 2 || s.ByState[events.StateConnected] != 1 || s.Restarts != 1 {
		t.Fatalf("summary = %+v", s)
	}
	if s.OldestPairing != 90*time.Second {
		t.Fatalf("oldest pairing = %v, want 90s", s.OldestPairing)
	}
}

func TestListSortedAndCopied(t *testing.T) {
	b := NewBoard()
	for _, id := range []string{"c", "a", "b"} {
		b.Publish(events.Event{Account: id, Kind: events.KindQR, State: events.StatePairing, QR: id})
	}
	list := b.List()
	if len(list) != 3 || list[0].ID != "a" || list[2].ID != "c" {
		t.Fatalf("List = %+v", list)
	}
	*list[0].QR = "changed"
	if a, _ := b.Get("a"); *a.QR != "a" {
		t.Fatal("List returned shared QR storage")
	}
	b.Forget("a")
	if _, ok := b.Get("a"); ok {
		t.Fatal("Forget kept the account")
	}
}

// TestLeaseLostForgetsTheAccount: an account handed over to another
// instance leaves this board, whether its lease_lost comes before the
// supervisor's stopped (then Forget) or after it: no stale stopped row.
func TestLeaseLostForgetsTheAccount(t *testing.T) {
	b := NewBoard()
	t0 := time.Unix(1000, 0)
	for _, id := range []string{"early", "late", "kept"} {
		b.Publish(events.Event{Account: id, Kind: events.KindConnected, State: events.StateConnected, Time: t0})
	}
	lost := func(id string) {
		b.Publish(events.Event{Account: id, Kind: events.KindLeaseLost, State: events.StateStopped, Error: "handed over", Time: t0})
	}
	stopped := func(id string) { // what the supervisor does once the actor ended
		b.Publish(events.Event{Account: id, Kind: events.KindState, State: events.StateStopped, Time: t0})
		b.Forget(id)
	}
	lost("early")
	stopped("early")
	stopped("late")
	lost("late")
	if _, ok := b.Get("early"); ok {
		t.Error("an account whose lease_lost came first is still on the board")
	}
	if _, ok := b.Get("late"); ok {
		t.Error("an account whose lease_lost came after the supervisor forgot it is back on the board")
	}
	s := b.Summarize(t0)
	if s.Total != 1 || s.ByState[events.StateStopped] != 0 || s.ByState[events.StateConnected] != 1 {
		t.Fatalf("summary = %+v, want only the kept account, connected", s)
	}
}

func TestBoardQRBatchAndErrorHistory(t *testing.T) {
	b := NewBoard()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	b.Publish(events.Event{Account: "a", Kind: events.KindDisconnected, State: events.StateBackoff, Error: "read: reset", Time: at})
	a, _ := b.Get("a")
	if a.LastError != "read: reset" || a.LastErrorAt == nil || !a.LastErrorAt.Equal(at) {
		t.Fatalf("error %q at %v", a.LastError, a.LastErrorAt)
	}
	exp := at.Add(time.Minute)
	b.Publish(events.Event{Account: "a", Kind: events.KindQR, State: events.StatePairing, QR: "q", QRIndex: 2, QRCount: 6, QRExpires: exp, Time: at})
	a, _ = b.Get("a")
	if a.QRIndex != 2 || a.QRCount != 6 || a.QRExpiresAt == nil || !a.QRExpiresAt.Equal(exp) {
		t.Fatalf("qr %d of %d until %v", a.QRIndex, a.QRCount, a.QRExpiresAt)
	}
	b.Publish(events.Event{Account: "a", Kind: events.KindConnected, State: events.StateConnected, Time: at})
	a, _ = b.Get("a")
	if a.QR != nil || a.QRIndex != 0 || a.QRCount != 0 || a.QRExpiresAt != nil || a.LastError != "" || a.LastErrorAt != nil {
		t.Fatalf("connected keeps %+v", a)
	}
}

func TestBoardLinkCode(t *testing.T) {
	b := NewBoard()
	at := time.Now().Add(time.Minute)
	b.Publish(events.Event{Account: "a", Kind: events.KindLinkCode, State: events.StatePairing, LinkCode: "ABCD-EFGH", LinkCodeExpires: at})
	a, _ := b.Get("a")
	if a.LinkCode == nil || *a.LinkCode != "ABCD-EFGH" || a.LinkCodeExpiresAt == nil || !a.LinkCodeExpiresAt.Equal(at) {
		t.Fatalf("view while the code shows: %+v", a)
	}
	*a.LinkCode = "changed" // a copy: the board keeps its own
	if again, _ := b.Get("a"); *again.LinkCode != "ABCD-EFGH" {
		t.Fatal("Get returned the board's own link code")
	}
	b.Publish(events.Event{Account: "a", Kind: events.KindState, State: events.StateUnpaired, Error: "pairing: link code expired"})
	if a, _ := b.Get("a"); a.LinkCode != nil || a.LinkCodeExpiresAt != nil {
		t.Fatalf("the code outlived pairing: %+v", a)
	}
}
