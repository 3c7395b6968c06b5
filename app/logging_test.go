package app

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/internal/testkit"
)

// TestLogLinesHaveOneShape runs the demo (an emulator, three accounts
// paired and connected) with the service's logger and checks its JSON
// stream: every line is one JSON object, every key has one JSON type in
// every line, every transition is logged once with its from and to, and no
// error chain repeats a prefix ("store: store: …").
func TestLogLinesHaveOneShape(t *testing.T) {
	var logs, out testkit.LogBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- RunDemo(ctx, DemoOptions{
			Accounts:       3,
			ScanAfter:      100 * time.Millisecond,
			HTTPListen:     "127.0.0.1:0",
			Out:            &out,
			Logger:         NewLogger(&logs, slog.LevelDebug),
			HealthInterval: 50 * time.Millisecond,
		})
	}()
	deadline := time.Now().Add(60 * time.Second)
	// Stopped once each account has also shown the contact's greeting: a
	// message taken in while the accounts stop is logged after their
	// stopped line.
	for strings.Count(out.String(), ": connected\n") < 3 || !strings.Contains(out.String(), "health: 3 accounts: 3 connected") ||
		strings.Count(out.String(), ", this is Contact ") < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the demo did not connect 3 accounts in 60 s:\n%s", out.String())
		}
		select {
		case err := <-done:
			t.Fatalf("the demo ended early: %v\n%s", err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("demo: %v", err)
	}

	types, transitions, lines := checkLogShape(t, logs.String())
	if lines < 20 {
		t.Fatalf("only %d log lines:\n%s", lines, logs.String())
	}
	// Each account's story is one chain of transitions, each logged once:
	// every line starts from the state the previous one ended in (a
	// doubled or a missing line breaks the chain), from stopped through
	// connected to stopped at the end, with one "paired" on the way.
	for i := 1; i <= 3; i++ {
		acct := fmt.Sprintf("demo-%d", i)
		story := transitions[acct]
		cur, paired, connected := "stopped", 0, false
		for _, tr := range story {
			kind, fromTo, _ := strings.Cut(tr, " ")
			from, to, _ := strings.Cut(fromTo, "→")
			if from != cur {
				t.Errorf("%s: %q follows state %s: a transition is doubled or missing in\n%q", acct, tr, cur, story)
			}
			cur = to
			switch kind {
			case "paired":
				paired++
			case "connected":
				connected = true
			}
		}
		if paired != 1 || !connected || cur != "stopped" {
			t.Errorf("%s logged %q: want one paired, a connected and stopped at the end", acct, story)
		}
	}
	for _, key := range []string{"account", "from", "to", "kind", "oldest_pairing"} {
		if types[key] != "string" {
			t.Errorf("key %q is %q, want string (durations render as strings)", key, types[key])
		}
	}
}

// messageKinds are the account events about messages: they carry no
// state transition of the account, so checkLogShape leaves them out of
// the transitions it chains.
var messageKinds = map[events.Kind]bool{
	events.KindMessage: true, events.KindReceipt: true, events.KindIdentityChanged: true,
	events.KindMessageSent: true, events.KindMessageFailed: true,
}

// checkLogShape checks every line of logs: one JSON object, each key with
// one JSON type across lines, no text repeating an error prefix, account
// events with their state (to) and disconnects with their reason, no old
// doubled form. It returns the JSON type of each key, each account's
// events ("kind from→to", QR codes left out) and the number of lines.
func checkLogShape(t *testing.T, logs string) (types map[string]string, transitions map[string][]string, lines int) {
	t.Helper()
	types = map[string]string{} // key → JSON type of its first line
	firstSeen := map[string]string{}
	transitions = map[string][]string{} // account → "kind from→to", in order
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines++
		line := sc.Text()
		var obj map[string]any
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Fatalf("a log line is not one JSON object: %v\n%s", err, line)
		}
		walk("", obj, func(key, typ string) {
			if prev, ok := types[key]; ok && prev != typ {
				t.Errorf("key %q is %s here and %s in %s:\n%s", key, typ, prev, firstSeen[key], line)
			} else if !ok {
				types[key], firstSeen[key] = typ, line
			}
		})
		for _, v := range obj {
			if s, ok := v.(string); ok {
				if p := repeatedPrefix(s); p != "" {
					t.Errorf("a text repeats the prefix %q:\n%s", p, line)
				}
			}
		}
		msg, _ := obj["msg"].(string)
		if kind, ok := obj["kind"].(string); ok && msg == "account "+kind {
			if _, ok := obj["to"].(string); !ok {
				t.Errorf("an account event without its state (to):\n%s", line)
			}
			if kind == "disconnected" {
				if _, ok := obj["reason"].(string); !ok {
					t.Errorf("a disconnect without its reason:\n%s", line)
				}
			}
			if kind != "qr" && !messageKinds[events.Kind(kind)] {
				acct, _ := obj["account"].(string)
				transitions[acct] = append(transitions[acct], fmt.Sprintf("%s %v→%v", kind, obj["from"], obj["to"]))
			}
		}
		if strings.Contains(msg, "account ") && obj["event"] != nil {
			t.Errorf("an account line with an event field (the old, doubled form):\n%s", line)
		}
	}
	return types, transitions, lines
}

// prefixWord is one word of an error chain's prefix ("store", "app").
var prefixWord = regexp.MustCompile(`^[a-z][a-z0-9_/.-]*$`)

// repeatedPrefix returns a prefix word a chain of prefixes holds twice
// ("store: store: …", "store: load a1: store: closed"), or "".
func repeatedPrefix(s string) string {
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ": ") {
		if !prefixWord.MatchString(part) {
			continue
		}
		if seen[part] {
			return part + ":"
		}
		seen[part] = true
	}
	return ""
}

// walk calls f with the dotted key and JSON type of every field of obj.
func walk(prefix string, obj map[string]any, f func(key, typ string)) {
	for k, v := range obj {
		key := prefix + k
		switch v := v.(type) {
		case map[string]any:
			f(key, "object")
			walk(key+".", v, f)
		case []any:
			f(key, "array")
		case string:
			f(key, "string")
		case float64:
			f(key, "number")
		case bool:
			f(key, "bool")
		case nil:
			f(key, "null")
		}
	}
}

// TestRedisLoggerWritesJSON checks the adapter go-redis prints through: one
// JSON line of component redis, its text without the "redis: " prefix.
func TestRedisLoggerWritesJSON(t *testing.T) {
	var buf testkit.LogBuffer
	l := redisLogger{NewLogger(&buf, slog.LevelInfo).With("component", "redis")}
	l.Printf(context.Background(), "redis: connection pool: failed to dial after %d attempts: %v\n", 5, "dial tcp: refused")
	var obj map[string]any
	if err := json.Unmarshal([]byte(buf.String()), &obj); err != nil {
		t.Fatalf("not one JSON line: %v: %q", err, buf.String())
	}
	if obj["component"] != "redis" || obj["level"] != "WARN" || obj["msg"] != "connection pool: failed to dial after 5 attempts: dial tcp: refused" {
		t.Fatalf("line %v", obj)
	}
}
