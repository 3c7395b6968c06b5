package app

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/wire/jid"
)

// post sends POST path to the app's API with the given headers (name,
// value pairs) and returns the status and the error message, if any.
func (r *running) post(t *testing.T, path string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, r.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return resp.StatusCode, e.Error
}

// waitEvent waits for an event of account id that matches.
func (r *running) waitEvent(t *testing.T, id, what string, match func(events.Event) bool) events.Event {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case e := <-r.sub.C():
			if e.Account == id && match(e) {
				return e
			}
		case <-deadline:
			t.Fatalf("account %s: no %s within 20 s", id, what)
		}
	}
}

// TestStoppedAccountRestartsWithoutWipe: an account the server stopped
// (session replaced) comes back with POST …/restart, and again on a config
// reload, as the same linked device: no new pairing, the store untouched.
// A cross-site logout is refused on the way.
func TestStoppedAccountRestartsWithoutWipe(t *testing.T) {
	emu := emutest.Start(t, emulator.Options{})
	storePath := filepath.Join(t.TempDir(), "wafleet.db")
	cfg := testConfig(t, emu, storePath, 1)
	id := cfg.Accounts[0].ID
	r := start(t, cfg)
	r.connectAll(t, emu, 1, true)
	acct, _ := r.app.Board().Get(id)
	device, err := jid.Parse(acct.JID)
	if err != nil {
		t.Fatalf("account JID %q: %v", acct.JID, err)
	}
	stop := func() {
		t.Helper()
		if err := emu.Phone().Kick(device, "replaced"); err != nil {
			t.Fatal(err)
		}
		r.waitEvent(t, id, "stop", func(e events.Event) bool { return e.State == events.StateStopped })
	}
	connected := func() {
		t.Helper()
		e := r.waitEvent(t, id, "connection", func(e events.Event) bool { return e.Kind == events.KindConnected })
		if e.JID != acct.JID {
			t.Fatalf("connected as %s, want the same device %s", e.JID, acct.JID)
		}
	}

	stop()
	if code, msg := r.post(t, "/api/accounts/"+id+"/logout", "Origin", "http://evil.example"); code != http.StatusForbidden {
		t.Fatalf("cross-site logout: %d %q, want 403", code, msg)
	}
	if code, msg := r.post(t, "/api/accounts/"+id+"/pair"); code != http.StatusConflict || msg != "pair: account is stopped: restart it" {
		t.Fatalf("pair of a stopped account: %d %q", code, msg)
	}
	if code, msg := r.post(t, "/api/accounts/nobody/restart"); code != http.StatusNotFound {
		t.Fatalf("restart of an unknown account: %d %q", code, msg)
	}
	if code, msg := r.post(t, "/api/accounts/"+id+"/restart", "Origin", r.url, "Sec-Fetch-Site", "same-origin"); code != http.StatusAccepted {
		t.Fatalf("restart: %d %q", code, msg)
	}
	connected()
	if code, msg := r.post(t, "/api/accounts/"+id+"/restart"); code != http.StatusConflict || msg != "restart: account is connected, not stopped" {
		t.Fatalf("restart of a connected account: %d %q", code, msg)
	}

	stop()
	if err := r.app.Reload(cfg.Accounts); err != nil {
		t.Fatal(err)
	}
	connected()
	r.stop(t)

	if st := emu.Stats(); st.Pairings != 1 || st.MaxConnectionsPerDevice > 1 || len(st.Violations) != 0 {
		t.Fatalf("emulator: %d pairings (want 1), max %d connections per device, violations %v", st.Pairings, st.MaxConnectionsPerDevice, st.Violations)
	}
	st, err := store.OpenBolt(storePath, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	dev, err := st.Load(context.Background(), id)
	if err != nil || !dev.Paired() || dev.JID != acct.JID {
		t.Fatalf("stored device: %v, %v; want %s kept", dev, err, acct.JID)
	}
}
