package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
)

// startRun starts `manager run` and kills it at cleanup if it still runs.
func startRun(t *testing.T, bin, cfgPath string) (*exec.Cmd, <-chan error, *strings.Builder) {
	t.Helper()
	cmd := exec.Command(bin, "run", "--config", cfgPath)
	stderr := &strings.Builder{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	return cmd, exited, stderr
}

// TestKillDuringTrafficRedelivers: a manager killed with -9 while stanzas
// wait for its acks leaves them pending on the server; the restarted
// manager logs in without pairing, gets them first and acks every one.
func TestKillDuringTrafficRedelivers(t *testing.T) {
	bin := managerBinary(t)
	traffic := emulator.DayOne{Enabled: true, PushRate: 20, PushBurst: 20, AckDeadline: 2 * time.Minute, PingInterval: time.Second}
	emu := emutest.Start(t, emulator.Options{DayOne: traffic})

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	listen := freeAddr(t)
	writeRunConfig(t, cfgPath, emu, listen, filepath.Join(dir, "data", "wafleet.db"), "one", "two", "three")
	cmd, exited, _ := startRun(t, bin, cfgPath)
	views := waitAccounts(t, listen, "every account shows a QR code", func(v []accountView) bool {
		return len(v) == 3 && v[0].QR != nil && v[1].QR != nil && v[2].QR != nil
	})
	for _, v := range views {
		if _, err := emu.Phone().Scan(context.Background(), *v.QR); err != nil {
			t.Fatalf("scan %s: %v", v.ID, err)
		}
	}
	emutest.WaitStats(t, emu, 60*time.Second, "traffic acked", func(s emulator.Stats) bool { return s.AcksOK >= 3*40 && s.DevicesWithPrekeys == 3 })

	// Freeze the manager: what the server pushes now stays unacked.
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozenAt := emu.Stats().StanzasPushed
	emutest.WaitStats(t, emu, 60*time.Second, "stanzas pushed to the frozen manager", func(s emulator.Stats) bool { return s.StanzasPushed >= frozenAt+30 })
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	// No new traffic from now on: only what is pending comes back.
	quiet := traffic
	quiet.PushRate, quiet.PushBurst = -1, -1
	if err := emu.SetDayOne(quiet); err != nil {
		t.Fatal(err)
	}
	pending := emu.Stats()
	if pending.AcksOK >= pending.StanzasPushed {
		t.Fatalf("nothing pending at the kill: %+v", pending)
	}

	startRun(t, bin, cfgPath)
	// Every stanza ever pushed has been acked once the acks catch up with
	// the pushes. They may overtake them by a few: one CI run counted 151
	// acks for 150 pushes, presumably an ack of the killed process counted
	// besides the one for the redelivered copy.
	st := emutest.WaitStats(t, emu, 60*time.Second, "pending stanzas redelivered and acked", func(s emulator.Stats) bool {
		return s.AcksOK >= s.StanzasPushed && s.Redeliveries >= pending.StanzasPushed-pending.AcksOK
	})
	if st.Pairings != 3 || st.AcksMalformed != 0 || st.AckDeadlineKills != 0 || len(st.Violations) != 0 {
		t.Errorf("after the restart: pairings %d, malformed %d, ack kills %d, violations %v", st.Pairings, st.AcksMalformed, st.AckDeadlineKills, st.Violations)
	}
	if st.MaxConnectionsPerDevice > 1 {
		t.Errorf("max_connections_per_device = %d", st.MaxConnectionsPerDevice)
	}
}
