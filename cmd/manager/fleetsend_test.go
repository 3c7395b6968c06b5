package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wafleet/wafleet/store/redis/redistest"
)

// waitCompanionMessages waits until the emulator routed n messages of our
// accounts, and checks that it routed no more and that every device
// decrypted its part.
func (e *emulatorProcess) waitCompanionMessages(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(fleetPatience)
	for {
		st := e.stats(t)
		if st.CompanionMessages >= n {
			if st.CompanionMessages != n || st.CompanionRefused != 0 || st.CompanionDecryptFailures != 0 || len(st.Violations) != 0 {
				t.Fatalf("emulator: %+v, want %d messages, all decrypted", st, n)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("emulator routed %d messages of ours, want %d", st.CompanionMessages, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sendAnswer is the body of an answer of POST /api/accounts/{id}/messages.
type sendAnswer struct {
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate"`
	Error     string `json:"error"`
}

func (i *instance) send(t *testing.T, acct, body string) (int, sendAnswer) {
	t.Helper()
	code, raw := i.request(t, http.MethodPost, "/api/accounts/"+acct+"/messages", body)
	var a sendAnswer
	if err := json.Unmarshal([]byte(raw), &a); err != nil {
		t.Fatalf("send through %s: %d %q", i.name, code, raw)
	}
	return code, a
}

// TestFleetSendRoutedAcrossAKill: a send posted to the instance that does
// not run the account is sent by the owner (the emulated contact decrypts
// it); the owner is killed with SIGKILL; the same request, repeated
// through the survivor until it answers 200, is never sent again (503
// while the lease names the dead owner, 409 until the survivor is
// connected), and the survivor then sends new messages on the same
// sessions.
func TestFleetSendRoutedAcrossAKill(t *testing.T) {
	bin := managerBinary(t)
	dir := t.TempDir()
	emu := startEmulatorProcess(t, bin)
	rs := redistest.Start(t, redistest.Config{})
	const n = 2
	instances := []*instance{
		startInstance(t, bin, dir, "inst-1", emu, oneRedis(rs.Addr()), n),
		startInstance(t, bin, dir, "inst-2", emu, oneRedis(rs.Addr()), n),
	}
	waitFleet(t, instances, emu, n, true, fleetPatience)
	waitSettled(t, instances, emu, n, 2*fleetLeaseTTL)
	connected := waitFleet(t, instances, emu, n, false, fleetPatience).connected
	const acct = "acct-000"
	owner, other := instances[0], instances[1]
	if connected[acct] != owner.name {
		owner, other = other, owner
	}

	to := emu.addContact(t)
	first := `{"to":"` + to + `","text":"before the kill","idempotency_key":"k-1"}`

	code, sent := other.send(t, acct, first)
	if code != http.StatusAccepted || sent.ID == "" {
		t.Fatalf("send of %s (on %s) through %s: %d %+v", acct, owner.name, other.name, code, sent)
	}
	emu.waitCompanionMessages(t, 1)
	if code, dup := owner.send(t, acct, first); code != http.StatusOK || dup.ID != sent.ID || !dup.Duplicate {
		t.Fatalf("the same key through the owner %s: %d %+v, want 200 duplicate of %s", owner.name, code, dup, sent.ID)
	}

	if err := owner.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-owner.done
	start := time.Now()
	answers := map[int]int{}
	for {
		code, a := other.send(t, acct, first)
		answers[code]++
		if answers[code] == 1 {
			t.Logf("%s after the kill: %d %q", time.Since(start).Round(time.Millisecond), code, a.Error)
		}
		switch code {
		case http.StatusOK:
			if a.ID != sent.ID || !a.Duplicate {
				t.Fatalf("the key repeated after the kill: %+v, want a duplicate of %s", a, sent.ID)
			}
		case http.StatusServiceUnavailable, http.StatusConflict:
			if a.Error == "" {
				t.Fatalf("%d without a reason", code)
			}
			if time.Since(start) > fleetPatience {
				t.Fatalf("still %d %q after %s", code, a.Error, fleetPatience)
			}
			time.Sleep(200 * time.Millisecond)
			continue
		default:
			t.Fatalf("the key repeated after the kill: %d %+v", code, a)
		}
		break
	}
	t.Logf("answers to the repeated request: %v", answers)

	code, again := other.send(t, acct, `{"to":"`+to+`","text":"after the kill","idempotency_key":"k-2"}`)
	if code != http.StatusAccepted || again.ID == sent.ID {
		t.Fatalf("a new send after the failover: %d %+v", code, again)
	}
	emu.waitCompanionMessages(t, 2)
}

// addContact adds an emulated contact and returns its phone number
// ("+" and digits).
func (e *emulatorProcess) addContact(t *testing.T) string {
	t.Helper()
	resp, err := http.Post(e.controlURL+"/contacts", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatalf("POST /contacts: %v", err)
	}
	defer resp.Body.Close()
	var contact struct {
		JID string `json:"jid"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&contact); err != nil || resp.StatusCode != http.StatusOK || contact.JID == "" {
		t.Fatalf("POST /contacts: %s, %v", resp.Status, err)
	}
	user, _, _ := strings.Cut(contact.JID, "@")
	return "+" + user
}
