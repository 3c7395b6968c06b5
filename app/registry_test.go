package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/status"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/redis/redistest"
)

// send runs one request against the app's HTTP API with a JSON body (nil:
// none) and returns the status and the body.
func (r *running) send(t *testing.T, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, r.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// expect runs a request and checks its status and that the body holds
// each of want.
func (r *running) expect(t *testing.T, method, path string, body any, code int, want ...string) []byte {
	t.Helper()
	got, out := r.send(t, method, path, body)
	if got != code {
		t.Fatalf("%s %s: %d %s, want %d", method, path, got, out, code)
	}
	for _, w := range want {
		if !bytes.Contains(out, []byte(w)) {
			t.Fatalf("%s %s: body %s does not say %q", method, path, out, w)
		}
	}
	return out
}

// registryIDs lists the registry's records as "id/source".
func registryIDs(t *testing.T, a *App) []string {
	t.Helper()
	recs, err := a.store.Accounts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, r := range recs {
		out = append(out, r.ID+"/"+r.Source)
	}
	return out
}

// waitFor polls cond for up to 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30 s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAccountsAtRuntime: an account created through the API pairs, is
// refused twice, changes its device name (reconnecting as the same
// device), survives a YAML reload and a restart of the process on the same
// store, and is deleted with its device archived. The YAML's account
// cannot be changed or deleted through the API.
func TestAccountsAtRuntime(t *testing.T) {
	emu := emutest.Start(t, emulator.Options{})
	storePath := filepath.Join(t.TempDir(), "wafleet.db")
	cfg := testConfig(t, emu, storePath, 1)
	yamlID := cfg.Accounts[0].ID
	r := start(t, cfg)
	r.connectAll(t, emu, 1, true)

	out := r.expect(t, "POST", "/api/accounts", map[string]string{"id": "made", "device_name": "Caja 1"}, http.StatusCreated, `"id":"made"`)
	var view status.Account
	if err := json.Unmarshal(out, &view); err != nil || view.ID != "made" || view.State == "" {
		t.Fatalf("created view %s: %v", out, err)
	}
	r.connectAll(t, emu, 1, true)
	made, _ := r.app.Board().Get("made")
	if got := registryIDs(t, r.app); fmt.Sprint(got) != fmt.Sprint([]string{yamlID + "/config", "made/api"}) {
		t.Fatalf("registry %v", got)
	}

	// Refusals.
	r.expect(t, "POST", "/api/accounts", map[string]string{"id": "made"}, http.StatusConflict, "account exists")
	r.expect(t, "POST", "/api/accounts", map[string]string{"id": yamlID}, http.StatusConflict, "account exists")
	r.expect(t, "POST", "/api/accounts", map[string]string{"id": "a/b"}, http.StatusBadRequest, "id:")
	r.expect(t, "POST", "/api/accounts", map[string]string{"id": "x", "proxy": "ftp://h:1"}, http.StatusBadRequest, "proxy scheme")
	r.expect(t, "POST", "/api/accounts", map[string]string{"id": "x", "device_name": strings.Repeat("n", 65)}, http.StatusBadRequest, "device_name")
	r.expect(t, "POST", "/api/accounts", `{"id":"x","owner":"me"}`, http.StatusBadRequest, "unknown field")
	r.expect(t, "POST", "/api/accounts", `{"id":"x"} {}`, http.StatusBadRequest)
	r.expect(t, "POST", "/api/accounts", `{"id":"x","device_name":"`+strings.Repeat("n", 10<<10)+`"}`, http.StatusRequestEntityTooLarge)
	r.expect(t, "PATCH", "/api/accounts/"+yamlID, map[string]string{"device_name": "x"}, http.StatusConflict, "account is configured in the YAML file: change it there")
	r.expect(t, "PATCH", "/api/accounts/nobody", map[string]string{"device_name": "x"}, http.StatusNotFound)
	r.expect(t, "PATCH", "/api/accounts/made", `{}`, http.StatusBadRequest, "nothing to change")
	r.expect(t, "DELETE", "/api/accounts/"+yamlID, nil, http.StatusConflict, "remove it there")
	r.expect(t, "DELETE", "/api/accounts/nobody", nil, http.StatusNotFound)
	r.expect(t, "DELETE", "/api/accounts/made?logout=maybe", nil, http.StatusBadRequest, "logout")
	r.expect(t, "POST", "/api/accounts/made/pair", nil, http.StatusConflict, "pair: account is connected: log it out to pair it again")
	r.expect(t, "POST", "/api/accounts/made/restart", nil, http.StatusConflict, "restart: account is connected, not stopped")
	if got := registryIDs(t, r.app); len(got) != 2 {
		t.Fatalf("refused requests changed the registry: %v", got)
	}

	// PATCH restarts the account with its device: it logs in again as the
	// same linked device, without a QR code.
	r.expect(t, "PATCH", "/api/accounts/made", map[string]string{"device_name": "Caja 2"}, http.StatusOK, `"action":"update"`)
	r.waitEvent(t, "made", "stop for the change", func(e events.Event) bool { return e.State == events.StateStopped })
	if e := r.waitEvent(t, "made", "login after the change", func(e events.Event) bool { return e.Kind == events.KindConnected }); e.JID != made.JID {
		t.Fatalf("after PATCH connected as %s, want %s", e.JID, made.JID)
	}
	if rec, err := r.app.store.Account(context.Background(), "made"); err != nil || rec.DeviceName != "Caja 2" {
		t.Fatalf("registry after PATCH: %+v, %v", rec, err)
	}

	// A reload of the YAML file, even one without any account, keeps the
	// API's account.
	if err := r.app.Reload(nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the YAML account to stop", func() bool { _, ok := r.app.Board().Get(yamlID); return !ok })
	if got := registryIDs(t, r.app); fmt.Sprint(got) != "[made/api]" {
		t.Fatalf("registry after a reload without accounts: %v", got)
	}
	if v, ok := r.app.Board().Get("made"); !ok || v.State != events.StateConnected {
		t.Fatalf("the API account after the reload: %+v", v)
	}
	r.stop(t)

	// A new process on the same store runs both again, without a QR code.
	r = start(t, cfg)
	r.connectAll(t, emu, 2, false)

	// DELETE stops the account, forgets it and archives its device.
	r.expect(t, "DELETE", "/api/accounts/made", nil, http.StatusNoContent)
	if _, ok := r.app.Board().Get("made"); ok {
		t.Fatal("a deleted account is still on the board")
	}
	if got := registryIDs(t, r.app); fmt.Sprint(got) != fmt.Sprint([]string{yamlID + "/config"}) {
		t.Fatalf("registry after DELETE: %v", got)
	}
	r.expect(t, "DELETE", "/api/accounts/made", nil, http.StatusNotFound)
	var archived []store.ArchiveEntry
	r.callAPI(t, "GET", "/api/archive", &archived)
	if len(archived) != 1 || archived[0].ID != "made" || archived[0].Reason != "deleted" || archived[0].JID != made.JID {
		t.Fatalf("archive after DELETE: %+v", archived)
	}
	r.stop(t)
	if st := emu.Stats(); st.Pairings != 2 || st.MaxConnectionsPerDevice > 1 || len(st.Violations) != 0 {
		t.Fatalf("emulator: %d pairings (want 2), max %d connections per device, violations %v", st.Pairings, st.MaxConnectionsPerDevice, st.Violations)
	}
}

// TestDeleteWithLogout: ?logout=true unlinks the device from the phone
// before the account is forgotten.
func TestDeleteWithLogout(t *testing.T) {
	emu := emutest.Start(t, emulator.Options{})
	cfg := testConfig(t, emu, filepath.Join(t.TempDir(), "wafleet.db"), 0)
	r := start(t, cfg)
	defer r.stop(t)
	r.expect(t, "POST", "/api/accounts", map[string]string{"id": "gone"}, http.StatusCreated)
	r.connectAll(t, emu, 1, true)
	if n := len(emu.Devices()); n != 1 {
		t.Fatalf("the phone lists %d devices, want 1", n)
	}
	r.expect(t, "DELETE", "/api/accounts/gone?logout=true", nil, http.StatusNoContent)
	if devs := emu.Devices(); len(devs) != 0 {
		t.Fatalf("after DELETE ?logout=true the phone still lists %v", devs)
	}
	if _, ok := r.app.Board().Get("gone"); ok {
		t.Fatal("a deleted account is still on the board")
	}
	if got := registryIDs(t, r.app); len(got) != 0 {
		t.Fatalf("registry after DELETE: %v", got)
	}
}

// TestAccountCRUDRace: concurrent creates and deletes of one id over HTTP
// leave the registry and the running accounts in agreement, with at most
// one actor for the id.
func TestAccountCRUDRace(t *testing.T) {
	emu := emutest.Start(t, emulator.Options{})
	cfg := testConfig(t, emu, filepath.Join(t.TempDir(), "wafleet.db"), 0)
	r := start(t, cfg)
	defer r.stop(t)
	waitReady(t, r.app)
	var wg sync.WaitGroup
	var mu sync.Mutex
	created := 0
	for w := range 6 {
		wg.Go(func() {
			for i := range 5 {
				if (w+i)%2 == 0 {
					code, body := r.send(t, "POST", "/api/accounts", map[string]string{"id": "race"})
					if code != http.StatusCreated && code != http.StatusConflict {
						t.Errorf("POST: %d %s", code, body)
					}
					if code == http.StatusCreated {
						mu.Lock()
						created++
						mu.Unlock()
					}
				} else {
					code, body := r.send(t, "DELETE", "/api/accounts/race", nil)
					if code != http.StatusNoContent && code != http.StatusNotFound {
						t.Errorf("DELETE: %d %s", code, body)
					}
				}
			}
		})
	}
	wg.Wait()
	if created == 0 {
		t.Fatal("no create succeeded")
	}
	_, err := r.app.store.Account(context.Background(), "race")
	inRegistry := err == nil
	waitFor(t, "the board to agree with the registry", func() bool {
		_, onBoard := r.app.Board().Get("race")
		return onBoard == inRegistry
	})
	if inRegistry {
		// The one actor runs: it shows QR codes.
		r.waitEvent(t, "race", "a QR code", func(e events.Event) bool { return e.Kind == events.KindQR })
	}
	if n := r.app.running.Load(); n != map[bool]int64{true: 1, false: 0}[inRegistry] {
		t.Fatalf("the app runs %d accounts; the registry has race: %v", n, inRegistry)
	}
}

// TestFleetAccountsAtRuntime: two instances on one Redis; an account
// created through one runs on exactly one of them and is in both
// registries; deleted through either, it stops and its device is archived.
func TestFleetAccountsAtRuntime(t *testing.T) {
	emu := emutest.Start(t, emulator.Options{})
	rs := redistest.Start(t, redistest.Config{})
	a := start(t, fleetConfig(t, emu, rs.Addr(), "inst-a", 1))
	b := start(t, fleetConfig(t, emu, rs.Addr(), "inst-b", 1))
	defer b.stop(t)
	defer a.stop(t)
	waitReady(t, a.app)
	waitReady(t, b.app)

	a.expect(t, "POST", "/api/accounts", map[string]string{"id": "shared"}, http.StatusCreated)
	b.expect(t, "POST", "/api/accounts", map[string]string{"id": "shared"}, http.StatusConflict)
	for _, r := range []*running{a, b} {
		waitFor(t, "both instances to follow the registry", func() bool { return r.app.running.Load() == 2 })
	}
	owner, jid := pairOnEither(t, emu, a, b, "shared")
	_, onA := a.app.Board().Get("shared")
	_, onB := b.app.Board().Get("shared")
	if onA == onB {
		t.Fatalf("the account is on a's board: %v, on b's: %v; want exactly one", onA, onB)
	}

	// Deleted through the instance that does not run it.
	other := map[*running]*running{a: b, b: a}[owner]
	other.expect(t, "DELETE", "/api/accounts/shared", nil, http.StatusNoContent)
	for _, r := range []*running{a, b} {
		waitFor(t, "the account to stop", func() bool { _, ok := r.app.Board().Get("shared"); return !ok })
		waitFor(t, "both instances to drop it", func() bool { return r.app.running.Load() == 1 })
	}
	entries, err := a.app.fleet.admin.ListArchive(context.Background())
	if err != nil || len(entries) != 1 || entries[0].ID != "shared" || entries[0].Reason != "deleted" || entries[0].JID != jid {
		t.Fatalf("archive: %+v, %v", entries, err)
	}

	// Another one, deleted with logout through the instance that does not
	// run it: the owner unlinks it from the phone first.
	b.expect(t, "POST", "/api/accounts", map[string]string{"id": "linked"}, http.StatusCreated)
	owner, jid = pairOnEither(t, emu, a, b, "linked")
	other = map[*running]*running{a: b, b: a}[owner]
	other.expect(t, "DELETE", "/api/accounts/linked?logout=true", nil, http.StatusNoContent)
	for _, d := range emu.Devices() {
		if d.JID == jid {
			t.Fatalf("after DELETE ?logout=true the phone still lists %s", jid)
		}
	}
	waitFor(t, "the account to stop", func() bool { _, ok := owner.app.Board().Get("linked"); return !ok })

	// Deleted through the instance that runs it, then created again: it
	// runs again, pairing afresh, its old device in the archive.
	a.expect(t, "POST", "/api/accounts", map[string]string{"id": "again"}, http.StatusCreated)
	owner, jid = pairOnEither(t, emu, a, b, "again")
	owner.expect(t, "DELETE", "/api/accounts/again", nil, http.StatusNoContent)
	owner.expect(t, "POST", "/api/accounts", map[string]string{"id": "again"}, http.StatusCreated)
	if _, newJID := pairOnEither(t, emu, a, b, "again"); newJID == jid {
		t.Fatalf("the account created again connected as its deleted device %s", jid)
	}
	entries, err = a.app.fleet.admin.ListArchive(context.Background())
	if err != nil || len(entries) < 2 || entries[0].ID != "again" || entries[0].JID != jid {
		t.Fatalf("archive: %+v, %v; want the first device of again first", entries, err)
	}
	if st := emu.Stats(); st.MaxConnectionsPerDevice > 1 || len(st.Violations) != 0 {
		t.Fatalf("emulator: max %d connections per device, violations %v", st.MaxConnectionsPerDevice, st.Violations)
	}
}

// pairOnEither scans the QR codes of account id on whichever of a and b
// runs it until it connects, and returns that instance and its JID.
func pairOnEither(t *testing.T, emu *emulator.Server, a, b *running, id string) (*running, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		var e events.Event
		var who *running
		select {
		case e = <-a.sub.C():
			who = a
		case e = <-b.sub.C():
			who = b
		case <-ctx.Done():
			t.Fatalf("account %s did not connect", id)
		}
		if e.Account != id {
			continue
		}
		switch e.Kind {
		case events.KindQR:
			if _, err := emu.Phone().Scan(ctx, e.QR); err != nil {
				t.Logf("scan for %s: %v", id, err) // a code that expired meanwhile; the next one will do
			}
		case events.KindConnected:
			return who, e.JID
		}
	}
}

// TestFleetRegistryOutlivesRedisDataLoss: when Redis loses its data, the
// instance writes back the registry it last read: the API's account and
// the YAML's.
func TestFleetRegistryOutlivesRedisDataLoss(t *testing.T) {
	emu := emutest.Start(t, emulator.Options{})
	rs := redistest.Start(t, redistest.Config{})
	r := startWith(t, fleetConfig(t, emu, rs.Addr(), "inst-a", 1), Options{RegistryCheck: 50 * time.Millisecond})
	defer r.stop(t)
	waitReady(t, r.app)
	r.expect(t, "POST", "/api/accounts", map[string]string{"id": "kept", "proxy": "socks5://u:p@127.0.0.1:1"}, http.StatusCreated)
	want := fmt.Sprint(registryIDs(t, r.app))
	if err := rs.Client(t).FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the registry to be written back", func() bool { return fmt.Sprint(registryIDs(t, r.app)) == want })
	if rec, err := r.app.store.Account(context.Background(), "kept"); err != nil || rec.Proxy != "socks5://u:p@127.0.0.1:1" || rec.Source != store.SourceAPI {
		t.Fatalf("written back: %+v, %v", rec, err)
	}
}

// TestFleetAccountCRUDRace: concurrent creates and deletes of one id sent
// to both instances of a fleet end with the registry and the instances in
// agreement: the account runs on exactly one instance if it is in the
// registry, on none otherwise.
func TestFleetAccountCRUDRace(t *testing.T) {
	emu := emutest.Start(t, emulator.Options{})
	rs := redistest.Start(t, redistest.Config{})
	a := start(t, fleetConfig(t, emu, rs.Addr(), "inst-a", 0))
	b := start(t, fleetConfig(t, emu, rs.Addr(), "inst-b", 0))
	defer b.stop(t)
	defer a.stop(t)
	waitReady(t, a.app)
	waitReady(t, b.app)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 4 {
				r := []*running{a, b}[(w+i)%2]
				if (w+i/2)%2 == 0 {
					if code, body := r.send(t, "POST", "/api/accounts", map[string]string{"id": "race"}); code != http.StatusCreated && code != http.StatusConflict {
						t.Errorf("POST: %d %s", code, body)
					}
				} else if code, body := r.send(t, "DELETE", "/api/accounts/race", nil); code != http.StatusNoContent && code != http.StatusNotFound {
					t.Errorf("DELETE: %d %s", code, body)
				}
			}
		})
	}
	wg.Wait()
	_, err := a.app.store.Account(context.Background(), "race")
	inRegistry := err == nil
	want := map[bool]int{true: 1, false: 0}[inRegistry]
	waitFor(t, "the instances to agree with the registry", func() bool {
		n := 0
		for _, r := range []*running{a, b} {
			if _, ok := r.app.Board().Get("race"); ok {
				n++
			}
		}
		return n == want && a.app.running.Load() == int64(want) && b.app.running.Load() == int64(want)
	})
}
