package app

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wafleet/wafleet/api"
	"github.com/wafleet/wafleet/events/journal"
	"github.com/wafleet/wafleet/metrics"
	"github.com/wafleet/wafleet/store"
)

// journalPoll is how often, in fleet mode, the journal reads the shared
// outbox for entries other instances appended that their announcements
// did not bring (while its subscription was down).
const journalPoll = 10 * time.Second

// outbox is the store's outbox: the bbolt file's, or in fleet mode the
// Redis stream every instance shares; nil when the store keeps none.
func (a *App) outbox() store.Outbox {
	if a.fleet != nil {
		return a.fleet.outbox
	}
	ob, _ := a.store.(store.Outbox)
	return ob
}

// newJournal prepares the journal that appends every bus event to the
// outbox (before any webhook delivers it) and follows the outbox for the
// API's event streams and the webhook engine. In fleet mode it also reads
// the entries other instances append, as they announce them.
func (a *App) newJournal() error {
	ob := a.outbox()
	if ob == nil {
		return nil
	}
	o := journal.Options{Instance: a.cfg.Fleet.InstanceID, Logger: a.logger.With("component", "journal")}
	if a.fleet != nil {
		o.Poll = journalPoll
		o.Watch = a.fleet.admin.WatchOutbox
	}
	j, err := journal.New(ob, o)
	if err != nil {
		return fmt.Errorf("app: %w", err) // "journal: …"
	}
	a.journal = j
	return nil
}

// registerJournal exports the journal's counters once the metrics exist.
func (a *App) registerJournal() error {
	if a.journal == nil {
		return nil
	}
	c := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: metrics.Namespace,
		Name:      "journal_dropped_total",
		Help:      "Events never written to the outbox: its buffer was full (the store slow or down) or the process was stopping.",
	}, func() float64 { return float64(a.journal.Stats().Dropped) })
	if err := a.metrics.Registry().Register(c); err != nil {
		return fmt.Errorf("app: metrics: journal_dropped_total: %w", err)
	}
	return nil
}

// eventLog is the journal for the API's event streams; nil (the route
// answers 503) without one.
func (a *App) eventLog() api.EventLog {
	if a.journal == nil {
		return nil
	}
	return a.journal
}

// closeJournal appends the events still buffered, within ctx; the store
// closes after it.
func (a *App) closeJournal(ctx context.Context) {
	if a.journal == nil {
		return
	}
	if err := a.journal.Close(ctx); err != nil {
		a.logger.Warn("flush the event journal", "error", err, "dropped", a.journal.Stats().Dropped)
	}
}
