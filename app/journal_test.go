package app

import (
	"bufio"
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/redis/redistest"
)

// Events published until the accounts stop are in the outbox after the
// app stopped: the journal is flushed before the store closes.
func TestJournalFlushedBeforeTheStoreCloses(t *testing.T) {
	emu := emutest.Start(t, emulator.Options{})
	path := filepath.Join(t.TempDir(), "devices.db")
	r := start(t, testConfig(t, emu, path, 1))
	<-r.app.ready
	r.app.Events().Publish(events.Event{Account: "acct-aa", Kind: events.KindAlarm, Alarm: events.AlarmDevice, Error: "probe"})
	r.stop(t)
	st, err := store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	entries, err := st.After(t.Context(), "", 10000)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Kind == "alarm" && strings.Contains(string(e.Body), `"error":"probe"`) {
			return
		}
	}
	t.Fatalf("the event published before the stop is not among the %d entries of the outbox", len(entries))
}

// In fleet mode GET /api/events is the fleet's: an event of one instance
// shows on the stream of the other.
func TestEventStreamIsTheFleets(t *testing.T) {
	emu := emutest.Start(t, emulator.Options{})
	rs := redistest.Start(t, redistest.Config{})
	a := start(t, fleetConfig(t, emu, rs.Addr(), "inst-a", 1))
	b := start(t, fleetConfig(t, emu, rs.Addr(), "inst-b", 1))
	defer a.stop(t)
	defer b.stop(t)
	<-a.app.ready
	<-b.app.ready

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.url+"/api/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/events on b: %d", resp.StatusCode)
	}
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() { // the subscription exists once the stream says so
		if lines.Text() == ": connected" {
			break
		}
	}
	a.app.Events().Publish(events.Event{Account: "acct-aa", Kind: events.KindAlarm, Alarm: events.AlarmDevice, Error: "probe from a"})
	for lines.Scan() {
		line := lines.Text()
		if strings.HasPrefix(line, "data: ") && strings.Contains(line, `"error":"probe from a"`) {
			if !strings.Contains(line, `"instance":"inst-a"`) {
				t.Fatalf("the event says it happened elsewhere: %s", line)
			}
			return
		}
	}
	t.Fatalf("b's stream ended without a's event: %v", lines.Err())
}
