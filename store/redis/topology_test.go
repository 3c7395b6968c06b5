package redis

import (
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wafleet/wafleet/store/redis/redistest"
)

// The tests below run the store's contract and the lease, fencing, outbox
// and registry tests on a private Redis Cluster (three masters, a replica
// each: every multi-key script and pipeline must keep to one slot, SCAN
// must visit every master, pub/sub must reach every node's subscribers)
// and on a Sentinel-managed primary and replica (the client asks the
// Sentinels for the primary). One deployment serves all the tests of its
// kind; each test has its own key prefix.

func TestOnCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts six redis-servers")
	}
	cl := redistest.StartCluster(t, redistest.Config{})
	runOn(t, target{cluster: true, open: func(t testing.TB) (goredis.UniversalClient, string) {
		c := cl.Client(t)
		FollowFailovers(c)
		return c, redistest.Prefix()
	}})
}

func TestOnSentinel(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five redis-servers")
	}
	s := redistest.StartSentinel(t, redistest.Config{})
	runOn(t, target{open: func(t testing.TB) (goredis.UniversalClient, string) {
		return s.Client(t), redistest.Prefix()
	}})
}

func runOn(t *testing.T, tg target) {
	for name, test := range map[string]func(*testing.T, target){
		"Contract":                 testContract,
		"Fencing":                  testFencing,
		"PreKeyFencing":            testPreKeyFencing,
		"ArchiveFenced":            testArchiveFenced,
		"SplitWriteRecovers":       testSplitWriteRecovers,
		"LeaseLifecycle":           testLeaseLifecycle,
		"LeaseExpiresInRedis":      testLeaseExpiresInRedis,
		"OutboxContract":           testOutboxContract,
		"OutboxDelivererHandover":  testOutboxDelivererHandover,
		"RegistryAnnouncesChanges": testRegistryAnnouncesChanges,
	} {
		t.Run(name, func(t *testing.T) { test(t, tg) })
	}
}
