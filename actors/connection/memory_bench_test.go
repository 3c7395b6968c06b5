//go:build linux

package connection

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"golang.org/x/time/rate"

	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/wire"
)

// emulatorProcessEnv makes TestEmulatorProcess serve a day-one emulator
// (see startEmulatorProcess).
const emulatorProcessEnv = "WAFLEET_TEST_EMULATOR_PROCESS"

// benchTLSEnv set to 1 makes BenchmarkDayOneAccounts connect over wss://,
// as production does: the emulator's process puts a TLS terminator with a
// self-signed certificate in front of it.
const benchTLSEnv = "WAFLEET_BENCH_TLS"

// TestEmulatorProcess is not a test: run by startEmulatorProcess in a
// process of its own, it serves a day-one emulator with the defaults of
// `manager emulator --day-one` (a burst of 20, then 1 stanza per second
// per connection, pings every 30 s), prints its URL, root key and control
// URL as one JSON line, and serves until its stdin closes.
func TestEmulatorProcess(t *testing.T) {
	if os.Getenv(emulatorProcessEnv) != "1" {
		t.Skip("run by startEmulatorProcess")
	}
	srv, err := emulator.New(emulator.Options{DayOne: emulator.DayOne{Enabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	info := emulatorInfo{URL: srv.URL(), RootKey: srv.RootPublicKey(), Control: srv.ControlURL()}
	if os.Getenv(benchTLSEnv) == "1" {
		info.URL, info.Cert = terminateTLS(t, srv.URL())
	}
	line, err := json.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("%s\n", line)
	_, _ = io.Copy(io.Discard, os.Stdin)
}

type emulatorInfo struct {
	URL     string   `json:"url"`
	RootKey [32]byte `json:"root_key"`
	Control string   `json:"control"`
	Cert    []byte   `json:"cert,omitempty"` // the TLS terminator's certificate (DER), if any
}

// terminateTLS serves TLS with a fresh self-signed certificate on a port
// of its own, forwarding each connection's bytes to the emulator at
// wsURL, and returns the wss:// URL and the certificate.
func terminateTLS(t *testing.T, wsURL string) (string, []byte) {
	u, err := url.Parse(wsURL)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", u.Host)
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(up, c); up.Close() }()
				_, _ = io.Copy(c, up)
			}()
		}
	}()
	return "wss://" + ln.Addr().String() + u.Path, der
}

// tlsDialer is WireDialer trusting the certificate cert.
func tlsDialer(b *testing.B, cert []byte) Dialer {
	c, err := x509.ParseCertificate(cert)
	if err != nil {
		b.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(c)
	cfg := &tls.Config{RootCAs: roots}
	return func(ctx context.Context, req DialRequest) (Session, error) {
		conn, err := wire.Dial(ctx, req.URL, wire.DialOptions{Proxy: req.Proxy, WriteTimeout: req.WriteTimeout, TLSConfig: cfg})
		if err != nil {
			return nil, fmt.Errorf("dial: %w", err)
		}
		t, err := wire.ClientHandshake(ctx, conn, wire.ClientHandshakeConfig{
			NoiseKey: req.NoiseKey, Payload: req.Payload, RootKey: req.RootKey, Timeout: req.HandshakeTimeout,
		})
		if err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("handshake: %w", err)
		}
		return t, nil
	}
}

// startEmulatorProcess runs TestEmulatorProcess in a child process (this
// test binary again), so that the server's memory is not the benchmark's.
func startEmulatorProcess(b *testing.B) emulatorInfo {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestEmulatorProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), emulatorProcessEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		var info emulatorInfo
		if json.Unmarshal(sc.Bytes(), &info) == nil && info.URL != "" {
			go func() { _, _ = io.Copy(io.Discard, stdout) }()
			return info
		}
	}
	b.Fatalf("the emulator process printed no address: %v", sc.Err())
	return emulatorInfo{}
}

// emulatorAcks reads the acks the emulator has received so far.
func emulatorAcks(b *testing.B, emu emulatorInfo) int64 {
	b.Helper()
	resp, err := http.Get(emu.Control + "/stats")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var st emulator.Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		b.Fatal(err)
	}
	return st.AcksOK
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// errCodeGone: the QR code scanned was no longer showing.
var errCodeGone = errors.New("QR code gone")

// scan lets the emulator's phone scan a QR code.
func scan(client *http.Client, emu emulatorInfo, qr string) error {
	resp, err := client.Post(emu.Control+"/scan", "text/plain", strings.NewReader(qr))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusGone {
		return errCodeGone
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("scan: %s", resp.Status)
	}
	return nil
}

// memSample is the process's memory at one moment.
type memSample struct {
	rssAnon, heapInuse, stackInuse, heapAlloc uint64
	goroutines                                int
}

func sampleMemory(b *testing.B) memSample {
	b.Helper()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return memSample{rssAnon: rssAnon(b), heapInuse: m.HeapInuse, stackInuse: m.StackInuse, heapAlloc: m.HeapAlloc, goroutines: runtime.NumGoroutine()}
}

