package app

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wafleet/wafleet/internal/buildinfo"
	"github.com/wafleet/wafleet/store"
)

// What this file adds to the metrics and to GET /readyz: the build info,
// the opt-in account info, the lease metrics of fleet mode, and the
// reasons this instance cannot do its job.

// storePingEvery is how long one check that the store answers stands: a
// probe every second costs one store round trip every storePingEvery.
const storePingEvery = 3 * time.Second

// storePingTimeout bounds one check.
const storePingTimeout = time.Second

// exportMetrics registers the build info, the account info when
// metrics.account_info is on, and in fleet mode the lease metrics.
func (a *App) exportMetrics() error {
	build := a.opts.Build
	if build == (buildinfo.Info{}) {
		build = buildinfo.Read("", "")
	}
	if err := a.metrics.ExportBuild(build); err != nil {
		return err
	}
	if a.cfg.Metrics.AccountInfo {
		if err := a.metrics.ExportAccountInfo(a.board.List, a.cfg.Fleet.InstanceID); err != nil {
			return err
		}
	}
	if a.fleet == nil {
		return nil
	}
	coord := a.fleet.coord
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "wafleet_leases_held",
			Help: "Account leases this instance holds (fleet mode).",
		}, func() float64 { return float64(coord.Health().Held) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "wafleet_leases_lost_total",
			Help: "Leases lost without being given back: taken over or expired (fleet mode). Hand-overs are not losses.",
		}, func() float64 { return float64(coord.Health().Lost) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "wafleet_lease_last_renewal_timestamp_seconds",
			Help: "Unix time of the lease loop's latest successful round trip to Redis (0: none yet).",
		}, func() float64 {
			if t := coord.Health().LastRenewal; !t.IsZero() {
				return float64(t.UnixNano()) / 1e9
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "wafleet_lease_renewal_age_seconds",
			Help: "Seconds since the lease loop's latest successful round trip to Redis (since start when none yet); above two lease intervals /readyz fails.",
		}, func() float64 {
			t := coord.Health().LastRenewal
			if t.IsZero() {
				t = a.created
			}
			return time.Since(t).Seconds()
		}),
	} {
		if err := a.metrics.Registry().Register(c); err != nil {
			return fmt.Errorf("app: register the lease metrics: %w", err)
		}
	}
	return nil
}

// ConfigRejected records that a reload of the configuration failed (err;
// nil: the latest reload succeeded): GET /readyz answers 503 saying so
// until a reload succeeds. Reload clears it.
func (a *App) ConfigRejected(err error) {
	a.configErr.Store(&err)
}

// notReady returns why this instance cannot do its job now, nil when it
// can: the reasons of GET /readyz's 503.
func (a *App) notReady(ctx context.Context) []string {
	var reasons []string
	if !a.isReady() {
		reasons = append(reasons, "the accounts' supervisor has not started")
	}
	if err := a.storeCheck.check(ctx, a.pingStore); err != nil {
		reasons = append(reasons, "store unreachable: "+err.Error())
	}
	if p := a.configErr.Load(); p != nil && *p != nil {
		reasons = append(reasons, "configuration invalid (the latest reload failed): "+(*p).Error())
	}
	if a.fleet != nil && a.isReady() {
		h := a.fleet.coord.Health()
		now := time.Now()
		switch {
		case h.LastRenewal.IsZero():
			reasons = append(reasons, "lease loop: no successful renewal yet")
		case now.Sub(h.LastRenewal) > 2*h.Interval:
			reasons = append(reasons, fmt.Sprintf("lease loop stalled: no successful renewal for %s (interval %s)", now.Sub(h.LastRenewal).Round(time.Second), h.Interval))
		case h.Warming:
			reasons = append(reasons, "lease loop warming up after failed renewals")
		case now.Sub(h.FirstRenewal) < h.Settle:
			reasons = append(reasons, fmt.Sprintf("lease loop in its start-up grace (%s: the fleet hands this instance its share once the members have been stable that long)", h.Settle))
		}
	}
	return reasons
}

// pingStore checks that the store answers: PING in fleet mode, a read of
// the embedded file otherwise.
func (a *App) pingStore(ctx context.Context) error {
	if a.fleet != nil {
		return a.fleet.client.Ping(ctx).Err()
	}
	if _, err := a.store.LoadSetting(ctx, "readyz"); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}

// cachedCheck runs a check at most once every storePingEvery and shares
// its result: GET /readyz never costs a store round trip per request.
type cachedCheck struct {
	mu  sync.Mutex
	at  time.Time
	err error
}

func (c *cachedCheck) check(ctx context.Context, f func(context.Context) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < storePingEvery {
		return c.err
	}
	ctx, cancel := context.WithTimeout(ctx, storePingTimeout)
	defer cancel()
	c.err, c.at = f(ctx), time.Now()
	return c.err
}
