package webhook

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// LatencyBuckets are the upper bounds, in seconds, of the delivery
// latency histogram (one attempt, request to response).
var LatencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// The outcome label values of wafleet_webhook_deliveries_total.
const (
	outcomeDelivered    = "delivered"
	outcomeRetried      = "retried"
	outcomeDeadLettered = "dead_lettered"
)

// engineMetrics are the engine's series, by endpoint name.
type engineMetrics struct {
	deliveries *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	pending    *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*engineMetrics, error) {
	m := &engineMetrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "wafleet",
			Name:      "webhook_deliveries_total",
			Help:      "Webhook delivery attempts by endpoint and outcome: delivered, retried (failed, another attempt follows) or dead_lettered (given up).",
		}, []string{"endpoint", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "wafleet",
			Name:      "webhook_latency_seconds",
			Help:      "Duration of webhook delivery attempts, answered or not, by endpoint.",
			Buckets:   LatencyBuckets,
		}, []string{"endpoint"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "wafleet",
			Name:      "webhook_pending",
			Help:      "Entries this instance has taken from an endpoint's queue and not yet delivered or dead-lettered, by endpoint.",
		}, []string{"endpoint"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.deliveries, m.latency, m.pending} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("webhook: register metrics: %w", err)
		}
	}
	return m, nil
}

// forget drops an endpoint's series when its queue stops here.
func (m *engineMetrics) forget(endpoint string) {
	m.deliveries.DeletePartialMatch(prometheus.Labels{"endpoint": endpoint})
	m.latency.DeleteLabelValues(endpoint)
	m.pending.DeleteLabelValues(endpoint)
}
