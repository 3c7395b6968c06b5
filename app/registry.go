package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/wafleet/wafleet/actors/supervisor"
	"github.com/wafleet/wafleet/api"
	"github.com/wafleet/wafleet/config"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/status"
	"github.com/wafleet/wafleet/store"
)

// The accounts a process runs are the YAML file's accounts and the
// accounts created through the API, both kept in the store's account
// registry (store.Registry): at start and on every reload the YAML list
// seeds it (its ids become, or stay, source "config" with the file's
// settings; config records the file no longer names are removed, so those
// accounts stop; API records are never removed by a reload). The API
// creates, changes and deletes only API records: an id the file names is
// changed in the file. In fleet mode every instance follows the registry in
// Redis: it syncs on each change announced on the registry's channel, and
// every Options.RegistryCheck in case an announcement was missed. A change
// counter that went back says that Redis lost the registry: the instance
// writes back the records it last read.

// defaultRegistryCheck is the default of Options.RegistryCheck.
const defaultRegistryCheck = 30 * time.Second

// Reasons an account administration request is refused.
const (
	refusedConfigured = "account is configured in the YAML file: change it there"
	refusedConfigDel  = "account is configured in the YAML file: remove it there"
)

// deletedReason is the archive reason of a device whose account was
// deleted through the API.
const deletedReason = "deleted"

// configRecords are the registry records of the YAML accounts.
func configRecords(accounts []config.Account) []store.AccountRecord {
	recs := make([]store.AccountRecord, len(accounts))
	for i, acct := range accounts {
		recs[i] = store.AccountRecord{ID: acct.ID, Proxy: acct.Proxy, DeviceName: acct.DeviceName, Phone: acct.Phone, Source: store.SourceConfig}
	}
	return recs
}

// seedRegistry makes the registry's config records equal to the YAML
// list. The caller holds a.regMu.
func (a *App) seedRegistry(ctx context.Context) error {
	a.mu.Lock()
	accounts := a.accounts
	a.mu.Unlock()
	changed, err := a.store.SeedAccounts(ctx, configRecords(accounts))
	if err != nil {
		return fmt.Errorf("app: seed the account registry from the YAML file: %w", err)
	}
	if changed {
		a.logger.Info("account registry updated from the YAML file", "accounts", len(accounts))
	}
	return nil
}

// desiredAccounts are the accounts to run: the YAML's, then the
// registry's API accounts the YAML does not name, by id. When the registry
// cannot be read, the API accounts of the last sync stand in (and the
// error is returned with the list). The caller holds a.regMu.
func (a *App) desiredAccounts(ctx context.Context) ([]config.Account, error) {
	a.mu.Lock()
	accounts := a.accounts
	a.mu.Unlock()
	recs, err := a.store.Accounts(ctx)
	if err == nil && a.fleet != nil {
		err = a.checkRegistryKept(ctx)
	}
	if err != nil {
		err = fmt.Errorf("app: read the account registry (running the accounts it had): %w", err)
	} else {
		a.apiAccounts = a.apiAccounts[:0]
		for _, r := range recs {
			if r.Source == store.SourceAPI {
				a.apiAccounts = append(a.apiAccounts, config.Account{ID: r.ID, Proxy: r.Proxy, DeviceName: r.DeviceName, Phone: r.Phone})
			}
		}
	}
	named := make(map[string]bool, len(accounts))
	out := make([]config.Account, 0, len(accounts)+len(a.apiAccounts))
	for _, acct := range accounts {
		named[acct.ID] = true
		out = append(out, acct)
	}
	for _, acct := range a.apiAccounts {
		if !named[acct.ID] {
			out = append(out, acct)
		}
	}
	return out, err
}

// syncAccounts makes the supervisor (and in fleet mode the coordinator)
// run the desired accounts. In fleet mode it first writes the registry
// back when Redis lost it (restoreLostRegistry). The caller holds a.regMu.
func (a *App) syncAccounts(ctx context.Context) error {
	var restoreErr error
	if a.fleet != nil {
		restoreErr = a.restoreLostRegistry(ctx)
	}
	accounts, readErr := a.desiredAccounts(ctx)
	a.running.Store(int64(len(accounts)))
	if a.fleet != nil {
		a.fleet.coord.SetAccounts(accountIDs(accounts))
	}
	return errors.Join(restoreErr, readErr, a.apply(accounts))
}

// refreshAccounts seeds the registry from the YAML list and syncs. A
// failed seed still syncs: the registry keeps what it had.
func (a *App) refreshAccounts(ctx context.Context) error {
	a.regMu.Lock()
	defer a.regMu.Unlock()
	seedErr := a.seedRegistry(ctx)
	return errors.Join(seedErr, a.syncAccounts(ctx))
}

