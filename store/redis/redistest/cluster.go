package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// ClusterNodeTimeout is the cluster-node-timeout of a private Cluster: a
// master unreachable this long is marked failing and its replica takes
// over (about a second or two later). Redis's default is 15 s; a test
// wants the failover sooner, and a loaded machine must not see a live
// node as failed.
const ClusterNodeTimeout = 2 * time.Second

// settle bounds each wait for a private Cluster or Sentinel set to reach a
// state: long, as it only stops a hung test on a loaded machine.
const settle = time.Minute

// Cluster is a private Redis Cluster: three masters with one replica
// each, six redis-servers on free ports of 127.0.0.1, each in its own
// temporary directory, created by `redis-cli --cluster create`. Every node
// is killed when the test ends.
type Cluster struct {
	t     testing.TB
	nodes []*Server
}

// StartCluster starts the six nodes, joins them into a Cluster and waits
// until every slot is served and every replica is in sync. cfg.AOF gives
// every node an append-only file.
func StartCluster(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redistest: a Redis Cluster needs redis-cli (Debian: redis-tools) in PATH: %v", err)
	}
	cfg.args = []string{
		"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", strconv.FormatInt(ClusterNodeTimeout.Milliseconds(), 10),
		// A replica may take over however long ago it last heard from its
		// master (the killed master may have been starved of CPU).
		"--cluster-replica-validity-factor", "0",
	}
	c := &Cluster{t: t}
	for range 6 {
		// The Cluster bus listens on port+10000 unless told otherwise,
		// which may be taken or past 65535: it gets a free port of its own.
		node := cfg
		node.args = append(slices.Clone(cfg.args), "--cluster-port", strconv.Itoa(freePort(t)))
		c.nodes = append(c.nodes, Start(t, node))
	}
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy()
	return c
}

// Addrs returns the addresses of every node, host:port, killed ones
// included.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.Addr()
	}
	return out
}

// Options returns Cluster client options (fast reconnects).
func (c *Cluster) Options() *goredis.ClusterOptions {
	return &goredis.ClusterOptions{
		Addrs:       c.Addrs(),
		DialTimeout: 500 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second,
		PoolSize: 4,
	}
}

// Client returns a new Cluster client, closed when the test ends.
func (c *Cluster) Client(t testing.TB) *goredis.ClusterClient {
	cc := goredis.NewClusterClient(c.Options())
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// MasterOf returns the live node that serves key's slot as a master.
func (c *Cluster) MasterOf(key string) *Server {
	c.t.Helper()
	id := c.slotOwner(c.keySlot(key))
	for _, n := range c.live() {
		if c.nodeID(n) == id {
			return n
		}
	}
	c.t.Fatalf("redistest: no live master serves the slot of %q", key)
	return nil
}

// KillMasterOf kills the master serving key's slot at once (SIGKILL) and
// waits until its replica has taken the slots over and every live node
// reports the Cluster healthy. It returns the killed node and how long
// the Cluster took.
func (c *Cluster) KillMasterOf(key string) (*Server, time.Duration) {
	c.t.Helper()
	m := c.MasterOf(key)
	m.Kill()
	killed := time.Now()
	c.WaitHealthy()
	return m, time.Since(killed)
}

// RestartKilled starts the nodes KillMasterOf killed again, in their
// directories: each finds its slots taken over and rejoins as the replica
// of its former replica, its data gone (no persistence). It waits until
// they are in sync and the Cluster is healthy, ready for the next
// KillMasterOf.
func (c *Cluster) RestartKilled() {
	c.t.Helper()
	var back []*Server
	for _, n := range c.nodes {
		if n.cmd == nil {
			n.Restart()
			back = append(back, n)
		}
	}
	waitFor(c.t, "the restarted nodes in sync as replicas", func(ctx context.Context) string {
		for _, n := range back {
			repl, err := c.query(ctx, n, "info", "replication")
			if err != nil {
				return err.Error()
			}
			if !strings.Contains(repl, "role:slave") || !strings.Contains(repl, "master_link_status:up") {
				return n.Addr() + " is not a replica in sync yet"
			}
		}
		return c.unhealthy(ctx)
	})
}

// WaitHealthy waits until every live node reports cluster_state:ok, all
// 16384 slots are served by live masters and every live replica's link to
// its master is up.
func (c *Cluster) WaitHealthy() {
	c.t.Helper()
	waitFor(c.t, "a healthy Cluster", c.unhealthy)
}

// unhealthy says what keeps the Cluster from being healthy ("" when
// nothing does).
func (c *Cluster) unhealthy(ctx context.Context) string {
	for _, n := range c.live() {
		info, err := c.query(ctx, n, "cluster", "info")
		if err != nil {
			return err.Error()
		}
		if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
			return fmt.Sprintf("%s: %s", n.Addr(), strings.Join(strings.Fields(info)[:4], " "))
		}
		repl, err := c.query(ctx, n, "info", "replication")
		if err != nil {
			return err.Error()
		}
		if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
			return n.Addr() + ": replica not in sync with its master"
		}
	}
	served := 0
	for _, r := range c.slotRanges() {
		if slices.ContainsFunc(c.live(), func(n *Server) bool { return c.nodeID(n) == r.id }) {
			served += r.hi - r.lo + 1
		}
	}
	if served != 16384 {
		return fmt.Sprintf("live masters serve %d of 16384 slots", served)
	}
	return ""
}

func (c *Cluster) live() []*Server {
	var out []*Server
	for _, n := range c.nodes {
		if n.cmd != nil {
			out = append(out, n)
		}
	}
	return out
}

// query runs one command on node n and returns its text reply.
func (c *Cluster) query(ctx context.Context, n *Server, args ...any) (string, error) {
	cl := goredis.NewClient(n.Options())
	defer cl.Close()
	v, err := cl.Do(ctx, args...).Text()
	if err != nil {
		return "", fmt.Errorf("%s: %v: %w", n.Addr(), args, err)
	}
	return v, nil
}

// nodeID returns n's Cluster node id ("" when it does not answer).
func (c *Cluster) nodeID(n *Server) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	id, _ := c.query(ctx, n, "cluster", "myid")
	return id
}

type slotRange struct {
	lo, hi int
	id     string // the master's node id
}

// slotRanges returns the slot map as the first live node sees it.
func (c *Cluster) slotRanges() []slotRange {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, n := range c.live() {
		cl := goredis.NewClient(n.Options())
		shards, err := cl.ClusterShards(ctx).Result()
		cl.Close()
		if err != nil {
			continue
		}
		var out []slotRange
		for _, sh := range shards {
			var master string
			for _, node := range sh.Nodes {
				if node.Role == "master" {
					master = node.ID
				}
			}
			for _, r := range sh.Slots {
				out = append(out, slotRange{lo: int(r.Start), hi: int(r.End), id: master})
			}
		}
		return out
	}
	return nil
}

// keySlot asks a live node for key's hash slot.
func (c *Cluster) keySlot(key string) int {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, n := range c.live() {
		cl := goredis.NewClient(n.Options())
		slot, err := cl.ClusterKeySlot(ctx, key).Result()
		cl.Close()
		if err == nil {
			return int(slot)
		}
	}
	c.t.Fatalf("redistest: no live node answers CLUSTER KEYSLOT")
	return 0
}

func (c *Cluster) slotOwner(slot int) string {
	for _, r := range c.slotRanges() {
		if r.lo <= slot && slot <= r.hi {
			return r.id
		}
	}
	return ""
}
