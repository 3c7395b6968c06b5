package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
)

var (
	buildOnce sync.Once
	builtDir  string
	builtBin  string
	buildErr  error
)

// TestMain removes the binary the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	if builtDir != "" {
		_ = os.RemoveAll(builtDir)
	}
	os.Exit(code)
}

// managerBinary builds the manager once for the package's tests. A test
// that needs it runs the manager (and often the emulator and Redis) as
// separate processes: it is skipped under -short, so that `go test -short
// ./...` stays quick, and runs in CI (.ci/run), which does not pass -short.
func managerBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-process test: it builds and runs the manager binary; it runs without -short")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "wafleet-manager-test-")
		if err != nil {
			buildErr = err
			return
		}
		builtDir = dir
		builtBin = filepath.Join(dir, "manager")
		out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func writeRunConfig(t *testing.T, path string, emu *emulator.Server, listen, storePath string, accounts ...string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "server:\n  url: %s\n  root_public_key: %s\n", emu.URL(), emu.RootPublicKeyHex())
	fmt.Fprintf(&b, "client:\n  version_url: %s/sw.js\n", emu.ControlURL())
	fmt.Fprintf(&b, "store:\n  path: %s\nhttp:\n  listen: %s\n", storePath, listen)
	fmt.Fprintf(&b, "connect:\n  rate: 100\n  backoff_initial: 100ms\n  backoff_max: 1s\naccounts:\n")
	for _, id := range accounts {
		fmt.Fprintf(&b, "  - id: %s\n", id)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

type accountView struct {
	ID        string  `json:"id"`
	State     string  `json:"state"`
	JID       string  `json:"jid"`
	QR        *string `json:"qr"`
	LastError string  `json:"last_error"`
	// In fleet mode: the instance running the account, whether it is a
	// live member, whether a QR code is showing there.
	Instance      string `json:"instance"`
	InstanceAlive *bool  `json:"instance_alive"`
	QRShowing     bool   `json:"qr_showing"`
}

// waitAccounts polls GET /api/accounts until cond holds (20 s at most).
func waitAccounts(t *testing.T, listen string, what string, cond func([]accountView) bool) []accountView {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last []accountView
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + listen + "/api/accounts")
		if err == nil {
			last = nil
			err = json.NewDecoder(resp.Body).Decode(&last)
			resp.Body.Close()
			if err == nil && cond(last) {
				return last
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within 20 s; last view %+v", what, last)
	return nil
}

func TestRunPairsReloadsAndStopsCleanly(t *testing.T) {
	bin := managerBinary(t)
	emu := emutest.Start(t, emulator.Options{})

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	listen := freeAddr(t)
	writeRunConfig(t, cfgPath, emu, listen, filepath.Join(dir, "data", "wafleet.db"), "one", "two")

	cmd := exec.Command(bin, "run", "--config", cfgPath)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	}()

	views := waitAccounts(t, listen, "both accounts show a QR code", func(v []accountView) bool {
		return len(v) == 2 && v[0].QR != nil && v[1].QR != nil
	})
	for _, v := range views {
		if _, err := emu.Phone().Scan(context.Background(), *v.QR); err != nil {
			t.Fatalf("scan %s: %v", v.ID, err)
		}
	}
	waitAccounts(t, listen, "both accounts connected", func(v []accountView) bool {
		return len(v) == 2 && v[0].State == "connected" && v[1].State == "connected" && v[0].JID != ""
	})

	// SIGHUP re-reads the account list: a third account starts pairing.
	writeRunConfig(t, cfgPath, emu, listen, filepath.Join(dir, "data", "wafleet.db"), "one", "two", "three")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitAccounts(t, listen, "the new account pairs", func(v []accountView) bool {
		return len(v) == 3 && v[2].ID == "two" && v[1].ID == "three" && v[1].QR != nil
	})

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("manager exited with %v; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("manager did not exit within 5 s of SIGTERM")
	}
	if strings.Contains(stderr.String(), "linked_devices#") {
		t.Fatal("the log contains a QR code")
	}
	if st := emu.Stats(); st.MaxConnectionsPerDevice > 1 {
		t.Fatalf("max_connections_per_device = %d", st.MaxConnectionsPerDevice)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	bin := managerBinary(t)
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte("http:\n  listen: 0.0.0.0:8080\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "run", "--config", path).CombinedOutput()
	exitErr, ok := err.(*exec.ExitError)
	if !ok || exitErr.ExitCode() != 1 {
		t.Fatalf("exit: %v; output %s", err, out)
	}
	if !strings.Contains(string(out), "http.listen") {
		t.Fatalf("error does not name the key: %s", out)
	}
}

// TestGCPercent: `manager run` collects at gcPercent unless the
// environment sets GOGC.
func TestGCPercent(t *testing.T) {
	orig := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(orig) })
	setGCPercent(func(string) (string, bool) { return "", false })
	if got := debug.SetGCPercent(100); got != gcPercent {
		t.Errorf("without GOGC the GC percent is %d, want %d", got, gcPercent)
	}
	setGCPercent(func(k string) (string, bool) { return "100", k == "GOGC" })
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("with GOGC=100 set the GC percent is %d, want it left at 100", got)
	}
}
