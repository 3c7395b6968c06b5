package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/wafleet/wafleet/app"
	"github.com/wafleet/wafleet/config"
	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/store"
)

// Provisioned accounts are paired devices a manager logs in as they are: a
// full handshake each, no prekey upload (both sides hold enough), no
// violation, one connection per device.
func TestProvisionedAccountsLogIn(t *testing.T) {
	const n, prekeys = 4, 5
	emu := emutest.Start(t, emulator.Options{Provisioning: true})
	proc := &emulatorProc{url: emu.URL(), rootKey: emu.RootPublicKeyHex(), controlURL: emu.ControlURL()}
	ctx := t.Context()
	accts, err := provisionAccounts(ctx, proc, n, prekeys)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "wafleet.db")
	if err := writeBolt(ctx, t.TempDir(), dbPath, accts); err != nil {
		t.Fatal(err)
	}

	st, err := store.OpenBolt(dbPath, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		d, err := st.Load(ctx, accountID(i))
		if err != nil || !d.Paired() {
			t.Fatalf("account %d: %v, paired %v", i, err, d.Paired())
		}
		if c, err := st.PreKeyCounts(ctx, accountID(i)); err != nil || c.Uploaded != prekeys {
			t.Fatalf("account %d: prekey counts %+v, %v", i, c, err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	cfgPath := filepath.Join(dir, "config.yaml")
	if err := writeConfig(cfgPath, proc, "127.0.0.1:0", dbPath, 100, n); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.New(cfg, app.Options{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), HTTPListener: ln})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	// Connected: past the prekey count check, which would start an upload.
	if err := waitFleetConnected(ctx, []*managerProc{{listen: ln.Addr().String()}}, n, time.Minute); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	stats := emu.Stats()
	if stats.Logins != n || stats.Pairings != 0 || stats.Registrations != 0 || stats.PrekeyUploads != 0 ||
		stats.MaxConnectionsPerDevice != 1 || len(stats.Violations) != 0 {
		t.Fatalf("emulator stats %+v", stats)
	}
}
