package api

import (
	"bufio"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/wafleet/wafleet/events"
)

// streamEvent is one event as GET /api/events sends it, in the "data:" line
// of a server-sent event. QR is set for "qr" events only.
type streamEvent struct {
	ID      string       `json:"id"`
	Kind    events.Kind  `json:"kind"`
	State   events.State `json:"state,omitempty"`
	JID     string       `json:"jid,omitempty"`
	QR      *string      `json:"qr,omitempty"`
	Error   string       `json:"error,omitempty"`
	Alarm   events.Alarm `json:"alarm,omitempty"`
	Attempt int          `json:"attempt,omitempty"`
	DelayMS int64        `json:"delay_ms,omitempty"`
	Time    *time.Time   `json:"time,omitempty"`
}

func toStreamEvent(e events.Event) streamEvent {
	out := streamEvent{
		ID:      e.Account,
		Kind:    e.Kind,
		State:   e.State,
		JID:     e.JID,
		Error:   e.Error,
		Alarm:   e.Alarm,
		Attempt: e.Attempt,
		DelayMS: e.Delay.Milliseconds(),
	}
	if e.Kind == events.KindQR && e.QR != "" {
		qr := e.QR
		out.QR = &qr
	}
	if !e.Time.IsZero() {
		t := e.Time
		out.Time = &t
	}
	return out
}

// handleEvents streams account events as server-sent events until the
// client goes away, the stream's lifetime is over or the server shuts down.
// ?id=ACCOUNT keeps one account's events only; ?key= is the dashboard's
// stream key, which gives its streams the reserved slots. A stream that
// falls behind loses events (the bus never waits for it); clients re-read
// /api/accounts after reconnecting.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Events == nil {
		writeError(w, http.StatusServiceUnavailable, "event stream is not available")
		return
	}
	only := r.URL.Query().Get("id")
	if only != "" && !validID(only) {
		writeError(w, http.StatusBadRequest, "bad account id: want 1 to 64 of A-Z a-z 0-9 . _ -")
		return
	}
	key := r.URL.Query().Get("key")
	dashboard := subtle.ConstantTimeCompare([]byte(key), []byte(s.streamKey)) == 1
	release, err := s.streams.acquire(clientAddress(r), dashboard)
	if err != nil {
		code := http.StatusServiceUnavailable
		if errors.Is(err, errClientStreams) {
			code = http.StatusTooManyRequests
		}
		w.Header().Set("Retry-After", "10")
		writeError(w, code, err.Error())
		return
	}
	defer release()

	rc := http.NewResponseController(w)
	// The server's WriteTimeout would cut the stream: lift it, and bound
	// each write instead so a stuck client cannot hold the handler.
	_ = rc.SetWriteDeadline(time.Time{})
	sub := s.cfg.Events.Subscribe(s.cfg.StreamBuffer)
	defer sub.Close()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // tell nginx-like proxies not to buffer
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 4096)

	var seq uint64
	send := func(write func()) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteWait))
		write()
		if bw.Flush() != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send(func() { bw.WriteString("retry: 3000\n: connected\n\n") }) {
		return
	}
	heartbeat := time.NewTicker(s.cfg.Heartbeat)
	defer heartbeat.Stop()
	lifetime := time.NewTimer(s.cfg.StreamLifetime)
	defer lifetime.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.closing:
			return
		case <-lifetime.C:
			return // the client reconnects after the retry hint
		case <-heartbeat.C:
			if !send(func() { bw.WriteString(": ping\n\n") }) {
				return
			}
		case e, ok := <-sub.C():
			if !ok {
				return
			}
			if only != "" && e.Account != only {
				continue
			}
			data, err := json.Marshal(toStreamEvent(e))
			if err != nil {
				continue // cannot happen: plain strings and numbers
			}
			seq++
			if !send(func() {
				bw.WriteString("id: ")
				bw.WriteString(strconv.FormatUint(seq, 10))
				bw.WriteString("\ndata: ")
				bw.Write(data) // JSON has no raw newlines
				bw.WriteString("\n\n")
			}) {
				return
			}
		}
	}
}
