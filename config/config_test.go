package config

import (
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wafleet/wafleet/waproto"
	"github.com/wafleet/wafleet/wire"
	"github.com/wafleet/wafleet/wire/payload"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDefaults(t *testing.T) {
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.URL != wire.DefaultURL || cfg.Store.Kind != "embedded" || cfg.HTTP.Listen != "127.0.0.1:8080" {
		t.Fatalf("unexpected defaults: %+v", cfg)
	}
	if cfg.Fleet.LeaseTTL != 15*time.Second || cfg.Connect.Rate != 20 || cfg.Connect.BackoffMax != 2*time.Minute {
		t.Fatalf("unexpected defaults: %+v", cfg)
	}
	if cfg.Fleet.InstanceID == "" {
		t.Fatal("instance id not defaulted")
	}
	if key, err := cfg.Server.RootKey(); err != nil || key != nil {
		t.Fatalf("RootKey() = %x, %v; want nil (WhatsApp's)", key, err)
	}
	if cfg.Connect.KeepaliveWindow != 3*time.Minute || cfg.Pairing.AutoRepair {
		t.Fatalf("unexpected defaults: %+v %+v", cfg.Connect, cfg.Pairing)
	}
	if cfg.Store.ArchiveRetention != 30*24*time.Hour || cfg.Safety != (Safety{MassLogoutShare: 0.2, MassLogoutMin: 3, MassLogoutWindow: 10 * time.Minute}) {
		t.Fatalf("unexpected defaults: store %+v, safety %+v", cfg.Store, cfg.Safety)
	}
	want := Client{Version: "", VersionURL: "https://web.whatsapp.com/sw.js", OSName: "Linux", Platform: "chrome"}
	if cfg.Client != want {
		t.Fatalf("client = %+v, want %+v", cfg.Client, want)
	}
	if v, err := cfg.Client.ParsedVersion(); err != nil || v != payload.DefaultVersion() {
		t.Fatalf("ParsedVersion() = %v, %v; want the built-in version", v, err)
	}
	if p, err := cfg.Client.PlatformType(); err != nil || p != waproto.DeviceProps_CHROME {
		t.Fatalf("PlatformType() = %v, %v", p, err)
	}
}

func TestClientKeys(t *testing.T) {
	path := writeConfig(t, `
client:
  version: 2.3000.1031080782
  version_url: ""
  os_name: Ubuntu
  platform: Firefox
pairing:
  auto_repair: true
connect:
  keepalive_window: 90s
accounts:
  - id: a
  - id: b
    device_name: "Ventas – Caja 2"
    phone: "+15551234567"
`)
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := cfg.Client.ParsedVersion(); err != nil || v != payload.PinnedVersion() {
		t.Fatalf("ParsedVersion() = %v, %v", v, err)
	}
	if cfg.Client.VersionURL != "" {
		t.Fatalf("version_url = %q, want empty (fetching off)", cfg.Client.VersionURL)
	}
	if p, err := cfg.Client.PlatformType(); err != nil || p != waproto.DeviceProps_FIREFOX {
		t.Fatalf("PlatformType() = %v, %v", p, err)
	}
	if !cfg.Pairing.AutoRepair || cfg.Connect.KeepaliveWindow != 90*time.Second {
		t.Fatalf("pairing %+v, connect %+v", cfg.Pairing, cfg.Connect)
	}
	if got := cfg.DeviceName(cfg.Accounts[0]); got != "Ubuntu" {
		t.Errorf("DeviceName(a) = %q, want client.os_name", got)
	}
	if got := cfg.DeviceName(cfg.Accounts[1]); got != "Ventas – Caja 2" {
		t.Errorf("DeviceName(b) = %q, want its device_name", got)
	}
	if cfg.Accounts[0].LinkPhone() != "" || cfg.Accounts[1].LinkPhone() != "15551234567" {
		t.Errorf("LinkPhone() = %q, %q", cfg.Accounts[0].LinkPhone(), cfg.Accounts[1].LinkPhone())
	}
}

// TestNamesMustBeUTF8: YAML cannot carry invalid UTF-8, the environment
// can.
func TestNamesMustBeUTF8(t *testing.T) {
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Client.OSName = "a\xffb"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "client.os_name") {
		t.Fatalf("os_name not UTF-8: %v", err)
	}
	cfg.Client.OSName = "Linux"
	cfg.Accounts = []Account{{ID: "a", DeviceName: "\xc3"}}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "accounts[0].device_name") {
		t.Fatalf("device_name not UTF-8: %v", err)
	}
}

