package webhook

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wafleet/wafleet/store"
)

func TestVerify(t *testing.T) {
	const key = "0123456789abcdef0123"
	body := []byte(`{"id":"x"}`)
	now := time.Unix(1_800_000_000, 0)
	signed := func(ts int64, sig string) http.Header {
		h := http.Header{}
		h.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
		h.Set(HeaderSignature, sig)
		return h
	}
	good := Sign(key, now.Unix(), body)
	if !strings.HasPrefix(good, "sha256=") || len(good) != len("sha256=")+64 {
		t.Fatalf("Sign = %q, want sha256= and 64 hex digits", good)
	}
	for _, tc := range []struct {
		name   string
		header http.Header
		body   []byte
		want   error
	}{
		{"good", signed(now.Unix(), good), body, nil},
		{"late within tolerance", signed(now.Unix()-299, Sign(key, now.Unix()-299, body)), body, nil},
		{"stale", signed(now.Unix()-301, Sign(key, now.Unix()-301, body)), body, ErrStale},
		{"future", signed(now.Unix()+301, Sign(key, now.Unix()+301, body)), body, ErrStale},
		{"other body", signed(now.Unix(), good), []byte(`{"id":"y"}`), ErrBadSignature},
		{"other key", signed(now.Unix(), Sign("another key 0123456789", now.Unix(), body)), body, ErrBadSignature},
		{"timestamp changed", signed(now.Unix()+1, good), body, ErrBadSignature},
		{"no prefix", signed(now.Unix(), strings.TrimPrefix(good, "sha256=")), body, ErrNoSignature},
		{"not hex", signed(now.Unix(), "sha256=zz"), body, ErrNoSignature},
		{"no timestamp", http.Header{HeaderSignature: {good}}, body, ErrNoSignature},
	} {
		if err := Verify(key, tc.header, tc.body, now, DefaultTolerance); !errors.Is(err, tc.want) {
			t.Errorf("%s: Verify = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestClassify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		code       int
		retryAfter string
		want       outcome
		wait       time.Duration
	}{
		{200, "", delivered, 0},
		{204, "", delivered, 0},
		{500, "", retry, 0},
		{503, "7", retry, 7 * time.Second},
		{429, now.Add(90 * time.Second).Format(http.TimeFormat), retry, 90 * time.Second},
		{429, "soon", retry, 0},
		{408, "", retry, 0},
		{400, "", reject, 0},
		{401, "", reject, 0},
		{404, "", reject, 0},
		{410, "", reject, 0},
		{301, "", reject, 0},
	} {
		got := classify(tc.code, tc.retryAfter, now)
		if got.outcome != tc.want || got.retryAfter != tc.wait {
			t.Errorf("classify(%d, %q) = %+v, want outcome %d, wait %s", tc.code, tc.retryAfter, got, tc.want, tc.wait)
		}
		if tc.want != delivered && !strings.Contains(got.reason, strconv.Itoa(tc.code)) {
			t.Errorf("classify(%d): reason %q does not name the status", tc.code, got.reason)
		}
	}
}

func TestBackoffFullJitterWithinBounds(t *testing.T) {
	b := Backoff{Initial: time.Second, Max: 5 * time.Minute}
	top := func(n int64) int64 { return n - 1 }
	bottom := func(int64) int64 { return 0 }
	for _, tc := range []struct {
		attempt    int
		retryAfter time.Duration
		rnd        func(int64) int64
		want       time.Duration
	}{
		{1, 0, top, time.Second},
		{2, 0, top, 2 * time.Second},
		{5, 0, top, 16 * time.Second},
		{9, 0, top, 256 * time.Second},
		{10, 0, top, 5 * time.Minute},
		{200, 0, top, 5 * time.Minute},
		{3, 0, bottom, 0},
		{1, 30 * time.Second, bottom, 30 * time.Second}, // Retry-After honoured
		{1, time.Hour, bottom, 5 * time.Minute},         // within Max
		{9, time.Second, top, 256 * time.Second},        // the jitter was longer
	} {
		if got := b.delay(tc.attempt, tc.retryAfter, tc.rnd); got != tc.want {
			t.Errorf("delay(%d, %s) = %s, want %s", tc.attempt, tc.retryAfter, got, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := Endpoint{URL: "https://hooks.example.com/x?token=abc", Secret: "0123456789abcdef"}.WithDefaults()
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid endpoint: %v", err)
	}
	if ok.Timeout != DefaultTimeout || ok.MaxAttempts != DefaultMaxAttempts {
		t.Fatalf("defaults: %+v", ok)
	}
	for field, change := range map[string]func(*Endpoint){
		"url":          func(e *Endpoint) { e.URL = "hooks.example.com/x" },
		"url ":         func(e *Endpoint) { e.URL = "http:///nohost" },
		"url  ":        func(e *Endpoint) { e.URL = "https://user:pw@hooks.example.com/" },
		"events[1]":    func(e *Endpoint) { e.Events = []string{"connected", "nope"} },
		"accounts[0]":  func(e *Endpoint) { e.Accounts = []string{"a b"} },
		"secret":       func(e *Endpoint) { e.Secret = "" },
		"secret ":      func(e *Endpoint) { e.Secret = "0123456789abcde" },
		"timeout":      func(e *Endpoint) { e.Timeout = 500 * time.Millisecond },
		"timeout ":     func(e *Endpoint) { e.Timeout = 61 * time.Second },
		"max_attempts": func(e *Endpoint) { e.MaxAttempts = 51 },
	} {
		e := ok
		change(&e)
		var fe *FieldError
		if err := e.Validate(); !errors.As(err, &fe) || fe.Field != strings.TrimSpace(field) {
			t.Errorf("%s: Validate = %v, want a FieldError on it", field, err)
		} else if strings.Contains(err.Error(), "pw@") || strings.Contains(err.Error(), "0123456789abcde") {
			t.Errorf("%s: error shows a secret: %v", field, err)
		}
	}
}

func TestRedactURL(t *testing.T) {
	if got := RedactURL("https://u:p@h.example:8443/p/q?token=t#f"); got != "https://h.example:8443/p/q" {
		t.Fatalf("RedactURL = %q", got)
	}
}

func TestDeliveryIDStableAndDistinct(t *testing.T) {
	e := newEntryForTest("1", time.Unix(5, 0))
	a, b := deliveryID("ep", e), deliveryID("ep", e)
	if a != b || len(a) != 32 {
		t.Fatalf("ids %q, %q: want the same 32 hex digits", a, b)
	}
	if deliveryID("other", e) == a || deliveryID("ep", newEntryForTest("2", time.Unix(5, 0))) == a || deliveryID("ep", newEntryForTest("1", time.Unix(6, 0))) == a {
		t.Fatal("another endpoint, entry or time gave the same delivery id")
	}
}

func newEntryForTest(id string, at time.Time) store.OutboxEntry {
	return store.OutboxEntry{ID: id, OutboxRecord: store.OutboxRecord{Account: "a", Kind: "state", Time: at}}
}
