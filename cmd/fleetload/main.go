package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/wafleet/wafleet/store"
)

type options struct {
	accounts    int
	fleet       int
	leaseTTL    time.Duration
	window      time.Duration
	settle      time.Duration
	rate        int
	manager     string
	pairTimeout time.Duration
	loadTimeout time.Duration
	dayOne      bool
	pushRate    float64
	pushBurst   int
	garbage     float64
	provision   bool
	prekeys     int
	coldStarts  int
	storeLoad   bool
	scratch     string
	simulate    bool
	maxMoves    int
}

func main() {
	var o options
	flag.IntVar(&o.accounts, "accounts", 1000, "number of accounts")
	flag.IntVar(&o.fleet, "fleet", 0, "fleet mode: this many instances on a private redis-server (0: one instance, embedded store)")
	flag.DurationVar(&o.leaseTTL, "lease-ttl", 15*time.Second, "fleet.lease_ttl in fleet mode")
	flag.DurationVar(&o.window, "window", 30*time.Second, "fleet mode: how long to count Redis round trips in steady state")
	flag.DurationVar(&o.settle, "settle", 45*time.Second, "fleet mode: wait after pairing so hand-overs to preferred owners finish before counting")
	flag.IntVar(&o.rate, "rate", 1000, "connect.rate (new connections per second) for the run")
	flag.StringVar(&o.manager, "manager", "", "manager binary (default: go build ./cmd/manager)")
	flag.DurationVar(&o.pairTimeout, "pair-timeout", 10*time.Minute, "bound on the pairing phase")
	flag.DurationVar(&o.loadTimeout, "load-timeout", 5*time.Minute, "bound on the measured cold start")
	flag.BoolVar(&o.dayOne, "day-one", false, "run the emulator in day-one mode and measure the acks in steady state for --window")
	flag.Float64Var(&o.pushRate, "push-rate", 1, "day-one: stanzas per second per account")
	flag.IntVar(&o.pushBurst, "push-burst", 20, "day-one: stanzas pushed at each login")
	flag.Float64Var(&o.garbage, "garbage-share", 0, "day-one: share of pushed messages that are random bytes no client decrypts (the emulator's --garbage-share)")
	flag.BoolVar(&o.provision, "provision", false, "create the accounts as paired devices in the store and the emulator (a load shortcut) instead of pairing each one")
	flag.IntVar(&o.prekeys, "prekeys", 20, "--provision: one-time prekeys each provisioned account holds, uploaded")
	flag.IntVar(&o.coldStarts, "cold-starts", 1, "how many cold starts to measure, one after the other, on the same store")
	flag.BoolVar(&o.storeLoad, "store-load", false, "measure how long a manager takes to load --accounts provisioned devices at start from bbolt and from Redis, and Redis's memory per account (almost no sockets)")
	flag.StringVar(&o.scratch, "scratch", defaultScratch(), "folder for the store files fleetload writes before a run (a RAM disk spares a provisioning run an fsync per write)")
	flag.BoolVar(&o.simulate, "simulate", false, "simulate --fleet instances in this process over --accounts that never connect: leases, membership, rebalancing (sim.go)")
	flag.IntVar(&o.maxMoves, "max-moves", 0, "simulate: hand-overs per tick and instance (0: the fleet default, 20)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "fleetload:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	if o.accounts < 1 || o.coldStarts < 1 {
		return errors.New("--accounts and --cold-starts must be at least 1")
	}
	if o.prekeys < 5 || o.prekeys > 812 {
		return errors.New("--prekeys must be in 5..812 (fewer than 5 makes every login upload)")
	}
	sockets := o.accounts // the emulator holds every account's socket
	if o.storeLoad || o.simulate {
		sockets = 0
	}
	limit, err := raiseFileLimit(sockets)
	if err != nil {
		return err
	}
	if err := checkPorts(sockets); err != nil {
		return err
	}
	fmt.Printf("descriptors: soft limit raised to the hard limit, %d (need ~%d per process)\n", limit, sockets+spareDescriptors)
	dir, err := os.MkdirTemp("", "fleetload-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if o.simulate {
		return runSimulation(ctx, o, dir)
	}
	bin := o.manager
	if bin == "" {
		bin = filepath.Join(dir, "manager")
		if out, err := exec.Command("go", "build", "-o", bin, "./cmd/manager").CombinedOutput(); err != nil {
			return fmt.Errorf("build manager: %v\n%s", err, out)
		}
	}

	var emuArgs []string
	if o.dayOne {
		emuArgs = []string{"--day-one", "--push-rate", strconv.FormatFloat(o.pushRate, 'g', -1, 64), "--push-burst", strconv.Itoa(o.pushBurst),
			"--garbage-share", strconv.FormatFloat(o.garbage, 'g', -1, 64)}
	}
	if o.provision || o.storeLoad {
		emuArgs = append(emuArgs, "--provisioning")
	}
	emu, err := startEmulator(bin, emuArgs...)
	if err != nil {
		return err
	}
	defer emu.stop()
	if o.storeLoad {
		return runStoreLoad(ctx, o, bin, dir, emu)
	}
	if o.fleet > 0 {
		return runFleet(ctx, o, bin, dir, emu)
	}

	listen, err := freeAddr()
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := writeConfig(cfgPath, emu, listen, filepath.Join(dir, "wafleet.db"), o.rate, 0); err != nil {
		return err
	}
	idle, err := startManager(bin, cfgPath, listen)
	if err != nil {
		return err
	}
	time.Sleep(2 * time.Second) // let the idle process settle before reading its memory
	baseline, _ := rss(idle.cmd.Process.Pid)
	if err := idle.stop(); err != nil {
		return fmt.Errorf("idle manager: %w", err)
	}

	emuIdle, _ := procStatus(emu.cmd.Process.Pid, "RssAnon")
	dbPath := filepath.Join(dir, "wafleet.db")
	if err := writeConfig(cfgPath, emu, listen, dbPath, o.rate, o.accounts); err != nil {
		return err
	}
	if o.provision {
		if err := provisionBolt(ctx, o, emu, dbPath); err != nil {
			return err
		}
	} else if err := pairOnce(ctx, o, bin, cfgPath, listen, emu); err != nil {
		return err
	}
	emuProvisioned, _ := procStatus(emu.cmd.Process.Pid, "RssAnon")

	var mgr *managerProc
	var elapsed, mgrCPU, emuCPU time.Duration
	for i := range o.coldStarts {
		if mgr != nil {
			if err := mgr.stop(); err != nil {
				fmt.Printf("manager of cold start %d: %v\n", i, err)
			}
		}
		emu0, _ := cpuTime(emu.cmd.Process.Pid)
		start := time.Now()
		if mgr, err = startManager(bin, cfgPath, listen); err != nil {
			return err
		}
		if err := waitFleetConnected(ctx, []*managerProc{mgr}, o.accounts, o.loadTimeout); err != nil {
			_ = mgr.stop()
			return err
		}
		elapsed = time.Since(start)
		mgrCPU, _ = cpuTime(mgr.cmd.Process.Pid) // all of it: the process is as old as the cold start
		emu1, _ := cpuTime(emu.cmd.Process.Pid)
		emuCPU = emu1 - emu0
		fmt.Printf("cold start %d: all %d connected after %s; CPU: manager %s, emulator %s\n", i+1, o.accounts, elapsed.Round(time.Millisecond),
			mgrCPU.Round(10*time.Millisecond), emuCPU.Round(10*time.Millisecond))
	}
	defer mgr.stop()
	var steady *steadyState
	if o.dayOne {
		// The login bursts are still being decrypted and acked when the
		// last account connects: the window starts once they are done.
		t0 := time.Now()
		if err := waitDrained(emu, max(o.accounts/100, 10), o.loadTimeout); err != nil {
			return err
		}
		fmt.Printf("login bursts acked       %s after all connected\n", time.Since(t0).Round(100*time.Millisecond))
		if steady, err = measureSteady(emu, mgr, o.window); err != nil {
			return err
		}
	}
	time.Sleep(time.Second)
	total, err := rss(mgr.cmd.Process.Pid)
	if err != nil {
		return err
	}
	goroutines, _ := metric(mgr.listen, "go_goroutines")
	heap, _ := metric(mgr.listen, "go_memstats_heap_inuse_bytes")
	stacks, _ := metric(mgr.listen, "go_memstats_stack_inuse_bytes")
	stats, _ := emuStats(emu)

	n := float64(o.accounts)
	fmt.Printf("\naccounts                 %d (%s)\n", o.accounts, map[bool]string{true: fmt.Sprintf("provisioned, %d prekeys each", o.prekeys), false: "paired"}[o.provision])
	fmt.Printf("connect.rate             %d/s\n", o.rate)
	fmt.Printf("cold start to all online %s (the last of %d)\n", elapsed.Round(time.Millisecond), o.coldStarts)
	perLogin := (mgrCPU + emuCPU).Seconds() / n
	fmt.Printf("CPU per login            manager %.2f ms + emulator %.2f ms: on %d cores the CPU-bound rate is ~%.0f logins/s; this run %.0f/s\n",
		mgrCPU.Seconds()*1e3/n, emuCPU.Seconds()*1e3/n, runtime.NumCPU(), float64(runtime.NumCPU())/perLogin, n/elapsed.Seconds())
	fmt.Printf("manager RSS              %.1f MiB (idle manager: %.1f MiB)\n", float64(total)/(1<<20), float64(baseline)/(1<<20))
	fmt.Printf("RSS per account          %.1f KiB (above idle: %.1f KiB)\n", float64(total)/n/1024, float64(total-baseline)/n/1024)
	anon, _ := procStatus(mgr.cmd.Process.Pid, "RssAnon")
	file, _ := procStatus(mgr.cmd.Process.Pid, "RssFile")
	fmt.Printf("  of which anonymous     %.1f KiB per account; file-backed (the store's mmap, the binary) %.1f MiB in all\n", float64(anon)/n/1024, float64(file)/(1<<20))
	fmt.Printf("heap in use per account  %.1f KiB (goroutine stacks: %.1f KiB)\n", heap/n/1024, stacks/n/1024)
	fmt.Printf("goroutines per account   %.2f\n", goroutines/n)
	fmt.Printf("emulator                 max_connections_per_device=%v logins=%v %s\n", stats["max_connections_per_device"], stats["logins"], violations(stats))
	emuRSS, _ := rss(emu.cmd.Process.Pid)
	emuAnon, _ := procStatus(emu.cmd.Process.Pid, "RssAnon")
	fmt.Printf("emulator RSS             %.1f MiB, %.1f KiB per connection; anonymous %.1f KiB per connection above its devices (%.1f KiB per device before any login)\n",
		float64(emuRSS)/(1<<20), float64(emuRSS)/n/1024, float64(emuAnon-emuProvisioned)/n/1024, float64(emuProvisioned-emuIdle)/n/1024)
	if steady != nil {
		perMin := time.Minute.Seconds() / steady.wall.Seconds()
		fmt.Printf("day-one                  push rate %g/s per account, burst %d, garbage share %g\n", o.pushRate, o.pushBurst, o.garbage)
		fmt.Printf("acks in steady state     %.0f/s over %s\n", steady.acksPerSecond, o.window)
		fmt.Printf("manager CPU per ack      %.1f µs (all of the manager's CPU over the window, pings included)\n", steady.cpuPerAck.Seconds()*1e6)
		fmt.Printf("manager CPU              %.1f%% of one core; %.2f ms per account per minute\n", steady.cpuShare*100, steady.cpu.Seconds()*1e3*perMin/n)
		fmt.Printf("emulator CPU             %.1f%% of one core; %.2f ms per connection per minute\n", steady.emuCPU.Seconds()/steady.wall.Seconds()*100, steady.emuCPU.Seconds()*1e3*perMin/n)
		fmt.Printf("server pings answered    %.0f over the window\n", steady.pings)
		fmt.Printf("emulator totals          stanzas_pushed=%v acks_ok=%v acks_malformed=%v ack_deadline_kills=%v redeliveries=%v server_pings_answered=%v prekey_uploads=%v\n",
			stats["stanzas_pushed"], stats["acks_ok"], stats["acks_malformed"], stats["ack_deadline_kills"], stats["redeliveries"], stats["server_pings_answered"], stats["prekey_uploads"])
		fmt.Printf("day-one messages         receipts=%v receipts_overdue=%v retry_receipts=%v decrypt_failures=%v resends=%v messages_undelivered=%v\n",
			stats["receipts"], stats["receipts_overdue"], stats["retry_receipts"], stats["decrypt_failures"], stats["resends"], stats["messages_undelivered"])
	}
	t0 := time.Now()
	if err := mgr.stop(); err != nil {
		fmt.Printf("manager shutdown         %v\n", err)
	} else {
		fmt.Printf("manager shutdown         exited 0 %s after SIGTERM\n", time.Since(t0).Round(time.Millisecond))
	}
	fmt.Printf("machine                  %d CPUs, %s/%s, %s\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	return nil
}

// violations sums up the emulator's list: how many, and the first.
func violations(stats map[string]any) string {
	v, _ := stats["violations"].([]any)
	if len(v) == 0 {
		return "violations=0"
	}
	return fmt.Sprintf("violations=%d (the last entry may count more), first: %v", len(v), v[0])
}

// pairOnce pairs every account through the emulator's phone (not
// measured) and stops the manager that did it.
func pairOnce(ctx context.Context, o options, bin, cfgPath, listen string, emu *emulatorProc) error {
	fmt.Printf("pairing %d accounts (not measured)...\n", o.accounts)
	pairStart := time.Now()
	mgr, err := startManager(bin, cfgPath, listen)
	if err != nil {
		return err
	}
	if err := pairFleet(ctx, []*managerProc{mgr}, emu, o.accounts, o.pairTimeout); err != nil {
		_ = mgr.stop()
		return err
	}
	fmt.Printf("paired in %s; restarting the manager for a cold start\n", time.Since(pairStart).Round(time.Millisecond))
	if err := mgr.stop(); err != nil {
		return fmt.Errorf("pairing manager: %w", err)
	}
	return nil
}

// provisionBolt provisions the accounts into a bbolt file at dbPath. The
// file is written under --scratch and copied into place.
func provisionBolt(ctx context.Context, o options, emu *emulatorProc, dbPath string) error {
	t0 := time.Now()
	fmt.Printf("provisioning %d accounts with %d prekeys each (not measured)...\n", o.accounts, o.prekeys)
	accts, err := provisionAccounts(ctx, emu, o.accounts, o.prekeys)
	if err != nil {
		return err
	}
	if err := writeBolt(ctx, o.scratch, dbPath, accts); err != nil {
		return err
	}
	fmt.Printf("provisioned in %s\n", time.Since(t0).Round(time.Millisecond))
	return nil
}

// writeBolt saves accts into a new bbolt file under scratch and moves it
// to dbPath (removing the one the idle manager created).
func writeBolt(ctx context.Context, scratch, dbPath string, accts []loadAccount) error {
	tmp, err := os.MkdirTemp(scratch, "fleetload-store-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	tmpPath := filepath.Join(tmp, "wafleet.db")
	st, err := store.OpenBolt(tmpPath, store.BoltOptions{})
	if err != nil {
		return err
	}
	if err := saveAccounts(ctx, st, accts); err != nil {
		_ = st.Close()
		return err
	}
	if err := st.Close(); err != nil {
		return err
	}
	return copyFile(tmpPath, dbPath)
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// defaultScratch is /dev/shm when it is a folder (Linux's RAM disk), else
// the temporary folder.
func defaultScratch() string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		return "/dev/shm"
	}
	return os.TempDir()
}

type emulatorProc struct {
	cmd        *exec.Cmd
	url        string
	rootKey    string
	controlURL string
}

// steadyState is what the manager does for the server once connected.
type steadyState struct {
	acksPerSecond float64
	cpuPerAck     time.Duration
	cpuShare      float64       // CPU time / wall time
	wall          time.Duration // the window
	cpu, emuCPU   time.Duration // the manager's and the emulator's CPU time over the window
	pings         float64       // server pings answered over the window
}

// waitDrained waits until at most limit of the stanzas the emulator pushed
// are unacked: what live pushes keep in flight, the login bursts done.
func waitDrained(emu *emulatorProc, limit int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		st, err := emuStats(emu)
		if err != nil {
			return err
		}
		pushed, _ := st["stanzas_pushed"].(float64)
		acked, _ := st["acks_ok"].(float64)
		if pushed-acked <= float64(limit) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%.0f of %.0f pushed stanzas still unacked after %s", pushed-acked, pushed, timeout)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// measureSteady counts the acks the emulator received and the manager's CPU
// time over window.
func measureSteady(emu *emulatorProc, mgr *managerProc, window time.Duration) (*steadyState, error) {
	before, err := emuStats(emu)
	if err != nil {
		return nil, err
	}
	cpu0, err := cpuTime(mgr.cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	emu0, err := cpuTime(emu.cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	time.Sleep(window)
	after, err := emuStats(emu)
	if err != nil {
		return nil, err
	}
	cpu1, err := cpuTime(mgr.cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	emu1, err := cpuTime(emu.cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	wall := time.Since(t0)
	acks, _ := after["acks_ok"].(float64)
	acks0, _ := before["acks_ok"].(float64)
	n := acks - acks0
	if n <= 0 {
		return nil, errors.New("no acks during the window")
	}
	cpu := cpu1 - cpu0
	pings, _ := after["server_pings_answered"].(float64)
	pings0, _ := before["server_pings_answered"].(float64)
	return &steadyState{acksPerSecond: n / wall.Seconds(), cpuPerAck: time.Duration(float64(cpu) / n), cpuShare: cpu.Seconds() / wall.Seconds(),
		wall: wall, cpu: cpu, emuCPU: emu1 - emu0, pings: pings - pings0}, nil
}

// cpuTime is the user plus system CPU time of a process (/proc/PID/stat,
// in clock ticks of 1/100 s, the value on Linux x86-64).
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; the fields after it are fixed.
	_, rest, ok := strings.Cut(string(data), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0, errors.New("unexpected /proc stat format")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("unexpected /proc stat format")
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

func startEmulator(bin string, args ...string) (*emulatorProc, error) {
	cmd := exec.Command(bin, append([]string{"emulator", "--listen", "127.0.0.1:0"}, args...)...)
	cmd.Stderr = io.Discard
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start emulator: %w", err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("emulator's first line: %w", err)
	}
	var first struct {
		URL        string `json:"url"`
		RootKey    string `json:"root_public_key"`
		ControlURL string `json:"control_url"`
	}
	if err := json.Unmarshal([]byte(line), &first); err != nil {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("emulator's first line %q: %w", line, err)
	}
	go io.Copy(io.Discard, out)
	return &emulatorProc{cmd: cmd, url: first.URL, rootKey: first.RootKey, controlURL: first.ControlURL}, nil
}

func (e *emulatorProc) stop() {
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	_ = e.cmd.Wait()
}

// readyTimeout bounds the wait for a manager's /readyz: in fleet mode it
// answers 200 a lease TTL after the first renewal, and a manager with
// 100,000 accounts reads them all first.
const readyTimeout = 5 * time.Minute

type managerProc struct {
	cmd    *exec.Cmd
	listen string
	done   chan error
}

func startManager(bin, cfgPath, listen string) (*managerProc, error) {
	return startManagerWith(bin, cfgPath, listen, nil, io.Discard)
}

// startManagerWith starts `manager run` with env added to fleetload's
// environment and its logs written to stderr, and waits until /readyz
// answers 200.
func startManagerWith(bin, cfgPath, listen string, env []string, stderr io.Writer) (*managerProc, error) {
	cmd := exec.Command(bin, "run", "--config", cfgPath)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = io.Discard
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start manager: %w", err)
	}
	m := &managerProc{cmd: cmd, listen: listen, done: make(chan error, 1)}
	go func() { m.done <- cmd.Wait() }()
	deadline := time.Now().Add(readyTimeout)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + listen + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return m, nil
			}
		}
		select {
		case err := <-m.done:
			return nil, fmt.Errorf("manager exited at start: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	_ = m.stop()
	return nil, fmt.Errorf("manager not ready within %s", readyTimeout)
}

// stop sends SIGTERM and waits; the manager must exit 0 within 5 s.
func (m *managerProc) stop() error {
	if m.cmd.ProcessState != nil {
		return nil
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-m.done:
		return err
	case <-time.After(5 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
		return errors.New("manager did not exit within 5 s of SIGTERM")
	}
}

func writeConfig(path string, emu *emulatorProc, listen, storePath string, rate, accounts int) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "server:\n  url: %s\n  root_public_key: %s\n", emu.url, emu.rootKey)
	fmt.Fprintf(&b, "client:\n  version_url: %s/sw.js\n", emu.controlURL)
	fmt.Fprintf(&b, "store:\n  path: %s\nhttp:\n  listen: %s\nlog:\n  level: warn\n", storePath, listen)
	fmt.Fprintf(&b, "connect:\n  rate: %d\n  burst: %d\n", rate, max(1, rate/10))
	b.WriteString("accounts:\n")
	if accounts == 0 {
		b.WriteString("  []\n")
	}
	for i := 0; i < accounts; i++ {
		fmt.Fprintf(&b, "  - id: load-%05d\n", i)
	}
	return os.WriteFile(path, b.Bytes(), 0o600)
}

type accountView struct {
	ID    string  `json:"id"`
	State string  `json:"state"`
	QR    *string `json:"qr"`
}

func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

func emuStats(e *emulatorProc) (map[string]any, error) {
	var m map[string]any
	return m, getJSON(e.controlURL+"/stats", &m)
}

// metric reads one sample from the manager's /metrics.
func metric(listen, name string) (float64, error) {
	resp, err := http.Get("http://" + listen + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`)
	match := re.FindSubmatch(body)
	if match == nil {
		return 0, fmt.Errorf("metric %s not found", name)
	}
	return strconv.ParseFloat(string(match[1]), 64)
}

// rss returns the resident set size of a process in bytes.
func rss(pid int) (int64, error) { return procStatus(pid, "VmRSS") }

// procStatus reads one size field of /proc/PID/status (VmRSS, RssAnon,
// RssFile) in bytes.
func procStatus(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
