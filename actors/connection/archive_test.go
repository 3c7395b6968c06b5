package connection

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/wire/jid"
)

func accountKind(id string, k events.Kind) func(events.Event) bool {
	return func(e events.Event) bool { return e.Account == id && e.Kind == k }
}

// pairOne pairs account d.AccountID among others sharing the recorder.
func pairOne(t *testing.T, h *harness, srv *emulator.Server, d Deps) (*actor.PID, emulator.Linked) {
	t.Helper()
	pid := h.spawn(emulatorDeps(d, srv))
	qrEv, _ := h.rec.WaitFrom(t, 0, "qr of "+d.AccountID, accountKind(d.AccountID, events.KindQR))
	linked, err := srv.Phone().Scan(ctxT(t), qrEv.QR)
	if err != nil {
		t.Fatalf("scan %s: %v", d.AccountID, err)
	}
	h.rec.WaitFrom(t, 0, "connected "+d.AccountID, accountKind(d.AccountID, events.KindConnected))
	return pid, linked
}

// logoutAll makes the emulator answer every login with <failure 401> and
// ends the connections of the devices, so that each reconnects into it.
func logoutAll(t *testing.T, srv *emulator.Server, devices ...jid.JID) {
	t.Helper()
	faults, err := emulator.ParseFaults("login-failure-401")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.SetFaults(faults); err != nil {
		t.Fatal(err)
	}
	for _, j := range devices {
		if err := srv.Phone().Kick(j, "515"); err != nil {
			t.Fatal(err)
		}
	}
}

func (h *harness) restore(pid *actor.PID, key string) *RestoreResult {
	h.t.Helper()
	res, err := h.system.Root.RequestFuture(pid, &RestoreArchived{Key: key}, waitTimeout).Result()
	if err != nil {
		h.t.Fatal(err)
	}
	return res.(*RestoreResult)
}

// TestServerLogoutArchivesDevice: a <failure 401> no longer deletes the
// device: it is archived, the account pairs again with fresh keys, and
// the archived device can be put back and logs in again.
func TestServerLogoutArchivesDevice(t *testing.T) {
	h := newHarness(t)
	srv := emutest.Start(t, emulator.Options{})
	pid, linked := pairOne(t, h, srv, h.deps("acct"))
	before, err := h.store.Load(context.Background(), "acct")
	if err != nil {
		t.Fatal(err)
	}
	_, from := h.rec.WaitFrom(t, 0, "connected", kindIs(events.KindConnected))
	logoutAll(t, srv, linked.JID)
	_, i := h.rec.WaitFrom(t, from, "logged out", kindIs(events.KindLoggedOut))
	h.rec.WaitFrom(t, i, "fresh QR", kindIs(events.KindQR))

	list, err := h.store.ListArchive(context.Background())
	if err != nil || len(list) != 1 {
		t.Fatalf("archive after a server logout = %+v, %v; want the old device", list, err)
	}
	if e := list[0]; e.ID != "acct" || e.JID != before.JID || !strings.Contains(e.Reason, "failure 401") {
		t.Fatalf("archive entry %+v; want acct, %s, the server's reason", e, before.JID)
	}
	if now, err := h.store.Load(context.Background(), "acct"); err != nil || now.Paired() || now.NoiseKey == before.NoiseKey {
		t.Fatalf("current device = %v, %v; want a fresh unpaired one", now, err)
	}

	if err := srv.SetFaults(emulator.Faults{}); err != nil {
		t.Fatal(err)
	}
	if res := h.restore(pid, "20200101T000000.000000000Z"); !errors.Is(res.Err, store.ErrNotFound) {
		t.Fatalf("restore of an unknown entry = %v; want ErrNotFound", res.Err)
	}
	n := len(h.rec.Events())
	if res := h.restore(pid, list[0].Key); res.Err != nil || res.Entry.Key != list[0].Key {
		t.Fatalf("restore = %+v", res)
	}
	back, _ := h.rec.WaitFrom(t, n, "connected with the restored device", kindIs(events.KindConnected))
	if back.JID != before.JID {
		t.Fatalf("connected as %q; want the restored %s", back.JID, before.JID)
	}
	if got, err := h.store.Load(context.Background(), "acct"); err != nil || got.NoiseKey != before.NoiseKey || got.JID != before.JID {
		t.Fatalf("stored device after restore = %v, %v", got, err)
	}
	if list, _ := h.store.ListArchive(context.Background()); len(list) != 0 {
		t.Fatalf("archive after restore = %+v; want empty", list)
	}
	if res := h.restore(pid, list[0].Key); !errors.Is(res.Err, store.ErrPaired) {
		t.Fatalf("restore over the paired device = %v; want ErrPaired", res.Err)
	}
}