// followRegistry (fleet mode) subscribes to the registry's announcements
// and returns the loop that syncs on every change another instance
// announces, and every Options.RegistryCheck when the change counter moved
// without an announcement, until ctx ends. Run subscribes before it
// reports ready, so that no change made after that is missed.
func (a *App) followRegistry(ctx context.Context) func() {
	every := a.opts.RegistryCheck
	if every <= 0 {
		every = defaultRegistryCheck
	}
	changes, err := a.fleet.admin.WatchAccounts(ctx)
	if err != nil {
		a.logger.Warn("cannot subscribe to account registry changes; checking every "+every.String(), "error", err)
	}
	return func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-changes: // nil when not subscribed: never ready
			case <-t.C:
				v, err := a.fleet.admin.AccountsVersion(ctx)
				if err != nil || v == a.registrySeen.Load() {
					continue
				}
			}
			a.regMu.Lock()
			err := a.syncAccounts(ctx)
			a.regMu.Unlock()
			if err != nil && ctx.Err() == nil {
				a.logger.Error("follow the account registry", "error", err)
			}
		}
	}
}

// restoreLostRegistry (fleet mode) reads the registry's change counter
// before a sync reads the records. When it is below the counter of the
// previous sync, Redis lost its data: the accounts this instance last
// read are written back (the API's, then the YAML's by seeding). The
// counter read becomes a.registrySeen, so that every sync, the ones this
// instance's own changes cause included, moves the mark the next one
// compares with. A loss followed by as many new changes as the counter
// had before it goes unnoticed. The caller holds a.regMu.
func (a *App) restoreLostRegistry(ctx context.Context) error {
	v, err := a.fleet.admin.AccountsVersion(ctx)
	if err != nil {
		return fmt.Errorf("app: read the account registry's counter: %w", err)
	}
	if v < a.registrySeen.Load() {
		restored := 0
		for _, acct := range a.apiAccounts {
			_, err := a.store.CreateAccount(ctx, store.AccountRecord{ID: acct.ID, Proxy: acct.Proxy, DeviceName: acct.DeviceName, Source: store.SourceAPI})
			switch {
			case err == nil:
				restored++
			case !errors.Is(err, store.ErrExists):
				return fmt.Errorf("app: restore the account registry: %w", err)
			}
		}
		if err := a.seedRegistry(ctx); err != nil {
			return err
		}
		a.logger.Warn("the account registry's change counter went back (Redis lost data); wrote back the accounts this instance knew", "api_accounts", restored)
		if v, err = a.fleet.admin.AccountsVersion(ctx); err != nil {
			return fmt.Errorf("app: read the account registry's counter: %w", err)
		}
	}
	a.registrySeen.Store(v)
	return nil
}

// errRegistryLostWhileRead: Redis lost the registry between the reads of
// its counter and of its records; the records read are not to be trusted.
var errRegistryLostWhileRead = errors.New("the change counter went back while the records were read (Redis lost data)")

// checkRegistryKept (fleet mode) reads the change counter again after the
// records: below the counter restoreLostRegistry read before them, the
// records may be the empty registry of a Redis that lost its data, and
// must not replace the accounts this instance knows (the next sync writes
// those back).
func (a *App) checkRegistryKept(ctx context.Context) error {
	v, err := a.fleet.admin.AccountsVersion(ctx)
	if err != nil {
		return fmt.Errorf("read the change counter: %w", err)
	}
	if v < a.registrySeen.Load() {
		return errRegistryLostWhileRead
	}
	return nil
}

// accountAdmin implements api.AccountAdmin on the registry.
type accountAdmin struct{ a *App }

var _ api.AccountAdmin = accountAdmin{}

// Create implements api.AccountAdmin: the record goes into the registry,
// then the account runs (here, or in fleet mode on the instance that wins
// its lease).
func (ad accountAdmin) Create(ctx context.Context, spec api.AccountSpec) (status.Account, error) {
	a := ad.a
	a.regMu.Lock()
	defer a.regMu.Unlock()
	_, err := a.store.CreateAccount(ctx, store.AccountRecord{ID: spec.ID, Proxy: spec.Proxy, DeviceName: spec.DeviceName, Phone: spec.Phone, Source: store.SourceAPI})
	if errors.Is(err, store.ErrExists) {
		return status.Account{}, fmt.Errorf("%w: %w", api.ErrAccountExists, err)
	}
	if err != nil {
		return status.Account{}, err
	}
	a.logger.Info("account created through the API", "account", spec.ID)
	if err := a.syncAccounts(ctx); err != nil {
		// Created: it starts at the next sync (a fleet checks regularly).
		a.logger.Error("start a created account", "account", spec.ID, "error", err)
	}
	return a.viewOf(ctx, spec.ID), nil
}

// viewOf returns the board's view of a new account once its actor has
// reported (waiting a little), or a connecting one (it may run on another
// instance).
func (a *App) viewOf(ctx context.Context, id string) status.Account {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	deadline := time.After(time.Second)
	for {
		if v, ok := a.board.Get(id); ok {
			return v
		}
		select {
		case <-ctx.Done():
		case <-deadline:
		case <-t.C:
			continue
		}
		return status.Account{ID: id, State: events.StateConnecting}
	}
}

// apiRecord returns the registry record of an API account, or an error
// for the API: unknown (404) or configured in the YAML file (409).
func (a *App) apiRecord(ctx context.Context, id, refused string) (store.AccountRecord, error) {
	r, err := a.store.Account(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return r, fmt.Errorf("%w: %w", api.ErrUnknownAccount, err)
	case err != nil:
		return r, err
	case r.Source != store.SourceAPI:
		return r, &api.Refused{Reason: refused}
	}
	return r, nil
}

