package connection

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A flood of undecryptable messages costs one log line per interval: the
// first failure in full, then a summary of the others by reason, logged by
// the first failure (or success, or the stop) after the interval.
func TestFailLogLimitsTheFlood(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	lines := func() []string {
		s := strings.TrimSpace(buf.String())
		buf.Reset()
		if s == "" {
			return nil
		}
		return strings.Split(s, "\n")
	}
	var f failLog
	t0 := time.Unix(1_700_000_000, 0)
	for i := range 1000 {
		reason := failBadMAC
		if i%10 == 0 {
			reason = failMalformed
		}
		f.failed(log, t0.Add(time.Duration(i)*time.Millisecond), reason, slog.String("id", "3EB0"))
	}
	got := lines()
	if len(got) != 1 || !strings.Contains(got[0], `msg="message not decrypted"`) || !strings.Contains(got[0], "reason=malformed") {
		t.Fatalf("1000 failures in a second logged %q; want the first one only", got)
	}

	// A success within the interval logs nothing; one after it, the
	// summary.
	f.flush(log, t0.Add(30*time.Second), false)
	if got := lines(); got != nil {
		t.Fatalf("logged %q within the interval", got)
	}
	f.failed(log, t0.Add(failLogInterval+time.Second), failNoSession)
	got = lines()
	if len(got) != 2 || !strings.Contains(got[0], "count=999") || !strings.Contains(got[0], "bad_mac=900") ||
		!strings.Contains(got[0], "malformed=99") || !strings.Contains(got[1], "reason=no_session") {
		t.Fatalf("after the interval: %q; want the summary of 999, then the new failure", got)
	}

	// The stop logs what is held, at once.
	f.failed(log, t0.Add(failLogInterval+2*time.Second), failDecrypt)
	f.flush(log, t0.Add(failLogInterval+3*time.Second), true)
	if got := lines(); len(got) != 1 || !strings.Contains(got[0], "count=1") || !strings.Contains(got[0], "decrypt=1") {
		t.Fatalf("at the stop: %q", got)
	}
	f.flush(log, t0.Add(2*failLogInterval), true)
	if got := lines(); got != nil {
		t.Fatalf("a second flush logged %q", got)
	}
}
