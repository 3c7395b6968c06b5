package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/wafleet/wafleet/status"
)

// Route patterns (Go 1.22 ServeMux). Each GET route also answers HEAD.
const (
	routeDashboard = "/{$}"
	routeFavicon   = "/favicon.ico"
	routeHealthz   = "/healthz"
	routeReadyz    = "/readyz"
	routeMetrics   = "/metrics"
	routeAccounts  = "/api/accounts"
	routeAccount   = "/api/accounts/{id}"
	routePair      = "/api/accounts/{id}/pair"
	routeRestart   = "/api/accounts/{id}/restart"
	routeLogout    = "/api/accounts/{id}/logout"
	routeQR        = "/api/accounts/{id}/qr.png"
	routeEvents    = "/api/events"
	routeOpenAPI   = "/api/openapi.json"
)

// route is one method and pattern the server registered.
type route struct {
	Method, Pattern string
}

// routes builds the mux and records every route in s.routeTable. Several
// methods may share a path; each path gets one handler for the methods it
// does not serve.
func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	var paths []string
	allowed := make(map[string][]string) // path → its methods, HEAD after GET
	handle := func(method, path string, h http.HandlerFunc) {
		mux.HandleFunc(method+" "+path, h)
		s.routeTable = append(s.routeTable, route{Method: method, Pattern: path})
		if allowed[path] == nil {
			paths = append(paths, path)
		}
		allowed[path] = append(allowed[path], method)
		if method == http.MethodGet {
			allowed[path] = append(allowed[path], http.MethodHead)
		}
	}
	handle(http.MethodGet, routeDashboard, s.handleDashboard)
	handle(http.MethodGet, routeFavicon, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent) // no icon; spares browsers a 404
	})
	handle(http.MethodGet, routeHealthz, s.handleHealthz)
	handle(http.MethodGet, routeReadyz, s.handleReadyz)
	handle(http.MethodGet, routeMetrics, s.handleMetrics)
	handle(http.MethodGet, routeAccounts, s.handleList)
	handle(http.MethodGet, routeAccount, s.handleGet)
	handle(http.MethodPost, routePair, s.handlePair)
	handle(http.MethodPost, routeRestart, s.handleAction("restart", Controller.Restart))
	handle(http.MethodPost, routeLogout, s.handleAction("logout", Controller.Logout))
	handle(http.MethodPost, routeMessages, s.handleMessages)
	handle(http.MethodGet, routeQR, s.handleQR)
	handle(http.MethodGet, routeEvents, s.handleEvents)
	handle(http.MethodGet, routeOpenAPI, s.handleOpenAPI)
	handle(http.MethodPost, routeConsoleLogin, s.handleLogin)
	handle(http.MethodPost, routeConsoleLogout, s.handleLogout)
	handle(http.MethodGet, routeInstances, s.handleInstances)
	s.archiveRoutes(handle)
	s.webhookRoutes(handle)
	s.adminRoutes(handle)
	// The same path without a method catches every other method: the
	// mux's own 405 is plain text, ours is JSON like every error.
	for _, path := range paths {
		allow := strings.Join(allowed[path], ", ")
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such route")
	})
	return mux
}

// secure adds the headers every response carries and, on every route but
// the probes, refuses foreign Host headers, requests from other sites'
// pages, and requests without the bearer token when one is set.
func (s *Server) secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		// Account views carry QR codes: nothing here may be cached.
		h.Set("Cache-Control", "no-store")
		if !strings.HasPrefix(r.URL.Path, "/") { // "*" or an absolute-form oddity
			writeError(w, http.StatusBadRequest, "bad request path")
			return
		}
		if r.URL.Path == routeHealthz || r.URL.Path == routeReadyz {
			next.ServeHTTP(w, r) // probes tell nothing about the accounts
			return
		}
		switch {
		case !s.hosts.allows(r):
			writeError(w, http.StatusForbidden, "Host is neither a loopback name or address nor one of http.allowed_hosts")
			return
		case crossSite(r):
			writeError(w, http.StatusForbidden, "cross-site request refused: use the dashboard on this server or a client outside the browser")
			return
		case s.cfg.Token != "" && r.URL.Path == routeConsoleLogin:
			// The login needs no session; crossSite above keeps other
			// sites' pages from logging the browser in (login CSRF).
		case s.cfg.Token != "" && !s.authorized(r) && !s.sessionAllows(r):
			if r.URL.Path == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
				s.handleLoginPage(w, r, http.StatusOK) // a browser without a session
				return
			}
			h.Set("WWW-Authenticate", `Bearer realm="wafleet"`)
			if _, ok := s.cookieSession(r); ok {
				writeError(w, http.StatusForbidden, "missing or wrong "+csrfHeader+" header: changes made with the console's session need the token of its page")
				return
			}
			writeError(w, http.StatusUnauthorized, "missing or wrong bearer token, and no console session: log in at /")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authorized reports whether r carries the configured bearer token. The
