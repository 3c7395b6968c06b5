package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	wredis "github.com/wafleet/wafleet/store/redis"
)

// storeLoadRate is the connect.rate of a --store-load run: the accounts
// load their devices at once, and then connect one a second, so the run
// measures the store and holds almost no sockets.
const storeLoadRate = 1

// runStoreLoad measures a manager's start on o.accounts provisioned
// devices, first from a bbolt file, then from a private redis-server in
// fleet mode (one instance): the time from the process start until every
// account's connection actor has loaded its device (its "device ready" log
// line), and Redis's memory per account.
func runStoreLoad(ctx context.Context, o options, bin, dir string, emu *emulatorProc) error {
	t0 := time.Now()
	fmt.Printf("provisioning %d accounts with %d prekeys each (not measured)...\n", o.accounts, o.prekeys)
	accts, err := provisionAccounts(ctx, emu, o.accounts, o.prekeys)
	if err != nil {
		return err
	}
	fmt.Printf("devices made in %s\n\naccounts                   %d provisioned, %d prekeys each\n", time.Since(t0).Round(time.Millisecond), o.accounts, o.prekeys)

	// bbolt.
	listen, err := freeAddr()
	if err != nil {
		return err
	}
	dbPath := filepath.Join(dir, "wafleet.db")
	if err := writeBolt(ctx, o.scratch, dbPath, accts); err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := writeConfig(cfgPath, emu, listen, dbPath, storeLoadRate, o.accounts); err != nil {
		return err
	}
	n := float64(o.accounts)
	bolt, err := timeLoad(ctx, bin, cfgPath, listen, o.accounts, o.loadTimeout, nil)
	if err != nil {
		return fmt.Errorf("bbolt: %w", err)
	}
	bolt.print("bbolt start", n)
	fmt.Printf("bbolt file                 %.1f MiB (%.1f KiB per account)\n", float64(bolt.fileSize)/(1<<20), float64(bolt.fileSize)/n/1024)

	// Redis.
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
	rst, err := wredis.New(client, wredis.Options{})
	if err != nil {
		return err
	}
	t1 := time.Now()
	if err := saveAccounts(ctx, rst, accts); err != nil {
		return fmt.Errorf("redis: save: %w", err)
	}
	saved := time.Since(t1)
	mem1, err := usedMemory(ctx, client)
	if err != nil {
		return err
	}
	fmt.Printf("redis used_memory          %.1f KiB per account: its device and prekeys (%.1f MiB in all)\n", float64(mem1-mem0)/n/1024, float64(mem1-mem0)/(1<<20))
	fmt.Printf("redis provisioning         %s for %d devices (Save, AddPreKeys, MarkPreKeysUploaded each; not part of a start)\n", saved.Round(time.Millisecond), o.accounts)
	if err := writeFleetConfig(cfgPath, emu, listen, redisAddr, "instance-0", options{leaseTTL: o.leaseTTL, rate: storeLoadRate, accounts: o.accounts}); err != nil {
		return err
	}
	var trips, leases float64
	red, err := timeLoad(ctx, bin, cfgPath, listen, o.accounts, o.loadTimeout, func(m *managerProc) error {
		// The lease loop with every lease held, once the accounts' first
		// reservations at the fleet's Redis limiter are done (--settle);
		// they connect at storeLoadRate meanwhile.
		time.Sleep(o.settle)
		before, err := roundTrips([]*managerProc{m})
		if err != nil {
			return err
		}
		time.Sleep(o.window)
		after, err := roundTrips([]*managerProc{m})
		if err != nil {
			return err
		}
		trips = (after[0] - before[0]) / o.window.Seconds()
		leases, _ = metric(m.listen, "wafleet_leases_held")
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	red.print("redis start", n)
	fmt.Printf("redis round trips          %.2f/s over %s, %s after every device was loaded (leases held: %.0f; the accounts connect at %d/s meanwhile, each connect with a few round trips of its own)\n", trips, o.window, o.settle, leases, storeLoadRate)
	mem2, err := usedMemory(ctx, client)
	if err != nil {
		return err
	}
	fmt.Printf("redis used_memory          %.1f KiB per account after the manager ran (leases, registry, views added)\n", float64(mem2-mem0)/n/1024)
	return nil
}

func (l *loadTimes) print(name string, n float64) {
	load := l.loaded - l.started
	fmt.Printf("%-26s every device loaded %s after the first account started (%.1f µs per device); after the process start: first account %s, /readyz %s, last device %s; manager RSS then %.1f MiB\n",
		name, load.Round(time.Millisecond), load.Seconds()*1e6/n, l.started.Round(time.Millisecond), l.ready.Round(time.Millisecond), l.loaded.Round(time.Millisecond), float64(l.rss)/(1<<20))
}

// loadTimes is what timeLoad measured.
type loadTimes struct {
	// From the process start until /readyz answered 200, until the
	// supervisor started the first account, until the last device loaded.
	ready, started, loaded time.Duration
	rss                    int64
	fileSize               int64 // the bbolt file, when the store is one
}

// timeLoad starts a manager on cfgPath with info logs and times its start
// until n "device ready" lines, runs measure (if any) on it, then stops it.
func timeLoad(ctx context.Context, bin, cfgPath, listen string, n int, timeout time.Duration, measure func(*managerProc) error) (*loadTimes, error) {
	lines := newLineCounter(`"msg":"device ready"`, `"msg":"account started"`, n)
	start := time.Now()
	mgr, err := startManagerWith(bin, cfgPath, listen, []string{"WAFLEET_LOG_LEVEL=info"}, lines)
	if err != nil {
		return nil, err
	}
	defer mgr.stop()
	lt := &loadTimes{ready: time.Since(start)}
	select {
	case <-lines.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(timeout):
		return nil, fmt.Errorf("%d of %d devices loaded within %s", lines.count(), n, timeout)
	}
	lt.loaded = time.Since(start)
	lt.started = lines.firstSeen().Sub(start)
	lt.rss, _ = rss(mgr.cmd.Process.Pid)
	if fi, err := os.Stat(filepath.Join(filepath.Dir(cfgPath), "wafleet.db")); err == nil {
		lt.fileSize = fi.Size()
	}
	if measure != nil {
		if err := measure(mgr); err != nil {
			return nil, err
		}
	}
	t0 := time.Now()
	if err := mgr.stop(); err != nil {
		fmt.Printf("manager shutdown           %v\n", err) // a figure too, not a reason to lose the others
	} else {
		fmt.Printf("manager shutdown           exited 0 %s after SIGTERM\n", time.Since(t0).Round(time.Millisecond))
	}
	return lt, nil
}

// usedMemory is Redis's INFO memory used_memory, in bytes.
func usedMemory(ctx context.Context, c *goredis.Client) (int64, error) {
	info, err := c.Info(ctx, "memory").Result()
	if err != nil {
		return 0, fmt.Errorf("redis INFO memory: %w", err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("redis INFO memory: no used_memory")
}

// lineCounter counts the lines that hold a pattern, written to it as a
// process's stderr, and closes done at the want-th. It also notes when a
// line with the first pattern came.
type lineCounter struct {
	pattern, first []byte
	want           int
	done           chan struct{}

	mu      sync.Mutex
	partial []byte
	n       int
	firstAt time.Time
}

func newLineCounter(pattern, first string, want int) *lineCounter {
	return &lineCounter{pattern: []byte(pattern), first: []byte(first), want: want, done: make(chan struct{})}
}

func (l *lineCounter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		if l.firstAt.IsZero() && bytes.Contains(l.partial[:i], l.first) {
			l.firstAt = time.Now()
		}
		if bytes.Contains(l.partial[:i], l.pattern) {
			l.n++
			if l.n == l.want {
				close(l.done)
			}
		}
		l.partial = l.partial[i+1:]
	}
	if len(l.partial) == 0 {
		l.partial = nil // let the grown buffer go
	}
	return len(p), nil
}

func (l *lineCounter) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

func (l *lineCounter) firstSeen() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.firstAt
}
