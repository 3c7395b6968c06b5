package main

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	wredis "github.com/wafleet/wafleet/store/redis"
	"github.com/wafleet/wafleet/store/redis/redistest"
)

// The fleet on a Redis that fails over: a Redis Cluster whose master
// dies (its replica takes its slots over) and a primary/replica pair under
// Sentinels whose primary dies (the Sentinels promote the replica). Each
// test first fails Redis over alone, then kills an instance (kill -9) and
// fails Redis over again while that instance's accounts wait for their
// leases to expire. Through both: never two connections for one device at
// the emulator, never a QR code (no account pairs again), every account
// connected on one instance in the end. The tests log what a failover
// costs (BENCHMARKS.md, "Redis Cluster and Sentinel").

// haLeaseTTL is the lease TTL of these tests: the default, so that what
// they log is what a failover costs a fleet configured as shipped (with
// the 5 s of the other fleet tests, every lease is lost while Redis fails
// over).
const haLeaseTTL = 15 * time.Second

func TestFleetFailoverOnRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a Redis Cluster and manager processes")
	}
	cl := redistest.StartCluster(t, redistest.Config{})
	rc := cl.Client(t)
	wredis.FollowFailovers(rc)
	// The master of the membership zset: while it is down every tick's
	// heartbeat fails, the worst case for the leases.
	runRedisFailovers(t, fleetRedis{addrs: cl.Addrs()}, rc, func() time.Duration {
		_, took := cl.KillMasterOf("wafleet:members")
		return took
	}, cl.RestartKilled)
}

func TestFleetFailoverOnRedisSentinel(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a Sentinel set and manager processes")
	}
	s := redistest.StartSentinel(t, redistest.Config{})
	runRedisFailovers(t, fleetRedis{addrs: s.Addrs(), masterName: redistest.MasterName}, s.Client(t), s.KillPrimary, s.RestartKilled)
}

// runRedisFailovers runs three instances with 60 accounts on redis, fails
// Redis over with failover (which returns how long Redis took), alone and
// then in the middle of an instance's failover; rejoin, when not nil,
// brings the failed server back before the second failover. rc reads the
// event stream.
func runRedisFailovers(t *testing.T, redis fleetRedis, rc goredis.UniversalClient, failover func() time.Duration, rejoin func()) {
	t.Setenv("WAFLEET_FLEET_LEASE_TTL", haLeaseTTL.String()) // the instances inherit it
	bin := managerBinary(t)
	dir := t.TempDir()
	emu := startEmulatorProcess(t, bin)
	start := time.Now()
	const n = 60
	instances := []*instance{
		startInstance(t, bin, dir, "inst-1", emu, redis, n),
		startInstance(t, bin, dir, "inst-2", emu, redis, n),
		startInstance(t, bin, dir, "inst-3", emu, redis, n),
	}
	stopWatch := watchDoubles(t, emu)
	defer stopWatch()
	waitFleet(t, instances, emu, n, true, 5*time.Minute)
	waitSettled(t, instances, emu, n, 2*fleetLeaseTTL)

	// A failover alone.
	before := emu.stats(t)
	at := time.Now()
	took := failover()
	logFailover(t, "a Redis failover alone", instances, emu, rc, n, at, took, before)
	if rejoin != nil {
		rejoin()
	}

	// kill -9 of the instance running the most accounts, and a Redis
	// failover while its leases run out.
	view := waitFleet(t, instances, emu, n, false, fleetPatience)
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
	before = emu.stats(t)
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-victim.done
	at = time.Now()
	took = failover()
	logFailover(t, fmt.Sprintf("kill -9 of %s (%d accounts), then a Redis failover", victim.name, per[victim.name]), instances, emu, rc, n, at, took, before)

	stopWatch()
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
	noAlarms(t, eventsSince(t, rc, start), "Redis failovers")
}

// logFailover waits until the fleet has settled after a failure at time
// at (every account connected on one instance, none moving; a QR code or
// a double connection fails the test) and logs what it cost: how long
// Redis took (took), the lease_lost events since at by reason (leases
// lost: "lease not renewed in time", "lease taken over or expired in
// Redis"; or handed over), the logins the emulator saw since before, and
// when the last account connected.
func logFailover(t *testing.T, what string, instances []*instance, emu *emulatorProcess, rc goredis.UniversalClient, n int, at time.Time, took time.Duration, before emulatorStats) {
	t.Helper()
	waitSettled(t, instances, emu, n, 2*fleetLeaseTTL)
	lost := map[string]int{}
	var last time.Duration
	for _, e := range eventsSince(t, rc, at) {
		switch e.kind {
		case "lease_lost":
			lost[e.error]++
		case "connected":
			last = max(last, e.at.Sub(at))
		}
	}
	t.Logf("%s: Redis took %s; lease_lost events by reason %v; %d logins; the last account connected %s after the failure",
		what, took.Round(time.Millisecond), lost, emu.stats(t).Logins-before.Logins, last.Round(time.Millisecond))
}
