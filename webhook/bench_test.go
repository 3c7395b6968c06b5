package webhook_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/webhook"
	"github.com/wafleet/wafleet/webhook/webhooktest"
)

// BenchmarkDeliver measures deliveries per second from the bbolt outbox
// to a local receiver that verifies each signature: b.N events of 16
// accounts, one endpoint.
func BenchmarkDeliver(b *testing.B) {
	st, err := store.OpenBolt(filepath.Join(b.TempDir(), "wafleet.db"), store.BoltOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	r := webhooktest.NewReceiver(b, secret)
	eng, err := webhook.New(webhook.Config{Outbox: st, Instance: "bench", Endpoints: []webhook.Endpoint{{Name: "main", URL: r.URL, Secret: secret}}, Poll: 10 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { eng.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for {
		list, err := eng.Endpoints(ctx)
		if err == nil && len(list) == 1 && list[0].Running {
			break
		}
		time.Sleep(time.Millisecond)
	}
	recs := make([]store.OutboxRecord, b.N)
	for i := range recs {
		acct := string(rune('a' + i%16))
		body, _ := json.Marshal(payload{Account: acct, Seq: i / 16})
		recs[i] = store.OutboxRecord{Account: acct, Kind: "state", Instance: "bench", Time: time.Now(), Body: body}
	}
	b.ResetTimer()
	for i := 0; i < len(recs); i += 256 {
		if _, err := st.Append(ctx, recs[i:min(i+256, len(recs))]...); err != nil {
			b.Fatal(err)
		}
		eng.Notify()
	}
	r.WaitDelivered(b, b.N)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
}
