package config

import (
	"encoding/base64"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

var accountIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// Validate checks every key and returns the first problem, naming the key.
func (c *Config) Validate() error {
	if err := validateWebSocketURL(c.Server.URL); err != nil {
		return err
	}
	if _, err := c.Server.RootKey(); err != nil {
		return err
	}
	switch c.Store.Kind {
	case "embedded":
		if c.Store.Path == "" {
			return keyError("store.path", "must not be empty with store.kind embedded")
		}
	case "redis":
		if c.Redis.Addr == "" && len(c.Redis.Addrs) == 0 {
			return keyError("redis.addr", "set redis.addr or redis.addrs with store.kind redis")
		}
	default:
		return keyError("store.kind", fmt.Sprintf("%q is not one of embedded, redis", c.Store.Kind))
	}
	if c.Store.EncryptionKey != "" && c.Store.EncryptionKeyFile != "" {
		return keyError("store.encryption_key", "set either store.encryption_key or store.encryption_key_file, not both")
	}
	if _, err := c.Store.Key(); err != nil {
		return err
	}
	if c.Store.ArchiveRetention < 0 {
		return keyError("store.archive_retention", "must not be negative (0 keeps archived devices forever)")
	}
	if err := c.Safety.validate(); err != nil {
		return err
	}
	if err := c.Messages.validate(); err != nil {
		return err
	}
	if err := c.Redis.validate(); err != nil {
		return err
	}
	if c.Fleet.LeaseTTL < 3*time.Second {
		return keyError("fleet.lease_ttl", "must be at least 3s")
	}
	if err := validateListen(c.HTTP); err != nil {
		return err
	}
	if err := validateAllowedHosts(c.HTTP.AllowedHosts); err != nil {
		return err
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return keyError("log.level", fmt.Sprintf("%q is not one of debug, info, warn, error", c.Log.Level))
	}
	if c.Log.HealthInterval <= 0 {
		return keyError("log.health_interval", "must be positive")
	}
	if err := c.Connect.validate(); err != nil {
		return err
	}
	if err := c.Client.validate(); err != nil {
		return err
	}
	if err := validateAccounts(c.Accounts); err != nil {
		return err
	}
	return validateWebhooks(c.Webhooks)
}

func (s Safety) validate() error {
	switch {
	case !(s.MassLogoutShare > 0 && s.MassLogoutShare <= 1):
		return keyError("safety.mass_logout_share", "must be above 0 and at most 1")
	case s.MassLogoutMin < 1:
		return keyError("safety.mass_logout_min", "must be at least 1")
	case s.MassLogoutWindow <= 0:
		return keyError("safety.mass_logout_window", "must be positive")
	}
	return nil
}

func (c Connect) validate() error {
	switch {
	case c.Rate <= 0:
		return keyError("connect.rate", "must be positive")
	case c.Burst < 1:
		return keyError("connect.burst", "must be at least 1")
	case c.BackoffInitial <= 0:
		return keyError("connect.backoff_initial", "must be positive")
	case c.BackoffMax < c.BackoffInitial:
		return keyError("connect.backoff_max", "must not be below connect.backoff_initial")
	case c.StableAfter <= 0:
		return keyError("connect.stable_after", "must be positive")
	case c.KeepaliveInterval <= 0:
		return keyError("connect.keepalive_interval", "must be positive")
	case c.KeepaliveTimeout <= 0:
		return keyError("connect.keepalive_timeout", "must be positive")
	case c.KeepaliveWindow <= c.KeepaliveInterval*6/5+c.KeepaliveTimeout:
		// The first ping after an answered one goes out within 1.2 ×
		// interval and is missed after the timeout: a shorter window would
		// end the connection at its first missed pong.
		return keyError("connect.keepalive_window", "must be longer than 1.2 × connect.keepalive_interval + connect.keepalive_timeout, so that one missed pong never ends a connection")
	}
	return nil
}

func validateWebSocketURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return keyError("server.url", fmt.Sprintf("%q is not a ws:// or wss:// URL", raw))
	}
	return nil
}

func validateListen(h HTTP) error {
	host, _, err := net.SplitHostPort(h.Listen)
	if err != nil {
		return keyError("http.listen", fmt.Sprintf("%q is not host:port", h.Listen))
	}
	loopback := host == "localhost"
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		loopback = true
	}
	switch {
	case loopback:
		return nil
	case h.Token == "":
		return keyError("http.listen", fmt.Sprintf("%q is not a loopback address; set http.token to listen there", h.Listen))
	case tokenBits(h.Token) < minTokenBits:
		return keyError("http.token", fmt.Sprintf("is too easy to guess for an API reachable off loopback: want %d bits or more, such as `openssl rand -base64 32`", minTokenBits))
	}
	return nil
}

// validateAllowedHosts accepts host names (letters, digits, hyphens, dots,
// an optional final dot) and IP addresses, without a port or scheme.
func validateAllowedHosts(hosts []string) error {
	for _, h := range hosts {
		if _, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
			continue
		}
		if !validHostName(h) {
			return keyError("http.allowed_hosts", fmt.Sprintf("%q is not a host name or IP address (no port, scheme or wildcard)", h))
		}
	}
	return nil
}

