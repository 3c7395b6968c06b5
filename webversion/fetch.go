package webversion

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"time"

	"github.com/wafleet/wafleet/wire/payload"
)

// DefaultURL is WhatsApp Web's service-worker script, which carries the
// current client revision.
const DefaultURL = "https://web.whatsapp.com/sw.js"

// MaxBodySize bounds the script Fetch reads, in bytes. WhatsApp's is far
// smaller; a larger answer is not the script.
const MaxBodySize = 4 << 20

// DefaultFetchTimeout bounds one Fetch, headers and body.
const DefaultFetchTimeout = 30 * time.Second

// userAgent is what Fetch sends: WhatsApp Web answers a browser.
const userAgent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"

// Errors of Fetch and Parse. Fetch wraps them with the URL's host.
var (
	// ErrNoRevision: the script holds no "client_revision":N.
	ErrNoRevision = errors.New("webversion: no client_revision in the script")
	// ErrBadRevision: the revision is zero or does not fit in 32 bits.
	ErrBadRevision = errors.New("webversion: client_revision out of range")
	// ErrTooLarge: the answer is longer than MaxBodySize.
	ErrTooLarge = errors.New("webversion: answer too large")
	// ErrBadURL: the URL is not an http:// or https:// URL.
	ErrBadURL = errors.New("webversion: not an http(s) URL")
)

// StatusError is a non-200 answer.
type StatusError struct {
	// Host is the URL's host.
	Host string
	// Code is the HTTP status code.
	Code int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("webversion: %s answered %d %s", e.Host, e.Code, http.StatusText(e.Code))
}

// revisionPattern finds the revision in both forms the script uses: plain
// JSON ("client_revision":N) and JSON inside a JavaScript string
// (\"client_revision\":N). Go's regexp runs in linear time.
var revisionPattern = regexp.MustCompile(`\\?"client_revision\\?"\s*:\s*([0-9]{1,20})`)

// Parse finds the first "client_revision":N (or its escaped form
// \"client_revision\":N) in a service-worker script and returns 2.3000.N.
func Parse(script []byte) (payload.Version, error) {
	m := revisionPattern.FindSubmatch(script)
	if m == nil {
		return payload.Version{}, ErrNoRevision
	}
	n, err := strconv.ParseUint(string(m[1]), 10, 32)
	if err != nil || n == 0 {
		return payload.Version{}, fmt.Errorf("%w: %s", ErrBadRevision, m[1])
	}
	return payload.Version{Primary: 2, Secondary: 3000, Tertiary: uint32(n)}, nil
}

// Fetch GETs rawURL (DefaultURL for WhatsApp's script) with client (nil:
// http.DefaultClient) and returns the version its client_revision names.
// It gives up after DefaultFetchTimeout or when ctx ends, whichever comes
// first. Errors name the URL's host, never the body: a non-200 answer is a
// *StatusError; an answer over MaxBodySize wraps ErrTooLarge; one without a
// revision wraps ErrNoRevision.
func Fetch(ctx context.Context, client *http.Client, rawURL string) (payload.Version, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return payload.Version{}, ErrBadURL
	}
	host := u.Host
	if client == nil {
		client = http.DefaultClient
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return payload.Version{}, fmt.Errorf("webversion: request for %s: %w", host, err)
	}
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Accept", "*/*")
	req.Header.Set("Sec-Fetch-Site", "none")
	resp, err := client.Do(req)
	if err != nil {
		return payload.Version{}, fmt.Errorf("webversion: GET %s: %w", host, transportError(err))
	}
	// From here on the body is read under the same deadline.
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
		return payload.Version{}, &StatusError{Host: host, Code: resp.StatusCode}
	}
	if resp.ContentLength > MaxBodySize {
		return payload.Version{}, fmt.Errorf("%w: %s announced %d bytes, more than %d", ErrTooLarge, host, resp.ContentLength, MaxBodySize)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, MaxBodySize+1)); err != nil {
		return payload.Version{}, fmt.Errorf("webversion: read the answer of %s: %w", host, transportError(err))
	}
	if buf.Len() > MaxBodySize {
		return payload.Version{}, fmt.Errorf("%w: %s sent more than %d bytes", ErrTooLarge, host, MaxBodySize)
	}
	v, err := Parse(buf.Bytes())
	if err != nil {
		return payload.Version{}, fmt.Errorf("%w (in %d bytes from %s)", err, buf.Len(), host)
	}
	return v, nil
}

// transportError strips the *url.Error around err (it repeats the whole
// URL; the caller names the host).
// A deadline is said in words.
func transportError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("no answer in time: %w", err)
	}
	return err
}
