package app

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/wire/jid"
)

// A message an emulated contact sends reaches the outbox once, written
// before the app acknowledged it (with its Signal state, not a second
// append of the published event); across an app restart on the same
// bbolt file the conversation goes on and no message is lost.
func TestMessagesReachTheOutboxAcrossARestart(t *testing.T) {
	emu := emutest.Start(t, emulator.Options{})
	path := filepath.Join(t.TempDir(), "wafleet.db")
	cfg := testConfig(t, emu, path, 1)
	r := start(t, cfg)
	r.connectAll(t, emu, 1, true)
	view, _ := r.app.Board().Get("acct-aa")
	own, err := jid.Parse(view.JID)
	if err != nil {
		t.Fatal(err)
	}
	alice, err := emu.AddContact("")
	if err != nil {
		t.Fatal(err)
	}
	send := func(r *running, text string) string {
		t.Helper()
		sent, err := emu.SendText(alice.Devices()[0], own.ToNonAD(), text)
		if err != nil {
			t.Fatal(err)
		}
		e := r.waitEvent(t, "acct-aa", "the message "+text, func(e events.Event) bool {
			return e.Kind == events.KindMessage && e.Message.ID == sent.ID
		})
		if e.Message.Text != text || !e.Journaled {
			t.Fatalf("message event %+v (journaled %t)", e.Message, e.Journaled)
		}
		return sent.ID
	}
	first := send(r, "before the restart")
	r.stop(t)

	r = start(t, cfg)
	defer r.stop(t)
	r.connectAll(t, emu, 1, false)
	second := send(r, "after the restart")

	entries, err := r.app.outbox().After(context.Background(), "", 10000)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, e := range entries {
		for _, id := range []string{first, second} {
			if e.Kind == string(events.KindMessage) && strings.Contains(string(e.Body), `"id":"`+id+`"`) {
				count[id]++
			}
		}
	}
	if count[first] != 1 || count[second] != 1 {
		t.Fatalf("the outbox holds the messages %v times, want once each", count)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if st, err := emu.WaitFor(ctx, func(s emulator.Stats) bool { return s.Receipts >= 2 }); err != nil {
		t.Fatalf("the emulator counted %d delivery receipts of 2: %v", st.Receipts, err)
	}
}
