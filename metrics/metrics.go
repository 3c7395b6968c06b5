package metrics

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/status"
)

// Namespace prefixes every metric name.
const Namespace = "wafleet"

// Sentinel errors.
var (
	ErrRegister = errors.New("metrics: register collector")
)

// HandshakeObserver is what a connection actor reports its Noise handshakes
// to. err is nil for a handshake that succeeded. Implementations never block.
type HandshakeObserver interface {
	ObserveHandshake(d time.Duration, err error)
}

// Source gives the accounts by state at scrape time. *status.Board is one.
type Source interface {
	Summarize(now time.Time) status.Summary
}

// Kinds lists every event kind counted by wafleet_events_total.
var Kinds = events.Kinds

// HandshakeBuckets are the upper bounds, in seconds, of the handshake
// duration histogram: a local emulator answers in milliseconds, the real
// server through a proxy in up to several seconds.
var HandshakeBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// Metrics is the fleet's metric set. It is safe for concurrent use; its
// methods only touch atomic counters and never block.
type Metrics struct {
	reg *prometheus.Registry

	handshakeOK       prometheus.Counter
	handshakeErr      prometheus.Counter
	handshakeDuration prometheus.Histogram
	reconnects        prometheus.Counter
	pairings          prometheus.Counter
	restarts          prometheus.Counter
	events            map[events.Kind]prometheus.Counter
	otherEvents       prometheus.Counter
	acks              map[string]prometheus.Counter
	disconnects       map[events.Reason]prometheus.Counter
	undecodable       prometheus.Counter
	streamErrorAcks   prometheus.Counter
	preKeysUploaded   prometheus.Counter
	decryptFailures   map[string]prometheus.Counter
}

// AckClasses are the classes of stanzas acknowledged, the label values of
// wafleet_acks_sent_total.
var AckClasses = []string{"message", "receipt", "notification", "call"}

// DecryptFailureReasons are the label values of
// wafleet_decrypt_failures_total: connection.DecryptFailureReasons (a test
// there holds the two lists equal).
var DecryptFailureReasons = []string{"malformed", "no_session", "no_sender_key", "missing_prekey", "bad_mac",
	"bad_signature", "too_far_ahead", "decrypt", "unsupported", "store"}

// New returns a Metrics with its own registry. src, when not nil, is asked
// for the accounts by state at every scrape (wafleet_accounts); pass the
// status board.
func New(src Source) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), events: make(map[events.Kind]prometheus.Counter, len(Kinds)), acks: make(map[string]prometheus.Counter, len(AckClasses)),
		disconnects: make(map[events.Reason]prometheus.Counter, len(events.Reasons))}

	handshakes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "handshakes_total",
		Help:      "Noise handshakes finished, by result (ok or error).",
	}, []string{"result"})
	m.handshakeOK = handshakes.WithLabelValues("ok")
	m.handshakeErr = handshakes.WithLabelValues("error")
	m.handshakeDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace,
		Name:      "handshake_duration_seconds",
		Help:      "Duration of Noise handshakes, successful or not.",
		Buckets:   HandshakeBuckets,
	})
	m.reconnects = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "reconnects_total",
		Help:      "Reconnect attempts started.",
	})
	m.pairings = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "pairings_total",
		Help:      "Accounts paired (linked by a phone scanning a QR code).",
	})
	m.restarts = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "restarts_total",
		Help:      "Account actors restarted after a panic.",
	})
	eventsVec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "events_total",
		Help:      "Account events published, by kind.",
	}, []string{"kind"})
	for _, k := range Kinds {
		m.events[k] = eventsVec.WithLabelValues(string(k))
	}
	m.otherEvents = eventsVec.WithLabelValues("other")
	acks := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "acks_sent_total",
		Help:      "Acks sent for stanzas the server pushed, by class (message, receipt, notification, call).",
	}, []string{"class"})
	for _, c := range AckClasses {
		m.acks[c] = acks.WithLabelValues(c)
	}
	disconnects := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "disconnects_total",
		Help:      "Connections that ended, by reason (a bounded set: network, keepalive_timeout, stream_end, server_error, logged_out, handed_over, …).",
	}, []string{"reason"})
	for _, r := range events.Reasons {
		m.disconnects[r] = disconnects.WithLabelValues(string(r))
	}
	m.undecodable = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "stanzas_undecodable_total",
		Help:      "Frames from the server that did not decode into a stanza; each was skipped and the connection went on.",
	})
	m.streamErrorAcks = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "stream_errors_unacked_total",
		Help:      "Streams the server ended for a stanza it considers unacknowledged (<stream:error><ack/>). Should stay 0.",
	})
	m.preKeysUploaded = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "prekeys_uploaded_total",
		Help:      "One-time prekeys the server accepted.",
	})

	decrypt := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "decrypt_failures_total",
		Help:      "Received messages that did not decrypt, by reason (a bounded set: no_session, no_sender_key, missing_prekey, bad_mac, unsupported, store, …); each got a retry receipt, but for unsupported (acknowledged only) and store (left unacknowledged for redelivery).",
	}, []string{"reason"})
	m.decryptFailures = make(map[string]prometheus.Counter, len(DecryptFailureReasons))
	for _, r := range DecryptFailureReasons {
		m.decryptFailures[r] = decrypt.WithLabelValues(r)
	}

	m.reg.MustRegister(
		handshakes, m.handshakeDuration, m.reconnects, m.pairings, m.restarts, eventsVec,
		acks, disconnects, m.undecodable, m.streamErrorAcks, m.preKeysUploaded, decrypt,
		collectors.NewGoCollector(),
		// The runtime and process series keep their standard names (go_*,
		// process_*) so stock dashboards and alerts work unchanged.
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if src != nil {
		m.reg.MustRegister(newAccountsCollector(src, time.Now))
	}
	return m
}

