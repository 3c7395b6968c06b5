package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCPUProfileWrittenWhenContextEnds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu.pprof")
	t.Setenv(cpuProfileEnv, path)
	ctx, cancel := context.WithCancel(context.Background())
	stop, err := startCPUProfile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel() // the signal: the profile ends here, before the shutdown
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil { // run's deferred call after its own
		t.Fatalf("second stop: %v", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte{0x1f, 0x8b}) { // a profile is gzipped protobuf
		t.Fatalf("the profile file does not hold a profile: % x", data[:min(len(data), 8)])
	}
}

func TestCPUProfileOffWithoutVariable(t *testing.T) {
	t.Setenv(cpuProfileEnv, "")
	stop, err := startCPUProfile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestCPUProfileBadPathNamesVariable(t *testing.T) {
	t.Setenv(cpuProfileEnv, filepath.Join(t.TempDir(), "missing", "cpu.pprof"))
	if _, err := startCPUProfile(context.Background()); err == nil || !strings.Contains(err.Error(), cpuProfileEnv) {
		t.Fatalf("err = %v, want one naming %s", err, cpuProfileEnv)
	}
}
