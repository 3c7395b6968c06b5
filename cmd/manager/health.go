package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// healthTimeout bounds one `manager health` request.
const healthTimeout = 5 * time.Second

func init() {
	register("health", "exit 0 when a URL answers 200 (container health checks)", runHealth)
}

// runHealth GETs one URL and exits 0 on 200: a health check for images
// without a shell or curl (the Docker image's HEALTHCHECK, compose).
func runHealth(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "health", "[--url URL]")
	target := fs.String("url", "http://127.0.0.1:8080/healthz", "URL that must answer 200 (/healthz: alive, /readyz: ready)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	u, err := url.Parse(*target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageError{fmt.Errorf("--url %q: want an http:// or https:// URL with a host", *target)}
	}
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", u.Redacted(), resp.Status)
	}
	fmt.Fprintf(e.stdout, "%s: %s\n", u.Redacted(), resp.Status)
	return nil
}
