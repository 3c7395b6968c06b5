package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/webhook"
)

const hookSecret = "api-test-secret-0123456789"

// newWebhooksFixture serves the API with a webhook engine over a real
// bbolt outbox, and one known account, "alice".
func newWebhooksFixture(t *testing.T) (*fixture, *store.BoltStore) {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "wafleet.db"), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	eng, err := webhook.New(webhook.Config{Outbox: st, Endpoints: []webhook.Endpoint{{Name: "crm", URL: "https://crm.example/hook?token=tok", Secret: hookSecret}}})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(c *Config) { c.Webhooks = eng })
	f.bus.Publish(events.Event{Account: "alice", Kind: events.KindState, State: events.StateConnecting, Time: time.Now()})
	return f, st
}

func (f *fixture) send(t *testing.T, method, path, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, f.http.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, got
}

func TestWebhookRoutesWithoutEngine(t *testing.T) {
	f := newFixture(t, nil)
	for _, r := range [][2]string{{"GET", "/api/webhooks"}, {"GET", "/api/webhooks/deadletters"}, {"POST", "/api/webhooks/deadletters/1/redrive"}, {"GET", "/api/accounts/alice/webhooks"}, {"PUT", "/api/accounts/alice/webhooks"}, {"DELETE", "/api/accounts/alice/webhooks"}} {
		resp, body := f.send(t, r[0], r[1], "")
		wantError(t, resp, body, http.StatusServiceUnavailable)
	}
	resp, body := f.send(t, http.MethodPost, "/api/accounts/alice/webhooks", "")
	wantError(t, resp, body, http.StatusMethodNotAllowed)
	if allow := resp.Header.Get("Allow"); allow != "GET, HEAD, PUT, DELETE" {
		t.Fatalf("Allow = %q", allow)
	}
}

func TestAccountWebhooksCRUD(t *testing.T) {
	f, _ := newWebhooksFixture(t)
	const path = "/api/accounts/alice/webhooks"

	for _, tc := range []struct{ body, field string }{
		{``, "empty"},
		{`{}`, "webhooks: required"},
		{`{"webhooks":[{"url":"https://a.example/","secret":"` + hookSecret + `","colour":1}]}`, "colour"},
		{`{"webhooks":[{"url":"ftp://a.example/","secret":"` + hookSecret + `"}]}`, "webhooks[0].url"},
		{`{"webhooks":[{"url":"https://a.example/","secret":"tiny-sec"}]}`, "webhooks[0].secret"},
		{`{"webhooks":[{"url":"https://a.example/","secret":"` + hookSecret + `","events":["connected","typing"]}]}`, "webhooks[0].events[1]"},
		{`{"webhooks":[{"url":"https://a.example/","secret":"` + hookSecret + `","timeout":"soon"}]}`, "timeout"},
		{`{"webhooks":[{"url":"https://a.example/","secret":"` + hookSecret + `","timeout":120}]}`, "webhooks[0].timeout"},
		{`{"webhooks":[{"url":"https://a.example/","secret":"` + hookSecret + `","max_attempts":0.5}]}`, "max_attempts"},
		{`{"webhooks":[{"url":"https://a.example/","secret":"` + hookSecret + `"},{"url":"https://a.example/","secret":"` + hookSecret + `"}]}`, "webhooks[1].url"},
	} {
		resp, body := f.send(t, http.MethodPut, path, tc.body)
		wantError(t, resp, body, http.StatusBadRequest)
		if !strings.Contains(string(body), tc.field) || strings.Contains(string(body), "tiny-sec") || strings.Contains(string(body), hookSecret) {
			t.Errorf("PUT %s: %s; want the error to name %q and show no secret", tc.body, body, tc.field)
		}
	}
	resp, body := f.send(t, http.MethodPut, "/api/accounts/ghost/webhooks", `{"webhooks":[]}`)
	wantError(t, resp, body, http.StatusNotFound)

	resp, body = f.send(t, http.MethodPut, path, `{"webhooks":[{"url":"https://a.example/in?token=abc","secret":"`+hookSecret+`","events":["connected"],"timeout":"5s","max_attempts":3},{"url":"http://b.example/","secret":"`+hookSecret+`","timeout":2}]}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT: %d %s", resp.StatusCode, body)
	}
	var put accountWebhooksView
	if err := json.Unmarshal(body, &put); err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{body, get(t, f, path), get(t, f, "/api/webhooks")} {
		if strings.Contains(string(b), hookSecret) || strings.Contains(string(b), "token=") || strings.Contains(string(b), "secret") {
			t.Fatalf("an answer shows a secret or a URL's query: %s", b)
		}
	}
	if put.Account != "alice" || len(put.Webhooks) != 2 {
		t.Fatalf("PUT answered %+v", put)
	}
	byURL := map[string]accountWebhookView{}
	for _, w := range put.Webhooks {
		byURL[w.URL] = w
	}
	if a := byURL["https://a.example/in"]; a.Timeout != "5s" || a.MaxAttempts != 3 || len(a.Events) != 1 || a.Name == "" {
		t.Errorf("first endpoint stored as %+v", a)
	}
	if b := byURL["http://b.example/"]; b.Timeout != "2s" || b.MaxAttempts != webhook.DefaultMaxAttempts || len(b.Events) != 0 {
		t.Errorf("second endpoint stored as %+v", b)
	}
	var got accountWebhooksView
	if err := json.Unmarshal(get(t, f, path), &got); err != nil || len(got.Webhooks) != 2 {
		t.Fatalf("GET: %+v, %v", got, err)
	}
	var all []webhook.Status
	if err := json.Unmarshal(get(t, f, "/api/webhooks"), &all); err != nil || len(all) != 3 {
		t.Fatalf("GET /api/webhooks: %+v, %v", all, err)
	}
	if all[0].Name != "crm" || all[0].Source != "config" || all[0].URL != "https://crm.example/hook" || all[1].Source != "api" || all[1].Account != "alice" {
		t.Errorf("GET /api/webhooks: %+v", all)
	}

	resp, body = f.send(t, http.MethodDelete, path, "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"webhooks":[]`) {
		t.Fatalf("DELETE: %d %s", resp.StatusCode, body)
	}
	if err := json.Unmarshal(get(t, f, "/api/webhooks"), &all); err != nil || len(all) != 1 {
		t.Fatalf("after DELETE: %+v, %v", all, err)
	}
}

