package api

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// The console's login (when Config.Token is set). A browser cannot send a
// bearer header on a page load or an EventSource, so the dashboard logs in
// once: POST /login with the token sets a session cookie that authorizes
// the same routes as the token. Sessions live in this process only (a
// random id mapped to its expiry and its CSRF token, at most maxSessions):
// they end on logout, after sessionLifetime, and when the process
// restarts. A request the cookie authorizes that changes state must carry
// the session's CSRF token in the X-CSRF-Token header (the dashboard's
// page holds it), besides passing the same-origin checks of secure.

// Routes of the login.
const (
	routeConsoleLogin  = "/login"
	routeConsoleLogout = "/logout"
)

const (
	sessionCookie   = "wafleet_session"
	csrfHeader      = "X-CSRF-Token"
	sessionLifetime = 12 * time.Hour
	// maxSessions bounds the sessions kept; a login beyond it ends the
	// session closest to its expiry.
	maxSessions = 1024
	// A client IP address may fail loginFailures logins per loginWindow;
	// after that POST /login answers 429 until the window ends.
	loginFailures = 5
	loginWindow   = time.Minute
	// maxLoginClients bounds the addresses whose failures are counted.
	maxLoginClients = 4096
	// maxLoginBody bounds the login form.
	maxLoginBody = 4 << 10
)

// loginPage is the form a browser without a session gets at GET / when a
// token is required. It has no script.
//
//go:embed login.html
var loginPage []byte

// loginCSP allows the login page's inline style and its form posting to
// this server, nothing else.
var loginCSP = "default-src 'none'; " +
	"style-src " + inlineHash(loginPage, "<style>", "</style>") + "; " +
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// pageReferrerPolicy is that of the console's pages instead of
// no-referrer: under no-referrer a browser sends "Origin: null" with the
// page's own POSTs (form and fetch), which secure refuses as cross-site.
// same-origin still sends no referrer to any other site.
const pageReferrerPolicy = "same-origin"

// session is one logged-in browser.
type session struct {
	expires time.Time
	csrf    string
}

// sessions are the live sessions and the failed logins per client.
type sessions struct {
	now func() time.Time

	mu       sync.Mutex
	byID     map[string]session
	failures map[string]*loginFailure // client IP → its failures in the window
}

type loginFailure struct {
	count int
	since time.Time
}

func newSessions() *sessions {
	return &sessions{now: time.Now, byID: make(map[string]session), failures: make(map[string]*loginFailure)}
}

// create starts a session and returns its id and CSRF token.
func (ss *sessions) create() (id, csrf string) {
	id, csrf = rand.Text(), rand.Text()
	now := ss.now()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.byID) >= maxSessions {
		var oldest string
		for k, s := range ss.byID {
			if !s.expires.After(now) {
				delete(ss.byID, k)
				continue
			}
			if oldest == "" || s.expires.Before(ss.byID[oldest].expires) {
				oldest = k
			}
		}
		if len(ss.byID) >= maxSessions {
			delete(ss.byID, oldest)
		}
	}
	ss.byID[id] = session{expires: now.Add(sessionLifetime), csrf: csrf}
	return id, csrf
}

// lookup returns the live session of id.
func (ss *sessions) lookup(id string) (session, bool) {
	if id == "" {
		return session{}, false
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.byID[id]
	if ok && !s.expires.After(ss.now()) {
		delete(ss.byID, id)
		return session{}, false
	}
	return s, ok
}

func (ss *sessions) end(id string) {
	ss.mu.Lock()
	delete(ss.byID, id)
	ss.mu.Unlock()
}

// blocked reports how long client must wait before its next login try, or
// 0.
func (ss *sessions) blocked(client string) time.Duration {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	f := ss.failures[client]
	if f == nil {
		return 0
	}
	left := loginWindow - ss.now().Sub(f.since)
	if left <= 0 {
		delete(ss.failures, client)
		return 0
	}
	if f.count < loginFailures {
		return 0
	}
	return left
}

// failed counts a failed login of client.
func (ss *sessions) failed(client string) {
	now := ss.now()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	f := ss.failures[client]
	if f == nil || now.Sub(f.since) >= loginWindow {
		if len(ss.failures) >= maxLoginClients {
			for k, g := range ss.failures {
				if now.Sub(g.since) >= loginWindow {
					delete(ss.failures, k)
				}
			}
			if len(ss.failures) >= maxLoginClients {
				// Still full of live windows: count this client with
				// nobody else's, never forget a blocked one.
				return
			}
		}
		f = &loginFailure{since: now}
		ss.failures[client] = f
	}
	f.count++
}

// cookieSession returns the session of r's cookie, if any.
func (s *Server) cookieSession(r *http.Request) (session, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return session{}, false
	}
	return s.sessions.lookup(c.Value)
}

// sessionAllows reports whether r's session cookie authorizes r: a live
// session, and for a request that changes state its CSRF token in the
// X-CSRF-Token header.
func (s *Server) sessionAllows(r *http.Request) bool {
	sess, ok := s.cookieSession(r)
	if !ok {
		return false
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	return subtle.ConstantTimeCompare([]byte(r.Header.Get(csrfHeader)), []byte(sess.csrf)) == 1
}

// tokenMatches compares a presented token with the configured one as
// SHA-256 digests in constant time.
func (s *Server) tokenMatches(token string) bool {
	got := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(got[:], s.tokenHash[:]) == 1
}

// loginFailedMark is where the login page says that the last try failed.
const loginFailedMark = "{{login-failed}}"

var (
	loginForm       = bytes.Replace(loginPage, []byte(loginFailedMark), nil, 1)
	loginFormFailed = bytes.Replace(loginPage, []byte(loginFailedMark), []byte(`<p class="failed" role="alert">Wrong token: try again.</p>`), 1)
)

// handleLoginPage writes the login form; code 401 says the token was
// wrong.
func (s *Server) handleLoginPage(w http.ResponseWriter, r *http.Request, code int) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", loginCSP)
	h.Set("Referrer-Policy", pageReferrerPolicy)
	w.WriteHeader(code)
	if code == http.StatusUnauthorized {
		w.Write(loginFormFailed)
		return
	}
	w.Write(loginForm)
}

// handleLogin checks the posted token (form field "token"), sets the
// session cookie and sends the browser to the dashboard. A wrong token
// answers the form again with 401; too many from one address, 429.
func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Token == "" {
		writeError(w, http.StatusNotFound, "no login: this server requires no token")
		return
	}
	client := clientAddress(r)
	if wait := s.sessions.blocked(client); wait > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
		writeError(w, http.StatusTooManyRequests, "too many failed logins from this address: retry later")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, "bad login form: want token=… as application/x-www-form-urlencoded")
		return
	}
	if !s.tokenMatches(r.PostForm.Get("token")) {
		s.sessions.failed(client)
		s.log.Warn("console login failed", "client", client)
		s.handleLoginPage(w, r, http.StatusUnauthorized)
		return
	}
	id, _ := s.sessions.create()
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: id, Path: "/", MaxAge: int(sessionLifetime.Seconds()),
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
	s.log.Info("console login", "client", client)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// handleLogout ends the session of the cookie and clears it. It needs the
// session's CSRF token like every other change (secure checks it).
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.sessions.end(c.Value)
	}
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
	w.WriteHeader(http.StatusNoContent)
}
