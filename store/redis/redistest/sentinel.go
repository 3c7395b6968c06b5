package redistest

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// SentinelDownAfter is the down-after-milliseconds of a private Sentinel
// set: a primary unreachable this long is subjectively down; once two
// Sentinels agree, they elect a leader that promotes the replica. Redis's
// default is 30 s; a test wants the failover sooner, and a loaded machine
// must not see a live primary as down.
const SentinelDownAfter = 2 * time.Second

// MasterName is the name the private Sentinels monitor the primary under.
const MasterName = "wafleet-test"

// Sentinel is a private primary and replica watched by three Sentinels,
// five redis-servers on free ports of 127.0.0.1, each in its own temporary
// directory. Three Sentinels with a quorum of two is the smallest set that
// decides a failover the way production does: a majority must agree that
// the primary is down and vote for the Sentinel that promotes the replica,
// so one Sentinel's view (or its death) decides nothing. Every process is
// killed when the test ends.
type Sentinel struct {
	t         testing.TB
	data      []*Server // the primary and the replica, either may be the primary
	sentinels []*Server
}

// StartSentinel starts the primary, its replica and the Sentinels, and
// waits until the replica is in sync and every Sentinel knows the replica
// and the two other Sentinels. cfg.AOF gives the primary and the replica
// an append-only file.
func StartSentinel(t testing.TB, cfg Config) *Sentinel {
	t.Helper()
	s := &Sentinel{t: t}
	primary := Start(t, cfg)
	replicaCfg := cfg
	replicaCfg.args = []string{"--replicaof", "127.0.0.1", strconv.Itoa(primary.port)}
	s.data = []*Server{primary, Start(t, replicaCfg)}
	conf := fmt.Sprintf("sentinel resolve-hostnames no\nsentinel monitor %s 127.0.0.1 %d 2\n"+
		"sentinel down-after-milliseconds %[1]s %[3]d\nsentinel failover-timeout %[1]s 10000\nsentinel parallel-syncs %[1]s 1\n",
		MasterName, primary.port, SentinelDownAfter.Milliseconds())
	for range 3 {
		s.sentinels = append(s.sentinels, Start(t, Config{sentinel: conf}))
	}
	waitFor(t, "the replica in sync and every Sentinel knowing the others", func(ctx context.Context) string {
		if why := s.replicaInSync(ctx); why != "" {
			return why
		}
		for _, sn := range s.sentinels {
			m, err := s.master(ctx, sn)
			if err != nil {
				return err.Error()
			}
			if m["num-slaves"] != "1" || m["num-other-sentinels"] != "2" {
				return fmt.Sprintf("Sentinel %s knows %s replicas and %s other Sentinels", sn.Addr(), m["num-slaves"], m["num-other-sentinels"])
			}
		}
		return ""
	})
	return s
}

// Addrs returns the Sentinels' addresses, host:port.
func (s *Sentinel) Addrs() []string {
	out := make([]string, len(s.sentinels))
	for i, sn := range s.sentinels {
		out[i] = sn.Addr()
	}
	return out
}

// Options returns client options that ask the Sentinels for the primary
// (fast reconnects).
func (s *Sentinel) Options() *goredis.FailoverOptions {
	return &goredis.FailoverOptions{
		MasterName: MasterName, SentinelAddrs: s.Addrs(),
		DialTimeout: 500 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second,
		PoolSize: 4,
	}
}