func get(t *testing.T, f *fixture, path string) []byte {
	t.Helper()
	resp, body := f.do(t, http.MethodGet, path)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	return body
}

func TestDeadLettersListAndRedrive(t *testing.T) {
	f, st := newWebhooksFixture(t)
	ctx := context.Background()
	if err := st.OpenEndpoint(ctx, "crm"); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 30, 5, 0, 0, 0, time.UTC)
	body := events.Marshal(events.Event{Account: "alice", Kind: events.KindConnected, State: events.StateConnected, Time: at}, "i-1")
	ids, err := st.Append(ctx, store.OutboxRecord{Account: "alice", Kind: "connected", Instance: "i-1", Time: at, Body: body})
	if err != nil {
		t.Fatal(err)
	}
	entries, err := st.Next(ctx, "crm", "test", 10)
	if err != nil || len(entries) != 1 || entries[0].ID != ids[0] {
		t.Fatalf("Next: %+v, %v", entries, err)
	}
	if err := st.Bury(ctx, store.DeadLetter{Endpoint: "crm", Entry: entries[0], Attempts: 10, Reason: "HTTP 503 Service Unavailable (after 10 attempts)", At: at}); err != nil {
		t.Fatal(err)
	}

	for _, q := range []string{"?limit=0", "?limit=1001", "?limit=x"} {
		resp, body := f.do(t, http.MethodGet, "/api/webhooks/deadletters"+q)
		wantError(t, resp, body, http.StatusBadRequest)
	}
	var list []deadLetterView
	if err := json.Unmarshal(get(t, f, "/api/webhooks/deadletters?endpoint=crm"), &list); err != nil || len(list) != 1 {
		t.Fatalf("dead letters: %+v, %v", list, err)
	}
	d := list[0]
	if d.Endpoint != "crm" || d.EventID != ids[0] || d.Kind != "connected" || d.Account != "alice" || d.Attempts != 10 || !strings.Contains(d.Reason, "503") || string(d.Payload) != string(body) {
		t.Fatalf("dead letter %+v", d)
	}
	if err := json.Unmarshal(get(t, f, "/api/webhooks/deadletters?endpoint=other"), &list); err != nil || len(list) != 0 {
		t.Fatalf("another endpoint's dead letters: %+v, %v", list, err)
	}

	resp, answer := f.send(t, http.MethodPost, "/api/webhooks/deadletters/"+d.ID+"/redrive", "")
	if resp.StatusCode != http.StatusAccepted || !strings.Contains(string(answer), `"redriven"`) {
		t.Fatalf("redrive: %d %s", resp.StatusCode, answer)
	}
	resp, answer = f.send(t, http.MethodPost, "/api/webhooks/deadletters/"+d.ID+"/redrive", "")
	wantError(t, resp, answer, http.StatusNotFound)
	entries, err = st.Next(ctx, "crm", "test", 10)
	if err != nil || len(entries) != 1 || entries[0].ID != ids[0] {
		t.Fatalf("the redriven entry is not queued again: %+v, %v", entries, err)
	}
}
