package emulator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/wafleet/wafleet/wire/jid"
)

// The control API (served on the same port as the chat endpoint). Every
// answer is JSON; errors are 4xx (5xx only for the server's own failures)
// with {"error":"…"}.
//
//	POST /scan     body: the QR text          → 200 {"jid":"…","lid":"…"}
//	POST /unlink   {"jid":"…"}                → 200 {"jid":"…"}
//	POST /kick     {"jid":"…","reason":"…"}   → 200 {"jid":"…","reason":"…"}
//	GET  /stats                               → 200 Stats
//	GET  /devices                             → 200 [Device…]
//	GET  /faults                              → 200 {"faults":[…]}
//	POST /faults   {"faults":["name",…]}      → 200 {"faults":[…]} (replaces them)
//
// /scan also accepts ?phone=NUMBER (ScanOptions.Phone).

// maxControlBody bounds a control request body.
const maxControlBody = 64 << 10

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(ChatPath, s.serveWS)
	mux.HandleFunc("/scan", only(http.MethodPost, s.handleScan))
	mux.HandleFunc("/unlink", only(http.MethodPost, s.handleUnlink))
	mux.HandleFunc("/kick", only(http.MethodPost, s.handleKick))
	mux.HandleFunc("/stats", only(http.MethodGet, s.handleStats))
	mux.HandleFunc("/devices", only(http.MethodGet, s.handleDevices))
	mux.HandleFunc("/faults", s.handleFaults)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("emulator: no endpoint %s %s", r.Method, r.URL.Path))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.enter() {
			writeError(w, http.StatusServiceUnavailable, ErrClosed)
			return
		}
		defer s.wg.Done()
		mux.ServeHTTP(w, r)
	})
}

func only(method string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method {
			w.Header().Set("Allow", method)
			writeError(w, http.StatusMethodNotAllowed, fmt.Errorf("emulator: %s wants %s", r.URL.Path, method))
			return
		}
		h(w, r)
	}
}

func (s *Server) handleScan(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxControlBody))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, errors.New("emulator: body too large"))
		return
	}
	linked, err := s.phone.ScanWith(r.Context(), string(body), ScanOptions{Phone: r.URL.Query().Get("phone")})
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"jid": linked.JID.String(), "lid": linked.LID.String()})
}

// deviceRequest is the body of /unlink and /kick.
type deviceRequest struct {
	JID    string `json:"jid"`
	Reason string `json:"reason"`
}

func readDeviceRequest(w http.ResponseWriter, r *http.Request) (deviceRequest, jid.JID, bool) {
	var req deviceRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxControlBody))
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("emulator: body must be JSON {\"jid\":…}: %w", err))
		return req, jid.JID{}, false
	}
	j, err := jid.Parse(req.JID)
	if err != nil || j.User == "" {
		writeError(w, http.StatusBadRequest, fmt.Errorf("emulator: invalid jid %q", req.JID))
		return req, jid.JID{}, false
	}
	return req, j, true
}

func (s *Server) handleUnlink(w http.ResponseWriter, r *http.Request) {
	req, j, ok := readDeviceRequest(w, r)
	if !ok {
		return
	}
	if err := s.phone.Unlink(j); err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"jid": req.JID})
}

func (s *Server) handleKick(w http.ResponseWriter, r *http.Request) {
	req, j, ok := readDeviceRequest(w, r)
	if !ok {
		return
	}
	if req.Reason == "" {
		req.Reason = "replaced"
	}
	if err := s.phone.Kick(j, req.Reason); err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"jid": req.JID, "reason": req.Reason})
}

func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Stats())
}

func (s *Server) handleDevices(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Devices())
}

func (s *Server) handleFaults(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
	case http.MethodPost:
		var req struct {
			Faults []string `json:"faults"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxControlBody)).Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("emulator: body must be JSON {\"faults\":[…]}: %w", err))
			return
		}
		f, err := ParseFaults(req.Faults...)
		if err == nil {
			err = s.SetFaults(f)
		}
		if err != nil {
			writeError(w, statusOf(err), err)
			return
		}
	default:
		w.Header().Set("Allow", "GET, POST")
		writeError(w, http.StatusMethodNotAllowed, errors.New("emulator: /faults wants GET or POST"))
		return
	}
	specs := s.Faults().Specs()
	if specs == nil {
		specs = []string{}
	}
	writeJSON(w, http.StatusOK, map[string][]string{"faults": specs})
}

// statusOf maps the package's errors to HTTP statuses.
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrBadQR), errors.Is(err, ErrKeyMismatch), errors.Is(err, ErrBadPhone),
		errors.Is(err, ErrBadReason), errors.Is(err, ErrUnknownFault), errors.Is(err, ErrBadFault):
		return http.StatusBadRequest
	case errors.Is(err, ErrUnknownRef), errors.Is(err, ErrUnknownDevice):
		return http.StatusNotFound
	case errors.Is(err, ErrRefExpired):
		return http.StatusGone
	case errors.Is(err, ErrAlreadyScanned), errors.Is(err, ErrNotConnected), errors.Is(err, ErrPairAborted):
		return http.StatusConflict
	case errors.Is(err, ErrPairRejected), errors.Is(err, ErrBadPairReply):
		return http.StatusUnprocessableEntity
	case errors.Is(err, ErrPairTimeout), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusRequestTimeout
	case errors.Is(err, ErrClosed):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"emulator: encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": strings.TrimSpace(err.Error())})
}