// tokens are compared as SHA-256 digests in constant time, so neither the
// content nor the length of the token leaks through timing.
func (s *Server) authorized(r *http.Request) bool {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	return s.tokenMatches(strings.TrimSpace(token))
}

// validID reports whether id matches ^[A-Za-z0-9._-]{1,64}$ and is not
// "." or ".." (path segments with a meaning of their own).
func validID(id string) bool {
	if len(id) == 0 || len(id) > 64 || id == "." || id == ".." {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// pathID returns the {id} of r, or writes 400 and returns false.
func pathID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if !validID(id) {
		writeError(w, http.StatusBadRequest, "bad account id: want 1 to 64 of A-Z a-z 0-9 . _ -, not . or ..")
		return "", false
	}
	return id, true
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok"))
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	var reasons []string
	if s.cfg.Ready != nil {
		reasons = s.cfg.Ready(r.Context())
	}
	if len(reasons) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, readiness{Error: "not ready: " + strings.Join(reasons, "; "), Ready: false, Reasons: reasons})
		return
	}
	writeJSON(w, http.StatusOK, readiness{Ready: true})
}

// readiness is the body of GET /readyz.
type readiness struct {
	Error   string   `json:"error,omitempty"` // as every error body
	Ready   bool     `json:"ready"`
	Reasons []string `json:"reasons,omitempty"`
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Metrics == nil {
		writeError(w, http.StatusNotFound, "metrics are not enabled")
		return
	}
	s.cfg.Metrics.ServeHTTP(w, r)
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	pq, paged, ok := parsePageQuery(w, r)
	if !ok {
		return
	}
	list, ok := s.accounts(w, r)
	if !ok {
		return
	}
	if paged {
		writeJSON(w, http.StatusOK, pageOf(list, pq))
		return
	}
	if list == nil {
		list = []status.Account{} // "[]", never "null"
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	a, ok := s.account(w, r, id)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, a)
}

// actionResult is the body of an accepted pair, restart or logout.
type actionResult struct {
	ID     string `json:"id"`
	Action string `json:"action"`
	Status string `json:"status"`
}

func (s *Server) handleAction(action string, call func(Controller, context.Context, string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(w, r)
		if !ok {
			return
		}
		if s.cfg.Controller == nil {
			writeError(w, http.StatusServiceUnavailable, "account control is not available")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ActionTimeout)
		defer cancel()
		err := call(s.cfg.Controller, ctx, id)
		code, msg := actionStatus(err)
		if code >= 500 {
			s.log.Error("account action failed", "account", id, "action", action, "error", err)
		} else {
			s.log.Info("account action", "account", id, "action", action, "status", code)
		}
		if err != nil {
			writeError(w, code, action+": "+msg)
			return
		}
		writeJSON(w, code, actionResult{ID: id, Action: action, Status: "accepted"})
	}
}

// actionStatus maps a Controller result to an HTTP status and message.
func actionStatus(err error) (int, string) {
	var refused *Refused
	var unavailable *Unavailable
	switch {
	case err == nil:
		return http.StatusAccepted, ""
	case errors.Is(err, ErrUnknownAccount):
		return http.StatusNotFound, "unknown account"
	case errors.As(err, &refused):
		return http.StatusConflict, refused.Reason
	case errors.As(err, &unavailable):
		return http.StatusServiceUnavailable, unavailable.Reason
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "timed out"
	case errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, "canceled"
	default:
		return http.StatusInternalServerError, "failed (see the service log)"
	}
}

func (s *Server) handleQR(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	a, ok := s.account(w, r, id)
	if !ok {
		return
	}
	if a.QR == nil && a.QRShowing {
		writeError(w, http.StatusServiceUnavailable, "account "+id+" shows a QR code on instance "+a.Instance+", which did not send it: retry")
		return
	}
	if a.QR == nil || *a.QR == "" {
		writeError(w, http.StatusNotFound, "account is not pairing")
		return
	}
	select {
	case s.renders <- struct{}{}:
	case <-r.Context().Done():
		writeError(w, http.StatusServiceUnavailable, "canceled")
		return
	}
	img, err := qrPNG(*a.QR)
	<-s.renders
	if err != nil {
		// The error never holds the QR content; still, log only its kind.
		s.log.Error("render QR code", "account", id, "error", err)
		writeError(w, http.StatusInternalServerError, "cannot render the QR code")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "image/png")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	w.Write(img)
}

// errorBody is the body of every error response.
type errorBody struct {
	Error string `json:"error"`
}

// requireFeature wraps h so that it answers 503 with msg while present
// reports false (an optional api.Config field left nil).
func requireFeature(present func() bool, msg string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !present() {
			writeError(w, http.StatusServiceUnavailable, msg)
			return
		}
		h(w, r)
	}
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		body = []byte(`{"error":"cannot encode the response"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Del("Content-Length")
	w.WriteHeader(code)
	w.Write(append(body, '\n'))
}
