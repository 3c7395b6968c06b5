package emutest

import (
	"context"
	"testing"
	"time"

	"github.com/wafleet/wafleet/emulator"
)

// Start runs an emulator with opts until the test ends (it is closed at
// cleanup); it fails the test when the emulator cannot start.
func Start(t testing.TB, opts emulator.Options) *emulator.Server {
	t.Helper()
	srv, err := emulator.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// WaitStats waits up to timeout for cond to hold on srv's stats and returns
// the stats that satisfied it; it fails the test, naming what and the last
// stats, when the time runs out.
func WaitStats(t testing.TB, srv *emulator.Server, timeout time.Duration, what string, cond func(emulator.Stats) bool) emulator.Stats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	st, err := srv.WaitFor(ctx, cond)
	if err != nil {
		t.Fatalf("waiting for %s: %v; stats %+v", what, err, st)
	}
	return st
}