// validHostName reports whether h is a DNS name: dot-separated labels of 1
// to 63 letters, digits and hyphens, not starting or ending with a hyphen.
func validHostName(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// minTokenBits is the strength an API token needs off loopback: 16 random
// bytes.
const minTokenBits = 128

// tokenBits estimates the strength of a token as if its characters were
// drawn at random from the classes it uses (digits, hex, letters, others):
// an upper bound, so a weak token is always caught, never a strong one.
// A token of one repeated character has none.
func tokenBits(token string) float64 {
	token = strings.TrimSpace(token)
	if token == "" || strings.Count(token, token[:1]) == len(token) {
		return 0
	}
	var digit, lower, upper, other, beyondHex bool
	for _, c := range token {
		switch {
		case c >= '0' && c <= '9':
			digit = true
		case c >= 'a' && c <= 'z':
			lower, beyondHex = true, beyondHex || c > 'f'
		case c >= 'A' && c <= 'Z':
			upper, beyondHex = true, beyondHex || c > 'F'
		default:
			other = true
		}
	}
	alphabet := 0
	switch {
	case !lower && !upper && !other:
		alphabet = 10 // digits
	case !other && !beyondHex && lower != upper:
		alphabet = 16 // hex in one case
	default:
		for _, class := range []struct {
			used bool
			size int
		}{{digit, 10}, {lower, 26}, {upper, 26}, {other, 33}} {
			if class.used {
				alphabet += class.size
			}
		}
	}
	return float64(utf8.RuneCountInString(token)) * math.Log2(float64(alphabet))
}

// shorten cuts a bad value to a length an error message can carry.
func shorten(s string) string {
	const limit = 80
	if len(s) <= limit {
		return s
	}
	return s[:limit] + fmt.Sprintf("… (%d bytes)", len(s))
}

func validateAccounts(accounts []Account) error {
	seen := make(map[string]bool, len(accounts))
	for i, a := range accounts {
		key := fmt.Sprintf("accounts[%d]", i)
		if !accountIDPattern.MatchString(a.ID) || a.ID == "." || a.ID == ".." {
			return keyError(key+".id", fmt.Sprintf("%q must be 1-64 letters, digits, '.', '-' or '_', and not . or ..", shorten(a.ID)))
		}
		if seen[a.ID] {
			return keyError(key+".id", fmt.Sprintf("%q appears twice", a.ID))
		}
		seen[a.ID] = true
		if p := ProxyProblem(a.Proxy); p != "" {
			return keyError(key+".proxy", p)
		}
		if p := DeviceNameProblem(a.DeviceName); p != "" {
			return keyError(key+".device_name", p)
		}
		if a.Phone != "" {
			if p := PhoneProblem(a.Phone); p != "" {
				return keyError(key+".phone", p)
			}
		}
	}
	return nil
}

// e164 is a phone number in E.164: +, a country code not starting with 0,
// 7 to 15 digits in all.
var e164 = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

// PhoneProblem says what is wrong with a phone number for pairing by link
// code ("" when it is E.164). The API checks POST .../pair with it too.
func PhoneProblem(phone string) string {
	if e164.MatchString(phone) {
		return ""
	}
	return "want an E.164 number such as +15551234567: a +, the country code and the number, 7 to 15 digits, no spaces"
}

// ProxyProblem says what is wrong with an account's proxy URL ("" when
// nothing is: it is empty or an http, https or socks5 URL with a host),
// without echoing it (it may carry credentials). The API checks accounts
// created at runtime with it too.
func ProxyProblem(proxy string) string {
	if proxy == "" {
		return ""
	}
	u, err := url.Parse(proxy)
	if err != nil || u.Host == "" {
		return "is not a URL"
	}
	switch u.Scheme {
	case "http", "https", "socks5":
		return ""
	default:
		return fmt.Sprintf("scheme %q is not one of http, https, socks5", u.Scheme)
	}
}

// DeviceNameProblem says what is wrong with an account's device_name (""
// when nothing is; empty is fine).
func DeviceNameProblem(name string) string {
	if name == "" {
		return ""
	}
	return deviceNameProblem(name)
}

// Key returns the 32-byte store encryption key, or nil when none is set.
// The key's value never appears in an error.
func (s Store) Key() ([]byte, error) {
	encoded, keyName := s.EncryptionKey, "store.encryption_key"
	if s.EncryptionKeyFile != "" {
		keyName = "store.encryption_key_file"
		data, err := os.ReadFile(s.EncryptionKeyFile)
		if err != nil {
			return nil, keyError(keyName, fmt.Sprintf("cannot read the key file: %v", err))
		}
		encoded = string(data)
	}
	encoded = strings.TrimSpace(encoded)
	if encoded == "" {
		return nil, nil
	}
	key, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil || len(key) != 32 {
		return nil, keyError(keyName, "must be 32 bytes encoded in standard base64 (for example from `openssl rand -base64 32`)")
	}
	return key, nil
}

func (r Redis) validate() error {
	if r.DB < 0 {
		return keyError("redis.db", "must not be negative")
	}
	if r.DB != 0 && r.Cluster() {
		return keyError("redis.db", "must be 0 with a Redis Cluster (redis.addrs lists several nodes and redis.master_name is empty): a Cluster has only database 0")
	}
	if len(r.MasterName) > 128 || strings.ContainsFunc(r.MasterName, func(c rune) bool { return c <= ' ' || c == 0x7f }) {
		return keyError("redis.master_name", "must be at most 128 bytes without spaces or control characters (the name in the Sentinels' sentinel monitor line)")
	}
	return nil
}
