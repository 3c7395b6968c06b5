package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wafleet/wafleet/fleet"
	"github.com/wafleet/wafleet/store/redis/redistest"
)

// streamEvent is one entry of the Redis event stream wafleet:events.
type streamEvent struct {
	instance, account, kind, alarm, error string
	at                                    time.Time
}

// eventsSince reads the event stream from time since on.
func eventsSince(t *testing.T, rc goredis.UniversalClient, since time.Time) []streamEvent {
	t.Helper()
	msgs, err := rc.XRange(context.Background(), "wafleet:events", fmt.Sprint(since.UnixMilli()), "+").Result()
	if err != nil {
		t.Fatalf("read the event stream: %v", err)
	}
	var out []streamEvent
	for _, m := range msgs {
		field := func(k string) string { s, _ := m.Values[k].(string); return s }
		at, _ := time.Parse(time.RFC3339Nano, field("time"))
		var body struct{ Alarm, Error string }
		_ = json.Unmarshal([]byte(field("body")), &body) // the event's JSON, events.Wire
		out = append(out, streamEvent{instance: field("instance"), account: field("account"), kind: field("kind"), alarm: body.Alarm, error: body.Error, at: at})
	}
	return out
}

// noAlarms fails the test on any alarm in evs.
func noAlarms(t *testing.T, evs []streamEvent, what string) {
	t.Helper()
	for _, e := range evs {
		if e.kind == "alarm" {
			t.Errorf("%s: alarm %q for %s on %s", what, e.alarm, e.account, e.instance)
		}
	}
}

// smallestGap returns, over the accounts that moved, the least time from
// the old holder's lease_lost (published once its socket is closed) to the
// new holder's next connected, and how many accounts moved.
func smallestGap(evs []streamEvent) (time.Duration, int) {
	lostAt := map[string]streamEvent{}
	gap, moved := time.Duration(1<<62), 0
	for _, e := range evs {
		switch e.kind {
		case "lease_lost":
			lostAt[e.account] = e
		case "connected":
			if l, ok := lostAt[e.account]; ok && l.instance != e.instance {
				gap = min(gap, e.at.Sub(l.at))
				moved++
				delete(lostAt, e.account)
			}
		}
	}
	return gap, moved
}

