package app

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wafleet/wafleet/actors/connection"
	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/store"
)

// control posts a JSON body to the emulator's control API.
func control(t *testing.T, url string, body any) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s %s: %s", url, b, resp.Status)
	}
}

// callAPI runs one request through the app's HTTP API from loopback.
func (r *running) callAPI(t *testing.T, method, path string, out any) {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	req.Host = "127.0.0.1:8080"
	rec := httptest.NewRecorder()
	r.app.httpAPI.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, path, rec.Code, rec.Body)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
		t.Fatalf("%s %s: %s: %v", method, path, rec.Body, err)
	}
}

// waitEvents reads events until done says enough, within 30 s.
func (r *running) waitEvents(t *testing.T, what string, done func(events.Event) bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case e := <-r.sub.C():
			if done(e) {
				return
			}
		case <-deadline:
			t.Fatalf("%s: not within 30 s", what)
		}
	}
}

// TestMassLogoutIsHeldUntilConfirmed: the server logs the whole fleet of
// 10 out in one pass (failure 401 on every login, every connection
// kicked through the emulator's control API). With safety.mass_logout_share
// 0.2, two devices are archived, the mass_logout alarm fires and the eight
// others stop with their devices in place; POST /api/wipes/confirm lets
// them archive and pair again.
func TestMassLogoutIsHeldUntilConfirmed(t *testing.T) {
	emu := emutest.Start(t, emulator.Options{})
	const n = 10
	cfg := testConfig(t, emu, filepath.Join(t.TempDir(), "wafleet.db"), n)
	cfg.Safety.MassLogoutShare, cfg.Safety.MassLogoutMin, cfg.Safety.MassLogoutWindow = 0.2, 3, time.Hour
	r := start(t, cfg)
	defer r.stop(t)
	r.connectAll(t, emu, n, true)
	ctx := context.Background()
	jids := map[string]string{}
	for _, a := range r.app.Board().List() {
		jids[a.ID] = a.JID
	}

	control(t, emu.ControlURL()+"/faults", map[string]any{"faults": []string{"login-failure-401"}})
	for _, j := range jids {
		control(t, emu.ControlURL()+"/kick", map[string]string{"jid": j, "reason": "515"})
	}
	held, repaired := map[string]bool{}, map[string]bool{}
	r.waitEvents(t, "8 wipes held and 2 accounts pairing again", func(e events.Event) bool {
		switch {
		case e.Kind == events.KindAlarm && e.Alarm == events.AlarmMassLogout:
			held[e.Account] = true
		case e.Kind == events.KindQR:
			repaired[e.Account] = true
		}
		return len(held) == n-2 && len(repaired) == 2
	})

	var wipes struct {
		Paused bool     `json:"paused"`
		Held   []string `json:"held"`
	}
	r.callAPI(t, http.MethodGet, "/api/wipes", &wipes)
	if !wipes.Paused || len(wipes.Held) != n-2 {
		t.Fatalf("GET /api/wipes = %+v; want paused with 8 accounts", wipes)
	}
	if v := metricValue(t, r.app, "wafleet_wipes_paused"); v != n-2 {
		t.Errorf("wafleet_wipes_paused = %v; want %d", v, n-2)
	}
	for id := range held {
		view, _ := r.app.Board().Get(id)
		if view.State != events.StateStopped || !strings.Contains(view.LastError, "awaits an operator") {
			t.Errorf("held account %s: %s %q", id, view.State, view.LastError)
		}
		d, err := r.app.store.Load(ctx, id)
		if err != nil || d.JID != jids[id] {
			t.Errorf("held account %s: stored device %v, %v; want its paired device untouched", id, d, err)
		}
	}
	var archived []store.ArchiveEntry
	r.callAPI(t, http.MethodGet, "/api/archive", &archived)
	if len(archived) != 2 || !repaired[archived[0].ID] || !repaired[archived[1].ID] || archived[0].JID != jids[archived[0].ID] {
		t.Fatalf("GET /api/archive = %+v; want the devices of %v", archived, repaired)
	}

	var confirmed struct {
		Confirmed []string `json:"confirmed"`
	}
	r.callAPI(t, http.MethodPost, "/api/wipes/confirm", &confirmed)
	if !slices.Equal(confirmed.Confirmed, wipes.Held) {
		t.Fatalf("confirmed %v; want %v", confirmed.Confirmed, wipes.Held)
	}
	r.waitEvents(t, "the held accounts pair again", func(e events.Event) bool {
		if e.Kind == events.KindQR {
			delete(held, e.Account)
		}
		return len(held) == 0
	})
	if list, err := r.app.store.ListArchive(ctx); err != nil || len(list) != n {
		t.Fatalf("archive after confirm: %d entries, %v; want %d", len(list), err, n)
	}
}

// TestArchivePrunedAtStart: archived devices older than
// store.archive_retention are removed when the manager starts.
func TestArchivePrunedAtStart(t *testing.T) {
	emu := emutest.Start(t, emulator.Options{})
	path := filepath.Join(t.TempDir(), "wafleet.db")
	st, err := store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, id := range []string{"old-1", "old-2"} {
		d, err := connection.NewDevice(id)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Save(ctx, d); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Archive(ctx, id, "failure 401"); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	cfg := testConfig(t, emu, path, 0)
	cfg.Store.ArchiveRetention = time.Nanosecond
	r := start(t, cfg)
	defer r.stop(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var list []store.ArchiveEntry
		if r.app.isReady() {
			r.callAPI(t, http.MethodGet, "/api/archive", &list)
			if len(list) == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("archive %+v 30 s after start; want it pruned", list)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
