package api

import (
	"bufio"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/wafleet/wafleet/store"
)

// MaxResume bounds the entries a reconnecting stream is sent from the
// history before the live ones. A client further behind gets a "missed"
// event instead and should re-read /api/accounts.
const MaxResume = 1000

// maxEventIDLen bounds a Last-Event-ID (outbox ids are 20 digits, or a
// Redis stream id).
const maxEventIDLen = 64

// missedEvent is the data of a "missed" event: the stream skipped
// entries (trimmed from the history, or more than MaxResume behind).
type missedEvent struct {
	Kind   string `json:"kind"` // "missed"
	After  string `json:"after"`
	Reason string `json:"reason"`
}

// handleEvents streams account events as server-sent events until the
// client goes away, the stream's lifetime is over or the server shuts down.
// Every event is an outbox entry: "id:" is its outbox id and "data:" its
// body (events.Wire: no QR content). ?id=ACCOUNT keeps one account's
// events only; ?key= is the dashboard's stream key, which gives its
// streams the reserved slots. A client that reconnects with the id of
// the last event it saw (the Last-Event-ID header, which EventSource
// sends by itself, or ?last_event_id=) is sent the entries after it
// first, then the live ones, without a gap or a duplicate between them.
// A stream that falls behind the live entries reads them back from the
// outbox; entries the history no longer holds, or more than MaxResume,
// are announced by a "missed" event instead.
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
	resume, field := r.Header.Get("Last-Event-ID"), "Last-Event-ID"
	if q := r.URL.Query().Get("last_event_id"); q != "" {
		resume, field = q, "last_event_id"
	}
	if len(resume) > maxEventIDLen {
		writeError(w, http.StatusBadRequest, "bad "+field+": an event id is at most 64 bytes")
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

	// Subscribed before the history is read: nothing falls between them.
	sub := s.cfg.Events.Subscribe(s.cfg.StreamBuffer)
	defer sub.Close()
	st := &eventStream{s: s, r: r, only: only, last: resume}
	var backlog []store.OutboxEntry
	var gap bool
	if resume != "" {
		backlog, gap, err = st.read(r.Context())
		switch {
		case errors.Is(err, store.ErrInvalidOutboxID):
			writeError(w, http.StatusBadRequest, "bad "+field+": not an event id of this server")
			return
		case err != nil:
			s.cfg.Logger.Warn("read the event history", "error", err)
			writeError(w, http.StatusServiceUnavailable, "event history is not available")
			return
		}
	}

	st.rc = http.NewResponseController(w)
	// The server's WriteTimeout would cut the stream: lift it, and bound
	// each write instead so a stuck client cannot hold the handler.
	_ = st.rc.SetWriteDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // tell nginx-like proxies not to buffer
	w.WriteHeader(http.StatusOK)
	st.bw = bufio.NewWriterSize(w, 4096)

	if !st.send(func() { st.bw.WriteString("retry: 3000\n: connected\n\n") }) {
		return
	}
	if resume != "" && !st.deliver(backlog, gap) {
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
			if !st.send(func() { st.bw.WriteString(": ping\n\n") }) {
				return
			}
		case <-sub.Lagged():
			if st.last == "" {
				// Nothing sent yet: the live entries from the next one on.
				if !st.missed("the stream fell behind") {
					return
				}
				continue
			}
			entries, gap, err := st.read(r.Context())
			if err != nil {
				return // the client reconnects and resumes
			}
			if !st.deliver(entries, gap) {
				return
			}
		case e, ok := <-sub.C():
			if !ok {
				return
			}
			if st.last != "" && !store.OutboxIDLess(st.last, e.ID) {
				continue // sent already, from the history
			}
			if !st.entry(e) {
				return
			}
		}
	}
}

// eventStream is one GET /api/events response being written.
type eventStream struct {
	s    *Server
	r    *http.Request
	rc   *http.ResponseController
	bw   *bufio.Writer
	only string
	last string // the id of the last entry sent or skipped
}

// read returns the entries after st.last, at most MaxResume+1; gap says
// that some were trimmed from the history.
func (st *eventStream) read(ctx context.Context) ([]store.OutboxEntry, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	entries, err := st.s.cfg.Events.After(ctx, st.last, MaxResume+1)
	if errors.Is(err, store.ErrTrimmed) {
		return entries, true, nil
	}
	return entries, false, err
}

// deliver sends entries read from the history, or, when some are missing
// (gap) or there are more than MaxResume, a "missed" event that skips to
// the newest of them.
func (st *eventStream) deliver(entries []store.OutboxEntry, gap bool) bool {
	if gap || len(entries) > MaxResume {
		reason := "the history no longer holds them"
		if !gap {
			reason = "more than 1000 events behind"
		}
		if len(entries) > 0 {
			st.last = entries[len(entries)-1].ID
		}
		return st.missed(reason)
	}
	for _, e := range entries {
		if !st.entry(e) {
			return false
		}
	}
	return true
}

// entry sends one entry, unless the stream keeps another account's only.
func (st *eventStream) entry(e store.OutboxEntry) bool {
	st.last = e.ID
	if st.only != "" && e.Account != st.only {
		return true
	}
	return st.send(func() {
		st.bw.WriteString("id: ")
		st.bw.WriteString(e.ID)
		st.bw.WriteString("\ndata: ")
		st.bw.Write(e.Body) // JSON has no raw newlines
		st.bw.WriteString("\n\n")
	})
}

// missed sends a "missed" event, with the id the stream resumes after.
func (st *eventStream) missed(reason string) bool {
	data, _ := json.Marshal(missedEvent{Kind: "missed", After: st.last, Reason: reason}) // strings only: cannot fail
	return st.send(func() {
		if st.last != "" {
			st.bw.WriteString("id: ")
			st.bw.WriteString(st.last)
			st.bw.WriteString("\n")
		}
		st.bw.WriteString("event: missed\ndata: ")
		st.bw.Write(data)
		st.bw.WriteString("\n\n")
	})
}

// send writes, flushes and bounds the write; false when the client is
// gone or stuck.
func (st *eventStream) send(write func()) bool {
	_ = st.rc.SetWriteDeadline(time.Now().Add(streamWriteWait))
	write()
	if st.bw.Flush() != nil {
		return false
	}
	return st.rc.Flush() == nil
}
