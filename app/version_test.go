package app

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/wafleet/wafleet/actors/supervisor"
	"github.com/wafleet/wafleet/config"
	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/store/redis/redistest"
	"github.com/wafleet/wafleet/waproto"
	"github.com/wafleet/wafleet/webversion"
	"github.com/wafleet/wafleet/wire/payload"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewJSONHandler(io.Discard, nil)) }

// TestConnectionDepsFromConfig: the client and pairing keys reach every
// account's actor; an account's device_name replaces client.os_name.
func TestConnectionDepsFromConfig(t *testing.T) {
	emu := emutest.Start(t, emulator.Options{})
	cfg := testConfig(t, emu, filepath.Join(t.TempDir(), "wafleet.db"), 0)
	cfg.Client.OSName = "Ubuntu"
	cfg.Client.Platform = "firefox"
	cfg.Client.Version = "2.3000.1031080782"
	cfg.Pairing.AutoRepair = true
	cfg.Connect.KeepaliveWindow = 90 * time.Second
	cfg.Accounts = []config.Account{{ID: "plain"}, {ID: "named", DeviceName: "Front desk", Proxy: "socks5://127.0.0.1:1080"}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, Options{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer a.closeStorage()

	list := a.supervisorAccounts(cfg.Accounts)
	want := []supervisor.Account{
		{ID: "plain", DeviceName: "Ubuntu"},
		{ID: "named", DeviceName: "Front desk", Proxy: "socks5://127.0.0.1:1080"},
	}
	if len(list) != len(want) || list[0] != want[0] || list[1] != want[1] {
		t.Fatalf("supervisor accounts = %+v, want %+v", list, want)
	}
	for i, name := range []string{"Ubuntu", "Front desk"} {
		d := a.connectionDeps(list[i])
		if d.DeviceProps.OS != name || d.DeviceProps.PlatformType != waproto.DeviceProps_FIREFOX {
			t.Errorf("%s: device props %+v, want os %q on firefox", list[i].ID, d.DeviceProps, name)
		}
		if !d.AutoRepair || d.Keepalive.Window != 90*time.Second {
			t.Errorf("%s: auto repair %v, keepalive %+v", list[i].ID, d.AutoRepair, d.Keepalive)
		}
		if d.Versions != a.versions || d.Versions.Current() != payload.PinnedVersion() {
			t.Errorf("%s: versions %v, want the tracker at client.version", list[i].ID, d.Versions)
		}
		if d.Observer == nil {
			t.Errorf("%s: no observer", list[i].ID)
		}
	}
}

// TestDefaultDeviceProps: with the defaults the phone shows "Chrome
// (Linux)" and the built-in version is sent.
func TestDefaultDeviceProps(t *testing.T) {
	emu := emutest.Start(t, emulator.Options{})
	cfg := testConfig(t, emu, filepath.Join(t.TempDir(), "wafleet.db"), 1)
	a, err := New(cfg, Options{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer a.closeStorage()
	d := a.connectionDeps(a.supervisorAccounts(cfg.Accounts)[0])
	if d.DeviceProps.OS != "Linux" || d.DeviceProps.PlatformType != waproto.DeviceProps_CHROME {
		t.Errorf("device props %+v, want Linux on chrome", d.DeviceProps)
	}
	if d.Versions.Current() != payload.DefaultVersion() || d.AutoRepair || d.Keepalive.Window != 3*time.Minute {
		t.Errorf("deps: version %v, auto repair %v, keepalive %+v", d.Versions.Current(), d.AutoRepair, d.Keepalive)
	}
}

// newerThanBuiltIn is a version the emulator can require.
func newerThanBuiltIn(n uint32) payload.Version {
	v := payload.DefaultVersion()
	v.Tertiary += n
	return v
}

// waitVersion waits until the app's client version is want.
func waitVersion(t *testing.T, a *App, want payload.Version) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for a.ClientVersion() != want {
		if time.Now().After(deadline) {
			t.Fatalf("client version %v, want %v", a.ClientVersion(), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitReady waits until Run has started the accounts (the tracker read
// the stored version before).
func waitReady(t *testing.T, a *App) {
	t.Helper()
	select {
	case <-a.ready:
	case <-time.After(20 * time.Second):
		t.Fatal("the app did not start")
	}
}

// TestRefusedVersionIsReplacedAndTheAccountsReconnect: the server refuses
// the built-in version (405) and publishes nothing newer at first: the
// account raises client_outdated and waits. Once a newer version is
// published, the tracker finds it on its next try, every account hears of
// it and reconnects with it, and the version is stored.
func TestRefusedVersionIsReplacedAndTheAccountsReconnect(t *testing.T) {
	emu := emutest.Start(t, emulator.Options{})
	newer := newerThanBuiltIn(7)
	if err := emu.SetVersions(emulator.Versions{Min: newer.String(), Latest: payload.DefaultVersion().String()}); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, emu, filepath.Join(t.TempDir(), "wafleet.db"), 2)
	r := startWith(t, cfg, Options{VersionRetry: 100 * time.Millisecond})

	outdated := map[string]bool{}
	deadline := time.After(30 * time.Second)
	for len(outdated) < 2 {
		select {
		case e := <-r.sub.C():
			if e.Kind == events.KindAlarm && e.Alarm == events.AlarmClientOutdated {
				outdated[e.Account] = true
			}
			if e.Kind == events.KindConnected || e.Kind == events.KindQR {
				t.Fatalf("account %s got on with a refused version: %+v", e.Account, e)
			}
		case <-deadline:
			t.Fatalf("client_outdated alarms for %v only", outdated)
		}
	}
	if err := emu.SetVersions(emulator.Versions{Min: newer.String(), Latest: newer.String()}); err != nil {
		t.Fatal(err)
	}
	r.connectAll(t, emu, 2, true)
	if got := r.app.ClientVersion(); got != newer {
		t.Fatalf("client version %v, want %v", got, newer)
	}
	stored, err := r.app.store.LoadSetting(context.Background(), webversion.SettingName)
	if err != nil || stored != newer.String() {
		t.Fatalf("stored version %q, %v; want %s", stored, err, newer)
	}
	r.stop(t)
	if st := emu.Stats(); len(st.Violations) != 0 {
		t.Errorf("violations: %v", st.Violations)
	}
}

// TestFleetSharesTheVersion: the version one instance found is stored in
// Redis; a second instance that cannot fetch (version_url empty) starts
// from it.
func TestFleetSharesTheVersion(t *testing.T) {
	emu := emutest.Start(t, emulator.Options{})
	newer := newerThanBuiltIn(11)
	if err := emu.SetVersions(emulator.Versions{Latest: newer.String()}); err != nil {
		t.Fatal(err)
	}
	rs := redistest.Start(t, redistest.Config{})
	a := start(t, fleetConfig(t, emu, rs.Addr(), "inst-a", 0))
	waitVersion(t, a.app, newer) // fetched at start, stored
	a.stop(t)

	cfg := fleetConfig(t, emu, rs.Addr(), "inst-b", 0)
	cfg.Client.VersionURL = ""
	b := start(t, cfg)
	waitReady(t, b.app)
	if got := b.app.ClientVersion(); got != newer {
		t.Fatalf("second instance starts at %v, want the stored %v", got, newer)
	}
	b.stop(t)
}

// TestFetchFromTheEmulator: webversion reads the emulator's service
// worker, shaped like WhatsApp's.
func TestFetchFromTheEmulator(t *testing.T) {
	emu := emutest.Start(t, emulator.Options{})
	want := newerThanBuiltIn(3)
	if err := emu.SetVersions(emulator.Versions{Latest: want.String()}); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	got, err := webversion.Fetch(context.Background(), client, emu.ControlURL()+"/sw.js")
	if err != nil || got != want {
		t.Fatalf("Fetch = %v, %v; want %v", got, err, want)
	}
}
