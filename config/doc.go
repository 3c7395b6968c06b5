// Package config loads and validates the manager's configuration: a YAML file
// read with viper, overridden by WAFLEET_* environment variables (for example
// WAFLEET_HTTP_LISTEN overrides http.listen; EnvVar names the variable of
// each of Keys).
//
// Every key is documented in the example config.yaml at the repository root.
// A bad value is an error that names its key; an unknown key is an error too,
// so a typo never silently falls back to a default. Package app and
// cmd/manager import this package; the actors receive plain values.
//
// A default that the code also needs without a configuration is defined
// once, where the code uses it, and only named here: server.url is
// wire.DefaultURL, the connect.backoff_* and connect.stable_after keys are
// connection.DefaultBackoff, the connect.keepalive_* keys are
// connection.DefaultKeepalive, the webhooks[].timeout and max_attempts
// defaults and bounds are package webhook's (DefaultTimeout,
// DefaultMaxAttempts), which also validates each endpoint.
package config
