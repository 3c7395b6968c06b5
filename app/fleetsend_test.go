package app

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/store/redis/redistest"
)

// sendVia posts a send to r's API and returns the status, the
// Retry-After header and the decoded body (id, duplicate or error).
func sendVia(t *testing.T, r *running, acct, body string) (int, string, map[string]any) {
	t.Helper()
	res, err := http.Post(r.url+"/api/accounts/"+acct+"/messages", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("POST messages answered %d %q", res.StatusCode, raw)
	}
	return res.StatusCode, res.Header.Get("Retry-After"), out
}

// waitDecrypted waits until every device of the contact decrypted n
// messages from our companions and returns their texts (the first
// device's).
func waitDecrypted(t *testing.T, c *emulator.Contact, n int) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, d := range c.Devices() {
		for len(d.Received()) < n {
			if time.Now().After(deadline) {
				t.Fatalf("%s decrypted %d messages, want %d", d.JID(), len(d.Received()), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	var texts []string
	for _, m := range c.Devices()[0].Received() {
		texts = append(texts, m.Message.GetConversation())
	}
	return texts
}

// TestSendsRoutedToTheOwner: in a fleet of two instances, a send posted
// to the instance that does not run the account reaches the owner, which
// sends it (the emulated contact decrypts it); the owner's refusals come
// back typed (400, 429 with Retry-After); the same idempotency key through
// the owner is a duplicate; an owner that does not take the request
// answers 503 saying nothing was sent; after a failover the key still
// names the first message, and the contact got each message once.
func TestSendsRoutedToTheOwner(t *testing.T) {
	emu := emutest.Start(t, emulator.Options{})
	rs := redistest.Start(t, redistest.Config{})
	configure := func(name string) *running {
		cfg := fleetConfig(t, emu, rs.Addr(), name, 1)
		cfg.Messages.SendPerMinute, cfg.Messages.SendBurst = 1, 2
		return start(t, cfg)
	}
	a, b := configure("inst-a"), configure("inst-b")
	const acct = "acct-aa"

	// Pair the account on whichever instance takes it.
	var owner, other *running
	deadline := time.After(30 * time.Second)
	for owner == nil {
		var e events.Event
		var from, to *running
		select {
		case e = <-a.sub.C():
			from, to = a, b
		case e = <-b.sub.C():
			from, to = b, a
		case <-deadline:
			t.Fatal("the account did not connect within 30 s")
		}
		switch e.Kind {
		case events.KindQR:
			go func(code string) { _, _ = emu.Phone().Scan(context.Background(), code) }(e.QR)
		case events.KindConnected:
			owner, other = from, to
		}
	}
	defer other.stop(t)
	ownerName := owner.app.cfg.Fleet.InstanceID
	contact, err := emu.AddContact("")
	if err != nil {
		t.Fatal(err)
	}
	to := "+" + contact.JID().User

	// Sent through the other instance, the message reaches the contact.
	code, _, first := sendVia(t, other, acct, `{"to":"`+to+`","text":"hello through the fleet","idempotency_key":"k1"}`)
	if code != http.StatusAccepted || first["id"] == "" {
		t.Fatalf("routed send: %d %v", code, first)
	}
	if got := waitDecrypted(t, contact, 1); got[0] != "hello through the fleet" || contact.Devices()[0].Received()[0].ID != first["id"] {
		t.Fatalf("the contact decrypted %q (id %s), want the routed message %s", got, contact.Devices()[0].Received()[0].ID, first["id"])
	}
	owner.waitEvent(t, acct, "message_sent", func(e events.Event) bool {
		return e.Kind == events.KindMessageSent && e.MessageID == first["id"]
	})

	// The same key through the owner: the first message, nothing sent.
	code, _, dup := sendVia(t, owner, acct, `{"to":"`+to+`","text":"hello through the fleet","idempotency_key":"k1"}`)
	if code != http.StatusOK || dup["id"] != first["id"] || dup["duplicate"] != true {
		t.Fatalf("the key repeated through the owner: %d %v, want 200 duplicate of %v", code, dup, first["id"])
	}
	// The owner's refusals come back typed through the other instance.
	code, _, bad := sendVia(t, other, acct, `{"to":"`+to+`","text":"x","idempotency_key":"a key with spaces"}`)
	if code != http.StatusBadRequest || !strings.Contains(bad["error"].(string), "printable ASCII") {
		t.Fatalf("a key the owner refuses: %d %v, want 400 with its reason", code, bad)
	}
	code, retry, limited := sendVia(t, other, acct, `{"to":"`+to+`","text":"over the limit"}`)
	if code != http.StatusTooManyRequests || retry == "" || retry == "0" {
		t.Fatalf("over the owner's rate limit: %d (Retry-After %q) %v, want 429", code, retry, limited)
	}

	// The owner stops reading its inbox (stuck, or going down) while it
	// holds the lease: 503 naming it, nothing sent. Its inbox reader is
	// waited for: a request pushed before the reader's wake-up would still
	// be taken.
	owner.app.fleet.view.stop()
	owner.app.fleet.view.wg.Wait()
	code, _, gone := sendVia(t, other, acct, `{"to":"`+to+`","text":"never sent","idempotency_key":"k2"}`)
	if reason, _ := gone["error"].(string); code != http.StatusServiceUnavailable || !strings.Contains(reason, ownerName) || !strings.Contains(reason, "nothing was done") {
		t.Fatalf("an owner that takes nothing: %d %v, want 503 naming %s", code, gone, ownerName)
	}

	// Failover: the other instance takes the account over, and the key
	// still names the first message there.
	owner.stop(t)
	other.waitEvent(t, acct, "connected after the failover", func(e events.Event) bool { return e.Kind == events.KindConnected })
	code, _, dup = sendVia(t, other, acct, `{"to":"`+to+`","text":"hello through the fleet","idempotency_key":"k1"}`)
	if code != http.StatusOK || dup["id"] != first["id"] || dup["duplicate"] != true {
		t.Fatalf("the key repeated after the failover: %d %v, want 200 duplicate of %v", code, dup, first["id"])
	}
	code, _, after := sendVia(t, other, acct, `{"to":"`+to+`","text":"after the failover","idempotency_key":"k2"}`)
	if code != http.StatusAccepted || after["id"] == first["id"] {
		t.Fatalf("a new key after the failover: %d %v", code, after)
	}
	// Each message once, in order: the duplicates, the refusals and the
	// request the stuck owner never took sent nothing.
	if got := waitDecrypted(t, contact, 2); len(got) != 2 || got[1] != "after the failover" {
		t.Fatalf("the contact decrypted %q, want the two messages once each", got)
	}
	if st := emu.Stats(); st.CompanionMessages != 2 || st.CompanionDecryptFailures != 0 || len(st.Violations) != 0 {
		t.Fatalf("emulator: %d messages from companions (want 2), %d decrypt failures, violations %v",
			st.CompanionMessages, st.CompanionDecryptFailures, st.Violations)
	}
}
