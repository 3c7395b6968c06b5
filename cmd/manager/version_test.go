package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// TestFormatVersion: the revision and modified flag of a build from a git
// checkout are printed after "(devel)"; a pseudo-version that already names
// the revision is not repeated; the link-time overrides of the Docker build
// replace both; the Go version always ends the line.
func TestFormatVersion(t *testing.T) {
	const rev = "0123456789abcdef0123456789abcdef01234567"
	vcs := func(modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	cases := []struct {
		name         string
		bi           *debug.BuildInfo
		over, overRv string
		want         string
	}{
		{"no build info", nil, "", "", "(devel) " + runtime.Version()},
		{"no vcs", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "(devel)"}}, "", "", "(devel) go1.26.1"},
		{"clean checkout", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "(devel)"}, Settings: vcs("false")}, "", "",
			"(devel) 0123456789ab go1.26.1"},
		{"modified checkout", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "(devel)"}, Settings: vcs("true")}, "", "",
			"(devel) 0123456789ab-dirty go1.26.1"},
		{"pseudo-version", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "v0.0.0-20261130060000-0123456789ab"}, Settings: vcs("false")}, "", "",
			"v0.0.0-20261130060000-0123456789ab go1.26.1"},
		{"tagged module", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "v1.4.0"}}, "", "", "v1.4.0 go1.26.1"},
		{"docker build", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "(devel)"}}, "v1.5.0-3-gabc", rev,
			"v1.5.0-3-gabc 0123456789ab go1.26.1"},
		{"override beats vcs", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "(devel)"}, Settings: vcs("true")}, "", "fedcba9876543210",
			"(devel) fedcba987654 go1.26.1"},
	}
	for _, c := range cases {
		if got := formatVersion(c.bi, c.over, c.overRv); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// TestVersionLinkerOverrides builds the manager the way the Dockerfile
// does (-ldflags -X main.buildVersion/main.buildRevision, no VCS stamping)
// and runs `manager version`: the variables it names exist and are printed.
func TestVersionLinkerOverrides(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test: it builds and runs the manager binary; it runs without -short")
	}
	bin := filepath.Join(t.TempDir(), "manager")
	build := exec.Command("go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -X main.buildVersion=v9.8.7-test -X main.buildRevision=abcdef0123456789abcdef", "-o", bin, ".")
	build.Env = append(build.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("manager version: %v", err)
	}
	want := "wafleet v9.8.7-test abcdef012345 " + runtime.Version()
	if got := strings.TrimSpace(string(out)); got != want {
		t.Fatalf("manager version = %q, want %q", got, want)
	}
}