// TestMassLogoutPausesWipes: with 10 accounts and a share of 0.2, the
// third server logout within the window raises the mass_logout alarm and
// holds the wipe: the account stops and keeps its device until the
// operator confirms; then it archives and pairs again.
func TestMassLogoutPausesWipes(t *testing.T) {
	h := newHarness(t)
	srv := emutest.Start(t, emulator.Options{})
	guard, err := NewWipeGuard(WipeGuardConfig{Share: 0.2, Min: 3, Window: time.Hour, Accounts: func() int { return 10 }, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{"a1", "a2", "a3"}
	pids := map[string]*actor.PID{}
	var devices []jid.JID
	for _, id := range ids {
		d := h.deps(id)
		d.WipeGuard = guard
		pid, linked := pairOne(t, h, srv, d)
		pids[id] = pid
		devices = append(devices, linked.JID)
	}
	from := len(h.rec.Events())
	for i, j := range devices { // one after the other: the third is the one held
		logoutAll(t, srv, j)
		if i < 2 { // archived once it pairs again
			_, at := h.rec.WaitFrom(t, from, "logged out "+ids[i], accountKind(ids[i], events.KindLoggedOut))
			h.rec.WaitFrom(t, at, ids[i]+" pairs again", accountKind(ids[i], events.KindQR))
		}
	}
	alarm, _ := h.rec.WaitFrom(t, from, "mass_logout alarm", accountKind("a3", events.KindAlarm))
	if alarm.Alarm != events.AlarmMassLogout || alarm.State != events.StateStopped || !strings.Contains(alarm.Error, "awaits an operator") {
		t.Fatalf("alarm %+v; want mass_logout, stopped, awaiting an operator", alarm)
	}
	if got := guard.Held(); len(got) != 1 || got[0] != "a3" {
		t.Fatalf("held wipes %v; want [a3]", got)
	}
	held, err := h.store.Load(context.Background(), "a3")
	if err != nil || held.JID != devices[2].String() {
		t.Fatalf("held account's device = %v, %v; want it untouched", held, err)
	}
	if snap := h.inspect(pids["a3"]); snap.State != events.StateStopped || snap.Want || !snap.Paired {
		t.Fatalf("held account %+v; want stopped with its paired device", snap)
	}
	if list, _ := h.store.ListArchive(context.Background()); len(list) != 2 {
		t.Fatalf("archive = %+v; want the two wipes before the alarm", list)
	}
	if res := h.request(pids["a1"], &ConfirmWipe{}); res.OK {
		t.Fatalf("ConfirmWipe of an account with no held wipe accepted: %+v", res)
	}

	n := len(h.rec.Events())
	for _, id := range guard.Confirm() {
		if res := h.request(pids[id], &ConfirmWipe{}); !res.OK {
			t.Fatalf("ConfirmWipe %s refused: %+v", id, res)
		}
	}
	_, i := h.rec.WaitFrom(t, n, "a3 logged out", accountKind("a3", events.KindLoggedOut))
	h.rec.WaitFrom(t, i, "a3 pairs again", accountKind("a3", events.KindQR))
	if list, _ := h.store.ListArchive(context.Background()); len(list) != 3 || list[2].ID != "a3" || list[2].JID != held.JID {
		t.Fatalf("archive after confirm = %+v; want a3's device too", list)
	}
	if guard.Paused() || len(guard.Held()) != 0 {
		t.Fatal("guard still paused after Confirm")
	}
}

// TestResumeGivesUpAHeldWipe: restarting a held account (Resume, POST
// /api/accounts/{id}/restart) keeps its device: it logs in again as the
// same linked device, and a later confirmation does not wipe it.
func TestResumeGivesUpAHeldWipe(t *testing.T) {
	h := newHarness(t)
	srv := emutest.Start(t, emulator.Options{})
	guard, err := NewWipeGuard(WipeGuardConfig{Share: 0.5, Min: 1, Window: time.Hour, Accounts: func() int { return 1 }, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	d := h.deps("acct")
	d.WipeGuard = guard
	pid, linked := pairOne(t, h, srv, d)
	from := len(h.rec.Events())
	logoutAll(t, srv, linked.JID)
	h.rec.WaitFrom(t, from, "held", accountKind("acct", events.KindAlarm))

	if err := srv.SetFaults(emulator.Faults{}); err != nil {
		t.Fatal(err)
	}
	n := len(h.rec.Events())
	if res := h.request(pid, &Resume{}); !res.OK {
		t.Fatalf("Resume refused: %+v", res)
	}
	back, _ := h.rec.WaitFrom(t, n, "connected again", kindIs(events.KindConnected))
	if back.JID != linked.JID.String() {
		t.Fatalf("connected as %q; want the kept device %s", back.JID, linked.JID)
	}
	if got := guard.Confirm(); len(got) != 1 || got[0] != "acct" {
		t.Fatalf("Confirm = %v; want [acct]", got)
	}
	if res := h.request(pid, &ConfirmWipe{}); res.OK {
		t.Fatalf("ConfirmWipe after Resume accepted: %+v", res)
	}
	if got, err := h.store.Load(context.Background(), "acct"); err != nil || got.JID != linked.JID.String() {
		t.Fatalf("device after Resume and a late confirm = %v, %v; want it kept", got, err)
	}
	if list, _ := h.store.ListArchive(context.Background()); len(list) != 0 {
		t.Fatalf("archive = %+v; want nothing archived", list)
	}
}
