package redis

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wafleet/wafleet/internal/testkit"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/redis/redistest"
	"github.com/wafleet/wafleet/store/storetest"
)

// plainAccounts saves n devices with prekeys in the clear on a private
// server and returns them, with the account migration ready to run: a
// sealing Store on the same server, logging to log, and leases held for
// every account.
type plainAccounts struct {
	devices []*store.Device
	prekeys map[string][]store.PreKey
	sealed  *Store
	leases  *Leases
	log     *testkit.LogBuffer
}

func writePlainAccounts(t *testing.T, srv *redistest.Server, n int) plainAccounts {
	t.Helper()
	c, prefix := srv.Client(t), redistest.Prefix()
	plain := newStore(t, c, prefix, false, nil)
	p := plainAccounts{prekeys: map[string][]store.PreKey{}, log: &testkit.LogBuffer{}}
	for i := range n {
		id := fmt.Sprintf("acct%d", i)
		d := storetest.PairedDevice(t, id, fmt.Sprintf("155544400%02d", i), fmt.Sprintf("4440000000000%02d", i), 1)
		if err := plain.Save(t.Context(), d); err != nil {
			t.Fatal(err)
		}
		keys := storetest.NewPreKeys(t, 1, 50)
		if err := plain.AddPreKeys(t.Context(), id, keys); err != nil {
			t.Fatal(err)
		}
		p.devices = append(p.devices, d)
		p.prekeys[id] = keys
	}
	sealer, err := store.NewAESSealer(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	p.sealed, err = New(c, Options{Prefix: prefix, Sealer: sealer, Logger: slog.New(slog.NewTextHandler(p.log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	p.leases = newLeases(t, c, prefix, "inst-a", newClock(), time.Minute)
	for _, d := range p.devices {
		if r, err := p.leases.Acquire(t.Context(), d.ID); err != nil || len(r.Acquired) != 1 {
			t.Fatalf("acquire %s = %+v, %v", d.ID, r, err)
		}
	}
	return p
}

// migrate loads every account through its owner's view, which seals it.
func (p plainAccounts) migrate(t *testing.T) {
	t.Helper()
	owner := p.sealed.Bound(p.leases)
	for _, d := range p.devices {
		if _, err := owner.Load(t.Context(), d.ID); err != nil {
			t.Fatal(err)
		}
		if _, info, err := p.sealed.LoadRecord(t.Context(), d.ID); err != nil || !info.Sealed {
			t.Fatalf("%s not sealed by its owner's load: %v", d.ID, err)
		}
	}
}

// leak names a secret of p found in the files of dir, or is "".
func (p plainAccounts) leak(t *testing.T, dir string) string {
	t.Helper()
	found := ""
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() || found != "" {
			return err
		}
		raw, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // a temporary file Redis renamed or removed since the listing
		}
		if err != nil {
			return err
		}
		for _, d := range p.devices {
			if name, ok := storetest.DeviceSecretIn(raw, d); ok {
				found = fmt.Sprintf("%s of %s in %s", name, d.ID, e.Name())
			} else if id, ok := storetest.PreKeySecretIn(raw, p.prekeys[d.ID]); ok {
				found = fmt.Sprintf("prekey %d of %s in %s", id, d.ID, e.Name())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// eventually waits, with a deadline generous for a loaded machine, until
// cond holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 60s: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSealingRewritesTheAOF: once the owners have sealed the accounts
// written in the clear, no secret is left in the AOF files.
func TestSealingRewritesTheAOF(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{AOF: true})
	p := writePlainAccounts(t, srv, 3)
	// appendfsync everysec: the AOF holds what was written within a second.
	eventually(t, "the secrets written in the clear never reached the AOF: the search is broken", func() bool {
		return p.leak(t, srv.Dir()) != ""
	})
	p.migrate(t)
	eventually(t, "secrets written in the clear are still in the AOF files", func() bool {
		return p.leak(t, srv.Dir()) == ""
	})
	eventually(t, "the rewrite was not logged", func() bool {
		return strings.Contains(p.log.String(), "rewrote the Redis AOF")
	})
	// The records are all there after the rewrite, through a restart
	// that reads the new AOF.
	srv.Restart()
	for _, d := range p.devices {
		if got, err := p.sealed.Load(t.Context(), d.ID); err != nil || storetest.Diff(d, got) != nil {
			t.Fatalf("%s after the rewrite and a restart: %v %v", d.ID, err, storetest.Diff(d, got))
		}
	}
}

// TestSealingWithoutAOFLogsIt: with appendonly no there is nothing to
// rewrite; that is said once, at info level, and is no error.
func TestSealingWithoutAOFLogsIt(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	p := writePlainAccounts(t, srv, 2)
	p.migrate(t)
	eventually(t, "no log about the missing AOF", func() bool {
		return strings.Contains(p.log.String(), "level=INFO") && strings.Contains(p.log.String(), "appendonly no")
	})
	if strings.Contains(p.log.String(), "level=ERROR") {
		t.Fatalf("an error was logged: %s", p.log.String())
	}
	if on, err := RewriteAOF(t.Context(), srv.Client(t)); on || err != nil {
		t.Fatalf("RewriteAOF without AOF = %v, %v; want false, nil", on, err)
	}
}

// TestRewriteAOFWaitsForARunningRewrite: a rewrite already running when
// RewriteAOF is called may predate the caller's writes; RewriteAOF returns
// only after one that started after the call has finished.
func TestRewriteAOFWaitsForARunningRewrite(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{AOF: true})
	c := srv.Client(t)
	before := rewrites(t, srv)
	if err := c.BgRewriteAOF(t.Context()).Err(); err != nil && !strings.Contains(err.Error(), "already in progress") {
		t.Fatal(err)
	}
	if on, err := RewriteAOF(t.Context(), c); !on || err != nil {
		t.Fatalf("RewriteAOF = %v, %v; want true, nil", on, err)
	}
	f, err := persistenceInfo(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	if f["aof_rewrite_in_progress"] != "0" || f["aof_last_bgrewrite_status"] != "ok" {
		t.Fatalf("after RewriteAOF: in progress %s, status %s", f["aof_rewrite_in_progress"], f["aof_last_bgrewrite_status"])
	}
	// The one started above, then RewriteAOF's own.
	if after := rewrites(t, srv); after < before+2 {
		t.Fatalf("%d rewrites logged after RewriteAOF, want at least %d", after, before+2)
	}
}

// rewrites counts the finished AOF rewrites in the server's log.
func rewrites(t *testing.T, srv *redistest.Server) int {
	t.Helper()
	log, err := os.ReadFile(filepath.Join(srv.Dir(), "redis.log"))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(log, []byte("Background AOF rewrite finished successfully"))
}
