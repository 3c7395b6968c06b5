package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHealth: `manager health` exits 0 when the URL answers 200, 1 when it
// answers anything else or nothing, 2 for a URL that is not http(s).
func TestHealth(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	for _, c := range []struct {
		url    string
		code   int
		output string
	}{
		{srv.URL + "/healthz", 0, "200 OK"},
		{srv.URL + "/readyz", 1, "503 Service Unavailable"},
		{closed.URL + "/healthz", 1, "connect"},
		{"ftp://example.com/healthz", 2, "want an http:// or https:// URL"},
		{"127.0.0.1:8080/healthz", 2, "want an http:// or https:// URL"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), &env{stdout: &stdout, stderr: &stderr}, []string{"health", "--url", c.url})
		if code != c.code || !strings.Contains(stdout.String()+stderr.String(), c.output) {
			t.Errorf("health --url %s: exit %d, output %q; want exit %d mentioning %q", c.url, code, stdout.String()+stderr.String(), c.code, c.output)
		}
	}
}
