package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wafleet/wafleet/api"
	"github.com/wafleet/wafleet/config"
	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/events"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// metricValue reads the one series of a counter or gauge of the app's
// metrics.
func metricValue(t *testing.T, a *App, name string) float64 {
	t.Helper()
	families, err := a.metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			m := f.GetMetric()[0]
			if m.Counter != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

func testConfig(t *testing.T, emu *emulator.Server, storePath string, n int) *config.Config {
	t.Helper()
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Server.URL = emu.URL()
	cfg.Server.RootPublicKey = emu.RootPublicKeyHex()
	cfg.Client.VersionURL = emu.ControlURL() + "/sw.js" // never the real web
	cfg.Store.Path = storePath
	cfg.Connect.Rate = 1000
	cfg.Connect.Burst = 100
	cfg.Connect.BackoffInitial = 50 * time.Millisecond
	cfg.Connect.BackoffMax = 500 * time.Millisecond
	for i := 0; i < n; i++ {
		cfg.Accounts = append(cfg.Accounts, config.Account{ID: "acct-" + string(rune('a'+i/26)) + string(rune('a'+i%26))})
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// running is an App started in the background.
type running struct {
	app    *App
	sub    *events.Subscription
	url    string // of the HTTP API
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, cfg *config.Config) *running {
	t.Helper()
	return startWith(t, cfg, Options{})
}

// startWith is start with options; HTTPListener is set here, and Logger
// when nil (to discard).
func startWith(t *testing.T, cfg *config.Config, opts Options) *running {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	}
	opts.HTTPListener = ln
	a, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	r := &running{app: a, sub: a.Events().Subscribe(4096), url: "http://" + ln.Addr().String(), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- a.Run(ctx) }()
	return r
}

// stop ends the app and checks it stopped cleanly within 5 s.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("Run returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("app did not stop within 5 s")
	}
	r.sub.Close()
}

// scanAll scans every QR code the app shows until want accounts are
// connected, and returns how many QR codes were scanned.
func (r *running) connectAll(t *testing.T, emu *emulator.Server, want int, scan bool) int {
	t.Helper()
	deadline := time.After(30 * time.Second)
	connected := map[string]bool{}
	scanned := map[string]bool{}
	var wg sync.WaitGroup
	defer wg.Wait()
	for len(connected) < want {
		select {
		case e := <-r.sub.C():
			switch e.Kind {
			case events.KindQR:
				if !scan {
					t.Fatalf("account %s showed a QR code; it should have logged in", e.Account)
				}
				if scanned[e.Account] {
					continue
				}
				scanned[e.Account] = true
				wg.Add(1)
				go func(code string) {
					defer wg.Done()
					if _, err := emu.Phone().Scan(context.Background(), code); err != nil {
						t.Errorf("scan for %s: %v", e.Account, err)
					}
				}(e.QR)
			case events.KindConnected:
				connected[e.Account] = true
			}
		case <-deadline:
			t.Fatalf("only %d of %d accounts connected within 30 s", len(connected), want)
		}
	}
	return len(scanned)
}

func TestTwentyAccountsPairConnectAndSurviveARestart(t *testing.T) {
	emu := emutest.Start(t, emulator.Options{})
	storePath := filepath.Join(t.TempDir(), "wafleet.db")
	cfg := testConfig(t, emu, storePath, 20)

	first := start(t, cfg)
	if n := first.connectAll(t, emu, 20, true); n != 20 {
		t.Fatalf("scanned %d QR codes, want 20", n)
	}
	for _, acct := range first.app.Board().List() {
		if acct.State != events.StateConnected || acct.JID == "" {
			t.Errorf("account %s: state %s jid %q", acct.ID, acct.State, acct.JID)
		}
	}
	first.stop(t)

	// A new process on the same store logs every account in again without
	// a single QR code.
	second := start(t, cfg)
	second.connectAll(t, emu, 20, false)
	second.stop(t)

	st := emu.Stats()
	if st.Pairings != 20 {
		t.Errorf("emulator saw %d pairings, want 20", st.Pairings)
	}
	if st.MaxConnectionsPerDevice > 1 {
		t.Errorf("max_connections_per_device = %d, want ≤ 1", st.MaxConnectionsPerDevice)
	}
	if len(st.Violations) != 0 {
		t.Errorf("protocol violations: %v", st.Violations)
	}
}

func TestAPIActionsReachTheAccount(t *testing.T) {
	emu := emutest.Start(t, emulator.Options{})
	cfg := testConfig(t, emu, filepath.Join(t.TempDir(), "wafleet.db"), 1)
	r := start(t, cfg)
	defer r.stop(t)
	id := cfg.Accounts[0].ID
	r.connectAll(t, emu, 1, true)
	ctl := controller{r.app}
	ctx := context.Background()

	var refused *api.Refused
	if err := ctl.Pair(ctx, id); !errors.As(err, &refused) || !strings.Contains(refused.Reason, "account is connected") {
		t.Fatalf("Pair of a connected account: %v, want refused because it is connected", err)
	}
	if err := ctl.Pair(ctx, "nobody"); !errors.Is(err, api.ErrUnknownAccount) {
		t.Fatalf("Pair of an unknown account: %v", err)
	}
	if err := ctl.Logout(ctx, id); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	// Logged out, the account pairs again with a fresh QR code.
	for {
		select {
		case e := <-r.sub.C():
			if e.Account == id && e.Kind == events.KindQR {
				return
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no fresh QR code after logout")
		}
	}
}

func TestRunFailsWhenTheHTTPAddressIsTaken(t *testing.T) {
	emu := emutest.Start(t, emulator.Options{})
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := testConfig(t, emu, filepath.Join(t.TempDir(), "wafleet.db"), 1)
	cfg.HTTP.Listen = taken.Addr().String()
	a, err := New(cfg, Options{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(context.Background()) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "http api") {
			t.Fatalf("Run = %v, want an http api error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5 s although its address is taken")
	}
}
