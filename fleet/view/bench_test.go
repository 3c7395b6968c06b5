package view

import (
	"context"
	"strings"
	"testing"

	"github.com/wafleet/wafleet/api"
	"github.com/wafleet/wafleet/wire/jid"
)

// BenchmarkRouterSend: a send from an account held by the instance asked
// (no Redis), and one routed through Redis to the instance holding it
// (push to its inbox, its BLPOP, the reply pushed back), one at a time
// and with 8 concurrent callers on 2 cores. The owner's send does
// nothing, so "routed" is the routing alone; round_trips/op counts both
// instances' commands.
func BenchmarkRouterSend(b *testing.B) {
	a, owner := startOwnedElsewhere(b, "acct-1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for {
			select {
			case <-owner.sends:
			case <-ctx.Done():
				return
			}
		}
	}()
	m := api.OutgoingText{To: jid.New("15551234567", jid.DefaultUserServer), Text: strings.Repeat("x", 100), Key: "k"}
	send := func(b *testing.B, r *Router) {
		if _, err := r.SendText(context.Background(), "acct-1", m); err != nil {
			b.Error(err)
		}
	}
	trips := func() int { return a.rec.roundTrips() + owner.rec.roundTrips() }
	for _, c := range []struct {
		name     string
		r        *Router
		parallel bool
	}{{"held", owner.r, false}, {"routed", a.r, false}, {"routed-parallel", a.r, true}} {
		b.Run(c.name, func(b *testing.B) {
			before := trips()
			if c.parallel {
				b.SetParallelism(4) // 8 callers: under MaxInFlight (16), beyond which the owner answers busy
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						send(b, c.r)
					}
				})
			} else {
				for b.Loop() {
					send(b, c.r)
				}
			}
			b.ReportMetric(float64(trips()-before)/float64(b.N), "round_trips/op")
		})
	}
}
