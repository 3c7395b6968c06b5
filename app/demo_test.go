package app

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the demo's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestDemoConnectsItsAccounts(t *testing.T) {
	var out, term syncBuffer
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
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(out.String(), ": connected\n") < 3 || !strings.Contains(out.String(), "health: 3 accounts: 3 connected") {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("demo did not connect 3 accounts in 20 s; output:\n%s", out.String())
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
	for _, want := range []string{"demo-1: paired as ", "demo-3: connected", "dashboard and API: http://127.0.0.1:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(term.String(), "Scan with WhatsApp") {
		t.Errorf("no QR code was drawn on the terminal")
	}
}
