package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/wafleet/wafleet/events"
)

// NewLogger returns the service's JSON logger on w at level: one JSON
// object a line, every time.Duration written as a string ("1.5s"), so that
// a field has one JSON type in every line.
func NewLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: durationsAsStrings}))
}

// durationsAsStrings is the handler's ReplaceAttr: a duration becomes its
// String form.
func durationsAsStrings(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

// logEvent writes the one log line of an account event: its transition
// (from → to), why (reason, error, alarm), the reconnect attempt and the
// backoff delay. Never the QR content nor the link code: a link_code
// event says only that a link code is showing.
func (a *App) logEvent(e events.Event) {
	level := slog.LevelInfo
	switch e.Kind {
	case events.KindAlarm:
		level = slog.LevelError
	case events.KindDisconnected:
		level = slog.LevelWarn
	case events.KindQR:
		level = slog.LevelDebug
	}
	attrs := make([]slog.Attr, 0, 10)
	attrs = append(attrs, slog.String("account", e.Account), slog.String("kind", string(e.Kind)))
	if e.From != "" {
		attrs = append(attrs, slog.String("from", string(e.From)))
	}
	attrs = append(attrs, slog.String("to", string(e.State)))
	if e.Reason != "" {
		attrs = append(attrs, slog.String("reason", string(e.Reason)))
	}
	if e.Attempt != 0 {
		attrs = append(attrs, slog.Int("attempt", e.Attempt))
	}
	if e.Delay != 0 {
		attrs = append(attrs, slog.Duration("delay", e.Delay.Round(time.Millisecond)))
	}
	if e.JID != "" {
		attrs = append(attrs, slog.String("jid", e.JID))
	}
	if e.Alarm != "" {
		attrs = append(attrs, slog.String("alarm", string(e.Alarm)))
	}
	if e.Error != "" {
		attrs = append(attrs, slog.String("error", e.Error))
	}
	msg := "account " + string(e.Kind)
	if e.Kind == events.KindLinkCode {
		msg = "account link_code: a link code is showing"
	}
	a.logger.LogAttrs(context.Background(), level, msg, attrs...)
}

// redisLogger takes the Redis client's own messages (go-redis prints
// plain text through its package logger: pool and reconnect trouble) into
// the JSON stream, as warnings of component "redis".
type redisLogger struct{ logger *slog.Logger }

// Printf implements go-redis's internal.Logging.
func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.logger.WarnContext(ctx, strings.TrimSpace(strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: ")))
}
