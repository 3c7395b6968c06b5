package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"

	"github.com/wafleet/wafleet/actors/connection"
	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/wire"
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("config: invalid")

// Config is the whole manager configuration.
type Config struct {
	Server   Server    `mapstructure:"server"`
	Store    Store     `mapstructure:"store"`
	Redis    Redis     `mapstructure:"redis"`
	Fleet    Fleet     `mapstructure:"fleet"`
	HTTP     HTTP      `mapstructure:"http"`
	Log      Log       `mapstructure:"log"`
	Metrics  Metrics   `mapstructure:"metrics"`
	Connect  Connect   `mapstructure:"connect"`
	Client   Client    `mapstructure:"client"`
	Pairing  Pairing   `mapstructure:"pairing"`
	Safety   Safety    `mapstructure:"safety"`
	Messages Messages  `mapstructure:"messages"`
	Accounts []Account `mapstructure:"accounts"`
	Webhooks []Webhook `mapstructure:"webhooks"`
}

// Messages configures the received messages' events and the sends.
type Messages struct {
	// Raw adds each message's serialized protobuf (base64, the plaintext)
	// to its "message" event, for consumers that read the kinds the event
	// only names. Default: false.
	Raw bool `mapstructure:"raw"`
	// SendPerMinute and SendBurst limit the messages each account sends
	// (POST /api/accounts/{id}/messages answers 429 beyond them), so that
	// a caller's bug cannot get an account banned for spam. Defaults:
	// connection.DefaultSendRate (20 a minute, 5 at once).
	SendPerMinute float64 `mapstructure:"send_per_minute"`
	SendBurst     int     `mapstructure:"send_burst"`
}

// Bounds of the send rate keys.
const (
	MaxSendPerMinute = 600
	MaxSendBurst     = 100
)

func (m Messages) validate() error {
	switch {
	case m.SendPerMinute <= 0 || m.SendPerMinute > MaxSendPerMinute:
		return keyError("messages.send_per_minute", fmt.Sprintf("must be above 0 and at most %d", MaxSendPerMinute))
	case m.SendBurst < 1 || m.SendBurst > MaxSendBurst:
		return keyError("messages.send_burst", fmt.Sprintf("must be 1 to %d", MaxSendBurst))
	}
	return nil
}

// Server says where the WhatsApp server is and how to trust it.
type Server struct {
	// URL of the WebSocket endpoint. Default: wire.DefaultURL, WhatsApp's.
	URL string `mapstructure:"url"`
	// RootPublicKey is the hex Curve25519 key that must sign the server's
	// certificate chain. Default: "" (WhatsApp's own root key).
	RootPublicKey string `mapstructure:"root_public_key"`
}

// Store selects where device state lives.
type Store struct {
	// Kind is "embedded" (bbolt file, the default) or "redis".
	Kind string `mapstructure:"kind"`
	// Path of the embedded store file. Default: "./data/wafleet.db".
	Path string `mapstructure:"path"`
	// EncryptionKey is a base64 32-byte key sealing private keys and the ADV
	// secret at rest. Default: "" (not sealed). Prefer EncryptionKeyFile or
	// the WAFLEET_STORE_ENCRYPTION_KEY environment variable.
	EncryptionKey string `mapstructure:"encryption_key"`
	// EncryptionKeyFile is a file holding the base64 key. Default: "".
	EncryptionKeyFile string `mapstructure:"encryption_key_file"`
	// ArchiveRetention is how long a device archived by a server-initiated
	// wipe is kept (restorable) before it is pruned. 0 keeps archived
	// devices forever. Default: 720h (30 days).
	ArchiveRetention time.Duration `mapstructure:"archive_retention"`
}