// waitShares waits until every account is connected on its rendezvous
// instance among instances.
func waitShares(t *testing.T, instances []*instance, emu *emulatorProcess, n int, within time.Duration) {
	t.Helper()
	var names []string
	for _, inst := range instances {
		names = append(names, inst.name)
	}
	sort.Strings(names)
	deadline := time.Now().Add(within)
	for {
		v := waitFleet(t, instances, emu, n, false, within)
		off := 0
		for acct, who := range v.connected {
			if fleet.Preferred(acct, names) != who {
				off++
			}
		}
		if off == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d accounts not on their rendezvous instance after %s", off, within)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// maxDeviceConnections polls the emulator's per-device connection counts
// until stop and returns the largest seen.
func maxDeviceConnections(emu *emulatorProcess) (stop func() int) {
	ctx, cancel := context.WithCancel(context.Background())
	most := make(chan int, 1)
	go func() {
		m := 0
		for ctx.Err() == nil {
			if resp, err := http.Get(emu.controlURL + "/devices"); err == nil {
				var devs []struct {
					Connections int `json:"connections"`
				}
				_ = json.NewDecoder(resp.Body).Decode(&devs)
				resp.Body.Close()
				for _, d := range devs {
					m = max(m, d.Connections)
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
		most <- m
	}()
	return func() int { cancel(); return <-most }
}

// TestFleetClockJumpAndPause runs two instances and puts their leases
// through what a clock cannot be trusted with. First Redis's clock "jumps"
// past the TTL — every lease and heartbeat vanishes at once while both
// instances still count on them: no device may ever have two connections,
// and no alarm may be raised. Then one instance is frozen (SIGSTOP) for
// three TTLs: the other takes its accounts, replacing at the server the
// connections the frozen process cannot close; once resumed, the frozen
// instance closes them, raises no "replaced" alarm, never connects an
// account the other holds, and gets its share back.
func TestFleetClockJumpAndPause(t *testing.T) {
	bin := managerBinary(t)
	dir := t.TempDir()
	emu := startEmulatorProcess(t, bin)
	rs := redistest.Start(t, redistest.Config{})
	rc := goredis.NewClient(&goredis.Options{Addr: rs.Addr()})
	defer rc.Close()
	const n = 60
	one := startInstance(t, bin, dir, "inst-1", emu, oneRedis(rs.Addr()), n)
	two := startInstance(t, bin, dir, "inst-2", emu, oneRedis(rs.Addr()), n)
	instances := []*instance{one, two}
	stopWatch := watchDoubles(t, emu)
	waitFleet(t, instances, emu, n, true, 5*time.Minute)
	waitShares(t, instances, emu, n, fleetPatience)

	// Redis's clock jumps forward past the TTL.
	jumpAt := time.Now()
	keys, err := rc.Keys(context.Background(), "wafleet:{*}:lease").Result()
	if err != nil || len(keys) != n {
		t.Fatalf("lease keys: %d, %v", len(keys), err)
	}
	rc.Del(context.Background(), append(keys, "wafleet:members")...)
	// Both instances find their renewals refused and close every account;
	// the first to tick takes them all (the other's after the guard
	// interval), then hands the other's share back.
	for lost := 0; lost < n; {
		lost = 0
		for _, e := range eventsSince(t, rc, jumpAt) {
			if e.kind == "lease_lost" {
				lost++
			}
		}
		if time.Since(jumpAt) > fleetPatience {
			t.Fatalf("clock jump: %d leases lost after %s, want %d", lost, fleetPatience, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitShares(t, instances, emu, n, fleetPatience)
	stopWatch()
	st := emu.stats(t)
	if st.MaxConnectionsPerDevice > 1 {
		t.Fatalf("clock jump: max_connections_per_device = %d", st.MaxConnectionsPerDevice)
	}
	evs := eventsSince(t, rc, jumpAt)
	noAlarms(t, evs, "clock jump")
	gap, moved := smallestGap(evs)
	t.Logf("clock jump: max connections per device %d; %d accounts moved, the smallest gap from the old holder's close to the new holder's connected was %s", st.MaxConnectionsPerDevice, moved, gap.Round(time.Millisecond))
	if moved > 0 && gap < 0 {
		t.Errorf("clock jump: an account connected on its new instance %s before the old one closed it", -gap)
	}

	// inst-1 is frozen for three TTLs.
	before := emu.stats(t)
	frozenAt := time.Now()
	if err := one.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			_ = one.cmd.Process.Signal(syscall.SIGCONT)
		}
	}()
	for {
		running := 0
		for _, a := range two.accounts() {
			if a.State == "connected" {
				running++
			}
		}
		if running == n {
			break
		}
		if time.Since(frozenAt) > 3*fleetLeaseTTL {
			t.Fatalf("inst-2 runs %d of %d accounts %s after inst-1 froze", running, n, time.Since(frozenAt).Round(time.Millisecond))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("pause: inst-2 ran every account %s after inst-1 froze", time.Since(frozenAt).Round(time.Millisecond))
	time.Sleep(time.Until(frozenAt.Add(3 * fleetLeaseTTL)))
	during := emu.stats(t)
	replaced := during.Logins - before.Logins
	watchDevices := maxDeviceConnections(emu)
	resumedAt := time.Now()
	if err := one.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed = true
	waitShares(t, instances, emu, n, fleetPatience)
	afterResume := watchDevices()
	evs = eventsSince(t, rc, frozenAt)
	noAlarms(t, evs, "pause")
	var closedBy time.Duration
	for _, e := range evs {
		if e.instance == one.name && e.kind == "lease_lost" && e.at.After(resumedAt) && e.at.Before(resumedAt.Add(fleetLeaseTTL)) {
			closedBy = max(closedBy, e.at.Sub(resumedAt))
		}
	}
	t.Logf("pause: while inst-1 was frozen the server replaced %d of its open connections as inst-2 logged in; after SIGCONT inst-1 closed its sockets within %s; afterwards at most %d connection(s) per device",
		replaced, closedBy.Round(time.Millisecond), afterResume)
	if afterResume > 1 {
		t.Errorf("pause: a device had %d connections after inst-1 resumed", afterResume)
	}
	final := emu.stats(t)
	if final.Pairings != n {
		t.Errorf("pairings = %d, want %d", final.Pairings, n)
	}
	if len(final.Violations) > 0 {
		t.Errorf("violations: %s", strings.Join(final.Violations[:min(5, len(final.Violations))], "; "))
	}
}
