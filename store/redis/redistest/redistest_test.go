package redistest

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func TestClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts six redis-servers")
	}
	c := StartCluster(t, Config{})
	client := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, k := range []string{"{a}:x", "{b}:x", "{c}:x"} {
		if err := client.Set(ctx, k, "v", 0).Err(); err != nil {
			t.Fatalf("set %s: %v", k, err)
		}
	}
	before := c.MasterOf("{a}:x")
	// Replication is asynchronous: let the writes reach the replica, the
	// test is about the failover.
	waitFor(t, "the writes replicated", func(ctx context.Context) string {
		role, err := before.Client(t).Do(ctx, "role").Slice()
		if err != nil || len(role) != 3 {
			return fmt.Sprintf("ROLE = %v, %v", role, err)
		}
		replicas, _ := role[2].([]any)
		for _, r := range replicas {
			if r, _ := r.([]any); len(r) != 3 || fmt.Sprint(r[2]) != fmt.Sprint(role[1]) {
				return fmt.Sprintf("master at offset %v, replica %v", role[1], r)
			}
		}
		return ""
	})
	killed, took := c.KillMasterOf("{a}:x")
	if killed != before {
		t.Fatalf("killed %s, want the master of {a} %s", killed.Addr(), before.Addr())
	}
	after := c.MasterOf("{a}:x")
	if after == before {
		t.Fatalf("the killed node still serves {a}")
	}
	t.Logf("the replica took over in %s", took)
	// The write was replicated long before the kill. (The first client
	// would send {a} to the dead node until it reads the slot map again:
	// store/redis.FollowFailovers.)
	if v, err := c.Client(t).Get(ctx, "{a}:x").Result(); err != nil || v != "v" {
		t.Fatalf("get after the failover = %q, %v", v, err)
	}
}

func TestSentinelFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five redis-servers")
	}
	s := StartSentinel(t, Config{})
	client := s.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := client.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	before := s.Primary()
	// Let the write reach the replica: the test is about the failover.
	waitFor(t, "the write replicated", func(ctx context.Context) string {
		for _, d := range s.data {
			if d != before {
				if v, _ := d.Client(t).Get(ctx, "k").Result(); v != "v" {
					return "the replica lacks it"
				}
			}
		}
		return ""
	})
	took := s.KillPrimary()
	if s.Primary() == before {
		t.Fatalf("the killed server is still the primary")
	}
	t.Logf("the Sentinels promoted the replica in %s", took)
	if v, err := client.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("get after the failover = %q, %v", v, err)
	}
	if err := client.Set(ctx, "k", "w", 0).Err(); err != nil {
		t.Fatalf("set after the failover: %v", err)
	}
}
