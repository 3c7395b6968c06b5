//go:build unix

package emulator

import (
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/wafleet/wafleet/wire/payload"
)

// BenchmarkDayOneConnections runs 5,000 logged-in day-one connections at
// the default 1 stanza per second each (a burst of 20 first, pings every
// 30 s), with in-memory clients that ack everything, in real time for
// -benchtime (run with -benchtime=10s). It reports the CPU the server and
// its in-memory clients (handshake state, reader goroutine, pipe) used
// together per wall second, stanzas pushed per second, goroutines
// per connection and heap per connection (server and client sides, about
// half each). Run:
//
//	go test -run XXX -bench DayOneConnections -benchtime 10s ./emulator
func BenchmarkDayOneConnections(b *testing.B) {
	const conns = 5000
	s, err := New(Options{DayOne: DayOne{Enabled: true}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	runtime.GC()
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	g0 := runtime.NumGoroutine()
	for range conns {
		d := addPipeDevice(b, s)
		login(b, s, d, clientPolicy{ack: true, pings: true, forget: true}, payload.Version{})
	}
	// Let the bursts go out and be acked.
	for s.Stats().AcksOK < conns*DefaultPushBurst {
		time.Sleep(100 * time.Millisecond)
	}
	runtime.GC()
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	goroutines := runtime.NumGoroutine() - g0

	busy0 := cpuSeconds(b)
	pushed0 := s.Stats().StanzasPushed
	start := time.Now()
	b.ResetTimer()
	for b.Loop() {
		time.Sleep(time.Second)
	}
	b.StopTimer()
	wall := time.Since(start).Seconds()
	busy := cpuSeconds(b) - busy0
	st := s.Stats()
	if st.AcksMalformed != 0 || st.AckDeadlineKills != 0 {
		b.Fatalf("stats %+v", st)
	}
	b.ReportMetric(busy/wall, "cpu-s/s")
	b.ReportMetric(float64(st.StanzasPushed-pushed0)/wall, "stanzas/s")
	b.ReportMetric(float64(goroutines)/conns, "goroutines/conn")
	b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/conns, "heap-B/conn")
}

// cpuSeconds is the process's user and system CPU time.
func cpuSeconds(b *testing.B) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}