func TestUnknownPlatformListsTheValidOnes(t *testing.T) {
	_, err := Load(writeConfig(t, "client:\n  platform: netscape\n"))
	for _, name := range []string{"chrome", "firefox", "safari", "edge", "desktop", "ipad", "android_tablet"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Fatalf("error %v does not list %s", err, name)
		}
	}
}

func TestClientEnvOverrides(t *testing.T) {
	t.Setenv("WAFLEET_CLIENT_VERSION", "2.3000.1045649367")
	t.Setenv("WAFLEET_CLIENT_PLATFORM", "edge")
	t.Setenv("WAFLEET_PAIRING_AUTO_REPAIR", "true")
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Client.Version != "2.3000.1045649367" || cfg.Client.Platform != "edge" || !cfg.Pairing.AutoRepair {
		t.Fatalf("env not applied: %+v %+v", cfg.Client, cfg.Pairing)
	}
}

func TestLoadFile(t *testing.T) {
	path := writeConfig(t, `
server:
  url: ws://127.0.0.1:9000/ws/chat
  root_public_key: 142375574d0a587166aae71ebe516437c4a28b73e3695c6ce1f7f9545da8ee6b
store:
  kind: redis
redis:
  addrs: [10.0.0.1:6379, 10.0.0.2:6379]
fleet:
  lease_ttl: 20s
log:
  level: debug
accounts:
  - id: support-1
  - id: alerts
    proxy: socks5://127.0.0.1:1080
`)
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Accounts) != 2 || cfg.Accounts[1].Proxy != "socks5://127.0.0.1:1080" {
		t.Fatalf("accounts = %+v", cfg.Accounts)
	}
	if len(cfg.Redis.Addrs) != 2 || cfg.Fleet.LeaseTTL != 20*time.Second || cfg.Log.Level != "debug" {
		t.Fatalf("cfg = %+v", cfg)
	}
	if key, err := cfg.Server.RootKey(); err != nil || len(key) != 32 {
		t.Fatalf("RootKey() = %x, %v", key, err)
	}
}

