package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/wafleet/wafleet/internal/buildinfo"
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
		{"modified pseudo-version", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "v0.0.0-20261130060000-0123456789ab+dirty"}, Settings: vcs("true")}, "", "",
			"v0.0.0-20261130060000-0123456789ab+dirty go1.26.1"},
		{"pseudo-version", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "v0.0.0-20261130060000-0123456789ab"}, Settings: vcs("false")}, "", "",
			"v0.0.0-20261130060000-0123456789ab go1.26.1"},
		{"tagged module", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "v1.4.0"}}, "", "", "v1.4.0 go1.26.1"},
		{"docker build", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "(devel)"}}, "v1.5.0-3-gabc", rev,
			"v1.5.0-3-gabc 0123456789ab go1.26.1"},
		{"override beats vcs", &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Version: "(devel)"}, Settings: vcs("true")}, "", "fedcba9876543210",
			"(devel) fedcba987654 go1.26.1"},
	}
	for _, c := range cases {
		if got := buildinfo.From(c.bi, c.over, c.overRv).String(); got != c.want {
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

// TestVersionFromGitCheckout builds the manager with `go build` in a git
// checkout (a clone of this repository's HEAD, since Go stamps only
// checkouts with a .git folder, not worktrees): `manager version` names
// the checkout's revision, not "(devel)".
func TestVersionFromGitCheckout(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test: it builds and runs the manager binary; it runs without -short")
	}
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("not in a git checkout (git rev-parse: %v): nothing to stamp", err)
	}
	clone := filepath.Join(t.TempDir(), "wafleet")
	if out, err := exec.Command("git", "clone", "-q", "--shared", strings.TrimSpace(string(top)), clone).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	head, err := exec.Command("git", "-C", clone, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "manager")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, "./cmd/manager")
	build.Dir = clone
	build.Env = append(build.Environ(), "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("manager version: %v", err)
	}
	// Go names the module by a pseudo-version carrying the revision
	// (v0.0.0-TIME-REVISION), which is then not repeated.
	got := strings.TrimSpace(string(out))
	if strings.Count(got, string(head[:12])) != 1 || !strings.HasSuffix(got, " "+runtime.Version()) || strings.Contains(got, "(devel)") {
		t.Fatalf("manager version = %q, want the revision %s once and %s", got, head[:12], runtime.Version())
	}
}
