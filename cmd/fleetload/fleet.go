package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"

	wredis "github.com/wafleet/wafleet/store/redis"
)

// runFleet measures fleet mode: o.fleet instances share a private
// redis-server and o.accounts accounts. It reports the Redis round trips per
// second in steady state and the failover time after a kill -9 of the
// instance running the most accounts.
func runFleet(ctx context.Context, o options, bin, dir string, emu *emulatorProc) error {
	redisAddr, stopRedis, err := startRedis(dir)
	if err != nil {
		return err
	}
	defer stopRedis()
	client := goredis.NewClient(&goredis.Options{Addr: redisAddr})
	defer client.Close()
	mem0, err := usedMemory(ctx, client)
	if err != nil {
		return err
	}
	if o.provision {
		if err := provisionRedis(ctx, o, emu, client); err != nil {
			return err
		}
	}

	var instances []*managerProc
	defer func() {
		for _, m := range instances {
			_ = m.stop()
		}
	}()
	for i := 0; i < o.fleet; i++ {
		listen, err := freeAddr()
		if err != nil {
			return err
		}
		cfgPath := filepath.Join(dir, fmt.Sprintf("instance-%d.yaml", i))
		if err := writeFleetConfig(cfgPath, emu, listen, redisAddr, fmt.Sprintf("instance-%d", i), o); err != nil {
			return err
		}
		m, err := startManager(bin, cfgPath, listen)
		if err != nil {
			return err
		}
		instances = append(instances, m)
	}

	if o.provision {
		if err := waitFleetConnected(ctx, instances, o.accounts, o.loadTimeout); err != nil {
			return err
		}
	} else {
		fmt.Printf("pairing %d accounts across %d instances (not measured)...\n", o.accounts, o.fleet)
		if err := pairFleet(ctx, instances, emu, o.accounts, o.pairTimeout); err != nil {
			return err
		}
	}

	fmt.Printf("letting leases settle for %s, then counting Redis round trips for %s...\n", o.settle, o.window)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(o.settle):
	}
	before, err := roundTrips(instances)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(o.window):
	}
	after, err := roundTrips(instances)
	if err != nil {
		return err
	}
	mem1, err := usedMemory(ctx, client)
	if err != nil {
		return err
	}

	owners := owners(instances)
	victim := 0
	counts := make([]int, len(instances))
	for _, i := range owners {
		counts[i]++
	}
	for i := range counts {
		if counts[i] > counts[victim] {
			victim = i
		}
	}
	_ = instances[victim].cmd.Process.Signal(syscall.SIGKILL)
	<-instances[victim].done
	killed := time.Now()
	survivors := append(append([]*managerProc{}, instances[:victim]...), instances[victim+1:]...)
	if err := waitFleetConnected(ctx, survivors, o.accounts, o.loadTimeout); err != nil {
		return err
	}
	failover := time.Since(killed)
	stats, _ := emuStats(emu)

	fmt.Printf("\naccounts                 %d on %d instances %v\n", o.accounts, o.fleet, counts)
	fmt.Printf("lease TTL                %s (default)\n", o.leaseTTL)
	for i := range instances {
		rate := (after[i] - before[i]) / o.window.Seconds()
		fmt.Printf("redis round trips        instance-%d: %.2f/s with %d accounts\n", i, rate, counts[i])
	}
	fmt.Printf("redis used_memory        %.1f KiB per account in steady state (devices, prekeys, leases, registry, views; %.1f MiB in all)\n", float64(mem1-mem0)/float64(o.accounts)/1024, float64(mem1-mem0)/(1<<20))
	fmt.Printf("failover                 %d accounts of instance-%d connected elsewhere %s after kill -9\n", counts[victim], victim, failover.Round(time.Millisecond))
	fmt.Printf("emulator                 max_connections_per_device=%v pairings=%v provisioned=%v\n", stats["max_connections_per_device"], stats["pairings"], stats["provisioned"])
	return nil
}

// provisionRedis provisions the accounts into the fleet's Redis (through
// the Redis store, as the instances will read them).
func provisionRedis(ctx context.Context, o options, emu *emulatorProc, client *goredis.Client) error {
	t0 := time.Now()
	fmt.Printf("provisioning %d accounts with %d prekeys each (not measured)...\n", o.accounts, o.prekeys)
	accts, err := provisionAccounts(ctx, emu, o.accounts, o.prekeys)
	if err != nil {
		return err
	}
	st, err := wredis.New(client, wredis.Options{})
	if err != nil {
		return err
	}
	if err := saveAccounts(ctx, st, accts); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	fmt.Printf("provisioned in %s\n", time.Since(t0).Round(time.Millisecond))
	return nil
}

