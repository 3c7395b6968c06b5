package emulator_test

import (
	"context"
	"testing"
	"time"

	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/wire"
	"github.com/wafleet/wafleet/wire/node"
)

// BenchmarkLoopbackLogin measures whole reconnects over real loopback
// sockets, client and emulator in this process: WebSocket dial, Noise
// handshake with a login payload, <success/>, close. With -cpu=1 client
// and server share one core; logins/s is the rate of that pair.
func BenchmarkLoopbackLogin(b *testing.B) {
	srv := emutest.Start(b, emulator.Options{})
	d := newTestDevice(b)
	pair(b, srv, d)
	cp := d.loginPayload(b)
	root := srv.RootPublicKey()
	b.ReportAllocs()
	b.SetParallelism(4)
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			conn, err := wire.Dial(ctx, srv.URL(), wire.DialOptions{})
			if err != nil {
				b.Error(err)
				cancel()
				return
			}
			tr, err := wire.ClientHandshake(ctx, conn, wire.ClientHandshakeConfig{NoiseKey: d.noise, Payload: cp, RootKey: root[:]})
			cancel()
			if err != nil {
				b.Error(err)
				return
			}
			pt, err := tr.Receive()
			if err != nil {
				b.Error(err)
				tr.Close()
				return
			}
			if n, err := node.UnmarshalPayload(pt); err != nil || n.Tag != "success" {
				b.Errorf("got %v, %v", n, err)
			}
			tr.Close()
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "logins/s")
}