// Client returns a new client of the current primary, following its
// failovers; closed when the test ends.
func (s *Sentinel) Client(t testing.TB) *goredis.Client {
	c := goredis.NewFailoverClient(s.Options())
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Primary returns the server the Sentinels name as the primary.
func (s *Sentinel) Primary() *Server {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, sn := range s.sentinels {
		if sn.cmd == nil {
			continue
		}
		if p := s.primaryBy(ctx, sn); p != nil {
			return p
		}
	}
	s.t.Fatalf("redistest: no Sentinel names a primary")
	return nil
}

// KillPrimary kills the primary at once (SIGKILL) and waits until the
// Sentinels have promoted the replica and it accepts writes. It returns
// how long that took. The killed server stays down.
func (s *Sentinel) KillPrimary() time.Duration {
	s.t.Helper()
	old := s.Primary()
	old.Kill()
	killed := time.Now()
	waitFor(s.t, "the replica promoted", func(ctx context.Context) string {
		for _, sn := range s.sentinels {
			if p := s.primaryBy(ctx, sn); p == nil || p == old {
				return "Sentinel " + sn.Addr() + " still names the killed primary"
			}
		}
		p := s.Primary()
		role, err := s.query(ctx, p, "role")
		if err != nil {
			return err.Error()
		}
		if !strings.HasPrefix(role, "[master") {
			return "the new primary's role is " + role
		}
		return ""
	})
	return time.Since(killed)
}

// RestartKilled starts the data server KillPrimary killed again, as a
// replica of the current primary (its data is gone: it has no
// persistence), and waits until it is in sync and every Sentinel lists it
// as a live replica, ready for the next KillPrimary.
func (s *Sentinel) RestartKilled() {
	s.t.Helper()
	p := s.Primary()
	for _, d := range s.data {
		if d.cmd != nil {
			continue
		}
		d.cfg.args = []string{"--replicaof", "127.0.0.1", strconv.Itoa(p.port)}
		d.Restart()
	}
	waitFor(s.t, "the restarted server in sync as a replica", func(ctx context.Context) string {
		if why := s.replicaInSync(ctx); why != "" {
			return why
		}
		for _, sn := range s.sentinels {
			c := goredis.NewSentinelClient(&goredis.Options{Network: "unix", Addr: sn.sock, DialTimeout: time.Second})
			replicas, err := c.Replicas(ctx, MasterName).Result()
			c.Close()
			if err != nil {
				return err.Error()
			}
			if len(replicas) != 1 || replicas[0]["flags"] != "slave" {
				return fmt.Sprintf("Sentinel %s lists the replicas %v", sn.Addr(), replicas)
			}
		}
		return ""
	})
}

// primaryBy returns the data server the Sentinel sn names as the primary.
func (s *Sentinel) primaryBy(ctx context.Context, sn *Server) *Server {
	c := goredis.NewSentinelClient(&goredis.Options{Network: "unix", Addr: sn.sock, DialTimeout: time.Second})
	defer c.Close()
	addr, err := c.GetMasterAddrByName(ctx, MasterName).Result()
	if err != nil || len(addr) != 2 {
		return nil
	}
	for _, d := range s.data {
		if d.Addr() == net.JoinHostPort(addr[0], addr[1]) {
			return d
		}
	}
	return nil
}

// master returns what Sentinel sn says of the primary (SENTINEL MASTER).
func (s *Sentinel) master(ctx context.Context, sn *Server) (map[string]string, error) {
	c := goredis.NewSentinelClient(&goredis.Options{Network: "unix", Addr: sn.sock, DialTimeout: time.Second})
	defer c.Close()
	m, err := c.Master(ctx, MasterName).Result()
	if err != nil {
		return nil, fmt.Errorf("Sentinel %s: %w", sn.Addr(), err)
	}
	return m, nil
}

// replicaInSync says why the live data server that is not the primary is
// not in sync with it ("" when it is).
func (s *Sentinel) replicaInSync(ctx context.Context) string {
	for _, d := range s.data {
		if d.cmd == nil {
			continue
		}
		repl, err := s.query(ctx, d, "info", "replication")
		if err != nil {
			return err.Error()
		}
		if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
			return "the replica " + d.Addr() + " is not in sync"
		}
	}
	return ""
}

func (s *Sentinel) query(ctx context.Context, d *Server, args ...any) (string, error) {
	c := goredis.NewClient(d.Options())
	defer c.Close()
	v, err := c.Do(ctx, args...).Result()
	if err != nil {
		return "", fmt.Errorf("%s: %v: %w", d.Addr(), args, err)
	}
	return fmt.Sprint(v), nil
}

// waitFor polls cond until it says nothing is missing, failing the test
// after settle.
func waitFor(t testing.TB, what string, cond func(ctx context.Context) string) {
	t.Helper()
	deadline := time.Now().Add(settle)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		why := cond(ctx)
		cancel()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: waiting for %s: still %s after %s", what, why, settle)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