func writeFleetConfig(path string, emu *emulatorProc, listen, redisAddr, instance string, o options) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "server:\n  url: %s\n  root_public_key: %s\n", emu.url, emu.rootKey)
	fmt.Fprintf(&b, "client:\n  version_url: %s/sw.js\n", emu.controlURL)
	fmt.Fprintf(&b, "store:\n  kind: redis\nredis:\n  addr: %s\n", redisAddr)
	fmt.Fprintf(&b, "fleet:\n  instance_id: %s\n  lease_ttl: %s\n", instance, o.leaseTTL)
	fmt.Fprintf(&b, "http:\n  listen: %s\nlog:\n  level: warn\n", listen)
	fmt.Fprintf(&b, "connect:\n  rate: %d\n  burst: %d\naccounts:\n", o.rate, max(1, o.rate/10))
	for i := 0; i < o.accounts; i++ {
		fmt.Fprintf(&b, "  - id: load-%05d\n", i)
	}
	return os.WriteFile(path, b.Bytes(), 0o600)
}

// startRedis starts a private redis-server on a free port, without
// persistence.
func startRedis(dir string) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start redis-server: %w", err)
	}
	stop = func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, stop, nil
		}
	}
	stop()
	return "", nil, errors.New("redis-server did not listen within 10 s")
}

// owners maps each connected account to the index of its instance.
func owners(instances []*managerProc) map[string]int {
	out := map[string]int{}
	for i, m := range instances {
		var views []accountView
		if getJSON("http://"+m.listen+"/api/accounts", &views) != nil {
			continue
		}
		for _, v := range views {
			if v.State == "connected" {
				out[v.ID] = i
			}
		}
	}
	return out
}

// pairFleet scans each account's QR code, on whichever instance shows it,
// through the emulator's control API until every account is connected.
func pairFleet(ctx context.Context, instances []*managerProc, emu *emulatorProc, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var mu sync.Mutex
	scanning := map[string]bool{} // a scan of the account's QR code is under way or done
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	defer wg.Wait()
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return err
		}
		connected := 0
		for _, m := range instances {
			var views []accountView
			if err := getJSON("http://"+m.listen+"/api/accounts", &views); err != nil {
				return err
			}
			for _, v := range views {
				mu.Lock()
				busy := scanning[v.ID]
				mu.Unlock()
				switch {
				case v.State == "connected":
					connected++
				case v.State == "unpaired":
					// Its codes ran out before a scan got through (a
					// loaded machine pairs slowly): show codes again.
					if resp, err := http.Post("http://"+m.listen+"/api/accounts/"+v.ID+"/pair", "application/json", nil); err == nil {
						resp.Body.Close()
					}
				case v.QR != nil && !busy:
					mu.Lock()
					scanning[v.ID] = true
					mu.Unlock()
					wg.Add(1)
					sem <- struct{}{}
					go func(id, code string) {
						defer wg.Done()
						defer func() { <-sem }()
						resp, err := http.Post(emu.controlURL+"/scan", "text/plain", bytes.NewReader([]byte(code)))
						ok := err == nil && resp.StatusCode == http.StatusOK
						if err == nil {
							resp.Body.Close()
						}
						if !ok { // scan the next code
							mu.Lock()
							delete(scanning, id)
							mu.Unlock()
						}
					}(v.ID, *v.QR)
				}
			}
		}
		if connected == n {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("pairing did not finish within %s", timeout)
}

// waitFleetConnected waits until the instances report n accounts connected
// in all (from their metrics).
func waitFleetConnected(ctx context.Context, instances []*managerProc, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return err
		}
		total := 0
		for _, m := range instances {
			c, err := metric(m.listen, `wafleet_accounts{state="connected"}`)
			if err == nil {
				total += int(c)
			}
		}
		if total == n {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("not all %d accounts connected within %s", n, timeout)
}

func roundTrips(instances []*managerProc) ([]float64, error) {
	out := make([]float64, len(instances))
	for i, m := range instances {
		v, err := metric(m.listen, "wafleet_redis_round_trips_total")
		if err != nil {
			return nil, fmt.Errorf("instance-%d: %w", i, err)
		}
		out[i] = v
	}
	return out, nil
}
