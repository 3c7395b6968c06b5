package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wafleet/wafleet/actors/connection"
	"github.com/wafleet/wafleet/actors/supervisor"
	"github.com/wafleet/wafleet/api"
	"github.com/wafleet/wafleet/store"
)

// pruneEvery is how often archived devices past store.archive_retention
// are removed (once at start, then at this interval).
const pruneEvery = time.Hour

// newWipeGuard builds the guard the accounts of this instance share, from
// the safety.* keys. It counts the accounts this instance runs.
func (a *App) newWipeGuard() error {
	g, err := connection.NewWipeGuard(connection.WipeGuardConfig{
		Share:    a.cfg.Safety.MassLogoutShare,
		Min:      a.cfg.Safety.MassLogoutMin,
		Window:   a.cfg.Safety.MassLogoutWindow,
		Accounts: a.runningAccounts,
		Logger:   a.logger,
	})
	if err != nil {
		return fmt.Errorf("app: safety: %w", err)
	}
	a.wipes = g
	paused := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "wafleet_wipes_paused",
		Help: "Accounts whose server-initiated wipe waits for POST /api/wipes/confirm.",
	}, func() float64 { return float64(len(g.Held())) })
	if err := a.metrics.Registry().Register(paused); err != nil {
		return fmt.Errorf("app: metrics: %w", err)
	}
	return nil
}

// runningAccounts is how many accounts this instance runs: those of the
// latest sync with the registry, or in fleet mode those it holds the lease
// of.
func (a *App) runningAccounts() int {
	if a.fleet != nil {
		return len(a.fleet.leases.Held())
	}
	return int(a.running.Load())
}

// runPruning removes archived devices past store.archive_retention now and
// every pruneEvery, until ctx ends. Retention 0 keeps them forever.
func (a *App) runPruning(ctx context.Context) {
	if a.cfg.Store.ArchiveRetention == 0 {
		return
	}
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		n, err := a.store.PruneArchive(pctx, time.Now().Add(-a.cfg.Store.ArchiveRetention))
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			a.logger.Error("prune archived devices", "error", err)
		case n > 0:
			a.logger.Info("pruned archived devices past store.archive_retention", "devices", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// archiveControl serves the archive routes of the API.
type archiveControl struct{ a *App }

var _ api.Archive = archiveControl{}

func (c archiveControl) List(ctx context.Context) ([]store.ArchiveEntry, error) {
	return c.a.store.ListArchive(ctx)
}

// Restore asks the account's actor, the owner of its device, to restore the
// entry: it ends pairing first and logs in with the restored device.
func (c archiveControl) Restore(ctx context.Context, id, key string) (store.ArchiveEntry, error) {
	res, err := c.a.askAccount(ctx, id, &connection.RestoreArchived{Key: key})
	if err != nil {
		return store.ArchiveEntry{}, err
	}
	r, ok := res.(*connection.RestoreResult)
	if !ok {
		return store.ArchiveEntry{}, fmt.Errorf("app: account %s answered %T", id, res)
	}
	return r.Entry, r.Err
}

func (c archiveControl) HeldWipes() (bool, []string) {
	return c.a.wipes.Paused(), c.a.wipes.Held()
}

// ConfirmWipes ends the pause and lets every held account wipe (archive)
// its device and go on. An account that was restarted meanwhile has no
// held wipe any more and keeps its device.
func (c archiveControl) ConfirmWipes(ctx context.Context) ([]string, error) {
	var errs []error
	ids := c.a.wipes.Confirm()
	for _, id := range ids {
		res, err := c.a.askAccount(ctx, id, &connection.ConfirmWipe{})
		if r, ok := res.(*connection.Result); ok && !r.OK {
			c.a.logger.Info("held wipe not applied", "account", id, "reason", r.Reason)
		}
		if err != nil && !errors.Is(err, api.ErrUnknownAccount) {
			errs = append(errs, fmt.Errorf("account %s: %w", id, err))
		}
	}
	return ids, errors.Join(errs...)
}

// askAccount sends msg to the account's actor through the supervisor and
// returns its answer.
func (a *App) askAccount(ctx context.Context, id string, msg any) (any, error) {
	if !a.isReady() {
		return nil, errors.New("app: manager is starting")
	}
	timeout := 5 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	res, err := a.system.Root.RequestFuture(a.sup, &supervisor.Forward{ID: id, Message: msg}, timeout).Result()
	if err != nil {
		return nil, fmt.Errorf("app: ask account %s: %w", id, err)
	}
	if f, ok := res.(*supervisor.Forwarded); ok {
		if errors.Is(f.Err, supervisor.ErrUnknownAccount) {
			return nil, api.ErrUnknownAccount
		}
		return nil, f.Err
	}
	return res, nil
}