func TestEnvOverrides(t *testing.T) {
	t.Setenv("WAFLEET_HTTP_LISTEN", "127.0.0.1:9999")
	t.Setenv("WAFLEET_LOG_LEVEL", "warn")
	t.Setenv("WAFLEET_STORE_KIND", "redis")
	t.Setenv("WAFLEET_FLEET_INSTANCE_ID", "one")
	cfg, err := Load(writeConfig(t, "log:\n  level: debug\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.Listen != "127.0.0.1:9999" || cfg.Log.Level != "warn" {
		t.Fatalf("env not applied: listen %q level %q", cfg.HTTP.Listen, cfg.Log.Level)
	}
	if cfg.Store.Kind != "redis" || cfg.Fleet.InstanceID != "one" {
		t.Fatalf("env not applied: store.kind %q fleet.instance_id %q", cfg.Store.Kind, cfg.Fleet.InstanceID)
	}
}

func TestBadConfigNamesTheKey(t *testing.T) {
	const secretKey = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlYw=="
	tests := []struct {
		name, body, key string
	}{
		{"unknown key", "sever:\n  url: ws://x/\n", "sever"},
		{"bad url", "server:\n  url: http://example.com\n", "server.url"},
		{"bad root key", "server:\n  root_public_key: abcd\n", "server.root_public_key"},
		{"root key of 32 zero bytes", "server:\n  root_public_key: '" + strings.Repeat("00", 32) + "'\n", "server.root_public_key: is a point of small order"},
		{"root key of small order, top bit set", "server:\n  root_public_key: e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880\n", "server.root_public_key: is a point of small order"},
		{"bad store kind", "store:\n  kind: sqlite\n", "store.kind"},
		{"bad encryption key", "store:\n  encryption_key: " + secretKey + "\n", "store.encryption_key"},
		{"public listen without token", "http:\n  listen: 0.0.0.0:8080\n", "http.listen"},
		{"bad listen", "http:\n  listen: nonsense\n", "http.listen"},
		{"allowed host with a port", "http:\n  allowed_hosts: [wafleet.lan:8080]\n", "http.allowed_hosts"},
		{"allowed host wildcard", "http:\n  allowed_hosts: ['*.lan']\n", "http.allowed_hosts"},
		{"allowed host URL", "http:\n  allowed_hosts: ['http://wafleet.lan']\n", "http.allowed_hosts"},
		{"bad level", "log:\n  level: loud\n", "log.level"},
		{"short lease", "fleet:\n  lease_ttl: 1s\n", "fleet.lease_ttl"},
		{"negative redis db", "redis:\n  db: -1\n", "redis.db"},
		{"redis db of a cluster", "redis:\n  addrs: [a:7000, b:7000]\n  db: 2\n", "redis.db: must be 0 with a Redis Cluster"},
		{"master name with a space", "redis:\n  master_name: 'my primary'\n", "redis.master_name"},
		{"bad duration", "fleet:\n  lease_ttl: soon\n", "lease_ttl"},
		{"zero rate", "connect:\n  rate: 0\n", "connect.rate"},
		{"backoff cap below initial", "connect:\n  backoff_initial: 10s\n  backoff_max: 1s\n", "connect.backoff_max"},
		{"bad account id", "accounts:\n  - id: 'a b'\n", "accounts[0].id"},
		{"account id .", "accounts:\n  - id: '.'\n", "not . or .."},
		{"account id ..", "accounts:\n  - id: '..'\n", "not . or .."},
		{"long account id is not echoed whole", "accounts:\n  - id: '" + strings.Repeat("x", 10000) + "'\n", "(10000 bytes)"},
		{"duplicate account", "accounts:\n  - id: a\n  - id: a\n", "accounts[1].id"},
		{"bad proxy scheme", "accounts:\n  - id: a\n    proxy: ftp://h:1\n", "accounts[0].proxy"},
		{"keepalive window not above timeout", "connect:\n  keepalive_timeout: 10s\n  keepalive_window: 10s\n", "connect.keepalive_window"},
		{"keepalive window shorter than one missed pong", "connect:\n  keepalive_interval: 25s\n  keepalive_timeout: 10s\n  keepalive_window: 40s\n", "one missed pong"},
		{"bad keepalive window", "connect:\n  keepalive_window: often\n", "keepalive_window"},
		{"bad client version", "client:\n  version: 2.3000\n", "client.version"},
		{"client version not 2.3000.N", "client:\n  version: 3.1.4\n", "client.version"},
		{"client version zero revision", "client:\n  version: 2.3000.0\n", "client.version"},
		{"version url not http", "client:\n  version_url: ftp://example.com/sw.js\n", "client.version_url"},
		{"version url not a url", "client:\n  version_url: web.whatsapp.com/sw.js\n", "client.version_url"},
		{"empty os name", "client:\n  os_name: ''\n", "client.os_name"},
		{"long os name", "client:\n  os_name: " + strings.Repeat("x", 65) + "\n", "client.os_name"},
		{"os name with a newline", "client:\n  os_name: \"a\\nb\"\n", "client.os_name"},
		{"unknown platform", "client:\n  platform: netscape\n", "client.platform"},
		{"bad auto repair", "pairing:\n  auto_repair: maybe\n", "auto_repair"},
		{"negative archive retention", "store:\n  archive_retention: -1h\n", "store.archive_retention"},
		{"zero mass logout share", "safety:\n  mass_logout_share: 0\n", "safety.mass_logout_share"},
		{"mass logout share above 1", "safety:\n  mass_logout_share: 1.5\n", "safety.mass_logout_share"},
		{"zero mass logout min", "safety:\n  mass_logout_min: 0\n", "safety.mass_logout_min"},
		{"zero mass logout window", "safety:\n  mass_logout_window: 0s\n", "safety.mass_logout_window"},
		{"long device name", "accounts:\n  - id: a\n    device_name: " + strings.Repeat("é", 33) + "\n", "accounts[0].device_name"},
		{"device name with a tab", "accounts:\n  - id: a\n  - id: b\n    device_name: \"a\\tb\"\n", "accounts[1].device_name"},
		{"phone without +", "accounts:\n  - id: a\n    phone: '15551234567'\n", "accounts[0].phone"},
		{"phone with spaces", "accounts:\n  - id: a\n  - id: b\n    phone: '+1 555 123 4567'\n", "accounts[1].phone"},
		{"webhook without name", "webhooks:\n  - url: https://h.example/x\n    secret: hook-secret-0123456789\n", "webhooks[0].name"},
		{"webhook bad name", "webhooks:\n  - name: 'a b'\n    url: https://h.example/x\n    secret: hook-secret-0123456789\n", "webhooks[0].name"},
		{"webhook duplicate name", "webhooks:\n  - name: w\n    url: https://h.example/x\n    secret: hook-secret-0123456789\n  - name: w\n    url: https://h.example/y\n    secret: hook-secret-0123456789\n", "webhooks[1].name"},
		{"webhook url not http", "webhooks:\n  - name: w\n    url: ftp://h.example/x\n    secret: hook-secret-0123456789\n", "webhooks[0].url"},
		{"webhook url without host", "webhooks:\n  - name: w\n    url: https:///x\n    secret: hook-secret-0123456789\n", "webhooks[0].url"},
		{"webhook without secret", "webhooks:\n  - name: w\n    url: https://h.example/x\n", "webhooks[0].secret"},
		{"webhook short secret", "webhooks:\n  - name: w\n    url: https://h.example/x\n    secret: hook-secret-012\n", "webhooks[0].secret"},
		{"webhook unknown kind", "webhooks:\n  - name: w\n    url: https://h.example/x\n    secret: hook-secret-0123456789\n    events: [connected, typing]\n", "webhooks[0].events[1]"},
		{"webhook bad account", "webhooks:\n  - name: w\n    url: https://h.example/x\n    secret: hook-secret-0123456789\n    accounts: ['a b']\n", "webhooks[0].accounts[0]"},
		{"webhook short timeout", "webhooks:\n  - name: w\n    url: https://h.example/x\n    secret: hook-secret-0123456789\n    timeout: 500ms\n", "webhooks[0].timeout"},
		{"webhook long timeout", "webhooks:\n  - name: w\n    url: https://h.example/x\n    secret: hook-secret-0123456789\n    timeout: 2m\n", "webhooks[0].timeout"},
		{"webhook too many attempts", "webhooks:\n  - name: w\n    url: https://h.example/x\n    secret: hook-secret-0123456789\n    max_attempts: 51\n", "webhooks[0].max_attempts"},
		{"webhook negative attempts", "webhooks:\n  - name: w\n    url: https://h.example/x\n    secret: hook-secret-0123456789\n    max_attempts: -1\n", "webhooks[0].max_attempts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(writeConfig(t, tt.body))
			if err == nil {
				t.Fatal("Load succeeded; want an error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.key) {
				t.Errorf("error %q does not name %q", err, tt.key)
			}
			if strings.Contains(err.Error(), secretKey) {
				t.Errorf("error %q leaks the encryption key", err)
			}
			if strings.Contains(err.Error(), "hook-secret") {
				t.Errorf("error %q leaks the webhook secret", err)
			}
		})
	}
}

func TestWebhooks(t *testing.T) {
	cfg, err := Load(writeConfig(t, `
webhooks:
  - name: crm
    url: https://crm.example.com/hooks/wafleet?token=abc
    secret: hook-secret-0123456789
  - name: alerts
    url: http://127.0.0.1:9000/
    secret: another-secret-0123456789
    events: [alarm, logged_out]
    accounts: [a, b]
    timeout: 3s
    max_attempts: 2
`))
	if err != nil {
		t.Fatal(err)
	}
	eps := cfg.WebhookEndpoints()
	if len(eps) != 2 || eps[0].Timeout != 10*time.Second || eps[0].MaxAttempts != 10 || len(eps[0].Events) != 0 {
		t.Fatalf("defaults not applied: %+v", eps)
	}
	if eps[1].Timeout != 3*time.Second || eps[1].MaxAttempts != 2 || len(eps[1].Events) != 2 || len(eps[1].Accounts) != 2 {
		t.Fatalf("alerts endpoint: %+v", eps[1])
	}
	var buf strings.Builder
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "webhook", cfg.Webhooks[0])
	if strings.Contains(buf.String(), "hook-secret") || strings.Contains(buf.String(), "token=abc") || !strings.Contains(buf.String(), "crm.example.com") {
		t.Fatalf("a logged webhook shows its secret or query, or not its host: %s", buf.String())
	}
}