// Redis is the connection to the Redis server(s) used in fleet mode.
type Redis struct {
	// Addr is one host:port. Default: "127.0.0.1:6379".
	Addr string `mapstructure:"addr"`
	// Addrs lists several host:port, overriding Addr: the nodes of a
	// Redis Cluster (any of them; the client discovers the others), or,
	// with MasterName, the Sentinels.
	Addrs []string `mapstructure:"addrs"`
	// MasterName is the name of the primary the Sentinels at Addrs (or
	// Addr) monitor; empty: no Sentinel. Default: "".
	MasterName string `mapstructure:"master_name"`
	Username   string `mapstructure:"username"`
	Password   string `mapstructure:"password"`
	// TLS enables TLS to Redis. Default: false.
	TLS bool `mapstructure:"tls"`
	// DB is the database number (single node or Sentinel; a Cluster has
	// only 0). Default: 0.
	DB int `mapstructure:"db"`
}

// Cluster reports whether the configuration names a Redis Cluster: several
// addresses and no Sentinel master name. A single address may also be a
// Cluster node; the manager asks it at start.
func (r Redis) Cluster() bool { return len(r.Addrs) > 1 && r.MasterName == "" }

// Fleet configures how several instances share accounts through Redis.
type Fleet struct {
	// InstanceID names this instance. Default: hostname + "-" + pid.
	InstanceID string `mapstructure:"instance_id"`
	// LeaseTTL is how long an account lease lives without renewal. Default: 15s.
	LeaseTTL time.Duration `mapstructure:"lease_ttl"`
}

