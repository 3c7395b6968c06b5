package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The headers of every delivery.
const (
	HeaderDelivery  = "X-Wafleet-Delivery"  // the delivery id, the same on every attempt
	HeaderEvent     = "X-Wafleet-Event"     // the event kind
	HeaderTimestamp = "X-Wafleet-Timestamp" // unix seconds of this attempt
	HeaderSignature = "X-Wafleet-Signature" // "sha256=" + hex HMAC-SHA256(secret, timestamp + "." + body)
)

// DefaultTolerance is how far a delivery's timestamp may be from the
// receiver's clock for Verify's callers that have no opinion.
const DefaultTolerance = 5 * time.Minute

// Errors of Verify.
var (
	ErrNoSignature  = errors.New("webhook: missing or malformed " + HeaderSignature + " or " + HeaderTimestamp)
	ErrStale        = errors.New("webhook: timestamp outside the tolerance")
	ErrBadSignature = errors.New("webhook: signature does not match")
)

// Sign returns the X-Wafleet-Signature value of body sent at timestamp
// (unix seconds): "sha256=" and the hex HMAC-SHA256, keyed by secret, of
// the decimal timestamp, a '.', and the body.
func Sign(secret string, timestamp int64, body []byte) string {
	return "sha256=" + hex.EncodeToString(mac(secret, strconv.FormatInt(timestamp, 10), body))
}

func mac(secret, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks a delivery as a receiver gets it: header's
// X-Wafleet-Timestamp must be within tolerance of now, and
// X-Wafleet-Signature the HMAC of that timestamp and body under secret
// (compared in constant time). A nil error means the body is authentic.
func Verify(secret string, header http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	ts := header.Get(HeaderTimestamp)
	sig, ok := strings.CutPrefix(header.Get(HeaderSignature), "sha256=")
	if !ok || ts == "" {
		return ErrNoSignature
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrNoSignature
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return ErrNoSignature
	}
	if d := now.Sub(time.Unix(sec, 0)).Abs(); d > tolerance {
		return fmt.Errorf("%w: %s off", ErrStale, d.Round(time.Second))
	}
	if !hmac.Equal(got, mac(secret, ts, body)) {
		return ErrBadSignature
	}
	return nil
}
