package api

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"

	"github.com/wafleet/wafleet/events"
)

// dashboardPage is the whole dashboard: inline CSS and JavaScript, no
// external asset, so it works offline and behind strict proxies.
//
//go:embed dashboard.html
var dashboardPage []byte

// statesMark is where the dashboard's script takes the list of account
// states (events.States, as a JSON array).
const statesMark = "{{states}}"

// dashboardHTML is the dashboard with its list of states filled in; the
// stream key is filled in per server.
var dashboardHTML = bytes.Replace(dashboardPage, []byte(statesMark), statesJSON(), 1)

func statesJSON() []byte {
	quoted := make([]string, len(events.States))
	for i, s := range events.States {
		quoted[i] = strconv.Quote(string(s))
	}
	return []byte("[" + strings.Join(quoted, ", ") + "]")
}

// streamKeyMark is where the dashboard's page holds its stream key (a meta
// element outside the inline script, whose hash the CSP pins).
const streamKeyMark = "{{stream-key}}"

// dashboardCSP allows exactly the inline style and script of the dashboard
// (by hash), images and fetches from this server, and nothing else.
var dashboardCSP = "default-src 'none'; " +
	"script-src " + inlineHash(dashboardHTML, "<script>", "</script>") + "; " +
	"style-src " + inlineHash(dashboardHTML, "<style>", "</style>") + "; " +
	"img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// inlineHash returns the CSP source ('sha256-…') of the first element
// between open and close in page, or 'none' when there is none.
func inlineHash(page []byte, open, close string) string {
	_, rest, ok := strings.Cut(string(page), open)
	if !ok {
		return "'none'"
	}
	body, _, ok := strings.Cut(rest, close)
	if !ok {
		return "'none'"
	}
	sum := sha256.Sum256([]byte(body))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// csrfMark is where the dashboard's page holds the CSRF token of the
// session it was served to (session.go); empty without a session.
const csrfMark = "{{csrf}}"

func (s *Server) handleDashboard(w http.ResponseWriter, r *http.Request) {
	var csrf string
	if sess, ok := s.cookieSession(r); ok {
		csrf = sess.csrf
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", dashboardCSP)
	h.Set("Referrer-Policy", pageReferrerPolicy)
	w.WriteHeader(http.StatusOK)
	w.Write(bytes.Replace(s.dashboard, []byte(csrfMark), []byte(csrf), 1))
}
