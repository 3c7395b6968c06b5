package app

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/internal/buildinfo"
	"github.com/wafleet/wafleet/internal/testkit"
	"github.com/wafleet/wafleet/store/redis/redistest"
)

// readyz is one answer of GET /readyz.
type readyz struct {
	code    int
	Ready   bool     `json:"ready"`
	Reasons []string `json:"reasons"`
}

// probeClient keeps no connection open between probes (as a kubelet).
var probeClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

func getReadyz(t *testing.T, r *running) readyz {
	t.Helper()
	resp, err := probeClient.Get(r.url + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var got readyz
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("GET /readyz: %d %q: %v", resp.StatusCode, body, err)
	}
	got.code = resp.StatusCode
	if (got.code == http.StatusOK) != got.Ready || got.Ready != (len(got.Reasons) == 0) {
		t.Fatalf("GET /readyz: %d %s: status, ready and reasons disagree", resp.StatusCode, body)
	}
	return got
}

// waitReadyz polls GET /readyz until ok says the answer is the one
// expected, for up to a minute, and returns it.
func waitReadyz(t *testing.T, r *running, what string, ok func(readyz) bool) readyz {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := getReadyz(t, r)
		if ok(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /readyz never %s: last %d %v", what, got.code, got.Reasons)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func hasReason(got readyz, part string) bool {
	for _, r := range got.Reasons {
		if strings.Contains(r, part) {
			return true
		}
	}
	return false
}

// TestReadyzEmbedded: an instance on the embedded store is ready once it
// runs; a reload that fails validation makes it unready, saying so, until
// a reload succeeds; /healthz answers ok throughout.
func TestReadyzEmbedded(t *testing.T) {
	emu := emutest.Start(t, emulator.Options{})
	cfg := testConfig(t, emu, filepath.Join(t.TempDir(), "wafleet.db"), 1)
	r := start(t, cfg)
	defer r.stop(t)
	waitReadyz(t, r, "ready", func(g readyz) bool { return g.Ready })

	r.app.ConfigRejected(errors.New(`config: log.health_interval: must be positive`))
	got := getReadyz(t, r)
	if got.code != http.StatusServiceUnavailable || !hasReason(got, "configuration invalid") || !hasReason(got, "health_interval") {
		t.Fatalf("after a rejected reload: %d %v", got.code, got.Reasons)
	}
	resp, err := probeClient.Get(r.url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz while not ready: %d", resp.StatusCode)
	}
	if err := r.app.Reload(cfg.Accounts); err != nil {
		t.Fatal(err)
	}
	if got := getReadyz(t, r); !got.Ready {
		t.Fatalf("after a good reload: %d %v", got.code, got.Reasons)
	}
}

// TestReadyzFleet: a fleet instance is unready during its start-up grace,
// ready once it renews, unready saying the store is unreachable and the
// lease loop stalled while its Redis is down, and ready again once Redis
// is back.
func TestReadyzFleet(t *testing.T) {
	emu := emutest.Start(t, emulator.Options{})
	rs := redistest.Start(t, redistest.Config{AOF: true})
	cfg := fleetConfig(t, emu, rs.Addr(), "inst-ready", 2)
	var logs testkit.LogBuffer
	r := startWith(t, cfg, Options{Logger: NewLogger(&logs, slog.LevelDebug), Build: buildinfo.Info{Version: "v9.9.9", Revision: "0123456789ab", Go: "go1.99"}})
	stopped := false
	defer func() {
		if !stopped {
			r.stop(t)
		}
	}()

	first := getReadyz(t, r)
	if first.Ready {
		t.Fatalf("ready at once; want the start-up grace first")
	}
	waitReadyz(t, r, "in its start-up grace", func(g readyz) bool { return hasReason(g, "start-up grace") })
	waitReadyz(t, r, "ready", func(g readyz) bool { return g.Ready })

	// The build info, as given, and the lease metrics of fleet mode.
	if labels := metricLabels(t, r.app, "wafleet_build_info"); labels["version"] != "v9.9.9" || labels["revision"] != "0123456789ab" || labels["go"] != "go1.99" {
		t.Errorf("wafleet_build_info labels %v", labels)
	}
	// Ready means renewing; the accounts' leases may be acquired a tick
	// later (the acquire guard), so the gauge is awaited.
	waitFor(t, "wafleet_leases_held to reach 2", func() bool { return metricValue(t, r.app, "wafleet_leases_held") == 2 })
	if at := metricValue(t, r.app, "wafleet_lease_last_renewal_timestamp_seconds"); at < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("wafleet_lease_last_renewal_timestamp_seconds = %v", at)
	}

	rs.Kill()
	down := waitReadyz(t, r, "unready with Redis down", func(g readyz) bool {
		return hasReason(g, "store unreachable") && hasReason(g, "lease loop stalled")
	})
	if down.code != http.StatusServiceUnavailable {
		t.Fatalf("with Redis down: %d", down.code)
	}
	if lost := metricValue(t, r.app, "wafleet_leases_lost_total"); lost < 2 {
		t.Errorf("wafleet_leases_lost_total = %v with Redis down past the TTL, want 2", lost)
	}
	rs.Restart()
	waitReadyz(t, r, "ready again with Redis back", func(g readyz) bool { return g.Ready })
	r.stop(t)
	stopped = true
	// Through the outage the log stays one JSON stream of one shape (the
	// Redis client's complaints included, as component redis), each
	// account's lost lease logged.
	_, transitions, _ := checkLogShape(t, logs.String())
	for acct, story := range transitions {
		lost := 0
		for _, tr := range story {
			if strings.HasPrefix(tr, "lease_lost ") {
				lost++
			}
		}
		if lost == 0 {
			t.Errorf("%s: no lease_lost logged through the outage: %q", acct, story)
		}
	}
	if !strings.Contains(logs.String(), `"component":"redis"`) {
		t.Errorf("the Redis client said nothing through the outage, or not in the JSON stream")
	}
}

// metricLabels returns the labels of the one series of the metric name.
func metricLabels(t *testing.T, a *App, name string) map[string]string {
	t.Helper()
	families, err := a.metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			labels := map[string]string{}
			for _, l := range f.GetMetric()[0].GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			return labels
		}
	}
	t.Fatalf("metric %s not found (or not one series)", name)
	return nil
}