// rssAnon reads RssAnon from /proc/self/status: the process's own resident
// memory, without the file-backed pages (the binary, an mmap'ed store).
func rssAnon(b *testing.B) uint64 {
	b.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			kb, err := strconv.ParseUint(strings.Fields(rest)[0], 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatal("no RssAnon in /proc/self/status")
	return 0
}

// BenchmarkDayOneAccounts measures what one connected account costs the
// process in day-one traffic: b.N accounts pair once with an emulator run in
// a separate process (the QR codes are scanned through its control API),
// log in, ack a burst of 20 stanzas and then about one stanza a second
// each, and answer the server's pings. Once all are connected and 30 s of
// steady traffic have passed, it samples the process once a second for 20
// s and reports, per account, the mean growth over the process before the
// accounts of RssAnon (rss-anon-B), heap in use (heap-inuse-B) and
// goroutine stacks (stack-B); then the heap live after a GC (live-B) and
// the goroutines; and the process's CPU time per ack the emulator received
// over the samples (cpu-µs/ack: decoding, acking, pings and the GC). The
// real socket, Noise transport and node codec are in; the store is in
// memory (its copy of each device, a few hundred bytes, is counted), where
// the manager's is a file. Every dial takes a slot of a connect limiter at
// 200 a second, as a manager's do. Run with a fixed count, e.g.:
//
//	go test -run '^$' -bench DayOneAccounts -benchtime 2000x ./actors/connection/
//
// With WAFLEET_BENCH_TLS=1 in the environment the accounts connect over
// wss:// (a TLS terminator in the emulator's process), as in production.
func BenchmarkDayOneAccounts(b *testing.B) {
	emu := startEmulatorProcess(b)
	st := &memStore{devs: map[string]*store.Device{}}
	var connected atomic.Int64
	all := make(chan struct{})
	scanErr := make(chan error, 1)
	// 8 scanners take the QR codes from a queue: a goroutine per code
	// would leave the process a goroutine descriptor per account that the
	// manager does not have (the runtime keeps them all).
	const scanners = 8
	codes := make(chan string, 2*b.N)
	stopScans := make(chan struct{})
	defer close(stopScans)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: scanners}}
	for range scanners {
		go func() {
			for {
				var qr string
				select {
				case qr = <-codes:
				case <-stopScans:
					return
				}
				err := scan(client, emu, qr)
				for try := 0; err != nil && !errors.Is(err, errCodeGone) && try < 3; try++ { // a kept-alive connection the server closed
					err = scan(client, emu, qr)
				}
				if err != nil && !errors.Is(err, errCodeGone) { // a code gone is followed by the next
					select {
					case scanErr <- err:
					default:
					}
				}
			}
		}()
	}
	pub := events.PublisherFunc(func(e events.Event) {
		switch {
		case e.Kind == events.KindQR && e.QR != "":
			select {
			case codes <- e.QR:
			default: // the queue is full: this account's next code is scanned
			}
		case e.Kind == events.KindConnected:
			if connected.Add(1) == int64(b.N) {
				close(all)
			}
		}
	})
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quietLogger() }))
	defer sys.Shutdown()
	runtime.GC()
	before := sampleMemory(b)

	// A manager's connect limiter (connect.rate 200, burst 20): a cold
	// start queues every account's first dial behind it.
	limiter := LocalLimiter(rate.NewLimiter(200, 20))
	dialer := Dialer(WireDialer)
	if emu.Cert != nil {
		dialer = tlsDialer(b, emu.Cert)
	}

	b.ResetTimer()
	pids := make([]*actor.PID, b.N)
	for i := range b.N {
		id := fmt.Sprintf("m%d", i)
		var err error
		pids[i], err = sys.Root.SpawnNamed(Props(Deps{
			AccountID: id, Store: st, Events: pub, Logger: quietLogger(),
			Server: Server{URL: emu.URL, RootKey: emu.RootKey[:]}, Limiter: limiter, Dialer: dialer,
		}), id)
		if err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-all:
	case err := <-scanErr:
		b.Fatal(err)
	case <-time.After(10 * time.Minute):
		b.Fatalf("%d of %d connected", connected.Load(), b.N)
	}
	b.StopTimer()

	time.Sleep(30 * time.Second) // steady traffic: bursts acked, GC cycles at the steady rate
	acks0, cpu0 := emulatorAcks(b, emu), cpuTime(b)
	var sum memSample
	const samples = 20
	for range samples {
		time.Sleep(time.Second)
		s := sampleMemory(b)
		sum.rssAnon += s.rssAnon - before.rssAnon
		sum.heapInuse += s.heapInuse - before.heapInuse
		sum.stackInuse += s.stackInuse - before.stackInuse
	}
	acks, cpu := emulatorAcks(b, emu)-acks0, cpuTime(b)-cpu0
	if n := connected.Load(); n != int64(b.N) {
		b.Fatalf("%d logins for %d accounts: connections dropped", n, b.N)
	}
	runtime.GC()
	live := sampleMemory(b)
	per := float64(samples * b.N)
	b.ReportMetric(float64(sum.rssAnon)/per, "rss-anon-B/account")
	b.ReportMetric(float64(sum.heapInuse)/per, "heap-inuse-B/account")
	b.ReportMetric(float64(sum.stackInuse)/per, "stack-B/account")
	b.ReportMetric(float64(live.heapAlloc-before.heapAlloc)/float64(b.N), "live-B/account")
	b.ReportMetric(float64(live.goroutines-before.goroutines)/float64(b.N), "goroutines/account")
	if acks > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(acks), "cpu-µs/ack")
	}
	for _, pid := range pids {
		_ = sys.Root.StopFuture(pid).Wait()
	}
}
