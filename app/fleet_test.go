package app

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/wafleet/wafleet/config"
	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/redis/redistest"
)

func fleetConfig(t *testing.T, emu *emulator.Server, redisAddr, instance string, n int) *config.Config {
	t.Helper()
	cfg := testConfig(t, emu, filepath.Join(t.TempDir(), "unused.db"), n)
	cfg.Store.Kind = "redis"
	cfg.Redis.Addr = redisAddr
	cfg.Fleet.InstanceID = instance
	cfg.Fleet.LeaseTTL = 3 * time.Second
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestTwoInstancesShareTheFleet runs two instances on one Redis: every
// account pairs once and runs on exactly one instance; when one instance
// stops, the other takes its accounts over without pairing them again.
func TestTwoInstancesShareTheFleet(t *testing.T) {
	emu := startEmulator(t)
	rs := redistest.Start(t, redistest.Config{})
	const n = 12
	a := start(t, fleetConfig(t, emu, rs.Addr(), "inst-a", n))
	b := start(t, fleetConfig(t, emu, rs.Addr(), "inst-b", n))

	// Pair every account on whichever instance runs it.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	connected := map[string]string{}
	scanned := map[string]bool{}
	for len(connected) < n {
		var e events.Event
		var who string
		select {
		case e = <-a.sub.C():
			who = "a"
		case e = <-b.sub.C():
			who = "b"
		case <-ctx.Done():
			t.Fatalf("only %d of %d accounts connected: %v", len(connected), n, connected)
		}
		switch e.Kind {
		case events.KindQR:
			if !scanned[e.Account] {
				scanned[e.Account] = true
				go func(code string) { _, _ = emu.Phone().Scan(ctx, code) }(e.QR)
			}
		case events.KindConnected:
			if prev, dup := connected[e.Account]; dup && prev != who {
				t.Fatalf("account %s connected on both instances", e.Account)
			}
			connected[e.Account] = who
		}
	}
	perInstance := map[string]int{}
	for _, who := range connected {
		perInstance[who]++
	}
	if perInstance["a"] == 0 || perInstance["b"] == 0 {
		t.Logf("accounts per instance: %v (one instance took them all before the other joined)", perInstance)
	}

	// Redis round trips are counted for operators.
	if rt := counterValue(t, b.app, "wafleet_redis_round_trips_total"); rt == 0 {
		t.Error("wafleet_redis_round_trips_total stayed 0")
	}

	// Instance a stops: it releases its leases, b takes its accounts over.
	a.stop(t)
	deadline := time.After(30 * time.Second)
	for {
		views := b.app.Board().List()
		online := 0
		for _, v := range views {
			if v.State == events.StateConnected {
				online++
			}
		}
		if online == n {
			break
		}
		select {
		case <-deadline:
			t.Fatalf("b runs %d of %d accounts connected after a stopped", online, n)
		case <-time.After(50 * time.Millisecond):
		}
	}
	b.stop(t)
	st := emu.Stats()
	if st.Pairings != n {
		t.Errorf("pairings = %d, want %d (no account pairs twice)", st.Pairings, n)
	}
	if st.MaxConnectionsPerDevice > 1 {
		t.Errorf("max_connections_per_device = %d", st.MaxConnectionsPerDevice)
	}
	if len(st.Violations) > 0 {
		t.Errorf("violations: %v", st.Violations)
	}
}

func TestFleetRefusesAWrongEncryptionKeyAtStart(t *testing.T) {
	emu := startEmulator(t)
	rs := redistest.Start(t, redistest.Config{})
	cfg := fleetConfig(t, emu, rs.Addr(), "inst-a", 1)
	cfg.Store.EncryptionKey = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	r := start(t, cfg)
	r.connectAll(t, emu, 1, true) // the device is stored, sealed
	r.stop(t)

	cfg.Store.EncryptionKey = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32))
	_, err := New(cfg, Options{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if !errors.Is(err, store.ErrWrongKey) {
		t.Fatalf("New with a wrong key: %v, want ErrWrongKey", err)
	}
}

// counterValue reads one counter of the app's metrics.
func counterValue(t *testing.T, a *App, name string) float64 {
	t.Helper()
	families, err := a.metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}
