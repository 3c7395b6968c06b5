package app

import (
	"path/filepath"
	"testing"

	"github.com/wafleet/wafleet/config"
	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
)

// TestShippedConfigRunsAgainstTheEmulator: the repository's config.yaml,
// unchanged, given the emulator's url and root key through
// WAFLEET_SERVER_URL and WAFLEET_SERVER_ROOT_PUBLIC_KEY (README, "Deploy"),
// pairs and connects every account it lists. The store path and the
// version URL are moved too, so the test writes nothing into the
// repository and never reaches the real web.
func TestShippedConfigRunsAgainstTheEmulator(t *testing.T) {
	emu := emutest.Start(t, emulator.Options{})
	t.Setenv("WAFLEET_SERVER_URL", emu.URL())
	t.Setenv("WAFLEET_SERVER_ROOT_PUBLIC_KEY", emu.RootPublicKeyHex())
	t.Setenv("WAFLEET_CLIENT_VERSION_URL", emu.ControlURL()+"/sw.js")
	t.Setenv("WAFLEET_STORE_PATH", filepath.Join(t.TempDir(), "wafleet.db"))
	cfg, err := config.Load("../config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Accounts) == 0 {
		t.Fatal("config.yaml lists no accounts")
	}
	r := start(t, cfg)
	r.connectAll(t, emu, len(cfg.Accounts), true)
	r.stop(t)
	if st := emu.Stats(); len(st.Violations) != 0 {
		t.Errorf("violations: %v", st.Violations)
	}
}
