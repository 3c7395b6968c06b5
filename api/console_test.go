package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wafleet/wafleet/events"
)

// consoleClient is a browser-like client: a cookie jar, no redirects
// followed, and the same-origin headers a browser sends.
type consoleClient struct {
	t    *testing.T
	f    *fixture
	http *http.Client
}

func newConsoleClient(t *testing.T, f *fixture) *consoleClient {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := *f.http.Client()
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &consoleClient{t: t, f: f, http: &c}
}

func (c *consoleClient) do(method, path, body string, header ...string) (*http.Response, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.f.http.URL+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if method != http.MethodGet {
		req.Header.Set("Origin", c.f.http.URL)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp, string(got)
}

var csrfMeta = regexp.MustCompile(`<meta name="csrf" content="([^"]*)">`)

func TestConsoleLogin(t *testing.T) {
	const token = "s3cret-token"
	f := newFixture(t, func(c *Config) { c.Token = token })
	f.seed(time.Now())
	c := newConsoleClient(t, f)

	// Without a session, the console is the login form, not a JSON 401.
	resp, page := c.do("GET", "/", "")
	if resp.StatusCode != 200 || !strings.Contains(page, `<form method="post" action="/login">`) || !strings.Contains(page, `<label for="token">`) ||
		strings.Contains(page, "Wrong token") || strings.Contains(page, "{{") {
		t.Fatalf("GET / without a session: %d %s", resp.StatusCode, page)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self'") || strings.Contains(csp, "script-src") {
		t.Fatalf("login page CSP %q: want its form allowed and no script", csp)
	}
	// Under no-referrer a browser posts the form with "Origin: null",
	// which the same-origin check refuses.
	if rp := resp.Header.Get("Referrer-Policy"); rp != "same-origin" {
		t.Fatalf("login page Referrer-Policy %q, want same-origin", rp)
	}

	// A wrong token: the form again, 401, no cookie.
	resp, page = c.do("POST", "/login", "token=nope")
	if resp.StatusCode != 401 || len(resp.Cookies()) != 0 || !strings.Contains(page, "Wrong token") || strings.Contains(page, "{{") {
		t.Fatalf("wrong token: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	// Login CSRF: another site's page cannot log the browser in.
	resp, _ = c.do("POST", "/login", "token="+token, "Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site")
	if resp.StatusCode != 403 || len(resp.Cookies()) != 0 {
		t.Fatalf("cross-site login: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}

	// The right token: a session cookie, HttpOnly, SameSite=Strict, Path=/.
	resp, _ = c.do("POST", "/login", "token="+url.QueryEscape(token))
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("login: %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	cookies := resp.Cookies()
	if len(cookies) != 1 || cookies[0].Name != sessionCookie || !cookies[0].HttpOnly ||
		cookies[0].SameSite != http.SameSiteStrictMode || cookies[0].Path != "/" || cookies[0].Secure {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/, not Secure without TLS", cookies)
	}
	if strings.Contains(cookies[0].Value, token) {
		t.Fatal("the cookie carries the token")
	}

	// The cookie opens the console and the API's reads, the event stream
	// included (EventSource cannot send a header).
	resp, page = c.do("GET", "/", "")
	m := csrfMeta.FindStringSubmatch(page)
	if resp.StatusCode != 200 || m == nil || m[1] == "" {
		t.Fatalf("console with a session: %d, csrf meta %v", resp.StatusCode, m)
	}
	csrf := m[1]
	if rp := resp.Header.Get("Referrer-Policy"); rp != "same-origin" {
		t.Fatalf("console Referrer-Policy %q, want same-origin (its fetches must carry their Origin)", rp)
	}
	if resp, body := c.do("GET", "/api/accounts", ""); resp.StatusCode != 200 {
		t.Fatalf("list with the cookie: %d %s", resp.StatusCode, body)
	}

	// A change with the cookie needs the page's CSRF token as well.
	resp, body := c.do("POST", "/api/accounts/dave/pair", "")
	if resp.StatusCode != 403 || !strings.Contains(body, csrfHeader) {
		t.Fatalf("pair with the cookie and no CSRF token: %d %s", resp.StatusCode, body)
	}
	if resp, body := c.do("POST", "/api/accounts/dave/pair", "", csrfHeader, "x"+csrf); resp.StatusCode != 403 {
		t.Fatalf("pair with a wrong CSRF token: %d %s", resp.StatusCode, body)
	}
	if resp, body := c.do("POST", "/api/accounts/dave/pair", "", csrfHeader, csrf); resp.StatusCode != 202 {
		t.Fatalf("pair with the CSRF token: %d %s", resp.StatusCode, body)
	}
	// The bearer token keeps working for tools, without CSRF.
	if resp, body := f.do(t, "POST", "/api/accounts/dave/pair", "Authorization", "Bearer "+token); resp.StatusCode != 202 {
		t.Fatalf("pair with the bearer token: %d %s", resp.StatusCode, body)
	}

	// Logout needs the CSRF token too, then the session is gone for good.
	if resp, _ := c.do("POST", "/logout", ""); resp.StatusCode != 403 {
		t.Fatalf("logout without the CSRF token: %d", resp.StatusCode)
	}
	resp, _ = c.do("POST", "/logout", "", csrfHeader, csrf)
	if resp.StatusCode != 204 || len(resp.Cookies()) != 1 || resp.Cookies()[0].MaxAge >= 0 {
		t.Fatalf("logout: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	if _, ok := f.srv.sessions.lookup(cookies[0].Value); ok {
		t.Fatal("the session outlives its logout")
	}
	if resp, _ := c.do("GET", "/api/accounts", "", "Cookie", sessionCookie+"="+cookies[0].Value); resp.StatusCode != 401 {
		t.Fatalf("the old cookie after logout: %d, want 401", resp.StatusCode)
	}
}

func TestConsoleLoginRateLimit(t *testing.T) {
	const token = "s3cret-token"
	f := newFixture(t, func(c *Config) { c.Token = token })
	now := time.Now()
	f.srv.sessions.now = func() time.Time { return now }
	c := newConsoleClient(t, f)
	for i := range loginFailures {
		if resp, _ := c.do("POST", "/login", "token=wrong"); resp.StatusCode != 401 {
			t.Fatalf("failure %d: %d", i+1, resp.StatusCode)
		}
	}
	// Blocked now, even with the right token.
	resp, _ := c.do("POST", "/login", "token="+token)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("after %d failures: %d, Retry-After %q", loginFailures, resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	now = now.Add(loginWindow)
	if resp, _ := c.do("POST", "/login", "token="+token); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after the window: %d", resp.StatusCode)
	}
}

func TestConsoleSessionsBounded(t *testing.T) {
	ss := newSessions()
	first, _ := ss.create()
	for range maxSessions {
		ss.create()
	}
	if len(ss.byID) != maxSessions {
		t.Fatalf("%d sessions, at most %d", len(ss.byID), maxSessions)
	}
	if _, ok := ss.lookup(first); ok {
		t.Fatal("the oldest session survived a full table")
	}
	id, _ := ss.create()
	ss.now = func() time.Time { return time.Now().Add(sessionLifetime + time.Second) }
	if _, ok := ss.lookup(id); ok {
		t.Fatal("a session outlived its lifetime")
	}
}

func TestConsoleNoTokenNoLogin(t *testing.T) {
	f := newFixture(t, nil)
	resp, body := f.do(t, "GET", "/")
	if resp.StatusCode != 200 || !strings.Contains(string(body), `id="rows"`) {
		t.Fatalf("GET / without a token configured: %d", resp.StatusCode)
	}
	if resp, _ := f.do(t, "POST", "/login"); resp.StatusCode != 404 {
		t.Fatalf("POST /login without a token configured: %d, want 404", resp.StatusCode)
	}
}

func TestNaturalCompare(t *testing.T) {
	ids := []string{"acct-10", "acct-2", "b", "acct-1", "a10b2", "a10b10", "a9", "acct-02", "Acct-3", "x"}
	slices.SortFunc(ids, naturalCompare)
	want := []string{"Acct-3", "a9", "a10b2", "a10b10", "acct-1", "acct-02", "acct-2", "acct-10", "b", "x"}
	if !slices.Equal(ids, want) {
		t.Fatalf("sorted %v, want %v", ids, want)
	}
}

func TestAccountsPaged(t *testing.T) {
	f := newFixture(t, nil)
	now := time.Now()
	for i := 1; i <= 25; i++ {
		st, kind := events.StateConnected, events.KindConnected
		if i%5 == 0 {
			st, kind = events.StateStopped, events.KindState
		}
		f.bus.Publish(events.Event{Account: fmt.Sprintf("acct-%d", i), Kind: kind, State: st, JID: fmt.Sprintf("1555%04d:1@s.whatsapp.net", i), Time: now})
	}
	page := func(query string) accountPage {
		t.Helper()
		resp, body := f.do(t, "GET", "/api/accounts?"+query)
		if resp.StatusCode != 200 {
			t.Fatalf("?%s: %d %s", query, resp.StatusCode, body)
		}
		var p accountPage
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ids := func(p accountPage) string {
		var out []string
		for _, a := range p.Accounts {
			out = append(out, a.ID)
		}
		return strings.Join(out, ",")
	}
	p := page("limit=10&page=1")
	if ids(p) != "acct-1,acct-2,acct-3,acct-4,acct-5,acct-6,acct-7,acct-8,acct-9,acct-10" || p.Matched != 25 || p.Total != 25 {
		t.Fatalf("page 1: %s matched %d total %d", ids(p), p.Matched, p.Total)
	}
	if p.Counts[events.StateConnected] != 20 || p.Counts[events.StateStopped] != 5 {
		t.Fatalf("counts %v: want those of every account", p.Counts)
	}
	if p := page("limit=10&page=3"); ids(p) != "acct-21,acct-22,acct-23,acct-24,acct-25" {
		t.Fatalf("page 3: %s", ids(p))
	}
	if p := page("limit=10&page=4"); len(p.Accounts) != 0 || p.Matched != 25 {
		t.Fatalf("past the end: %s", ids(p))
	}
	p = page("state=stopped")
	if ids(p) != "acct-5,acct-10,acct-15,acct-20,acct-25" || p.Counts[events.StateConnected] != 20 || p.Limit != defaultPageLimit {
		t.Fatalf("state=stopped: %s counts %v limit %d", ids(p), p.Counts, p.Limit)
	}
	if p := page("q=ACCT-1"); ids(p) != "acct-1,acct-10,acct-11,acct-12,acct-13,acct-14,acct-15,acct-16,acct-17,acct-18,acct-19" {
		t.Fatalf("q=ACCT-1 (ids): %s", ids(p))
	}
	if p := page("q=15550022"); ids(p) != "acct-22" {
		t.Fatalf("q by JID: %s", ids(p))
	}
	if p := page("q=acct-1&state=stopped"); ids(p) != "acct-10,acct-15" {
		t.Fatalf("q and state: %s", ids(p))
	}
	// The unpaged answer keeps its array shape.
	resp, body := f.do(t, "GET", "/api/accounts")
	var list []map[string]any
	if resp.StatusCode != 200 || json.Unmarshal(body, &list) != nil || len(list) != 25 {
		t.Fatalf("unpaged: %d %s", resp.StatusCode, body)
	}
	for _, bad := range []struct{ query, field string }{
		{"page=0", "page"}, {"page=x", "page"}, {"limit=501", "limit"}, {"limit=0", "limit"},
		{"state=happy", "state"}, {"q=" + strings.Repeat("a", 65), "q"},
	} {
		resp, body := f.do(t, "GET", "/api/accounts?"+bad.query)
		if resp.StatusCode != 400 || !strings.Contains(string(body), "bad "+bad.field) {
			t.Errorf("?%s: %d %s, want 400 naming %s", bad.query, resp.StatusCode, body, bad.field)
		}
	}
}
