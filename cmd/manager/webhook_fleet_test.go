package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	wredis "github.com/wafleet/wafleet/store/redis"
	"github.com/wafleet/wafleet/store/redis/redistest"
	"github.com/wafleet/wafleet/webhook"
	"github.com/wafleet/wafleet/webhook/webhooktest"
)

// webhookYAML is a webhooks section with one endpoint, for startInstance.
func webhookYAML(name, url string) string {
	return fmt.Sprintf("webhooks:\n  - name: %s\n    url: %s\n    secret: %s\n    timeout: 2s\n    max_attempts: 50\n", name, url, webhookSecret)
}

// TestFleetWebhooksSurviveKill: two instances share the Redis outbox; the
// one delivering the endpoint is killed with -9 while the receiver
// fails; the other delivers every event the outbox held, in order per
// account.
func TestFleetWebhooksSurviveKill(t *testing.T) {
	bin := managerBinary(t)
	dir := t.TempDir()
	emu := startEmulatorProcess(t, bin)
	rs := redistest.Start(t, redistest.Config{})
	recv := webhooktest.NewReceiver(t, webhookSecret)
	const n = 6
	hook := webhookYAML("receiver", recv.URL)
	instances := []*instance{
		startInstance(t, bin, dir, "inst-1", emu, oneRedis(rs.Addr()), n, hook),
		startInstance(t, bin, dir, "inst-2", emu, oneRedis(rs.Addr()), n, hook),
	}
	waitFleet(t, instances, emu, n, true, fleetPatience)
	recv.WaitUntil(t, "every account's connected event", func(got []webhook.Delivery) bool {
		connected := map[string]bool{}
		for _, d := range got {
			if d.Kind == "connected" {
				connected[d.Account] = true
			}
		}
		return len(connected) == n
	})

	rc := goredis.NewClient(&goredis.Options{Addr: rs.Addr()})
	defer rc.Close()
	ctx := context.Background()
	deliverer, err := rc.Get(ctx, wredis.DefaultPrefix+":{outbox}:lock:receiver").Result()
	if err != nil {
		t.Fatalf("who delivers: %v", err)
	}
	var victim, survivor *instance
	for _, inst := range instances {
		if inst.name == deliverer {
			victim = inst
		} else {
			survivor = inst
		}
	}
	if victim == nil {
		t.Fatalf("the endpoint's deliverer %q is no instance", deliverer)
	}

	// The receiver fails; new events queue up at the deliverer.
	recv.FailWith(http.StatusServiceUnavailable)
	before := recv.Requests()
	for i := range 2 {
		resp, err := http.Post("http://"+survivor.listen+"/api/accounts", "application/json", strings.NewReader(fmt.Sprintf(`{"id":"added-%d"}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("create an account: %s", resp.Status)
		}
	}
	recv.WaitUntil(t, "refused attempts", func([]webhook.Delivery) bool { return recv.Requests() >= before+2 })
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-victim.done

	// Every event the outbox holds now must reach the receiver.
	ob, err := wredis.New(rc, wredis.Options{})
	if err != nil {
		t.Fatal(err)
	}
	held, err := ob.After(ctx, "", 10000)
	if err != nil {
		t.Fatal(err)
	}
	recv.Recover()
	killedAt := time.Now()
	got := waitAllDelivered(t, recv, "every event of the outbox at the kill", held)
	checkOrderPerAccount(t, got)
	if p := recv.Problems(); len(p) > 0 {
		t.Fatalf("deliveries failed verification: %v", p)
	}
	now, err := rc.Get(ctx, wredis.DefaultPrefix+":{outbox}:lock:receiver").Result()
	if err != nil || now != survivor.name {
		t.Errorf("the endpoint is delivered by %q (%v), want %s", now, err, survivor.name)
	}
	t.Logf("%d events in the outbox at the kill; %s delivered them all %s after it", len(held), survivor.name, time.Since(killedAt).Round(time.Millisecond))
}
