package webhook_test

import (
	"net/http"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wafleet/wafleet/store"
	wredis "github.com/wafleet/wafleet/store/redis"
	"github.com/wafleet/wafleet/store/redis/redistest"
	"github.com/wafleet/wafleet/webhook"
	"github.com/wafleet/wafleet/webhook/webhooktest"
)

// redisOutbox is the fleet's outbox and where it is.
type redisOutbox struct {
	*wredis.Store
	c      *goredis.Client
	prefix string
}

// openRedis returns an outbox on the shared test Redis under prefix, as
// one instance opens it; lockTTL 0 is the default.
func openRedis(t *testing.T, c *goredis.Client, prefix string, lockTTL time.Duration) redisOutbox {
	t.Helper()
	st, err := wredis.New(c, wredis.Options{Prefix: prefix, OutboxLockTTL: lockTTL})
	if err != nil {
		t.Fatal(err)
	}
	return redisOutbox{st, c, prefix}
}

func init() {
	outboxes = append(outboxes, struct {
		name    string
		open    func(t *testing.T) store.Outbox
		restart func(t *testing.T, ob store.Outbox) store.Outbox
	}{"redis", func(t *testing.T) store.Outbox {
		c, prefix := redistest.Shared(t)
		return openRedis(t, c, prefix, 0)
	}, func(t *testing.T, ob store.Outbox) store.Outbox {
		r := ob.(redisOutbox)
		return openRedis(t, r.c, r.prefix, 0)
	}})
}

// startInstance runs an engine named instance on its own Store object of
// the shared outbox, as one fleet instance does.
func startInstance(t *testing.T, c *goredis.Client, prefix, instance string, lockTTL time.Duration, edit func(*webhook.Config), eps ...webhook.Endpoint) (*harness, redisOutbox) {
	t.Helper()
	ob := openRedis(t, c, prefix, lockTTL)
	h := startWith(t, ob, func(cfg *webhook.Config) {
		cfg.Instance = instance
		if edit != nil {
			edit(cfg)
		}
	}, eps...)
	return h, ob
}

// TestFleetTakeover: two instances share the Redis outbox; the one that
// delivers stops while the receiver fails; the other delivers the rest,
// in order per account.
func TestFleetTakeover(t *testing.T) {
	c, prefix := redistest.Shared(t)
	r := webhooktest.NewReceiver(t, secret)
	const lockTTL = 3 * time.Second // long beside the 20 ms polls, even on a loaded machine
	ep := endpoint("main", r)
	ep.MaxAttempts = 50
	slow := func(cfg *webhook.Config) {
		cfg.Backoff = webhook.Backoff{Initial: 100 * time.Millisecond, Max: 500 * time.Millisecond}
	}
	h1, ob := startInstance(t, c, prefix, "inst-1", lockTTL, slow, ep)
	h1.waitOpen(t, "main")
	accounts := []string{"a", "b", "c"}
	appendEvents(t, ob, accounts, 0, 5, "state")
	h1.eng.Notify()
	r.WaitDelivered(t, 15) // inst-1 holds the endpoint
	h2, _ := startInstance(t, c, prefix, "inst-2", lockTTL, slow, ep)
	h2.waitOpen(t, "main")

	r.FailWith(http.StatusServiceUnavailable)
	appendEvents(t, ob, accounts, 5, 5, "state")
	h1.eng.Notify()
	r.WaitUntil(t, "refused attempts", func([]webhook.Delivery) bool { return r.Requests() >= 17 })
	if n := counter(t, h2, "main", "delivered") + counter(t, h2, "main", "retried"); n != 0 {
		t.Fatalf("inst-2 attempted %v deliveries while inst-1 held the endpoint", n)
	}
	h1.stop() // as dead: its lock lapses, its entries stay pending

	r.Recover()
	r.WaitDelivered(t, 30)
	h2.waitSettled(t)
	got := r.Delivered()
	checkInOrder(t, got, accounts, 10)
	if counter(t, h2, "main", "delivered") != 15 {
		t.Errorf("inst-2 delivered %v entries, want the 15 inst-1 left", counter(t, h2, "main", "delivered"))
	}
}

// TestFullQueueKeepsItsTurn: an instance whose endpoint holds all it may
// (a slow receiver) keeps the endpoint: the other instance never
// delivers to it meanwhile.
func TestFullQueueKeepsItsTurn(t *testing.T) {
	c, prefix := redistest.Shared(t)
	r := webhooktest.NewReceiver(t, secret)
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	r.Respond(func(webhook.Delivery, int) int {
		<-release
		return http.StatusOK
	})
	const lockTTL = 3 * time.Second // a deliverer that polls every 20 ms never lets it lapse
	ep := endpoint("main", r)
	ep.Timeout = time.Minute
	small := func(cfg *webhook.Config) { cfg.MaxInFlight = 2 }
	h1, ob := startInstance(t, c, prefix, "inst-1", lockTTL, small, ep)
	h1.waitOpen(t, "main")
	accounts := []string{"a", "b", "c", "d"}
	appendEvents(t, ob, accounts, 0, 3, "state")
	h1.eng.Notify()
	r.WaitUntil(t, "held requests", func([]webhook.Delivery) bool { return r.Requests() >= 1 })
	h2, _ := startInstance(t, c, prefix, "inst-2", lockTTL, small, ep)
	h2.waitOpen(t, "main")
	time.Sleep(2 * lockTTL) // give inst-2 the chance to take over, were the lock to lapse
	if n := r.Requests(); n > 2 {
		t.Fatalf("%d requests while inst-1 held 2 entries: inst-2 took the endpoint over", n)
	}
	once.Do(func() { close(release) })
	r.WaitDelivered(t, 12)
	h1.waitSettled(t)
	checkInOrder(t, r.Delivered(), accounts, 3)
	if n := counter(t, h2, "main", "delivered"); n != 0 {
		t.Errorf("inst-2 delivered %v entries; inst-1 kept the endpoint", n)
	}
}
