package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wafleet/wafleet/store/redis/redistest"
)

// The fleet tests run real processes: `manager emulator`, a private
// redis-server and several `manager run` instances sharing it.

// fleetLeaseTTL is short so the test is quick, and long enough that an
// instance starved of CPU by the other processes of the test (three
// instances, the emulator and Redis on two cores, pairing 300 accounts with
// 812 prekeys each) still renews or stops in time: with 3 s, renewals ran
// late under that load (see issue 9, leases under pauses).
const fleetLeaseTTL = 5 * time.Second

// fleetPatience bounds each wait for the fleet to reach a state: long, as
// it only stops a hung test; the test logs how long things took.
const fleetPatience = 2 * time.Minute

type emulatorProcess struct {
	cmd        *exec.Cmd
	url        string
	rootKey    string
	controlURL string
}

func startEmulatorProcess(t *testing.T, bin string) *emulatorProcess {
	t.Helper()
	cmd := exec.Command(bin, "emulator", "--listen", "127.0.0.1:0", "--log-level", "error")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("emulator's first line: %v", err)
	}
	var first struct {
		URL        string `json:"url"`
		RootKey    string `json:"root_public_key"`
		ControlURL string `json:"control_url"`
	}
	if err := json.Unmarshal([]byte(line), &first); err != nil {
		t.Fatalf("emulator's first line %q: %v", line, err)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return &emulatorProcess{cmd: cmd, url: first.URL, rootKey: first.RootKey, controlURL: first.ControlURL}
}

type emulatorStats struct {
	Pairings                int      `json:"pairings"`
	Logins                  int      `json:"logins"`
	ActiveConnections       int      `json:"active_connections"`
	MaxConnectionsPerDevice int      `json:"max_connections_per_device"`
	Violations              []string `json:"violations"`
	// our accounts' messages to emulated contacts
	CompanionMessages        int `json:"companion_messages"`
	CompanionRefused         int `json:"companion_messages_refused"`
	CompanionDecryptFailures int `json:"companion_decrypt_failures"`
}

func (e *emulatorProcess) stats(t *testing.T) emulatorStats {
	t.Helper()
	var st emulatorStats
	resp, err := http.Get(e.controlURL + "/stats")
	if err != nil {
		t.Fatalf("emulator stats: %v", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("emulator stats: %v", err)
	}
	return st
}

func (e *emulatorProcess) scan(code string) error {
	resp, err := http.Post(e.controlURL+"/scan", "text/plain", strings.NewReader(code))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("scan: %s: %s", resp.Status, body)
	}
	return nil
}

type instance struct {
	name   string
	cmd    *exec.Cmd
	listen string
	done   chan error
	stderr *os.File
}

// fleetRedis is the Redis a fleet's instances share, as their
// configuration names it: one server, the nodes of a Cluster, or the
// Sentinels and the name of the primary they watch.
type fleetRedis struct {
	addrs      []string
	masterName string
}

// oneRedis is a single server at addr.
func oneRedis(addr string) fleetRedis { return fleetRedis{addrs: []string{addr}} }

// yaml returns the redis section of the configuration.
func (r fleetRedis) yaml() string {
	if len(r.addrs) == 1 && r.masterName == "" {
		return "redis:\n  addr: " + r.addrs[0] + "\n"
	}
	return fmt.Sprintf("redis:\n  addrs: [%s]\n  master_name: %q\n", strings.Join(r.addrs, ", "), r.masterName)
}

// startInstance starts `manager run` in fleet mode with accounts
// acct-000…; extra is appended to its configuration file.
func startInstance(t *testing.T, bin, dir, name string, emu *emulatorProcess, redis fleetRedis, accounts int, extra ...string) *instance {
	t.Helper()
	listen := freeAddr(t)
	var b strings.Builder
	fmt.Fprintf(&b, "server:\n  url: %s\n  root_public_key: %s\n", emu.url, emu.rootKey)
	fmt.Fprintf(&b, "client:\n  version_url: %s/sw.js\n", emu.controlURL)
	b.WriteString("store:\n  kind: redis\n" + redis.yaml())
	fmt.Fprintf(&b, "fleet:\n  instance_id: %s\n  lease_ttl: %s\n", name, fleetLeaseTTL)
	fmt.Fprintf(&b, "http:\n  listen: %s\nlog:\n  level: warn\n", listen)
	b.WriteString("connect:\n  rate: 500\n  burst: 50\n  backoff_initial: 200ms\n  backoff_max: 2s\naccounts:\n")
	for i := 0; i < accounts; i++ {
		fmt.Fprintf(&b, "  - id: acct-%03d\n", i)
	}
	for _, e := range extra {
		b.WriteString(e)
	}
	cfgPath := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(cfgPath, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return runInstance(t, bin, dir, name, listen, cfgPath)
}

// runInstance starts `manager run --config cfgPath`, listening on listen, its
// log in dir/name.log (appended to: a restart keeps the earlier run's).
func runInstance(t *testing.T, bin, dir, name, listen, cfgPath string) *instance {
	t.Helper()
	logFile, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	inst := &instance{name: name, listen: listen, done: make(chan error, 1), stderr: logFile}
	inst.cmd = exec.Command(bin, "run", "--config", cfgPath)
	inst.cmd.Stderr = logFile
	if err := inst.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { inst.done <- inst.cmd.Wait() }()
	t.Cleanup(func() {
		if inst.cmd.ProcessState == nil {
			_ = inst.cmd.Process.Kill()
			<-inst.done
		}
		logFile.Close()
	})
	return inst
}

// accounts returns the accounts the instance runs itself, from its
// fleet-wide GET /api/accounts.
func (i *instance) accounts() []accountView {
	var own []accountView
	for _, v := range i.fleetAccounts() {
		if v.Instance == i.name {
			own = append(own, v)
		}
	}
	return own
}

// fleetAccounts returns the instance's GET /api/accounts: every account
// of the fleet (nil when it does not answer).
func (i *instance) fleetAccounts() []accountView {
	var views []accountView
	resp, err := http.Get("http://" + i.listen + "/api/accounts")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&views) != nil {
		return nil
	}
	return views
}

