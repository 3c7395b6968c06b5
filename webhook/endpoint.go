package webhook

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"time"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/store"
)

// Bounds and defaults of an endpoint's settings.
const (
	DefaultTimeout     = 10 * time.Second
	MinTimeout         = time.Second
	MaxTimeout         = time.Minute
	DefaultMaxAttempts = 10
	MaxMaxAttempts     = 50
	// MinSecretBytes is the shortest secret an endpoint accepts: 128 bits
	// when drawn at random (`openssl rand -hex 16` gives 32 bytes).
	MinSecretBytes = 16
	// MaxSecretBytes, MaxURLBytes bound what an endpoint stores.
	MaxSecretBytes = 1024
	MaxURLBytes    = 2048
)

// Endpoint is one webhook destination: where to POST, which events, and
// the secret that signs them. Configured endpoints come from the YAML file
// (webhooks), per-account ones from the API (stored in the outbox).
type Endpoint struct {
	// Name is unique in the process and names the endpoint's queue.
	// Configured endpoints name themselves; per-account ones are named
	// by AccountEndpointName.
	Name string
	// Account is the account a per-account endpoint belongs to; "" for a
	// configured one.
	Account string
	URL     string
	// Events are the kinds delivered; empty delivers every kind.
	Events []string
	// Accounts are the accounts delivered; empty delivers every account.
	// A per-account endpoint delivers its Account only.
	Accounts []string
	// Secret signs every delivery (HMAC-SHA256). It never appears in a
	// log line, an error or an API answer.
	Secret      string
	Timeout     time.Duration
	MaxAttempts int
}

// LogValue renders the endpoint for slog without its secret and with only
// the scheme, host and path of its URL (a query may hold a token).
func (e Endpoint) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", e.Name), slog.String("url", RedactURL(e.URL)))
}

// FieldError is a bad endpoint setting: Field names it as the
// configuration and the API spell it (url, events[2], secret, …).
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

var (
	namePattern    = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	accountPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
)

// KnownKind reports whether kind names an event kind (events.Kinds).
func KnownKind(kind string) bool {
	return slices.Contains(events.Kinds, events.Kind(kind))
}

// WithDefaults returns e with a zero Timeout and MaxAttempts set to their
// defaults.
func (e Endpoint) WithDefaults() Endpoint {
	if e.Timeout == 0 {
		e.Timeout = DefaultTimeout
	}
	if e.MaxAttempts == 0 {
		e.MaxAttempts = DefaultMaxAttempts
	}
	return e
}

// Validate checks every setting but Name (see ValidName) and returns the
// first problem as a *FieldError. Call it after WithDefaults.
func (e Endpoint) Validate() error {
	if len(e.URL) > MaxURLBytes {
		return &FieldError{"url", fmt.Sprintf("is longer than %d bytes", MaxURLBytes)}
	}
	u, err := url.Parse(e.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return &FieldError{"url", fmt.Sprintf("%q is not an http:// or https:// URL with a host", RedactURL(e.URL))}
	}
	if u.User != nil {
		return &FieldError{"url", "must not hold a user or password; the signature authenticates deliveries"}
	}
	for i, k := range e.Events {
		if !KnownKind(k) {
			return &FieldError{fmt.Sprintf("events[%d]", i), fmt.Sprintf("%q is not an event kind (one of %s)", shorten(k), kindList())}
		}
	}
	for i, a := range e.Accounts {
		if !validAccount(a) {
			return &FieldError{fmt.Sprintf("accounts[%d]", i), fmt.Sprintf("%q is not an account id (1-64 letters, digits, '.', '-' or '_')", shorten(a))}
		}
	}
	switch {
	case e.Secret == "":
		return &FieldError{"secret", "is required: it signs every delivery"}
	case len(e.Secret) < MinSecretBytes:
		return &FieldError{"secret", fmt.Sprintf("is too short: want at least %d bytes, such as `openssl rand -hex 32`", MinSecretBytes)}
	case len(e.Secret) > MaxSecretBytes:
		return &FieldError{"secret", fmt.Sprintf("is longer than %d bytes", MaxSecretBytes)}
	case e.Timeout < MinTimeout || e.Timeout > MaxTimeout:
		return &FieldError{"timeout", fmt.Sprintf("%s is not between %s and %s", e.Timeout, MinTimeout, MaxTimeout)}
	case e.MaxAttempts < 1 || e.MaxAttempts > MaxMaxAttempts:
		return &FieldError{"max_attempts", fmt.Sprintf("%d is not between 1 and %d", e.MaxAttempts, MaxMaxAttempts)}
	}
	return nil
}

// ValidName reports whether name can name a configured endpoint: 1-64
// letters, digits, '.', '-' or '_'.
func ValidName(name string) bool { return namePattern.MatchString(name) }

func validAccount(id string) bool {
	return accountPattern.MatchString(id) && id != "." && id != ".."
}

// AccountEndpointName names the per-account endpoint of account posting
// to rawURL: the account and a digest of the URL, so that replacing an
// account's list keeps the queue of a URL it still lists. It cannot clash
// with a configured name (it holds a ':').
func AccountEndpointName(account, rawURL string) string {
	sum := sha256.Sum256([]byte(rawURL))
	return account + ":" + hex.EncodeToString(sum[:6])
}

// RedactURL returns the scheme, host and path of rawURL: what may be
// logged or shown (a query or user info may hold a token).
func RedactURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparsable URL)"
	}
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	return r.String()
}

func (e Endpoint) toStore() store.Endpoint {
	return store.Endpoint{Name: e.Name, Account: e.Account, URL: e.URL, Events: e.Events, Secret: e.Secret, Timeout: e.Timeout, MaxAttempts: e.MaxAttempts}
}

func fromStore(s store.Endpoint) Endpoint {
	e := Endpoint{Name: s.Name, Account: s.Account, URL: s.URL, Events: s.Events, Secret: s.Secret, Timeout: s.Timeout, MaxAttempts: s.MaxAttempts}
	if s.Account != "" {
		e.Accounts = []string{s.Account}
	}
	return e.WithDefaults()
}

// wants reports whether the endpoint delivers an entry of kind and account.
func (e Endpoint) wants(kind, account string) bool {
	return (len(e.Events) == 0 || slices.Contains(e.Events, kind)) &&
		(len(e.Accounts) == 0 || slices.Contains(e.Accounts, account))
}

func kindList() string {
	s := ""
	for i, k := range events.Kinds {
		if i > 0 {
			s += ", "
		}
		s += string(k)
	}
	return s
}

func shorten(s string) string {
	const limit = 80
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "…"
}
