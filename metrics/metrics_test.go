package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/status"
)

var _ events.Publisher = (*Metrics)(nil)
var _ HandshakeObserver = (*Metrics)(nil)

// gather returns the families of m by name.
func gather(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := make(map[string]*dto.MetricFamily, len(fams))
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// value returns the value of the series of family name whose labels include
// want (name=value pairs); it fails the test when there is none.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no family %s", name)
	}
series:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(want); i += 2 {
			if labels[want[i]] != want[i+1] {
				continue series
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("no series %s%v", name, want)
	return 0
}

func TestCountersFollowEvents(t *testing.T) {
	tests := []struct {
		name   string
		events []events.Kind
		want   map[string]float64
	}{
		{"nothing", nil, map[string]float64{"wafleet_reconnects_total": 0, "wafleet_pairings_total": 0, "wafleet_restarts_total": 0}},
		{"reconnects", []events.Kind{events.KindReconnect, events.KindReconnect, events.KindState}, map[string]float64{"wafleet_reconnects_total": 2, "wafleet_pairings_total": 0}},
		{"pairing", []events.Kind{events.KindQR, events.KindPaired}, map[string]float64{"wafleet_pairings_total": 1, "wafleet_reconnects_total": 0}},
		{"restarts", []events.Kind{events.KindRestart, events.KindRestart, events.KindRestart}, map[string]float64{"wafleet_restarts_total": 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(nil)
			for _, k := range tt.events {
				m.Publish(events.Event{Account: "a", Kind: k})
			}
			fams := gather(t, m)
			for name, want := range tt.want {
				if got := value(t, fams, name); got != want {
					t.Errorf("%s = %v, want %v", name, got, want)
				}
			}
			perKind := map[events.Kind]float64{}
			for _, k := range tt.events {
				perKind[k]++
			}
			for _, k := range Kinds {
				if got := value(t, fams, "wafleet_events_total", "kind", string(k)); got != perKind[k] {
					t.Errorf("events_total{kind=%s} = %v, want %v", k, got, perKind[k])
				}
			}
		})
	}
}

func TestUnknownKindCountedAsOther(t *testing.T) {
	m := New(nil)
	m.Publish(events.Event{Account: "a", Kind: "brand_new"})
	if got := value(t, gather(t, m), "wafleet_events_total", "kind", "other"); got != 1 {
		t.Fatalf("events_total{kind=other} = %v, want 1", got)
	}
}

func TestObserveHandshake(t *testing.T) {
	tests := []struct {
		name      string
		errs      []error
		ok, fails float64
	}{
		{"none", nil, 0, 0},
		{"one ok", []error{nil}, 1, 0},
		{"mixed", []error{nil, errors.New("boom"), nil, errors.New("again")}, 2, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(nil)
			for _, err := range tt.errs {
				m.ObserveHandshake(30*time.Millisecond, err)
			}
			fams := gather(t, m)
			if got := value(t, fams, "wafleet_handshakes_total", "result", "ok"); got != tt.ok {
				t.Errorf("ok = %v, want %v", got, tt.ok)
			}
			if got := value(t, fams, "wafleet_handshakes_total", "result", "error"); got != tt.fails {
				t.Errorf("error = %v, want %v", got, tt.fails)
			}
			h := fams["wafleet_handshake_duration_seconds"].GetMetric()[0].GetHistogram()
			if got := float64(h.GetSampleCount()); got != tt.ok+tt.fails {
				t.Errorf("histogram count = %v, want %v", got, tt.ok+tt.fails)
			}
			if n := len(tt.errs); n > 0 {
				if want := 0.03 * float64(n); h.GetSampleSum() < want-1e-9 || h.GetSampleSum() > want+1e-9 {
					t.Errorf("histogram sum = %v, want %v", h.GetSampleSum(), want)
				}
			}
		})
	}
}

func TestAccountsByStateFromBoard(t *testing.T) {
	board := status.NewBoard()
	m := New(board)
	now := time.Now()

	fams := gather(t, m)
	for _, st := range events.States {
		if got := value(t, fams, "wafleet_accounts", "state", string(st)); got != 0 {
			t.Errorf("empty board: accounts{state=%s} = %v", st, got)
		}
	}

	board.Publish(events.Event{Account: "a", Kind: events.KindConnected, State: events.StateConnected, Time: now})
	board.Publish(events.Event{Account: "b", Kind: events.KindConnected, State: events.StateConnected, Time: now})
	board.Publish(events.Event{Account: "c", Kind: events.KindQR, State: events.StatePairing, QR: "2@x", Time: now.Add(-time.Minute)})
	board.Publish(events.Event{Account: "d", Kind: events.KindReconnect}) // no state yet

	fams = gather(t, m)
	want := map[string]float64{"connected": 2, "pairing": 1, "backoff": 0, "unknown": 1}
	for st, n := range want {
		if got := value(t, fams, "wafleet_accounts", "state", st); got != n {
			t.Errorf("accounts{state=%s} = %v, want %v", st, got, n)
		}
	}
	if got := value(t, fams, "wafleet_accounts_total"); got != 4 {
		t.Errorf("accounts_total = %v, want 4", got)
	}
	if got := value(t, fams, "wafleet_oldest_pairing_seconds"); got < 59 {
		t.Errorf("oldest_pairing_seconds = %v, want about 60", got)
	}

	board.Publish(events.Event{Account: "b", Kind: events.KindDisconnected, State: events.StateBackoff, Error: "eof"})
	fams = gather(t, m)
	if got := value(t, fams, "wafleet_accounts", "state", "connected"); got != 1 {
		t.Errorf("after disconnect: connected = %v, want 1", got)
	}
	if got := value(t, fams, "wafleet_accounts", "state", "backoff"); got != 1 {
		t.Errorf("after disconnect: backoff = %v, want 1", got)
	}

	// Handed over to another instance (fleet mode): counted there, not here.
	board.Publish(events.Event{Account: "a", Kind: events.KindLeaseLost, State: events.StateStopped, Error: "handed over"})
	fams = gather(t, m)
	if got := value(t, fams, "wafleet_accounts", "state", "stopped"); got != 0 {
		t.Errorf("after a hand-over: stopped = %v, want 0", got)
	}
	if got := value(t, fams, "wafleet_accounts_total"); got != 3 {
		t.Errorf("after a hand-over: accounts_total = %v, want 3", got)
	}
}

