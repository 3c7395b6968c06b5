package connection

import (
	"context"
	"log/slog"
	"time"
)

// failLogInterval is how often at most an account logs a message that did
// not decrypt; the others of the interval are summed up.
const failLogInterval = time.Minute

// failLog keeps an account's log of messages that did not decrypt within
// one line per failLogInterval, whatever a broken or hostile peer sends:
// the first failure of an interval is logged in full; the others are only
// counted, by reason, and the first failure or success after the interval
// logs their count before anything else (so does the actor's stop). The
// metric (Observer.DecryptFailed) still counts every one. The actor owns
// it.
type failLog struct {
	since time.Time // when the last full line was logged (zero: never)
	held  int       // failures since then not logged
	// byReason counts the held failures, indexed as failReasons.
	byReason [len(failReasons)]int
}

// failed logs (or counts) one failure with the given attributes.
func (f *failLog) failed(log *slog.Logger, now time.Time, reason string, attrs ...slog.Attr) {
	f.flush(log, now, false)
	if !f.since.IsZero() {
		f.held++
		for i, r := range failReasons {
			if r == reason {
				f.byReason[i]++
				break
			}
		}
		return
	}
	f.since = now
	log.LogAttrs(context.Background(), slog.LevelWarn, "message not decrypted", append(attrs, slog.String("reason", reason))...)
}

// flush logs the count of failures held back once the interval is over
// (at once with force), and starts a new interval.
func (f *failLog) flush(log *slog.Logger, now time.Time, force bool) {
	if f.since.IsZero() || (!force && now.Sub(f.since) < failLogInterval) {
		return
	}
	if f.held > 0 {
		attrs := make([]slog.Attr, 0, 2+len(failReasons))
		attrs = append(attrs, slog.Int("count", f.held), slog.Duration("since", now.Sub(f.since)))
		for i, n := range f.byReason {
			if n > 0 {
				attrs = append(attrs, slog.Int(failReasons[i], n))
			}
		}
		log.LogAttrs(context.Background(), slog.LevelWarn, "more messages not decrypted (one line per account and minute at most)", attrs...)
	}
	*f = failLog{}
}
