package webversion

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wafleet/wafleet/wire/payload"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// swEscaped looks like WhatsApp Web's service worker: the site data is a
// JSON text inside a JavaScript string, so its quotes are escaped.
const swEscaped = `/*FB_PKG_DELIM*/
"use strict";
self.__swData = JSON.parse(/*BTDS*/"{\"dynamic_data\":{\"SiteData\":{\"server_revision\":1099999999,\"client_revision\":1031080782,\"push_phase\":\"C3\",\"pkg_cohort\":\"BP:whatsapp_www_pkg\",\"haste_session\":\"20183.HYP:whatsapp_web_pkg.2.1...0\"}}}");
importScripts("https://static.whatsapp.net/rsrc.php/v4/yX/r/abcdefgh.js");
`

// swPlain carries the site data as plain JSON, as the emulator serves it.
const swPlain = `self.addEventListener("install", function () { self.skipWaiting(); });
var siteData = {"server_revision": 1099999999, "client_revision": 1045649367, "spin": 0};
`

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		script  string
		want    uint32
		wantErr error
	}{
		{"escaped inside a JSON string", swEscaped, 1031080782, nil},
		{"plain JSON with spaces", swPlain, 1045649367, nil},
		{"compact", `{"client_revision":7}`, 7, nil},
		{"first of two", `{"client_revision":5},{"client_revision":6}`, 5, nil},
		{"missing", `self.__swData = {"server_revision":1099999999};`, 0, ErrNoRevision},
		{"name without a number", `{"client_revision":"soon"}`, 0, ErrNoRevision},
		{"unquoted name", `client_revision:1031080782`, 0, ErrNoRevision},
		{"empty", ``, 0, ErrNoRevision},
		{"zero", `{"client_revision":0}`, 0, ErrBadRevision},
		{"over 32 bits", `{"client_revision":4294967296}`, 0, ErrBadRevision},
		{"very long number", `{"client_revision":` + strings.Repeat("9", 40) + `}`, 0, ErrBadRevision},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := Parse([]byte(tt.script))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Parse = %v, %v; want %v", v, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := (payload.Version{Primary: 2, Secondary: 3000, Tertiary: tt.want}); v != want {
				t.Fatalf("Parse = %v, want %v", v, want)
			}
		})
	}
}

// serve starts a server answering every request with handler.
func serve(t *testing.T, handler http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	return srv
}

func hostOf(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

func TestFetch(t *testing.T) {
	var gotUA string
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		gotUA = r.Header.Get("User-Agent")
		w.Header().Set("Content-Type", "text/javascript")
		_, _ = w.Write([]byte(swEscaped))
	})
	v, err := Fetch(context.Background(), srv.Client(), srv.URL+"/sw.js")
	if err != nil {
		t.Fatal(err)
	}
	if v.String() != "2.3000.1031080782" {
		t.Fatalf("Fetch = %v", v)
	}
	if !strings.Contains(gotUA, "Mozilla/5.0") {
		t.Errorf("User-Agent %q is not a browser's", gotUA)
	}
}

// secretBody would be a leak if an error showed it.
const secretBody = "BODY-MUST-NOT-APPEAR"

func TestFetchErrors(t *testing.T) {
	big := strings.Repeat("x", MaxBodySize) + `{"client_revision":1031080782}`
	tests := []struct {
		name    string
		handler http.HandlerFunc
		check   func(t *testing.T, err error)
	}{
		{
			name: "404",
			handler: func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, secretBody, http.StatusNotFound)
			},
			check: func(t *testing.T, err error) {
				var se *StatusError
				if !errors.As(err, &se) || se.Code != http.StatusNotFound {
					t.Fatalf("err = %v, want a *StatusError 404", err)
				}
			},
		},
		{
			name: "no revision",
			handler: func(w http.ResponseWriter, r *http.Request) {
				_, _ = w.Write([]byte("<html>" + secretBody + "</html>"))
			},
			check: func(t *testing.T, err error) {
				if !errors.Is(err, ErrNoRevision) {
					t.Fatalf("err = %v, want ErrNoRevision", err)
				}
			},
		},
		{
			name: "too big, announced",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", strconv.Itoa(len(big)))
				_, _ = w.Write([]byte(big))
			},
			check: func(t *testing.T, err error) {
				if !errors.Is(err, ErrTooLarge) {
					t.Fatalf("err = %v, want ErrTooLarge", err)
				}
			},
		},
		{
			name: "too big, streamed",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.(http.Flusher).Flush() // chunked: no Content-Length
				for i := 0; i < len(big); i += 64 << 10 {
					if _, err := w.Write([]byte(big[i:min(i+64<<10, len(big))])); err != nil {
						return
					}
				}
			},
			check: func(t *testing.T, err error) {
				if !errors.Is(err, ErrTooLarge) {
					t.Fatalf("err = %v, want ErrTooLarge", err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := serve(t, tt.handler)
			_, err := Fetch(context.Background(), srv.Client(), srv.URL+"/sw.js")
			if err == nil {
				t.Fatal("Fetch succeeded")
			}
			tt.check(t, err)
			if !strings.Contains(err.Error(), hostOf(t, srv.URL)) {
				t.Errorf("error %q does not name the host", err)
			}
			if strings.Contains(err.Error(), secretBody) || strings.Contains(err.Error(), "xxxx") {
				t.Errorf("error %q shows the body", err)
			}
		})
	}
}

func TestFetchTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release) // before srv.Close, which waits for the handler
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := Fetch(ctx, srv.Client(), srv.URL+"/sw.js")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a deadline", err)
	}
	if !strings.Contains(err.Error(), hostOf(t, srv.URL)) || !strings.Contains(err.Error(), "no answer in time") {
		t.Errorf("error %q does not say which host did not answer", err)
	}
}

func TestFetchBadURL(t *testing.T) {
	for _, raw := range []string{"", "ftp://example.com/sw.js", "web.whatsapp.com/sw.js", "https://"} {
		if _, err := Fetch(context.Background(), nil, raw); !errors.Is(err, ErrBadURL) {
			t.Errorf("Fetch(%q) = %v, want ErrBadURL", raw, err)
		}
	}
}