// HTTP configures the status API.
type HTTP struct {
	// Listen is the API's address. Default: "127.0.0.1:8080". An address that
	// is not loopback requires Token.
	Listen string `mapstructure:"listen"`
	// Token, when set, is required as "Authorization: Bearer TOKEN" on every
	// API request. Default: "".
	Token string `mapstructure:"token"`
	// AllowedHosts lists the names (or addresses) besides loopback ones
	// under which browsers and clients may reach the API: a request whose
	// Host header is none of them is refused (DNS rebinding). Default: none.
	AllowedHosts []string `mapstructure:"allowed_hosts"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error. Default: info.
	Level string `mapstructure:"level"`
	// QRTerminal draws QR codes on stdout when it is a terminal. Default: false.
	QRTerminal bool `mapstructure:"qr_terminal"`
	// HealthInterval is the period of the health summary line. Default: 30s.
	HealthInterval time.Duration `mapstructure:"health_interval"`
}

// Metrics configures GET /metrics.
type Metrics struct {
	// AccountInfo exports wafleet_account_info{account,state,instance} = 1,
	// one series per account this instance runs: as many series as
	// accounts, hence off by default. Default: false.
	AccountInfo bool `mapstructure:"account_info"`
}

// Connect tunes how connections are opened and kept.
type Connect struct {
	// Rate is the number of new connections per second this instance may open
	// (a token bucket). Default: 20.
	Rate float64 `mapstructure:"rate"`
	// Burst is the token bucket size. Default: 20.
	Burst int `mapstructure:"burst"`
	// BackoffInitial is the first reconnect delay cap. Default: 1s.
	BackoffInitial time.Duration `mapstructure:"backoff_initial"`
	// BackoffMax caps reconnect delays. Default: 2m.
	BackoffMax time.Duration `mapstructure:"backoff_max"`
	// StableAfter resets the backoff once a connection lived this long. Default: 1m.
	StableAfter time.Duration `mapstructure:"stable_after"`
	// KeepaliveInterval is the mean time between pings. Default: 25s.
	KeepaliveInterval time.Duration `mapstructure:"keepalive_interval"`
	// KeepaliveTimeout is how long a ping may wait for its answer. Default: 10s.
	KeepaliveTimeout time.Duration `mapstructure:"keepalive_timeout"`
	// KeepaliveWindow: a connection is closed and reconnected only when no
	// ping succeeded for this long (a single missed pong is tolerated).
	// Must be longer than KeepaliveTimeout. Default: 3m.
	KeepaliveWindow time.Duration `mapstructure:"keepalive_window"`
}

// WebVersionURL is WhatsApp Web's service-worker script, where the current
// client revision is published; the default client.version_url.
const WebVersionURL = "https://web.whatsapp.com/sw.js"

// DefaultOSName is the default client.os_name.
const DefaultOSName = "Linux"

// DefaultPlatform is the default client.platform.
const DefaultPlatform = "chrome"

// Client describes the WhatsApp Web client the accounts present themselves
// as.
type Client struct {
	// Version is the WhatsApp Web version sent at first, "2.3000.N".
	// Default: "" (the version built in, payload.DefaultVersion). A newer
	// one found at VersionURL (or stored by another instance) replaces it.
	Version string `mapstructure:"version"`
	// VersionURL is fetched for the current version when the server
	// refuses ours as outdated (and once at start). Default: WebVersionURL;
	// "" turns fetching off.
	VersionURL string `mapstructure:"version_url"`
	// OSName is the operating system the phone shows for each linked
	// device, after the platform: "Chrome (Linux)". Default: "Linux".
	// At most 64 bytes of UTF-8; accounts[].device_name overrides it.
	OSName string `mapstructure:"os_name"`
	// Platform is the browser or platform the phone shows (DeviceProps
	// platform type, lowercased: chrome, firefox, safari, edge, desktop,
	// ...). Default: "chrome".
	Platform string `mapstructure:"platform"`
}

// Pairing configures how accounts are linked.
type Pairing struct {
	// AutoRepair: an account whose device was wiped after failure 403
	// (locked) or 406 (banned) starts pairing again by itself. Default:
	// false (it stops with an alarm until POST /api/accounts/{id}/pair).
	AutoRepair bool `mapstructure:"auto_repair"`
}

// Safety bounds what a misbehaving server can do to the fleet at once.
type Safety struct {
	// MassLogoutShare: when more than this part of the instance's accounts
	// (0 < share <= 1) is logged out by the server within
	// MassLogoutWindow, the mass_logout alarm fires and further wipes wait
	// for POST /api/wipes/confirm. Default: 0.2.
	MassLogoutShare float64 `mapstructure:"mass_logout_share"`
	// MassLogoutMin is the least number of logouts within the window that
	// may pause wipes, so a small install is never paused by one logout.
	// Default: 3.
	MassLogoutMin int `mapstructure:"mass_logout_min"`
	// MassLogoutWindow is how far back logouts count. Default: 10m.
	MassLogoutWindow time.Duration `mapstructure:"mass_logout_window"`
}

// Account is one WhatsApp account the fleet keeps connected.
type Account struct {
	// ID names the account; letters, digits, '-', '_' and '.', at most 64.
	ID string `mapstructure:"id"`
	// Proxy is an optional http://, https:// or socks5:// proxy URL.
	Proxy string `mapstructure:"proxy"`
	// DeviceName optionally replaces client.os_name for this account: the
	// name its phone shows in Linked devices. Default: "".
	DeviceName string `mapstructure:"device_name"`
	// Phone makes the account pair by phone number (a link code, typed on
	// the phone) instead of by QR code from the start: the account's number
	// in E.164, "+15551234567". Default "": QR codes.
	Phone string `mapstructure:"phone"`
}

// LinkPhone is Phone as the protocol wants it: digits without the +.
func (a Account) LinkPhone() string { return strings.TrimPrefix(a.Phone, "+") }

func viperWithDefaults() *viper.Viper {
	v := viper.New()
	setDefaults(v)
	return v
}

func setDefaults(v *viper.Viper) {
	v.SetDefault("server.url", wire.DefaultURL)
	v.SetDefault("server.root_public_key", "")
	v.SetDefault("store.kind", "embedded")
	v.SetDefault("store.path", "./data/wafleet.db")
	v.SetDefault("store.encryption_key", "")
	v.SetDefault("store.encryption_key_file", "")
	v.SetDefault("redis.addr", "127.0.0.1:6379")
	v.SetDefault("redis.addrs", []string{})
	v.SetDefault("redis.master_name", "")
	v.SetDefault("redis.username", "")
	v.SetDefault("redis.password", "")
	v.SetDefault("redis.tls", false)
	v.SetDefault("redis.db", 0)
	v.SetDefault("fleet.instance_id", "")
	v.SetDefault("fleet.lease_ttl", 15*time.Second)
	v.SetDefault("http.listen", "127.0.0.1:8080")
	v.SetDefault("http.token", "")
	v.SetDefault("http.allowed_hosts", []string{})
	v.SetDefault("log.level", "info")
	v.SetDefault("log.qr_terminal", false)
	v.SetDefault("log.health_interval", 30*time.Second)
	v.SetDefault("metrics.account_info", false)
	v.SetDefault("connect.rate", 20.0)
	v.SetDefault("connect.burst", 20)
	v.SetDefault("connect.backoff_initial", connection.DefaultBackoff.Initial)
	v.SetDefault("connect.backoff_max", connection.DefaultBackoff.Max)
	v.SetDefault("connect.stable_after", connection.DefaultBackoff.StableAfter)
	v.SetDefault("connect.keepalive_interval", connection.DefaultKeepalive.Interval)
	v.SetDefault("connect.keepalive_timeout", connection.DefaultKeepalive.Timeout)
	v.SetDefault("connect.keepalive_window", connection.DefaultKeepalive.Window)
	v.SetDefault("client.version", "")
	v.SetDefault("client.version_url", WebVersionURL)
	v.SetDefault("client.os_name", DefaultOSName)
	v.SetDefault("client.platform", DefaultPlatform)
	v.SetDefault("pairing.auto_repair", false)
	v.SetDefault("store.archive_retention", 30*24*time.Hour)
	v.SetDefault("safety.mass_logout_share", 0.2)
	v.SetDefault("safety.mass_logout_min", 3)
	v.SetDefault("safety.mass_logout_window", 10*time.Minute)
	v.SetDefault("messages.send_per_minute", connection.DefaultSendRate.PerMinute)
	v.SetDefault("messages.send_burst", connection.DefaultSendRate.Burst)
	v.SetDefault("accounts", []map[string]any{})
	v.SetDefault("webhooks", []map[string]any{})
}

// envPrefix starts the name of every environment variable overriding a key.
const envPrefix = "WAFLEET"

// envKeyReplacer turns a key's dots into the underscores of its variable.
var envKeyReplacer = strings.NewReplacer(".", "_")

// Keys returns every configuration key ("http.listen", ...), sorted.
func Keys() []string {
	keys := viperWithDefaults().AllKeys()
	slices.Sort(keys)
	return keys
}

// EnvVar returns the environment variable that overrides key:
// "store.encryption_key" → "WAFLEET_STORE_ENCRYPTION_KEY".
func EnvVar(key string) string {
	return envPrefix + "_" + strings.ToUpper(envKeyReplacer.Replace(key))
}

// Load reads the configuration file at path (YAML), applies WAFLEET_*
// environment overrides (EnvVar) and defaults, and validates the result. An
// empty path loads defaults and environment only.
func Load(path string) (*Config, error) {
	v := viperWithDefaults()
	v.SetEnvPrefix(envPrefix)
	v.SetEnvKeyReplacer(envKeyReplacer)
	v.AutomaticEnv()
	if path != "" {
		v.SetConfigFile(path)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("config: read %s: %w", path, err)
		}
	}
	var cfg Config
	hooks := mapstructure.ComposeDecodeHookFunc(
		mapstructure.StringToTimeDurationHookFunc(),
		mapstructure.StringToSliceHookFunc(","),
	)
	if err := v.UnmarshalExact(&cfg, viper.DecodeHook(hooks)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if cfg.Fleet.InstanceID == "" {
		cfg.Fleet.InstanceID = defaultInstanceID()
	}
	applyWebhookDefaults(cfg.Webhooks)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

func defaultInstanceID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "wafleet"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

// RootKey returns the configured root public key, or nil for WhatsApp's.
func (s Server) RootKey() ([]byte, error) {
	if s.RootPublicKey == "" {
		return nil, nil
	}
	key, err := hex.DecodeString(s.RootPublicKey)
	if err != nil || len(key) != 32 {
		return nil, keyError("server.root_public_key", "must be 64 hex characters (a 32-byte Curve25519 key)")
	}
	if crypto.CheckPublicKey(key) != nil {
		return nil, keyError("server.root_public_key", "is a point of small order, under which anyone can forge signatures")
	}
	return key, nil
}

func keyError(key, problem string) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, key, problem)
}
