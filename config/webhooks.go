package config

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/wafleet/wafleet/webhook"
)

// Webhook is one configured webhook endpoint (webhooks[] in the file).
type Webhook struct {
	// Name names the endpoint (its queue, its metrics and dead letters):
	// 1-64 letters, digits, '.', '-' or '_', unique. Required.
	Name string `mapstructure:"name"`
	// URL receives the POSTs: http:// or https:// with a host. Required.
	URL string `mapstructure:"url"`
	// Events are the event kinds delivered. Default: every kind.
	Events []string `mapstructure:"events"`
	// Secret signs every delivery (HMAC-SHA256), at least 16 bytes.
	// Required; never logged.
	Secret string `mapstructure:"secret"`
	// Accounts limits the deliveries to these accounts. Default: every
	// account.
	Accounts []string `mapstructure:"accounts"`
	// Timeout bounds one attempt, 1s to 60s. Default: 10s.
	Timeout time.Duration `mapstructure:"timeout"`
	// MaxAttempts is how many attempts a delivery gets before it becomes
	// a dead letter, 1 to 50. Default: 10.
	MaxAttempts int `mapstructure:"max_attempts"`
}

// LogValue renders the webhook without its secret and its URL's query.
func (w Webhook) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", w.Name), slog.String("url", webhook.RedactURL(w.URL)))
}

// Endpoint is the webhook as the delivery engine takes it, defaults
// applied.
func (w Webhook) Endpoint() webhook.Endpoint {
	return webhook.Endpoint{
		Name: w.Name, URL: w.URL, Events: w.Events, Accounts: w.Accounts,
		Secret: w.Secret, Timeout: w.Timeout, MaxAttempts: w.MaxAttempts,
	}.WithDefaults()
}

// WebhookEndpoints returns the configured webhooks as endpoints.
func (c *Config) WebhookEndpoints() []webhook.Endpoint {
	eps := make([]webhook.Endpoint, len(c.Webhooks))
	for i, w := range c.Webhooks {
		eps[i] = w.Endpoint()
	}
	return eps
}

func applyWebhookDefaults(hooks []Webhook) {
	for i := range hooks {
		if hooks[i].Timeout == 0 {
			hooks[i].Timeout = webhook.DefaultTimeout
		}
		if hooks[i].MaxAttempts == 0 {
			hooks[i].MaxAttempts = webhook.DefaultMaxAttempts
		}
	}
}

func validateWebhooks(hooks []Webhook) error {
	seen := make(map[string]bool, len(hooks))
	for i, w := range hooks {
		key := fmt.Sprintf("webhooks[%d]", i)
		switch {
		case w.Name == "":
			return keyError(key+".name", "is required: it names the endpoint's queue, metrics and dead letters")
		case !webhook.ValidName(w.Name):
			return keyError(key+".name", fmt.Sprintf("%q must be 1-64 letters, digits, '.', '-' or '_'", shorten(w.Name)))
		case seen[w.Name]:
			return keyError(key+".name", fmt.Sprintf("%q appears twice", w.Name))
		}
		seen[w.Name] = true
		e := webhook.Endpoint{Name: w.Name, URL: w.URL, Events: w.Events, Accounts: w.Accounts, Secret: w.Secret, Timeout: w.Timeout, MaxAttempts: w.MaxAttempts}
		if err := e.Validate(); err != nil {
			var fe *webhook.FieldError
			if errors.As(err, &fe) {
				return keyError(key+"."+fe.Field, fe.Problem)
			}
			return keyError(key, err.Error())
		}
	}
	return nil
}
