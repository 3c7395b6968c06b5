package app

import (
	"context"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wafleet/wafleet/config"
	"github.com/wafleet/wafleet/store/redis/redistest"
)

// TestRedisClientTopologies: redis.addrs and redis.master_name choose the
// client: a Cluster from several nodes or from one node in cluster mode
// (where redis.db must be 0), the Sentinels' primary with a master name,
// and a clear error for several addresses that are no Cluster.
func TestRedisClientTopologies(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster and a Sentinel set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	open := func(c config.Redis) (goredis.UniversalClient, error) {
		t.Helper()
		client, err := redisClient(ctx, c)
		if err == nil {
			t.Cleanup(func() { _ = client.Close() })
		}
		return client, err
	}
	cl := redistest.StartCluster(t, redistest.Config{})
	for _, c := range []config.Redis{{Addrs: cl.Addrs()}, {Addr: cl.Addrs()[0]}} {
		client, err := open(c)
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		if _, ok := client.(*goredis.ClusterClient); !ok {
			t.Fatalf("%+v: a %T, not a Cluster client", c, client)
		}
		// Keys of every slot are reachable.
		for _, k := range []string{"{a}", "{b}", "{c}", "{d}"} {
			if err := client.Set(ctx, k, "v", 0).Err(); err != nil {
				t.Fatalf("%+v: set %s: %v", c, k, err)
			}
		}
	}
	if _, err := open(config.Redis{Addr: cl.Addrs()[0], DB: 1}); err == nil || !strings.Contains(err.Error(), "redis.db") {
		t.Fatalf("db 1 on a Cluster node = %v, want an error naming redis.db", err)
	}

	s := redistest.StartSentinel(t, redistest.Config{})
	client, err := open(config.Redis{Addrs: s.Addrs(), MasterName: redistest.MasterName})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("write through the Sentinels: %v", err)
	}
	if v := s.Primary().Client(t).Get(ctx, "k").Val(); v != "v" {
		t.Fatalf("the primary holds %q, want the write", v)
	}
	if _, err := open(config.Redis{Addrs: s.Addrs(), MasterName: "other"}); err == nil || !strings.Contains(err.Error(), `"other"`) {
		t.Fatalf("an unknown master name = %v, want an error naming it", err)
	}

	one, two := redistest.Start(t, redistest.Config{}), redistest.Start(t, redistest.Config{})
	if _, err := open(config.Redis{Addrs: []string{one.Addr(), two.Addr()}}); err == nil || !strings.Contains(err.Error(), "redis.master_name") {
		t.Fatalf("two servers that are no Cluster = %v, want an error pointing at redis.master_name", err)
	}
}
