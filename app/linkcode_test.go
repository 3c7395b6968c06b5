package app

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/store/redis/redistest"
)

// syncBuffer is a bytes.Buffer safe for the logger and terminal goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitKind waits for the next event of kind for account.
func (r *running) waitKind(t *testing.T, account string, kind events.Kind) events.Event {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case e := <-r.sub.C():
			if e.Account == account && e.Kind == kind {
				return e
			}
		case <-deadline:
			t.Fatalf("no %s event for %s within 30 s", kind, account)
		}
	}
}

// TestPairByPhoneNumber: accounts[].phone pairs by link code from the
// start, POST /api/accounts/{id}/pair with a phone switches a QR account
// to a code; the code shows in the view and on the terminal, never in the
// log; a restart logs in from the store without a new code.
func TestPairByPhoneNumber(t *testing.T) {
	emu := emutest.Start(t, emulator.Options{})
	storePath := filepath.Join(t.TempDir(), "wafleet.db")
	cfg := testConfig(t, emu, storePath, 2)
	cfg.Accounts[0].Phone = "+15557654321"
	cfg.Log.QRTerminal = true
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var logs, term syncBuffer
	r := startWith(t, cfg, Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Terminal: &term})
	byConfig, byAPI := cfg.Accounts[0].ID, cfg.Accounts[1].ID

	// From the config: a link code, no QR code.
	ev := r.waitKind(t, byConfig, events.KindLinkCode)
	view := getJSON(t, r.url+"/api/accounts/"+byConfig)
	if view["link_code"] != ev.LinkCode || view["link_code_expires_at"] == nil || view["qr"] != nil {
		t.Fatalf("view while the code shows: %v", view)
	}
	if _, err := emu.Phone().EnterLinkCode(context.Background(), "15557654321", ev.LinkCode); err != nil {
		t.Fatalf("EnterLinkCode: %v", err)
	}
	r.waitKind(t, byConfig, events.KindConnected)
	if view := getJSON(t, r.url+"/api/accounts/"+byConfig); view["link_code"] != nil || view["state"] != "connected" {
		t.Fatalf("view once connected: %v", view)
	}

	// Through the API: the QR account switches to a code.
	for deadline := time.Now().Add(30 * time.Second); ; {
		if a, ok := r.app.Board().Get(byAPI); ok && a.QR != nil {
			break // showing QR codes
		}
		if time.Now().After(deadline) {
			t.Fatal("the QR account shows no QR code within 30 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := http.Post(r.url+"/api/accounts/"+byAPI+"/pair", "application/json", strings.NewReader(`{"phone":"+15550001111"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var got struct {
		Code      string    `json:"code"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &got) != nil || len(got.Code) != 9 || time.Until(got.ExpiresAt) <= 0 {
		t.Fatalf("POST pair with a phone: %d %s", resp.StatusCode, body)
	}
	if _, err := emu.Phone().EnterLinkCode(context.Background(), "15550001111", got.Code); err != nil {
		t.Fatalf("EnterLinkCode: %v", err)
	}
	r.waitKind(t, byAPI, events.KindConnected)
	r.stop(t)

	if !strings.Contains(term.String(), ev.LinkCode) || !strings.Contains(term.String(), "Link with phone number") {
		t.Errorf("the terminal did not show the code:\n%s", term.String())
	}
	if strings.Contains(logs.String(), ev.LinkCode) || strings.Contains(logs.String(), got.Code) ||
		strings.Contains(logs.String(), ev.LinkCode[:4]+ev.LinkCode[5:]) {
		t.Error("a link code is in the log")
	}
	if !strings.Contains(logs.String(), "a link code is showing") {
		t.Error("the log does not say that a link code is showing")
	}

	// A restart logs both in from the store: no new code.
	second := start(t, cfg)
	second.connectAll(t, emu, 2, false)
	second.stop(t)
	if st := emu.Stats(); st.LinkCodePairings != 2 || st.Pairings != 2 || st.LinkCodeRequests != 2 || len(st.Violations) != 0 {
		t.Errorf("emulator stats %+v", st)
	}
}

func getJSON(t *testing.T, url string) map[string]any {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return m
}

// TestPairByPhoneAcrossTheFleet: POST .../pair with a phone sent to the
// instance that does not run the account reaches the owner, and the code
// it answers is the one the phone takes.
func TestPairByPhoneAcrossTheFleet(t *testing.T) {
	emu := emutest.Start(t, emulator.Options{})
	rs := redistest.Start(t, redistest.Config{})
	a := start(t, fleetConfig(t, emu, rs.Addr(), "inst-a", 1))
	defer a.stop(t)
	b := start(t, fleetConfig(t, emu, rs.Addr(), "inst-b", 1))
	defer b.stop(t)

	// The account shows QR codes on its owner; the request goes to the other.
	var owner, other *running
	deadline := time.After(30 * time.Second)
	for owner == nil {
		select {
		case e := <-a.sub.C():
			if e.Kind == events.KindQR {
				owner, other = a, b
			}
		case e := <-b.sub.C():
			if e.Kind == events.KindQR {
				owner, other = b, a
			}
		case <-deadline:
			t.Fatal("no QR code on either instance within 30 s")
		}
	}
	id := "acct-aa"
	resp, err := http.Post(other.url+"/api/accounts/"+id+"/pair", "application/json", strings.NewReader(`{"phone":"+15557654321"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var got struct {
		Code string `json:"code"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &got) != nil {
		t.Fatalf("POST pair with a phone to the other instance: %d %s", resp.StatusCode, body)
	}
	if v, _ := owner.app.Board().Get(id); v.LinkCode == nil || *v.LinkCode != got.Code {
		t.Fatalf("the answer %q is not the code the owner shows (%v)", got.Code, v.LinkCode)
	}
	if _, err := emu.Phone().EnterLinkCode(context.Background(), "15557654321", got.Code); err != nil {
		t.Fatalf("EnterLinkCode: %v", err)
	}
	owner.waitKind(t, id, events.KindConnected)
}

// TestCreateAccountWithPhone: an account created through the API with a
// phone pairs by link code, and keeps its number across a restart of the
// manager (the registry stores it).
func TestCreateAccountWithPhone(t *testing.T) {
	emu := emutest.Start(t, emulator.Options{})
	cfg := testConfig(t, emu, filepath.Join(t.TempDir(), "wafleet.db"), 0)
	r := start(t, cfg)
	resp, err := http.Post(r.url+"/api/accounts", "application/json", strings.NewReader(`{"id":"made","phone":"+15550002222"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /api/accounts with a phone: %d", resp.StatusCode)
	}
	r.waitKind(t, "made", events.KindLinkCode)
	r.stop(t)

	// Restarted before pairing: it shows a link code again, not QR codes.
	second := start(t, cfg)
	defer second.stop(t)
	ev := second.waitKind(t, "made", events.KindLinkCode)
	if _, err := emu.Phone().EnterLinkCode(context.Background(), "15550002222", ev.LinkCode); err != nil {
		t.Fatalf("EnterLinkCode: %v", err)
	}
	second.waitKind(t, "made", events.KindConnected)
}
