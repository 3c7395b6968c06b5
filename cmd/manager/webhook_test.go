package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/webhook"
	"github.com/wafleet/wafleet/webhook/webhooktest"
)

const webhookSecret = "manager-test-webhook-secret-0123"

// appendWebhook adds a webhooks section with one endpoint to the config
// file at path.
func appendWebhook(t *testing.T, path, name, url string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "webhooks:\n  - name: %s\n    url: %s\n    secret: %s\n    timeout: 2s\n    max_attempts: 50\n", name, url, webhookSecret)
}

// waitAllDelivered waits until recv accepted every entry of want (at
// least once) and returns the accepted deliveries.
func waitAllDelivered(t *testing.T, recv *webhooktest.Receiver, what string, want []store.OutboxEntry) []webhook.Delivery {
	t.Helper()
	return recv.WaitUntil(t, what, func(got []webhook.Delivery) bool {
		seen := make(map[string]bool, len(got))
		for _, d := range got {
			seen[d.EventID] = true
		}
		for _, e := range want {
			if !seen[e.ID] {
				return false
			}
		}
		return true
	})
}

// checkOrderPerAccount fails when, for one account, a delivery accepted
// later carries an older event than one accepted before it (a duplicate
// of the same event, after a crash, is allowed).
func checkOrderPerAccount(t *testing.T, got []webhook.Delivery) {
	t.Helper()
	last := make(map[string]string)
	for _, d := range got {
		if prev, ok := last[d.Account]; ok && d.EventID != prev && store.OutboxIDLess(d.EventID, prev) {
			t.Errorf("account %s: event %s delivered after %s", d.Account, d.EventID, prev)
		}
		if prev, ok := last[d.Account]; !ok || store.OutboxIDLess(prev, d.EventID) {
			last[d.Account] = d.EventID
		}
	}
}

// TestWebhooksSurviveKill: events appended to the outbox while the
// receiver fails are delivered after a kill -9 of the manager and a
// restart, at least once each, in order per account.
func TestWebhooksSurviveKill(t *testing.T) {
	bin := managerBinary(t)
	emu := emutest.Start(t, emulator.Options{})
	recv := webhooktest.NewReceiver(t, webhookSecret)
	recv.FailWith(http.StatusServiceUnavailable)

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	dbPath := filepath.Join(dir, "data", "wafleet.db")
	listen := freeAddr(t)
	writeRunConfig(t, cfgPath, emu, listen, dbPath, "one", "two", "three")
	appendWebhook(t, cfgPath, "receiver", recv.URL)
	cmd, exited, stderr := startRun(t, bin, cfgPath)
	views := waitAccounts(t, listen, "every account shows a QR code", func(v []accountView) bool {
		return len(v) == 3 && v[0].QR != nil && v[1].QR != nil && v[2].QR != nil
	})
	for _, v := range views {
		if _, err := emu.Phone().Scan(context.Background(), *v.QR); err != nil {
			t.Fatalf("scan %s: %v", v.ID, err)
		}
	}
	waitAccounts(t, listen, "every account connected", func(v []accountView) bool {
		return len(v) == 3 && v[0].State == "connected" && v[1].State == "connected" && v[2].State == "connected"
	})
	// The receiver has refused attempts: deliveries are under way. The
	// journal appends events after the account's view shows them: the
	// event stream, which reads the outbox, says when all three are in.
	recv.WaitUntil(t, "a refused attempt", func([]webhook.Delivery) bool { return recv.Requests() > 0 })
	waitStreamed(t, listen, "connected", 3)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited

	// What reached the outbox before the kill.
	st, err := store.OpenBolt(dbPath, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	before, err := st.After(context.Background(), "", 10000)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	connected := 0
	for _, e := range before {
		if e.Kind == "connected" {
			connected++
		}
	}
	if connected != 3 {
		t.Fatalf("the outbox holds %d connected events before the kill, want 3 (%d entries)", connected, len(before))
	}
	if n := len(recv.Delivered()); n != 0 {
		t.Fatalf("the failing receiver accepted %d deliveries", n)
	}

	recv.Recover()
	startRun(t, bin, cfgPath)
	got := waitAllDelivered(t, recv, "every event of the outbox before the kill", before)
	checkOrderPerAccount(t, got)
	if p := recv.Problems(); len(p) > 0 {
		t.Fatalf("deliveries failed verification: %v", p)
	}
	if logs := stderr.String(); strings.Contains(logs, webhookSecret) || strings.Contains(logs, "query-secret") {
		t.Fatal("the log shows the webhook secret or the URL's query")
	}
	t.Logf("%d events in the outbox at the kill, %d deliveries accepted after the restart", len(before), len(got))
}

// waitStreamed waits until GET /api/events, read from the outbox's first
// entry, holds n events of kind.
func waitStreamed(t *testing.T, listen, kind string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if streamedKinds(listen, kind, n) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the event stream does not hold %d %s events within 20 s", n, kind)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// streamedKinds counts the events of kind GET /api/events replays, reading
// for at most a second or until it saw n.
func streamedKinds(listen, kind string, n int) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+listen+"/api/events?last_event_id=0", nil)
	if err != nil {
		return 0
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	got := 0
	sc := bufio.NewScanner(resp.Body)
	for got < n && sc.Scan() {
		var e struct {
			Kind string `json:"kind"`
		}
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok && json.Unmarshal([]byte(data), &e) == nil && e.Kind == kind {
			got++
		}
	}
	return got
}