// Registry returns the registry holding every metric, for tests and for
// callers that add collectors of their own.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		Registry:            m.reg, // counts promhttp's own errors
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
}

// ObserveHandshake records one Noise handshake: its duration and whether it
// succeeded. It implements HandshakeObserver.
func (m *Metrics) ObserveHandshake(d time.Duration, err error) {
	m.handshakeDuration.Observe(d.Seconds())
	if err != nil {
		m.handshakeErr.Inc()
		return
	}
	m.handshakeOK.Inc()
}

// Publish counts one event. It implements events.Publisher and never blocks.
func (m *Metrics) Publish(e events.Event) {
	if c, ok := m.events[e.Kind]; ok {
		c.Inc()
	} else {
		m.otherEvents.Inc()
	}
	if c, ok := m.disconnects[e.Reason]; ok {
		c.Inc() // the event of a connection's end carries its reason
	}
	switch e.Kind {
	case events.KindReconnect:
		m.reconnects.Inc()
	case events.KindPaired:
		m.pairings.Inc()
	case events.KindRestart:
		m.restarts.Inc()
	}
}

// AckSent counts an ack sent for a stanza of class. It implements the
// connection actor's Observer.
func (m *Metrics) AckSent(class string) {
	if c, ok := m.acks[class]; ok {
		c.Inc()
	}
}

// StanzaUndecodable counts a frame that did not decode into a stanza.
func (m *Metrics) StanzaUndecodable() { m.undecodable.Inc() }

// StreamErrorAck counts a stream the server ended for an unacknowledged
// stanza.
func (m *Metrics) StreamErrorAck() { m.streamErrorAcks.Inc() }

// PreKeysUploaded counts n one-time prekeys the server accepted.
func (m *Metrics) PreKeysUploaded(n int) { m.preKeysUploaded.Add(float64(n)) }

// DecryptFailed counts a message that did not decrypt, by reason. It
// implements the connection actor's Observer.
func (m *Metrics) DecryptFailed(reason string) {
	if c, ok := m.decryptFailures[reason]; ok {
		c.Inc()
	}
}

// CountDropped exports f (events.Bus.Dropped) as
// wafleet_events_dropped_total: events that slow subscribers missed. The bus
// is usually built after the Metrics it feeds, hence a method, not an
// argument of New. Calling it twice is an error.
func (m *Metrics) CountDropped(f func() uint64) error {
	c := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: Namespace,
		Name:      "events_dropped_total",
		Help:      "Events that slow subscribers of the in-process bus missed.",
	}, func() float64 { return float64(f()) })
	if err := m.reg.Register(c); err != nil {
		return fmt.Errorf("%w events_dropped_total: %w", ErrRegister, err)
	}
	return nil
}

// accountsCollector computes the accounts by state from the board at every
// scrape, so the gauge can never drift from what the API shows.
type accountsCollector struct {
	src     Source
	now     func() time.Time
	byState *prometheus.Desc
	total   *prometheus.Desc
	oldest  *prometheus.Desc
}

func newAccountsCollector(src Source, now func() time.Time) *accountsCollector {
	return &accountsCollector{
		src: src,
		now: now,
		byState: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", "accounts"),
			"Accounts this instance runs, by state (in a fleet, those whose lease it holds).", []string{"state"}, nil),
		total: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", "accounts_total"),
			"Accounts this instance runs (in a fleet, those whose lease it holds).", nil, nil),
		oldest: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", "oldest_pairing_seconds"),
			"How long the account pairing the longest has been waiting for a scan (0 when none is pairing).", nil, nil),
	}
}

func (c *accountsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.byState
	ch <- c.total
	ch <- c.oldest
}

func (c *accountsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Summarize(c.now())
	for _, st := range events.States {
		ch <- prometheus.MustNewConstMetric(c.byState, prometheus.GaugeValue, float64(s.ByState[st]), string(st))
	}
	var unknown int // accounts seen only through events without a state yet
	for st, n := range s.ByState {
		if !known(st) {
			unknown += n
		}
	}
	if unknown > 0 {
		ch <- prometheus.MustNewConstMetric(c.byState, prometheus.GaugeValue, float64(unknown), "unknown")
	}
	ch <- prometheus.MustNewConstMetric(c.total, prometheus.GaugeValue, float64(s.Total))
	ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, s.OldestPairing.Seconds())
}

func known(st events.State) bool {
	for _, k := range events.States {
		if k == st {
			return true
		}
	}
	return false
}
