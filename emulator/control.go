package emulator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/wafleet/wafleet/wire/jid"
)

// The control API (served on the same port as the chat endpoint). Every
// answer is JSON; errors are 4xx (5xx only for the server's own failures)
// with {"error":"…"}.
//
//	POST /scan     body: the QR text          → 200 {"jid":"…","lid":"…"}
//	POST /link     {"phone":"…","code":"…"}   → 200 {"jid":"…","lid":"…"} (the phone types a link code)
//	POST /unlink   {"jid":"…"}                → 200 {"jid":"…"}
//	POST /kick     {"jid":"…","reason":"…"}   → 200 {"jid":"…","reason":"…"}
//	GET  /stats                               → 200 Stats
//	GET  /devices                             → 200 [Device…]
//	GET  /faults                              → 200 {"faults":[…]}
//	POST /faults   {"faults":["name",…]}      → 200 {"faults":[…]} (replaces them)
//	GET  /dayone                              → 200 DayOne settings (JSON below)
//	POST /dayone   {"enabled":true,…}         → 200 the new settings; absent fields keep their value
//	GET  /version                             → 200 {"min":"…","latest":"…"}
//	POST /version  {"min":"…","latest":"…"}   → 200 the new policy; absent fields keep their value
//	GET  /sw.js                               → 200 text/javascript: WhatsApp Web's service-worker
//	                                            script with "client_revision" = latest's tertiary
//	POST /provision {"devices":[…]}           → 200 {"devices":[{"jid","lid","account","platform"}…]}
//	                                            (load runs only: Options.Provisioning, provision.go)
//	GET/POST /contacts, POST /contacts/send, GET /contacts/received, POST /phone/send: emulated
//	contacts (contacthttp.go)
//
// /scan also accepts ?phone=NUMBER (ScanOptions.Phone). The DayOne JSON is
// {"enabled":bool,"push_rate":float,"push_burst":int,"ack_deadline":"60s",
// "ping_interval":"30s","garbage_share":0}, durations as Go duration strings; an unknown
// field or a bad value is 400 with the field named.

// maxControlBody bounds a control request body.
const maxControlBody = 64 << 10

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(ChatPath, s.serveWS)
	mux.HandleFunc("/scan", only(http.MethodPost, s.handleScan))
	mux.HandleFunc("/link", only(http.MethodPost, s.handleLink))
	mux.HandleFunc("/unlink", only(http.MethodPost, s.handleUnlink))
	mux.HandleFunc("/kick", only(http.MethodPost, s.handleKick))
	mux.HandleFunc("/stats", only(http.MethodGet, s.handleStats))
	mux.HandleFunc("/devices", only(http.MethodGet, s.handleDevices))
	mux.HandleFunc("/faults", s.handleFaults)
	mux.HandleFunc("/dayone", s.handleDayOne)
	mux.HandleFunc("/version", s.handleVersion)
	mux.HandleFunc("/sw.js", only(http.MethodGet, s.handleSWJS))
	mux.HandleFunc("/provision", only(http.MethodPost, s.handleProvision))
	mux.HandleFunc("/contacts", s.handleContacts)
	mux.HandleFunc("/contacts/send", only(http.MethodPost, s.handleContactSend))
	mux.HandleFunc("/contacts/received", only(http.MethodGet, s.handleContactReceived))
	mux.HandleFunc("/phone/send", only(http.MethodPost, s.handlePhoneSend))
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