// Update implements api.AccountAdmin: the supervisor restarts the account's
// actor with the new settings (its device is kept).
func (ad accountAdmin) Update(ctx context.Context, id string, patch api.AccountPatch) error {
	a := ad.a
	a.regMu.Lock()
	defer a.regMu.Unlock()
	r, err := a.apiRecord(ctx, id, refusedConfigured)
	if err != nil {
		return err
	}
	if patch.Proxy != nil {
		r.Proxy = *patch.Proxy
	}
	if patch.DeviceName != nil {
		r.DeviceName = *patch.DeviceName
	}
	if _, err := a.store.UpdateAccount(ctx, r); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: %w", api.ErrUnknownAccount, err)
		}
		return err
	}
	a.logger.Info("account changed through the API", "account", id)
	if err := a.syncAccounts(ctx); err != nil {
		a.logger.Error("restart a changed account", "account", id, "error", err)
	}
	return nil
}

// Delete implements api.AccountAdmin. With logout the account's actor
// (wherever it runs: a.actions reaches it) unlinks the device first, and
// Delete waits until the stored device is no longer paired. Then the
// record leaves the registry, the account stops (here, or on the instance
// that runs it, which then releases its lease), and the device is archived
// with reason "deleted" (archiveDeleted).
func (ad accountAdmin) Delete(ctx context.Context, id string, logout bool) error {
	a := ad.a
	if _, err := a.apiRecord(ctx, id, refusedConfigDel); err != nil {
		return err
	}
	if logout {
		if err := a.unlinkForDelete(ctx, id); err != nil {
			return err
		}
	}
	a.regMu.Lock()
	defer a.regMu.Unlock()
	if _, err := a.apiRecord(ctx, id, refusedConfigDel); err != nil {
		return err // deleted meanwhile, or named by a reloaded YAML file
	}
	if err := a.store.DeleteAccount(ctx, id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: %w", api.ErrUnknownAccount, err)
		}
		return err
	}
	if err := a.syncAccounts(ctx); err != nil {
		a.logger.Error("stop a deleted account", "account", id, "error", err)
	}
	entry, err := a.archiveDeleted(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		a.logger.Info("account deleted through the API; it had no device", "account", id)
	case err != nil:
		return fmt.Errorf("app: archive the device of deleted account %s (the account is deleted): %w", id, err)
	default:
		a.logger.Info("account deleted through the API; its device is archived", "account", id, "archive_key", entry.Key)
	}
	a.dropAccountWebhooks(ctx, id)
	return nil
}

// unlinkForDelete asks the account's actor to log out and waits until the
// stored device is no longer paired. An account without a paired device
// has nothing to unlink.
func (a *App) unlinkForDelete(ctx context.Context, id string) error {
	if d, err := a.store.Load(ctx, id); errors.Is(err, store.ErrNotFound) || err == nil && !d.Paired() {
		return nil
	}
	if err := a.actions.Logout(ctx, id); err != nil {
		if errors.Is(err, api.ErrUnknownAccount) {
			return &api.Refused{Reason: "account is not running, so it cannot be unlinked: restart it, or delete it without logout"}
		}
		return err
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		d, err := a.store.Load(ctx, id)
		if errors.Is(err, store.ErrNotFound) || err == nil && !d.Paired() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("app: wait for account %s to be unlinked: %w", id, ctx.Err())
		case <-t.C:
		}
	}
}

// archiveDeleted archives the device of a deleted account once no actor
// runs it. Without a fleet: once the supervisor says the actor has ended
// (it was removed from the supervisor's accounts; Disown only waits for
// its end). In fleet mode, as an administrative write, which succeeds only
// while no instance holds the account's lease: the instance running it
// releases the lease at its coordinator's next step, once the actor has
// ended (this instance too: waiting on the supervisor here would take the
// account from it behind its coordinator's back). No instance running it,
// the lease is free at once.
func (a *App) archiveDeleted(ctx context.Context, id string) (store.ArchiveEntry, error) {
	if a.fleet == nil {
		timeout := time.Until(deadlineOf(ctx, 10*time.Second))
		if _, err := a.system.Root.RequestFuture(a.sup, &supervisor.Disown{IDs: []string{id}}, timeout).Result(); err != nil {
			return store.ArchiveEntry{}, fmt.Errorf("wait for the account to stop: %w", err)
		}
		return a.store.Archive(ctx, id, deletedReason)
	}
	for {
		e, err := a.fleet.admin.Archive(ctx, id, deletedReason)
		if !errors.Is(err, store.ErrLeaseLost) {
			return e, err
		}
		select {
		case <-ctx.Done():
			return store.ArchiveEntry{}, fmt.Errorf("wait for the instance running it to release it: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// deadlineOf returns ctx's deadline, or now+d without one.
func deadlineOf(ctx context.Context, d time.Duration) time.Time {
	if dl, ok := ctx.Deadline(); ok {
		return dl
	}
	return time.Now().Add(d)
}
