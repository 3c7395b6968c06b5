package app

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
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