// handleLink is the operator typing a link code on the phone of a number:
// {"phone":"15551234567","code":"ABCD-EFGH"} (a leading + is accepted).
func (s *Server) handleLink(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Phone string `json:"phone"`
		Code  string `json:"code"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxControlBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("emulator: body must be JSON {\"phone\":…,\"code\":…}: %w", err))
		return
	}
	linked, err := s.phone.EnterLinkCode(r.Context(), strings.TrimPrefix(req.Phone, "+"), req.Code)
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

// dayOneJSON is the JSON form of DayOne.
type dayOneJSON struct {
	Enabled      bool    `json:"enabled"`
	PushRate     float64 `json:"push_rate"`
	PushBurst    int     `json:"push_burst"`
	AckDeadline  string  `json:"ack_deadline"`
	PingInterval string  `json:"ping_interval"`
	GarbageShare float64 `json:"garbage_share"`
}

func dayOneToJSON(d DayOne) dayOneJSON {
	return dayOneJSON{
		Enabled: d.Enabled, PushRate: d.PushRate, PushBurst: d.PushBurst,
		AckDeadline: d.AckDeadline.String(), PingInterval: d.PingInterval.String(), GarbageShare: d.GarbageShare,
	}
}

// applyDayOneJSON sets the fields present in body on d. Errors name the
// field and wrap ErrBadDayOne.
func applyDayOneJSON(d DayOne, body []byte) (DayOne, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return d, fmt.Errorf("%w: body must be a JSON object such as {\"enabled\":true,\"ack_deadline\":\"60s\"}", ErrBadDayOne)
	}
	for name, raw := range fields {
		var err error
		switch name {
		case "enabled":
			err = json.Unmarshal(raw, &d.Enabled)
		case "push_rate":
			err = json.Unmarshal(raw, &d.PushRate)
		case "push_burst":
			err = json.Unmarshal(raw, &d.PushBurst)
		case "garbage_share":
			err = json.Unmarshal(raw, &d.GarbageShare)
		case "ack_deadline", "ping_interval":
			var v string
			if err = json.Unmarshal(raw, &v); err == nil {
				var dur time.Duration
				if dur, err = time.ParseDuration(v); err == nil {
					if name == "ack_deadline" {
						d.AckDeadline = dur
					} else {
						d.PingInterval = dur
					}
				}
			}
			if err != nil {
				return d, fmt.Errorf("%w: %s must be a Go duration string such as \"60s\"", ErrBadDayOne, name)
			}
		default:
			return d, fmt.Errorf("%w: unknown field %q (fields: enabled, push_rate, push_burst, ack_deadline, ping_interval, garbage_share)", ErrBadDayOne, name)
		}
		if err != nil {
			return d, fmt.Errorf("%w: %s: %v", ErrBadDayOne, name, err)
		}
	}
	return d, d.validate()
}

func (s *Server) handleDayOne(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
	case http.MethodPost:
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxControlBody))
		if err != nil {
			writeError(w, http.StatusRequestEntityTooLarge, errors.New("emulator: body too large"))
			return
		}
		s.dayOneMu.Lock() // read-modify-write, atomic against concurrent POSTs
		d, err := applyDayOneJSON(s.DayOne(), body)
		if err == nil {
			err = s.setDayOneLocked(d)
		}
		s.dayOneMu.Unlock()
		if err != nil {
			writeError(w, statusOf(err), err)
			return
		}
	default:
		w.Header().Set("Allow", "GET, POST")
		writeError(w, http.StatusMethodNotAllowed, errors.New("emulator: /dayone wants GET or POST"))
		return
	}
	writeJSON(w, http.StatusOK, dayOneToJSON(s.DayOne()))
}

func (s *Server) handleVersion(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
	case http.MethodPost:
		var req struct {
			Min    *string `json:"min"`
			Latest *string `json:"latest"`
		}
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxControlBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("emulator: body must be JSON {\"min\":\"2.3000.N\",\"latest\":\"2.3000.N\"}: %w", err))
			return
		}
		cur := s.versions.Load()
		v := Versions{}
		if !cur.min.IsZero() {
			v.Min = cur.min.String()
		}
		if cur.latestSet {
			v.Latest = cur.latest.String()
		}
		if req.Min != nil {
			v.Min = *req.Min
		}
		if req.Latest != nil {
			v.Latest = *req.Latest
		}
		if err := s.SetVersions(v); err != nil {
			writeError(w, statusOf(err), err)
			return
		}
	default:
		w.Header().Set("Allow", "GET, POST")
		writeError(w, http.StatusMethodNotAllowed, errors.New("emulator: /version wants GET or POST"))
		return
	}
	writeJSON(w, http.StatusOK, s.Versions())
}

// handleSWJS serves the service-worker script a client reads the latest
// version from (version.go).
func (s *Server) handleSWJS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	io.WriteString(w, swJS(s.versions.Load().latest, time.Now()))
}

// statusOf maps the package's errors to HTTP statuses.
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrBadQR), errors.Is(err, ErrKeyMismatch), errors.Is(err, ErrBadPhone),
		errors.Is(err, ErrBadReason), errors.Is(err, ErrUnknownFault), errors.Is(err, ErrBadFault),
		errors.Is(err, ErrBadDayOne), errors.Is(err, ErrBadVersion), errors.Is(err, ErrBadLinkCode), errors.Is(err, ErrBadProvision):
		return http.StatusBadRequest
	case errors.Is(err, ErrProvisioningOff):
		return http.StatusForbidden
	case errors.Is(err, ErrUnknownRef), errors.Is(err, ErrUnknownDevice), errors.Is(err, ErrNoLinkCode):
		return http.StatusNotFound
	case errors.Is(err, ErrRefExpired):
		return http.StatusGone
	case errors.Is(err, ErrAlreadyScanned), errors.Is(err, ErrNotConnected), errors.Is(err, ErrPairAborted):
		return http.StatusConflict
	case errors.Is(err, ErrPairRejected), errors.Is(err, ErrBadPairReply), errors.Is(err, ErrLinkCodeMismatch),
		errors.Is(err, ErrBadLinkCodeReply):
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
