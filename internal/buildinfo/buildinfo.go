package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// Info is what a binary was built from.
type Info struct {
	// Version is the module version, "(devel)" when none was recorded.
	Version string
	// Revision is the VCS revision, cut to 12 hex digits ("" when none
	// was recorded); Dirty marks a build from a checkout with
	// uncommitted changes.
	Revision string
	Dirty    bool
	// Go is the Go version that built the binary.
	Go string
}

// Read returns the running binary's Info. overrideVersion and
// overrideRevision, when not empty, take precedence over the build info
// (builds without the repository's .git set them at link time).
func Read(overrideVersion, overrideRevision string) Info {
	bi, _ := debug.ReadBuildInfo() // nil when the binary recorded none
	return From(bi, overrideVersion, overrideRevision)
}

// From returns the Info of bi (nil: none recorded) with the overrides.
func From(bi *debug.BuildInfo, overrideVersion, overrideRevision string) Info {
	i := Info{Version: "(devel)", Go: runtime.Version()}
	if bi != nil {
		if bi.Main.Version != "" {
			i.Version = bi.Main.Version
		}
		if bi.GoVersion != "" {
			i.Go = bi.GoVersion
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				i.Revision = s.Value
			case "vcs.modified":
				i.Dirty = s.Value == "true"
			}
		}
	}
	if overrideVersion != "" {
		i.Version = overrideVersion
	}
	if overrideRevision != "" {
		i.Revision, i.Dirty = overrideRevision, false
	}
	i.Revision = i.Revision[:min(12, len(i.Revision))]
	return i
}

// String renders "VERSION [REVISION[-dirty]] GOVERSION"; the revision is
// left out when the version already names it (a pseudo-version).
func (i Info) String() string {
	v := i.Version
	if i.Revision != "" && !strings.Contains(v, i.Revision) {
		v += " " + i.Revision
		if i.Dirty {
			v += "-dirty"
		}
	}
	return v + " " + i.Go
}
