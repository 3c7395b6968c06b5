package redis

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/redis/redistest"
	"github.com/wafleet/wafleet/store/storetest"
)

// BenchmarkRenewTick measures one Tick (heartbeat + epoch check + renewal
// of every held lease) on a private redis-server reached over TCP with the
// product's client timeouts, and reports the Redis round trips it took and
// the CPU time Redis spent on it (its main thread, from INFO).
func BenchmarkRenewTick(b *testing.B) {
	srv := redistest.Start(b, redistest.Config{})
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprintf("leases=%d", n), func(b *testing.B) {
			c := goredis.NewClient(&goredis.Options{Addr: srv.Addr(), ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
			defer c.Close()
			prefix := redistest.Prefix()
			m := newLeases(b, c, prefix, "inst-a", newClock(), time.Minute)
			accts := make([]string, n)
			for i := range accts {
				accts[i] = fmt.Sprintf("acct-%d", i)
			}
			if r, err := m.Acquire(b.Context(), accts...); err != nil || len(r.Acquired) != n {
				b.Fatalf("Acquire got %d, %v", len(r.Acquired), err)
			}
			if _, err := m.Tick(b.Context()); err != nil { // loads the script
				b.Fatal(err)
			}
			cpu0 := redisCPU(b, c)
			h := &counter{}
			c.AddHook(h)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				tr, err := m.Tick(b.Context())
				if err != nil || tr.Renewed != n {
					b.Fatalf("Tick = renewed %d, %v", tr.Renewed, err)
				}
			}
			b.StopTimer()
			trips := h.RoundTrips()
			b.ReportMetric(float64(trips)/float64(b.N), "roundtrips/tick")
			b.ReportMetric((redisCPU(b, c)-cpu0).Seconds()*1000/float64(b.N), "redis-cpu-ms/tick")
		})
	}
}

// redisCPU returns the CPU time the server's main thread has used.
func redisCPU(b *testing.B, c *goredis.Client) time.Duration {
	info, err := c.Info(b.Context(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var sec float64
	for line := range strings.Lines(info) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		if k == "used_cpu_user_main_thread" || k == "used_cpu_sys_main_thread" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatalf("INFO cpu %s: %v", k, err)
			}
			sec += f
		}
	}
	return time.Duration(sec * float64(time.Second))
}

// BenchmarkSave measures a fenced Save (two round trips on a single node:
// read the old mapping users, then the script).
func BenchmarkSave(b *testing.B) {
	c, prefix := sharedClient(b)
	s := newStore(b, c, prefix, false, nil)
	m := newLeases(b, c, prefix, "inst-a", newClock(), time.Minute)
	r, err := m.Acquire(b.Context(), "acct")
	if err != nil || len(r.Acquired) != 1 {
		b.Fatal(r, err)
	}
	v := s.Fenced(r.Acquired[0])
	d := pairedDeviceForBench(b)
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Save(b.Context(), d); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSignalApply measures a fenced ApplySignal of what decrypting a
// message changes (a 2 KB session and the sender's identity) and reports
// its round trips.
func BenchmarkSignalApply(b *testing.B) {
	for _, bs := range []struct {
		name   string
		sealer store.Sealer
	}{{"plain", nil}, {"sealed", testSealer(b, 1)}} {
		b.Run("redis/"+bs.name, func(b *testing.B) {
			c, prefix := sharedClient(b)
			s := newStore(b, c, prefix, false, bs.sealer)
			m := newLeases(b, c, prefix, "inst-a", newClock(), time.Minute)
			v := s.Fenced(mustAcquire(b, m, "acct"))
			if err := v.Save(b.Context(), pairedDeviceForBench(b)); err != nil {
				b.Fatal(err)
			}
			ch := store.SignalChanges{
				Sessions:   []store.SessionChange{{Addr: storetest.PeerPN, Record: storetest.SignalRecord(b, 2048)}},
				Identities: []store.IdentityChange{{Addr: storetest.PeerPN, Key: [32]byte{1}}},
			}
			if _, err := v.ApplySignal(b.Context(), "acct", ch); err != nil { // loads the script
				b.Fatal(err)
			}
			h := &counter{}
			c.AddHook(h)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := v.ApplySignal(b.Context(), "acct", ch); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(h.RoundTrips())/float64(b.N), "roundtrips/op")
		})
	}
}