func TestPublicListenWithToken(t *testing.T) {
	tests := []struct {
		token string
		ok    bool
	}{
		{"' '", false},
		{"a", false},
		{"s3cret", false},
		{strings.Repeat("a", 64), false},                       // one character repeated
		{"0123456789012345678901234567", false},                // 28 digits: 93 bits
		{"0123456789abcdef0123456789abcdef", true},             // 32 hex digits: 128 bits
		{"q0Qz2XvB9mLk8RtY4wPa1sD7", true},                     // 24 of [A-Za-z0-9]: 143 bits
		{"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", true}, // openssl rand -base64 32
	}
	for _, tt := range tests {
		_, err := Load(writeConfig(t, "http:\n  listen: 0.0.0.0:8080\n  token: "+tt.token+"\n"))
		if (err == nil) != tt.ok {
			t.Errorf("token %s: %v, want ok=%v", tt.token, err, tt.ok)
		}
		if err != nil && (!strings.Contains(err.Error(), "http.token") || (len(tt.token) > 3 && strings.Contains(err.Error(), tt.token))) {
			t.Errorf("token %s: error %q should name the key and not echo the token", tt.token, err)
		}
	}
	// On loopback any token goes.
	if _, err := Load(writeConfig(t, "http:\n  listen: 127.0.0.1:8080\n  token: a\n")); err != nil {
		t.Error(err)
	}
}

