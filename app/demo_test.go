package app

import (
	"context"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wafleet/wafleet/internal/testkit"
)

func TestDemoConnectsItsAccounts(t *testing.T) {
	var out, term testkit.LogBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- RunDemo(ctx, DemoOptions{
			Accounts:       3,
			ScanAfter:      100 * time.Millisecond,
			HTTPListen:     "127.0.0.1:0",
			Out:            &out,
			Terminal:       &term,
			Logger:         slog.New(slog.NewJSONHandler(io.Discard, nil)),
			HealthInterval: 50 * time.Millisecond,
		})
	}()
	// The server runs in day-one mode: the accounts ack its burst (20 each)
	// and upload prekeys, and it never has to end a stream.
	healthy := regexp.MustCompile(`health: 3 accounts: 3 connected.*server: \d+ stanzas pushed, (\d+) acked, 0 malformed acks, 0 ack kills, [3-9] prekey uploads`)
	acked := func() bool {
		m := healthy.FindAllStringSubmatch(out.String(), -1)
		if len(m) == 0 {
			return false
		}
		n, _ := strconv.Atoi(m[len(m)-1][1])
		return n >= 60
	}
	deadline := time.Now().Add(30 * time.Second)
	// Each account gets the contact's greeting through Signal and shows
	// it, then echoes it; an echo line is printed only from what the
	// contact's device decrypted (SignalDevice.Received).
	echoed := func() int { return strings.Count(out.String(), `(Contact 0001): "echo: Hello demo-`) }
	// Each then says hello in the group, which the contact decrypts with
	// the account's sender key.
	greetedGroup := func() int {
		return strings.Count(out.String(), `, decrypted by Contact 0001 (skmsg) with the account's sender key: "hello from demo-`)
	}
	for strings.Count(out.String(), ": connected\n") < 3 || !acked() || strings.Count(out.String(), ", this is Contact ") < 3 || echoed() < 3 || greetedGroup() < 3 {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("demo did not connect, ack, show a message, its echo and a group hello with 3 accounts in 30 s; output:\n%s", out.String())
		}
		select {
		case err := <-done:
			t.Fatalf("demo ended early: %v\n%s", err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("demo did not stop within 5 s")
	}
	for _, want := range []string{"demo-1: paired as ", "demo-3: connected", "dashboard and API: http://127.0.0.1:",
		`demo-2: message from 15551000001@s.whatsapp.net (Contact 0001): "Hello demo-2, this is Contact 0001"`,
		`demo-2 → +15551000001 (Contact 0001): "echo: Hello demo-2, this is Contact 0001"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if n := echoed(); n != 3 || strings.Contains(out.String(), "the echo") {
		t.Errorf("%d echoes shown, want one per account, none failed:\n%s", n, out.String())
	}
	if n := greetedGroup(); n != 3 || strings.Contains(out.String(), "the group hello") {
		t.Errorf("%d group hellos shown, want one per account, none failed:\n%s", n, out.String())
	}
	if !strings.Contains(term.String(), "Scan with WhatsApp") {
		t.Errorf("no QR code was drawn on the terminal")
	}
}

func TestDemoPairsByLinkCode(t *testing.T) {
	var out, term testkit.LogBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- RunDemo(ctx, DemoOptions{
			Accounts:   2,
			ScanAfter:  50 * time.Millisecond,
			HTTPListen: "127.0.0.1:0",
			Out:        &out,
			Terminal:   &term,
			Logger:     slog.New(slog.NewJSONHandler(io.Discard, nil)),
			LinkCode:   true,
		})
	}()
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(out.String(), ": connected\n") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the link-code demo did not connect 2 accounts in 30 s; output:\n%s", out.String())
		}
		select {
		case err := <-done:
			t.Fatalf("demo ended early: %v\n%s", err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("demo returned %v", err)
	}
	code := regexp.MustCompile(`demo-1: showing link code [1-9A-HJ-NP-TV-Z]{4}-[1-9A-HJ-NP-TV-Z]{4}; the phone types it`)
	if !code.MatchString(out.String()) || strings.Contains(out.String(), "QR code") {
		t.Errorf("output:\n%s", out.String())
	}
	if !strings.Contains(term.String(), "Link with phone number") || strings.Contains(term.String(), "Scan with WhatsApp") {
		t.Errorf("terminal:\n%s", term.String())
	}
}