func TestCountDropped(t *testing.T) {
	bus := events.NewBus()
	m := New(nil)
	if err := m.CountDropped(bus.Dropped); err != nil {
		t.Fatal(err)
	}
	sub := bus.Subscribe(1)
	defer sub.Close()
	for range 3 {
		bus.Publish(events.Event{Account: "a"})
	}
	if got := value(t, gather(t, m), "wafleet_events_dropped_total"); got != 2 {
		t.Fatalf("events_dropped_total = %v, want 2", got)
	}
	if err := m.CountDropped(bus.Dropped); !errors.Is(err, ErrRegister) {
		t.Fatalf("second CountDropped: %v, want ErrRegister", err)
	}
}

func TestHandlerExposition(t *testing.T) {
	m := New(status.NewBoard())
	m.Publish(events.Event{Account: "a", Kind: events.KindRestart})
	m.ObserveHandshake(time.Millisecond, nil)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for _, want := range []string{
		"wafleet_restarts_total 1",
		`wafleet_handshakes_total{result="ok"} 1`,
		`wafleet_handshakes_total{result="error"} 0`,
		"wafleet_handshake_duration_seconds_bucket",
		`wafleet_accounts{state="connected"} 0`,
		"go_goroutines",
		"process_resident_memory_bytes",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
	// Every metric of ours is prefixed; the Go, process and promhttp series keep their standard names.
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !strings.HasPrefix(line, "wafleet_") && !strings.HasPrefix(line, "go_") && !strings.HasPrefix(line, "process_") && !strings.HasPrefix(line, "promhttp_") {
			t.Errorf("unprefixed series %q", line)
		}
	}
}

func TestPublishConcurrently(t *testing.T) {
	m := New(status.NewBoard())
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 250 {
				m.Publish(events.Event{Account: "a", Kind: events.KindReconnect})
				m.ObserveHandshake(time.Millisecond, nil)
			}
		}()
	}
	wg.Wait()
	fams := gather(t, m)
	if got := value(t, fams, "wafleet_reconnects_total"); got != 1000 {
		t.Fatalf("reconnects_total = %v, want 1000", got)
	}
	if got := value(t, fams, "wafleet_handshakes_total", "result", "ok"); got != 1000 {
		t.Fatalf("handshakes ok = %v, want 1000", got)
	}
}

func BenchmarkPublish(b *testing.B) {
	m := New(nil)
	e := events.Event{Account: "a", Kind: events.KindReconnect, State: events.StateConnecting}
	b.ReportAllocs()
	for b.Loop() {
		m.Publish(e)
	}
}

func BenchmarkObserveHandshake(b *testing.B) {
	m := New(nil)
	b.ReportAllocs()
	for b.Loop() {
		m.ObserveHandshake(20*time.Millisecond, nil)
	}
}

func BenchmarkScrape5000Accounts(b *testing.B) {
	board := status.NewBoard()
	for i := range 5000 {
		board.Publish(events.Event{Account: "acct" + string(rune('a'+i%26)) + strings.Repeat("x", i%7) + itoa(i), Kind: events.KindConnected, State: events.StateConnected})
	}
	m := New(board)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Registry().Gather(); err != nil {
			b.Fatal(err)
		}
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var buf [20]byte
	n := len(buf)
	for i > 0 {
		n--
		buf[n] = byte('0' + i%10)
		i /= 10
	}
	return string(buf[n:])
}

func TestConnectionObserver(t *testing.T) {
	m := New(nil)
	for _, class := range []string{"message", "message", "receipt", "notification", "call", "not-a-class"} {
		m.AckSent(class)
	}
	m.StanzaUndecodable()
	m.StreamErrorAck()
	m.StreamErrorAck()
	m.PreKeysUploaded(812)
	m.PreKeysUploaded(50)
	fams := gather(t, m)
	for class, want := range map[string]float64{"message": 2, "receipt": 1, "notification": 1, "call": 1} {
		if got := value(t, fams, "wafleet_acks_sent_total", "class", class); got != want {
			t.Errorf("acks_sent_total{class=%s} = %v, want %v", class, got, want)
		}
	}
	for name, want := range map[string]float64{
		"wafleet_stanzas_undecodable_total":   1,
		"wafleet_stream_errors_unacked_total": 2,
		"wafleet_prekeys_uploaded_total":      862,
	} {
		if got := value(t, fams, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}