func (i *instance) alive() bool { return i.cmd.ProcessState == nil }

// fleetView is who runs which account, from every live instance's API.
type fleetView struct {
	connected map[string]string // account → instance
	qr        map[string]string // account → QR code showing
	doubles   []string          // accounts connected on two instances
	others    []string          // the other accounts: instance, state, last error
}

func viewFleet(instances []*instance) fleetView {
	v := fleetView{connected: map[string]string{}, qr: map[string]string{}}
	for _, inst := range instances {
		if !inst.alive() {
			continue
		}
		for _, a := range inst.accounts() {
			switch {
			case a.State == "connected":
				if other, dup := v.connected[a.ID]; dup {
					v.doubles = append(v.doubles, fmt.Sprintf("%s on %s and %s", a.ID, other, inst.name))
				}
				v.connected[a.ID] = inst.name
			case a.QR != nil:
				v.qr[a.ID] = *a.QR
				fallthrough
			default:
				v.others = append(v.others, fmt.Sprintf("%s on %s: %s %q", a.ID, inst.name, a.State, a.LastError))
			}
		}
	}
	return v
}

// watchDoubles polls the emulator until stop, failing the test if any
// device ever had two connections at once.
func watchDoubles(t *testing.T, emu *emulatorProcess) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			resp, err := http.Get(emu.controlURL + "/stats")
			if err == nil {
				var st emulatorStats
				_ = json.NewDecoder(resp.Body).Decode(&st)
				resp.Body.Close()
				if st.MaxConnectionsPerDevice > 1 {
					t.Errorf("max_connections_per_device reached %d", st.MaxConnectionsPerDevice)
					return
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return func() { cancel(); wg.Wait() }
}

// waitFleet waits until every account is connected on exactly one live
// instance, scanning QR codes when scan is true (and failing on any QR code
// otherwise).
func waitFleet(t *testing.T, instances []*instance, emu *emulatorProcess, n int, scan bool, within time.Duration) fleetView {
	t.Helper()
	deadline := time.Now().Add(within)
	scans := newScanner(emu)
	for {
		v := viewFleet(instances)
		if len(v.doubles) > 0 {
			// The instances are asked one after the other: an account
			// handed over between two answers shows on both. A double that
			// is real stays (and the emulator's count, watchDoubles, sees
			// it anyway).
			time.Sleep(500 * time.Millisecond)
			if again := viewFleet(instances); len(again.doubles) > 0 && sameDoubles(v.doubles, again.doubles) {
				t.Fatalf("accounts connected twice: %v", again.doubles)
			}
			continue
		}
		for id, code := range v.qr {
			if !scan {
				t.Fatalf("account %s shows a QR code: it would pair again", id)
			}
			scans.offer(id, code)
		}
		if len(v.connected) == n {
			return v
		}
		if time.Now().After(deadline) {
			slices.Sort(v.others)
			t.Fatalf("%d of %d accounts connected after %s; the others: %v", len(v.connected), n, within, v.others)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitSettled waits until no account has changed instance for quiet.
func waitSettled(t *testing.T, instances []*instance, emu *emulatorProcess, n int, quiet time.Duration) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	last, since := waitFleet(t, instances, emu, n, false, fleetPatience), time.Now()
	for time.Since(since) < quiet {
		if time.Now().After(deadline) {
			t.Fatalf("accounts still moving between instances after 2 minutes")
		}
		time.Sleep(500 * time.Millisecond)
		if v := waitFleet(t, instances, emu, n, false, fleetPatience); !maps.Equal(v.connected, last.connected) {
			last, since = v, time.Now()
		}
	}
}

// scanner scans QR codes for waitFleet as an operator would: one scan at a
// time per account, and once one succeeded, no other code of that account
// (the phone would link the same companion a second time). A scan that
// failed (its code had changed meanwhile) is retried with the next code.
type scanner struct {
	emu *emulatorProcess

	mu     sync.Mutex
	busy   map[string]bool // accounts with a scan under way
	linked map[string]bool // accounts a scan linked
	tried  map[string]bool // codes scanned
}

func newScanner(emu *emulatorProcess) *scanner {
	return &scanner{emu: emu, busy: map[string]bool{}, linked: map[string]bool{}, tried: map[string]bool{}}
}

// offer scans code in the background unless the rules above say not to.
func (s *scanner) offer(account, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busy[account] || s.linked[account] || s.tried[code] {
		return
	}
	s.busy[account], s.tried[code] = true, true
	go func() {
		err := s.emu.scan(code)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.busy[account] = false
		s.linked[account] = err == nil
	}()
}

// sameDoubles reports whether an account connected twice in a is so in b.
func sameDoubles(a, b []string) bool {
	for _, d := range a {
		if slices.Contains(b, d) {
			return true
		}
	}
	return false
}

func countDevices(t *testing.T, addr string) int {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	defer c.Close()
	keys, err := c.Keys(context.Background(), "wafleet:{*}:device").Result()
	if err != nil {
		t.Fatalf("count devices: %v", err)
	}
	return len(keys)
}

func TestFleetFailoverScaleOutAndRedisRestart(t *testing.T) {
	bin := managerBinary(t)
	dir := t.TempDir()
	emu := startEmulatorProcess(t, bin)
	rs := redistest.Start(t, redistest.Config{})
	const n = 300

	instances := []*instance{
		startInstance(t, bin, dir, "inst-1", emu, oneRedis(rs.Addr()), n),
		startInstance(t, bin, dir, "inst-2", emu, oneRedis(rs.Addr()), n),
		startInstance(t, bin, dir, "inst-3", emu, oneRedis(rs.Addr()), n),
	}
	stopWatch := watchDoubles(t, emu)
	defer stopWatch()

	// Deadlines here only bound a hang: a loaded machine may be slow.
	view := waitFleet(t, instances, emu, n, true, 5*time.Minute)
	if st := emu.stats(t); st.Pairings != n {
		t.Fatalf("pairings = %d, want %d", st.Pairings, n)
	}

	// Failover: kill -9 the instance running the most accounts.
	per := map[string]int{}
	for _, who := range view.connected {
		per[who]++
	}
	victim := instances[0]
	for _, inst := range instances {
		if per[inst.name] > per[victim.name] {
			victim = inst
		}
	}
	t.Logf("accounts per instance %v; killing %s", per, victim.name)
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-victim.done
	killedAt := time.Now()
	waitFleet(t, instances, emu, n, false, fleetPatience)
	t.Logf("failover of %d accounts took %s", per[victim.name], time.Since(killedAt).Round(time.Millisecond))

	// Scale-out: a fourth instance joins and takes its share.
	fourth := startInstance(t, bin, dir, "inst-4", emu, oneRedis(rs.Addr()), n)
	instances = append(instances, fourth)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		v := waitFleet(t, instances, emu, n, false, fleetPatience)
		mine := 0
		for _, who := range v.connected {
			if who == fourth.name {
				mine++
			}
		}
		if mine >= n/5 { // its fair share is n/4; rebalancing moves a few per tick
			t.Logf("the new instance runs %d accounts", mine)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new instance runs only %d accounts after 3 minutes", mine)
		}
		time.Sleep(500 * time.Millisecond)
	}

	// Redis dies and comes back empty: the connections stay up, the
	// instances take their leases back and save their devices again. An
	// account in the middle of a hand-over at that moment has no copy
	// anywhere (the old owner has stopped it, the new one has not loaded
	// it yet) and pairs again: only Redis persistence covers that (README,
	// "A fleet"). So the restart waits for the moves to end.
	waitSettled(t, instances, emu, n, 2*fleetLeaseTTL)
	rs.Restart()
	time.Sleep(2 * fleetLeaseTTL)
	waitFleet(t, instances, emu, n, false, fleetPatience)
	deadline = time.Now().Add(fleetPatience)
	for countDevices(t, rs.Addr()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d devices in Redis after its restart", countDevices(t, rs.Addr()), n)
		}
		time.Sleep(200 * time.Millisecond)
	}

	st := emu.stats(t)
	if st.Pairings != n {
		t.Errorf("pairings = %d, want %d: some account paired again", st.Pairings, n)
	}
	if st.MaxConnectionsPerDevice > 1 {
		t.Errorf("max_connections_per_device = %d", st.MaxConnectionsPerDevice)
	}
	if len(st.Violations) > 0 {
		t.Errorf("violations: %v", st.Violations[:min(5, len(st.Violations))])
	}
	for _, inst := range instances {
		if !inst.alive() {
			continue
		}
		_ = inst.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-inst.done:
			if err != nil {
				t.Errorf("%s exited with %v", inst.name, err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%s did not exit within 10 s of SIGTERM", inst.name)
		}
	}
}
