package main

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"sync"
)

// cpuProfileEnv names the environment variable that makes `manager run`
// write a CPU profile of itself into the file it names, from its start until
// it is told to stop (SIGINT, SIGTERM), its shutdown left out. It is a
// switch for load runs (cmd/fleetload passes its environment on to the
// managers it starts), not a configuration key: nothing else reads it.
const cpuProfileEnv = "MANAGER_CPU_PROFILE"

// startCPUProfile starts the CPU profile that cpuProfileEnv asks for, if
// any. The returned stop writes it out; it runs when ctx ends or when stop is
// called, whichever comes first, and may be called more than once.
func startCPUProfile(ctx context.Context) (stop func() error, err error) {
	path := os.Getenv(cpuProfileEnv)
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cpuProfileEnv, err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", cpuProfileEnv, err)
	}
	stop = sync.OnceValue(func() error {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			return fmt.Errorf("%s: %w", cpuProfileEnv, err)
		}
		return nil
	})
	context.AfterFunc(ctx, func() { _ = stop() })
	return stop, nil
}
