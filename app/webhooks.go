package app

import (
	"context"
	"fmt"

	"github.com/wafleet/wafleet/api"
	"github.com/wafleet/wafleet/webhook"
)

// newWebhooks builds the webhook engine over the store's outbox (where
// the journal appends every event), with the configured endpoints and
// those stored through the API; the journal's Changed wakes it. Every
// instance of a fleet runs one; the Redis outbox lets one at a time
// deliver each endpoint.
func (a *App) newWebhooks() error {
	ob := a.outbox()
	if ob == nil {
		if len(a.cfg.Webhooks) > 0 {
			return fmt.Errorf("app: webhooks: store.kind %s keeps no outbox", a.cfg.Store.Kind)
		}
		return nil
	}
	wc := webhook.Config{
		Outbox:     ob,
		Instance:   a.cfg.Fleet.InstanceID,
		Endpoints:  a.cfg.WebhookEndpoints(),
		Registerer: a.metrics.Registry(),
		Logger:     a.logger.With("component", "webhook"),
	}
	if a.journal != nil {
		wc.Changed = a.journal.Changed // new entries go out at once
	}
	eng, err := webhook.New(wc)
	if err != nil {
		return fmt.Errorf("app: webhooks: %w", err)
	}
	a.webhooks = eng
	return nil
}

// webhookAPI is the engine for the API's webhook routes; nil (the routes
// answer 503) without one.
func (a *App) webhookAPI() api.Webhooks {
	if a.webhooks == nil {
		return nil
	}
	return a.webhooks
}

// runWebhooks delivers until ctx ends; Run stops it before the store
// closes.
func (a *App) runWebhooks(ctx context.Context) {
	if a.webhooks != nil {
		a.webhooks.Run(ctx)
	}
}

// dropAccountWebhooks removes the webhook endpoints of a deleted account,
// with their queues and dead letters. A failure is logged: the account is
// gone either way, and its endpoints can be deleted through the API.
func (a *App) dropAccountWebhooks(ctx context.Context, id string) {
	if a.webhooks == nil {
		return
	}
	if _, err := a.webhooks.SetAccountEndpoints(ctx, id, nil); err != nil {
		a.logger.Error("remove the webhooks of a deleted account", "account", id, "error", err)
	}
}

// openConfiguredEndpoints opens the queue of every configured webhook
// endpoint before any account starts, so that a new endpoint receives the
// accounts' first events too (a queue starts with the next entry
// appended). The engine opens them again, idempotently, when it starts; a
// failure here is only logged.
func (a *App) openConfiguredEndpoints(ctx context.Context) {
	ob := a.outbox()
	if ob == nil {
		return
	}
	for _, w := range a.cfg.Webhooks {
		if err := ob.OpenEndpoint(ctx, w.Name); err != nil {
			a.logger.Warn("open a webhook endpoint's queue before the accounts start", "endpoint", w.Name, "error", err)
		}
	}
}
