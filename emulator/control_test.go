package emulator_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/wire/node"
)

func TestControlAPI(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{})
	base := srv.ControlURL()
	d := newTestDevice(t)

	// Pair through POST /scan.
	c := register(t, srv, d)
	refs := c.pairDevice()
	type httpResult struct {
		status int
		body   map[string]any
	}
	ch := make(chan httpResult, 1)
	go func() {
		s, b := httpJSON(t, http.MethodPost, base+"/scan", qrCode(t, refs[0], d)+"\n")
		ch <- httpResult{s, b}
	}()
	id, p, err := c.pairSuccess(d)
	if err != nil {
		t.Fatal(err)
	}
	c.send(iq(id, "result", "", node.New("pair-device-sign").WithChildren(
		node.New("device-identity", node.IntAttr("key-index", int64(p.KeyIndex))).WithBytes(p.Reply))))
	c.expectTag("stream:error")
	r := <-ch
	if r.status != http.StatusOK || r.body["jid"] != d.jid.String() || r.body["lid"] != d.lid.String() {
		t.Fatalf("POST /scan: %d %v", r.status, r.body)
	}

	lc := login(t, srv, d)
	lc.expectTag("success")

	tests := []struct {
		name, method, path, body string
		status                   int
		want                     map[string]any // expected keys/values; "error" checked for presence
	}{
		{name: "scan garbage", method: "POST", path: "/scan", body: "not a qr", status: 400},
		{name: "scan unknown ref", method: "POST", path: "/scan", body: qrCode(t, "2@nope", d), status: 404},
		{name: "scan spent ref", method: "POST", path: "/scan", body: qrCode(t, refs[1], d), status: 410},
		{name: "scan with GET", method: "GET", path: "/scan", status: 405},
		{name: "kick bad json", method: "POST", path: "/kick", body: "{", status: 400},
		{name: "kick bad jid", method: "POST", path: "/kick", body: `{"jid":"","reason":"503"}`, status: 400},
		{name: "kick bad reason", method: "POST", path: "/kick", body: `{"jid":"` + d.jid.String() + `","reason":"nope"}`, status: 400},
		{name: "kick unknown device", method: "POST", path: "/kick", body: `{"jid":"15551112222:3@s.whatsapp.net","reason":"503"}`, status: 404},
		{name: "kick", method: "POST", path: "/kick", body: `{"jid":"` + d.jid.String() + `","reason":"515"}`, status: 200,
			want: map[string]any{"jid": d.jid.String(), "reason": "515"}},
		{name: "kick offline", method: "POST", path: "/kick", body: `{"jid":"` + d.jid.String() + `","reason":"515"}`, status: 409},
		{name: "unlink", method: "POST", path: "/unlink", body: `{"jid":"` + d.jid.String() + `"}`, status: 200,
			want: map[string]any{"jid": d.jid.String()}},
		{name: "unlink again", method: "POST", path: "/unlink", body: `{"jid":"` + d.jid.String() + `"}`, status: 404},
		{name: "stats with POST", method: "POST", path: "/stats", status: 405},
		{name: "unknown path", method: "GET", path: "/nope", status: 404},
		{name: "set unknown fault", method: "POST", path: "/faults", body: `{"faults":["nope"]}`, status: 400},
		{name: "set faults", method: "POST", path: "/faults", body: `{"faults":["slow-server-hello=1ms","bad-pair-hmac"]}`, status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := httpJSON(t, tt.method, base+tt.path, tt.body)
			if status != tt.status {
				t.Fatalf("%s %s: status %d (%v), want %d", tt.method, tt.path, status, body, tt.status)
			}
			if status >= 400 {
				if e, ok := body["error"].(string); !ok || e == "" {
					t.Fatalf("error answer without an error string: %v", body)
				}
				if strings.Contains(body["error"].(string), refs[0]) {
					t.Fatal("an error message contains a ref")
				}
			}
			for k, v := range tt.want {
				if body[k] != v {
					t.Fatalf("%s = %v, want %v (body %v)", k, body[k], v, body)
				}
			}
		})
	}
	lc.expectTag("stream:error")
	lc.expectClosed()
	if got := srv.Faults().Specs(); !slices.Equal(got, []string{"slow-server-hello=1ms", "bad-pair-hmac"}) {
		t.Fatalf("faults after POST /faults: %v", got)
	}

	// GET /stats has exactly the contract's keys.
	status, st := httpJSON(t, http.MethodGet, base+"/stats", "")
	if status != 200 {
		t.Fatalf("GET /stats: %d", status)
	}
	var keys []string
	for k := range st {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"ack_deadline_kills", "acks_malformed", "acks_ok", "active_connections",
		"companion_decrypt_failures", "companion_group_messages", "companion_messages", "companion_messages_refused",
		"companion_retry_answers", "companion_retry_receipts", "contact_messages", "contacts", "decrypt_failures", "devices_with_prekeys",
		"handshakes", "link_code_failures", "link_code_pairings", "link_code_requests", "logins", "logins_rejected",
		"max_connections_per_device", "messages_routed", "messages_undelivered", "pairings", "pings", "prekey_uploads",
		"provisioned", "receipts", "receipts_late", "receipts_overdue", "redeliveries", "registrations", "resends", "retry_receipts",
		"server_pings_answered", "server_pings_sent", "stanzas_pushed", "violations"}
	if !slices.Equal(keys, want) {
		t.Fatalf("stats keys %v, want %v", keys, want)
	}
	if st["pairings"] != 1.0 || st["logins"] != 1.0 || st["handshakes"] != 2.0 {
		t.Fatalf("stats %v", st)
	}
	if v, ok := st["violations"].([]any); !ok || len(v) != 0 {
		t.Fatalf("violations %v, want []", st["violations"])
	}
}