func TestAllowedHosts(t *testing.T) {
	cfg, err := Load(writeConfig(t, "http:\n  allowed_hosts: [wafleet.lan, ops.example.com., 192.0.2.7, '[2001:db8::7]']\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.HTTP.AllowedHosts, " "); got != "wafleet.lan ops.example.com. 192.0.2.7 [2001:db8::7]" {
		t.Fatalf("http.allowed_hosts = %q", got)
	}
}

func TestEncryptionKeyFile(t *testing.T) {
	keyPath := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyPath, []byte("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(writeConfig(t, "store:\n  encryption_key_file: "+keyPath+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := cfg.Store.Key()
	if err != nil || len(key) != 32 || key[31] != 31 {
		t.Fatalf("Key() = %x, %v", key, err)
	}
	_, err = Load(writeConfig(t, "store:\n  encryption_key_file: /nonexistent/key\n"))
	if err == nil || !strings.Contains(err.Error(), "store.encryption_key_file") {
		t.Fatalf("missing key file: err = %v", err)
	}
}

func TestMissingFile(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "absent.yaml")); err == nil {
		t.Fatal("want an error for a missing file")
	}
}

// TestExampleConfig loads the documented config.yaml at the repository root:
// it must stay valid and mention every key the loader knows.
func TestExampleConfig(t *testing.T) {
	cfg, err := Load("../config.yaml")
	if err != nil {
		t.Fatalf("config.yaml: %v", err)
	}
	if len(cfg.Accounts) == 0 {
		t.Fatal("config.yaml lists no accounts")
	}
	raw, err := os.ReadFile("../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	v := viperWithDefaults()
	for _, key := range v.AllKeys() {
		leaf := key[strings.LastIndex(key, ".")+1:]
		if !strings.Contains(string(raw), leaf+":") {
			t.Errorf("config.yaml does not document %s", key)
		}
	}

	// The two variables it documents point it at `manager emulator`.
	for _, name := range []string{"WAFLEET_SERVER_URL", "WAFLEET_SERVER_ROOT_PUBLIC_KEY"} {
		if !strings.Contains(string(raw), name) {
			t.Errorf("config.yaml does not document %s", name)
		}
	}
	const emuURL, emuKey = "ws://127.0.0.1:7000/ws/chat", "6d41b2f0383d000ba5b61ff1cad1d5651cf2cd7ac94d09bd38eb6874f470df13"
	t.Setenv("WAFLEET_SERVER_URL", emuURL)
	t.Setenv("WAFLEET_SERVER_ROOT_PUBLIC_KEY", emuKey)
	cfg, err = Load("../config.yaml")
	if err != nil {
		t.Fatalf("config.yaml with the emulator's variables: %v", err)
	}
	key, err := cfg.Server.RootKey()
	if cfg.Server.URL != emuURL || err != nil || hex.EncodeToString(key) != emuKey {
		t.Fatalf("server = %+v (root key %x, %v); want the emulator's url and key", cfg.Server, key, err)
	}
}

// TestEnvVar: every key's variable, as EnvVar names it, overrides the key.
func TestEnvVar(t *testing.T) {
	if got := EnvVar("store.encryption_key"); got != "WAFLEET_STORE_ENCRYPTION_KEY" {
		t.Fatalf("EnvVar(store.encryption_key) = %q", got)
	}
	overrides := map[string]string{
		"server.url":              "ws://127.0.0.1:7000/ws/chat",
		"fleet.instance_id":       "pod-0",
		"http.listen":             "127.0.0.1:9999",
		"log.level":               "debug",
		"client.version_url":      "http://127.0.0.1:7000/sw.js",
		"redis.addr":              "redis:6379",
		"redis.master_name":       "wafleet-primary",
		"store.archive_retention": "1h",
	}
	for key, value := range overrides {
		if !slices.Contains(Keys(), key) {
			t.Fatalf("Keys() lacks %s", key)
		}
		t.Setenv(EnvVar(key), value)
	}
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.URL != overrides["server.url"] || cfg.Fleet.InstanceID != "pod-0" || cfg.HTTP.Listen != "127.0.0.1:9999" ||
		cfg.Log.Level != "debug" || cfg.Client.VersionURL != overrides["client.version_url"] || cfg.Redis.Addr != "redis:6379" ||
		cfg.Redis.MasterName != "wafleet-primary" || cfg.Store.ArchiveRetention != time.Hour {
		t.Fatalf("the variables did not override their keys: %+v", cfg)
	}
}
