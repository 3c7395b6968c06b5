package events

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestMarshalLeavesTheQROut(t *testing.T) {
	const qr = "2@secret-ref,noise-key,identity-key,ADV-SECRET-BYTES"
	at := time.Date(2026, 11, 30, 6, 0, 0, 0, time.FixedZone("x", 3600))
	b := Marshal(Event{Account: "bob", Kind: KindQR, State: StatePairing, QR: qr, Delay: 1500 * time.Millisecond, Time: at}, "inst-a")
	if strings.Contains(string(b), "ADV-SECRET") || strings.Contains(string(b), `"qr":`) {
		t.Fatalf("the wire form holds the QR: %s", b)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"account": "bob", "instance": "inst-a", "kind": "qr", "state": "pairing", "delay_ms": 1500.0, "time": "2026-11-30T05:00:00Z"}
	if len(got) != len(want) {
		t.Fatalf("fields %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s = %v, want %v (all: %s)", k, got[k], v, b)
		}
	}
}

func TestWireCarriesTheTransition(t *testing.T) {
	b := Marshal(Event{Account: "a", Kind: KindDisconnected, From: StateConnected, State: StateBackoff, Reason: ReasonKeepaliveTimeout, Delay: 1500 * time.Millisecond}, "")
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got["from"] != "connected" || got["state"] != "backoff" || got["reason"] != "keepalive_timeout" {
		t.Fatalf("wire form %s lacks the transition", b)
	}
}
