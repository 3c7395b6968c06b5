package app

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wafleet/wafleet/config"
	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/webhook"
	"github.com/wafleet/wafleet/webhook/webhooktest"
)

const hookSecret = "app-test-webhook-secret-01234567"

// TestDeletedAccountLosesItsWebhooks: an account created through the API
// gets its own webhook endpoint; deleting the account removes it.
func TestDeletedAccountLosesItsWebhooks(t *testing.T) {
	emu := emutest.Start(t, emulator.Options{})
	cfg := testConfig(t, emu, filepath.Join(t.TempDir(), "wafleet.db"), 0)
	r := start(t, cfg)
	defer r.stop(t)

	r.expect(t, "POST", "/api/accounts", map[string]string{"id": "made"}, http.StatusCreated)
	hooks := `{"webhooks":[{"url":"https://hooks.example/made?token=t","secret":"` + hookSecret + `"}]}`
	out := r.expect(t, "PUT", "/api/accounts/made/webhooks", hooks, http.StatusOK, `"url":"https://hooks.example/made"`)
	if strings.Contains(string(out), hookSecret) || strings.Contains(string(out), "token=") {
		t.Fatalf("PUT answered the secret or the query: %s", out)
	}
	r.expect(t, "GET", "/api/webhooks", nil, http.StatusOK, `"account":"made"`)

	r.expect(t, "DELETE", "/api/accounts/made", nil, http.StatusNoContent)
	if out := r.expect(t, "GET", "/api/webhooks", nil, http.StatusOK); string(out) != "[]\n" {
		t.Fatalf("the deleted account's endpoint is still listed: %s", out)
	}
	r.expect(t, "GET", "/api/accounts/made/webhooks", nil, http.StatusNotFound)
}

// TestWebhooksDeliverAccountEvents runs the manager with a configured
// webhook: the accounts' events reach the receiver, signed, in order per
// account, each once.
func TestWebhooksDeliverAccountEvents(t *testing.T) {
	emu := emutest.Start(t, emulator.Options{})
	recv := webhooktest.NewReceiver(t, hookSecret)
	cfg := testConfig(t, emu, filepath.Join(t.TempDir(), "wafleet.db"), 2)
	cfg.Webhooks = []config.Webhook{{Name: "receiver", URL: recv.URL, Secret: hookSecret, Timeout: 5 * time.Second, MaxAttempts: 3}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r := start(t, cfg)
	defer r.stop(t)
	r.connectAll(t, emu, 2, true)

	got := recv.WaitUntil(t, "both accounts' connected events", func(got []webhook.Delivery) bool {
		n := 0
		for _, d := range got {
			if d.Kind == string(events.KindConnected) {
				n++
			}
		}
		return n == 2
	})
	seen := make(map[string]bool)
	last := make(map[string]string)
	for _, d := range got {
		if seen[d.ID] {
			t.Errorf("delivery %s accepted twice", d.ID)
		}
		seen[d.ID] = true
		if last[d.Account] != "" && !store.OutboxIDLess(last[d.Account], d.EventID) {
			t.Errorf("account %s: event %s after %s", d.Account, d.EventID, last[d.Account])
		}
		last[d.Account] = d.EventID
		if d.Instance != cfg.Fleet.InstanceID || !slices.Contains([]string{"acct-aa", "acct-ab"}, d.Account) {
			t.Errorf("delivery %+v names the wrong instance or account", d)
		}
		if !strings.Contains(string(d.Payload), `"account":"`+d.Account+`"`) || strings.Contains(string(d.Payload), "2@") {
			t.Errorf("delivery %s: payload %s does not describe the event, or shows a QR code", d.ID, d.Payload)
		}
	}
	if p := recv.Problems(); len(p) > 0 {
		t.Fatalf("deliveries failed verification: %v", p)
	}

	if !slices.ContainsFunc(got, func(d webhook.Delivery) bool { return d.Kind == string(events.KindQR) }) {
		t.Error("no qr event delivered")
	}
	r.expect(t, "GET", "/api/webhooks", nil, http.StatusOK, `"name":"receiver"`, `"source":"config"`, `"running":true`)
}

// TestWebhookDeadLettersRedrivenThroughTheAPI: a receiver that fails
// makes dead letters, listed by the API; redriven through it once the
// receiver is back, they are delivered.
func TestWebhookDeadLettersRedrivenThroughTheAPI(t *testing.T) {
	emu := emutest.Start(t, emulator.Options{})
	recv := webhooktest.NewReceiver(t, hookSecret)
	recv.FailWith(http.StatusInternalServerError)
	cfg := testConfig(t, emu, filepath.Join(t.TempDir(), "wafleet.db"), 1)
	cfg.Webhooks = []config.Webhook{{Name: "flaky", URL: recv.URL, Secret: hookSecret, Events: []string{"connected"}, Timeout: 5 * time.Second, MaxAttempts: 2}}
	r := start(t, cfg)
	defer r.stop(t)
	r.connectAll(t, emu, 1, true)

	var dead []struct {
		ID       string `json:"id"`
		Endpoint string `json:"endpoint"`
		Kind     string `json:"kind"`
		Attempts int    `json:"attempts"`
		Reason   string `json:"reason"`
	}
	deadline := time.Now().Add(webhooktest.WaitTimeout)
	for len(dead) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no dead letter listed")
		}
		time.Sleep(50 * time.Millisecond)
		out := r.expect(t, "GET", "/api/webhooks/deadletters?endpoint=flaky", nil, http.StatusOK)
		if err := json.Unmarshal(out, &dead); err != nil {
			t.Fatal(err)
		}
	}
	if d := dead[0]; d.Endpoint != "flaky" || d.Kind != "connected" || d.Attempts != 2 || !strings.Contains(d.Reason, "500") {
		t.Fatalf("dead letter %+v", d)
	}
	r.expect(t, "GET", "/api/webhooks", nil, http.StatusOK, `"dead_letters":1`)

	recv.Recover()
	r.expect(t, "POST", "/api/webhooks/deadletters/"+dead[0].ID+"/redrive", nil, http.StatusAccepted)
	got := recv.WaitDelivered(t, 1)
	if got[0].Kind != "connected" {
		t.Fatalf("redriven delivery %+v", got[0])
	}
	r.expect(t, "GET", "/api/webhooks/deadletters", nil, http.StatusOK, "[]")
	r.expect(t, "POST", "/api/webhooks/deadletters/"+dead[0].ID+"/redrive", nil, http.StatusNotFound)
}
