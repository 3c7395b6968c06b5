package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestFrom(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}}}
	got := From(bi, "", "")
	if got != (Info{Version: "(devel)", Revision: "0123456789ab", Dirty: true, Go: "go1.26"}) {
		t.Fatalf("From = %+v", got)
	}
	if s := got.String(); s != "(devel) 0123456789ab-dirty go1.26" {
		t.Fatalf("String = %q", s)
	}
	over := From(bi, "v1.0.0", "fedcba9876543210")
	if over.Version != "v1.0.0" || over.Revision != "fedcba987654" || over.Dirty {
		t.Fatalf("with overrides: %+v", over)
	}
	if none := From(nil, "", ""); none.Version != "(devel)" || none.Revision != "" || none.Go == "" {
		t.Fatalf("without build info: %+v", none)
	}
}
