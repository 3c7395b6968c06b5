package app

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wafleet/wafleet/actors/connection"
	"github.com/wafleet/wafleet/config"
	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/fleet"
	"github.com/wafleet/wafleet/store"
	wredis "github.com/wafleet/wafleet/store/redis"
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
	emu := emutest.Start(t, emulator.Options{})
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
	if rt := metricValue(t, b.app, "wafleet_redis_round_trips_total"); rt == 0 {
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
	emu := emutest.Start(t, emulator.Options{})
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

// fakeSession records frames written and whether it was closed.
type fakeSession struct {
	mu     sync.Mutex
	frames int
	closed bool
}

func (s *fakeSession) Send([]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("closed")
	}
	s.frames++
	return nil
}
func (s *fakeSession) Watch(_ func([]byte), onEnd func(error)) { go onEnd(io.EOF) }
func (s *fakeSession) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

// TestConnectionsBoundToLease: an account dials only under a usable lease;
// its session writes while the lease is valid, is closed by the fleet's
// Sockets when the lease ends, and writes nothing after the deadline even
// before that close ran (a process resuming from a pause).
func TestConnectionsBoundToLease(t *testing.T) {
	c, prefix := redistest.Shared(t)
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	leases, err := wredis.NewLeases(c, wredis.LeaseOptions{Prefix: prefix, Instance: "inst-a", TTL: 15 * time.Second, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if err := leases.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if grace, until := leases.InGrace(); grace {
		advance(until.Sub(clock()))
	}
	f := &fleetMode{leases: leases, sockets: fleet.NewSockets(leases)}
	var dialed []*fakeSession
	d := connection.Deps{AccountID: "acct", Dialer: func(context.Context, connection.DialRequest) (connection.Session, error) {
		s := &fakeSession{}
		dialed = append(dialed, s)
		return s, nil
	}}
	f.bindToLease(&d)

	if _, err := d.Dialer(t.Context(), connection.DialRequest{}); !errors.Is(err, fleet.ErrNoLease) || len(dialed) != 0 || d.LeaseHeld() {
		t.Fatalf("dial without a lease = %v (%d dialed)", err, len(dialed))
	}
	r, err := leases.Acquire(t.Context(), "acct")
	if err != nil || len(r.Acquired) != 1 {
		t.Fatalf("Acquire = %+v, %v", r, err)
	}
	sess, err := d.Dialer(t.Context(), connection.DialRequest{})
	if err != nil || !d.LeaseHeld() {
		t.Fatalf("dial under the lease = %v", err)
	}
	if err := sess.Send([]byte("x")); err != nil {
		t.Fatal(err)
	}
	// Past the deadline, before the watchdog ran: nothing is written.
	advance(r.Acquired[0].ValidUntil.Sub(clock()))
	if err := sess.Send([]byte("y")); !errors.Is(err, fleet.ErrNoLease) {
		t.Fatalf("Send past the deadline = %v", err)
	}
	if s := dialed[0]; s.frames != 1 || !s.closed || d.LeaseHeld() {
		t.Fatalf("after the deadline: %d frames, closed %v", s.frames, s.closed)
	}

	// Another account: dropping its lease and closing its Sockets (what
	// the watchdog and a hand-over do) closes its session.
	d2 := connection.Deps{AccountID: "acct2", Dialer: func(context.Context, connection.DialRequest) (connection.Session, error) {
		s := &fakeSession{}
		dialed = append(dialed, s)
		return s, nil
	}}
	f.bindToLease(&d2)
	if r, err := leases.Acquire(t.Context(), "acct2"); err != nil || len(r.Acquired) != 1 {
		t.Fatalf("Acquire = %+v, %v", r, err)
	}
	if _, err := d2.Dialer(t.Context(), connection.DialRequest{}); err != nil {
		t.Fatal(err)
	}
	leases.Drop("acct2")
	f.sockets.Close("acct2")
	if s := dialed[1]; !s.closed {
		t.Fatal("session open after its lease was dropped and its sockets closed")
	}
}

// TestFleetRefusesAWrongKeyForTheRegistry: an account registry whose
// proxies were sealed under another key stops the start too.
func TestFleetRefusesAWrongKeyForTheRegistry(t *testing.T) {
	emu := emutest.Start(t, emulator.Options{})
	rs := redistest.Start(t, redistest.Config{})
	sealer, err := store.NewAESSealer(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	st, err := wredis.New(rs.Client(t), wredis.Options{Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateAccount(context.Background(), store.AccountRecord{ID: "api", Proxy: "socks5://u:secret@h:1", Source: store.SourceAPI}); err != nil {
		t.Fatal(err)
	}
	cfg := fleetConfig(t, emu, rs.Addr(), "inst-a", 0)
	cfg.Store.EncryptionKey = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32))
	_, err = New(cfg, Options{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if !errors.Is(err, store.ErrWrongKey) || !strings.Contains(err.Error(), "registry") {
		t.Fatalf("New with a wrong key for the registry: %v, want ErrWrongKey naming the registry", err)
	}
}
