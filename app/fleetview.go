package app

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/wafleet/wafleet/actors/connection"
	"github.com/wafleet/wafleet/api"
	"github.com/wafleet/wafleet/fleet/view"
	wredis "github.com/wafleet/wafleet/store/redis"
)

// fleetView is the fleet-wide view of fleet mode: this instance's account
// views published to Redis, the whole fleet's read back for the API, and
// account actions routed to the instance holding the account.
type fleetView struct {
	publisher *view.Publisher
	router    *view.Router
	fleet     *view.Fleet

	stop func() // ends Run's goroutines
	wg   sync.WaitGroup
}

// newFleetView prepares the view; the publisher must be a sink of the bus.
func (a *App) newFleetView() (*fleetView, error) {
	f := a.fleet
	keys, err := wredis.NewViewKeys("")
	if err != nil {
		return nil, err
	}
	log := a.logger.With("component", "fleetview")
	holds := func(acct string) bool {
		_, ok := f.leases.Get(acct)
		return ok
	}
	pub, err := view.NewPublisher(view.PublisherConfig{
		Client: f.client, Keys: keys, Instance: f.leases.Instance(), LeaseTTL: f.leases.TTL(),
		Board: a.board, Leases: f.leases, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("app: fleet view: %w", err)
	}
	router, err := view.NewRouter(view.RouterConfig{
		Client: f.client, Keys: keys, Instance: f.leases.Instance(),
		Actions: map[string]view.Action{
			view.ActionPair:    controller{a}.Pair,
			view.ActionRestart: controller{a}.Restart,
			view.ActionLogout:  controller{a}.Logout,
		},
		Holds:  holds,
		Listed: f.coord.Runs,
		QR: func(acct string) (string, bool) {
			v, ok := a.board.Get(acct)
			if !ok || v.QR == nil {
				return "", false
			}
			return *v.QR, true
		},
		PairByPhone: controller{a}.PairByPhone,
		Send:        controller{a}.SendText,
		MaxText:     connection.MaxTextLen,
		Logger:      log,
	})
	if err != nil {
		return nil, fmt.Errorf("app: fleet view: %w", err)
	}
	fl, err := view.NewFleet(view.FleetConfig{
		Client: f.client, Keys: keys, Instance: f.leases.Instance(),
		Board: a.board, Accounts: func() []string { return f.coord.Accounts() },
		Router: router, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("app: fleet view: %w", err)
	}
	return &fleetView{publisher: pub, router: router, fleet: fl}, nil
}

// start runs the publisher and the router's inbox.
func (v *fleetView) start() {
	ctx, cancel := context.WithCancel(context.Background())
	v.stop = cancel
	v.wg.Go(func() { v.publisher.Run(ctx) })
	v.wg.Go(func() { v.router.Run(ctx) })
}

// close stops them once the coordinator has stopped every account: a last
// flush removes this instance's views and record from Redis.
func (v *fleetView) close(logger *slog.Logger) {
	if v.stop == nil {
		return
	}
	v.stop()
	v.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := v.publisher.Close(ctx); err != nil {
		logger.Warn("fleet view: last publication", "error", err)
	}
}

// accountControl acts on accounts, and sends, for the API: in fleet mode
// through the router, which reaches the instance holding the account.
func (a *App) accountControl() api.Controller {
	if a.fleet != nil {
		return a.fleet.view.router
	}
	return controller{a}
}

// fleetAPI is the fleet-wide view the API answers from in fleet mode.
func (a *App) fleetAPI() api.Fleet {
	if a.fleet == nil {
		return nil
	}
	return a.fleet.view.fleet
}
