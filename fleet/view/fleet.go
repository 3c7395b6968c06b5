package view

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wafleet/wafleet/api"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/status"
	wredis "github.com/wafleet/wafleet/store/redis"
)

// FleetConfig configures a Fleet. Every field but Logger is required.
type FleetConfig struct {
	Client   goredis.UniversalClient
	Keys     wredis.ViewKeys
	Instance string
	// Board gives the views of the accounts this instance runs.
	Board Board
	// Accounts returns the accounts the fleet runs (the coordinator's).
	Accounts func() []string
	// Router fetches the QR code of an account pairing elsewhere.
	Router *Router
	Logger *slog.Logger
}

// Fleet is the view of every instance. It implements api.Fleet.
type Fleet struct {
	cfg FleetConfig
	log *slog.Logger
}

var _ api.Fleet = (*Fleet)(nil)

// NewFleet returns a Fleet.
func NewFleet(cfg FleetConfig) (*Fleet, error) {
	if cfg.Client == nil || cfg.Instance == "" || cfg.Board == nil || cfg.Accounts == nil || cfg.Router == nil {
		return nil, fmt.Errorf("%w: Client, Instance, Board, Accounts and Router are required", ErrConfig)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Fleet{cfg: cfg, log: log}, nil
}

// members are the live members with the expiry of their membership, and
// Redis's clock, read in the same round trip as something else.
type members struct {
	zset *goredis.ZSliceCmd
	time *goredis.TimeCmd
}

func readMembers(ctx context.Context, p goredis.Pipeliner, k wredis.ViewKeys) members {
	return members{zset: p.ZRangeWithScores(ctx, k.Members(), 0, -1), time: p.Time(ctx)}
}

// live returns the live members and their expiry, and Redis's clock.
func (m members) live() (map[string]time.Time, time.Time, error) {
	zs, err := m.zset.Result()
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("view: read members: %w", err)
	}
	now, err := m.time.Result()
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("view: read Redis's clock: %w", err)
	}
	out := make(map[string]time.Time, len(zs))
	for _, z := range zs {
		exp := time.UnixMilli(int64(z.Score))
		if name, ok := z.Member.(string); ok && exp.After(now) {
			out[name] = exp
		}
	}
	return out, now, nil
}

// Accounts implements api.Fleet: the views of the accounts this instance
// runs from its board, the others as their owners published them, and a
// row without instance for every listed account nobody publishes.
func (f *Fleet) Accounts(ctx context.Context) ([]status.Account, error) {
	pipe := f.cfg.Client.Pipeline()
	all := pipe.HGetAll(ctx, f.cfg.Keys.Accounts())
	m := readMembers(ctx, pipe, f.cfg.Keys)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("view: read the fleet's accounts: %w", err)
	}
	live, _, err := m.live()
	if err != nil {
		return nil, err
	}
	views := map[string]status.Account{}
	for _, id := range f.cfg.Accounts() {
		views[id] = unowned(id)
	}
	for id, raw := range all.Val() {
		if _, listed := views[id]; !listed {
			continue // removed from the fleet's list
		}
		if v, err := decode(raw); err != nil {
			f.log.Warn("fleet view: a published view does not decode", "account", id, "error", err)
		} else {
			v.InstanceAlive = f.alive(live, v.Instance)
			views[id] = v
		}
	}
	for _, v := range f.cfg.Board.List() {
		views[v.ID] = f.local(v)
	}
	out := make([]status.Account, 0, len(views))
	for _, id := range slices.Sorted(maps.Keys(views)) {
		out = append(out, views[id])
	}
	return out, nil
}

// Account implements api.Fleet. The QR code of an account pairing on
// another live instance is fetched from it; when that fails the view says
// qr_showing with a null qr.
func (f *Fleet) Account(ctx context.Context, id string) (status.Account, error) {
	if v, ok := f.cfg.Board.Get(id); ok {
		return f.local(v), nil
	}
	pipe := f.cfg.Client.Pipeline()
	one := pipe.HGet(ctx, f.cfg.Keys.Accounts(), id)
	m := readMembers(ctx, pipe, f.cfg.Keys)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return status.Account{}, fmt.Errorf("view: read account %s: %w", id, err)
	}
	live, _, err := m.live()
	if err != nil {
		return status.Account{}, err
	}
	listed := slices.Contains(f.cfg.Accounts(), id)
	raw, err := one.Result()
	switch {
	case !listed:
		return status.Account{}, api.ErrUnknownAccount
	case errors.Is(err, goredis.Nil):
		return unowned(id), nil
	case err != nil:
		return status.Account{}, fmt.Errorf("view: read account %s: %w", id, err)
	}
	v, err := decode(raw)
	if err != nil {
		return status.Account{}, fmt.Errorf("view: account %s: %w", id, err)
	}
	v.InstanceAlive = f.alive(live, v.Instance)
	if v.QRShowing && *v.InstanceAlive {
		qr, err := f.cfg.Router.QR(ctx, v.Instance, id)
		switch {
		case err != nil:
			f.log.Warn("fleet view: fetch a QR code from its instance", "account", id, "instance", v.Instance, "error", err)
		case qr != "":
			v.QR = &qr
		}
	}
	return v, nil
}

// Instances implements api.Fleet.
func (f *Fleet) Instances(ctx context.Context) ([]api.Instance, error) {
	pipe := f.cfg.Client.Pipeline()
	recs := pipe.HGetAll(ctx, f.cfg.Keys.Instances())
	m := readMembers(ctx, pipe, f.cfg.Keys)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("view: read the instances: %w", err)
	}
	live, _, err := m.live()
	if err != nil {
		return nil, err
	}
	out := make([]api.Instance, 0, len(live))
	for _, id := range slices.Sorted(maps.Keys(live)) {
		inst := api.Instance{ID: id, ExpiresAt: live[id].UTC(), Self: id == f.cfg.Instance}
		var rec instanceRecord
		if raw, ok := recs.Val()[id]; ok && json.Unmarshal([]byte(raw), &rec) == nil {
			ttl := time.Duration(rec.LeaseTTLMs) * time.Millisecond
			inst.Accounts = rec.Accounts
			inst.LeaseTTLSeconds = ttl.Seconds()
			inst.LastRenewal = inst.ExpiresAt.Add(-ttl)
		}
		out = append(out, inst)
	}
	return out, nil
}

// local is the view of an account this instance runs.
func (f *Fleet) local(v status.Account) status.Account {
	v.Instance = f.cfg.Instance
	v.InstanceAlive = ptr(true)
	v.QRShowing = v.QR != nil
	return v
}

// unowned is the view of a listed account that no instance publishes: it
// is waiting for its first lease, or between two owners.
func unowned(id string) status.Account {
	return status.Account{ID: id, State: events.StateStopped, InstanceAlive: ptr(false)}
}

// alive says whether the instance that published a view still runs the
// account: it is a live member, and not this instance (whose own accounts
// come from its board: a view of its own that is not there is left from
// before a restart).
func (f *Fleet) alive(live map[string]time.Time, instance string) *bool {
	_, ok := live[instance]
	return ptr(ok && instance != f.cfg.Instance)
}

func ptr[T any](v T) *T { return &v }

// decode reads a published view, "FENCE JSON".
func decode(raw string) (status.Account, error) {
	var v status.Account
	_, body, ok := strings.Cut(raw, " ")
	if !ok {
		return v, errors.New("published view without fencing token")
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		return v, fmt.Errorf("published view: %w", err)
	}
	v.QR, v.LinkCode = nil, nil // never published; ignore them all the same
	return v, nil
}
