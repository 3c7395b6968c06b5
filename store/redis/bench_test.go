package redis

import (
	"fmt"
	"testing"
	"time"

	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/storetest"
)

// BenchmarkRenewTick measures one Tick (heartbeat + epoch check + renewal
// of every held lease) and reports the Redis round trips it took.
func BenchmarkRenewTick(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprintf("leases=%d", n), func(b *testing.B) {
			c, prefix := sharedClient(b)
			m := newLeases(b, c, prefix, "inst-a", newClock(), time.Minute)
			accts := make([]string, n)
			for i := range accts {
				accts[i] = fmt.Sprintf("acct-%d", i)
			}
			if r, err := m.Acquire(b.Context(), accts...); err != nil || len(r.Acquired) != n {
				b.Fatalf("Acquire got %d, %v", len(r.Acquired), err)
			}
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
			b.ReportMetric(float64(h.RoundTrips())/float64(b.N), "roundtrips/tick")
		})
	}
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
