package wafleet_test

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/wafleet/wafleet"

// layers are the module's packages from the bottom up, as README's "How the
// packages fit" lists them: a package (and its tests) imports packages of
// its own layer or of the layers below, never of a layer above. A path
// stands for the package and everything under it.
var layers = []struct {
	name string
	dirs []string
}{
	{"proto", []string{"waproto"}},
	{"core", []string{"wire", "crypto", "signal", "store", "events", "status", "internal"}},
	{"services", []string{"actors", "api", "fleet", "metrics", "emulator", "webversion", "config", "webhook"}},
	{"app", []string{"app"}},
	{"cmd", []string{"cmd"}},
}

// layerOf returns the index in layers of the package at path (relative to
// the module), or -1 when no layer holds it.
func layerOf(path string) int {
	for i, l := range layers {
		for _, d := range l.dirs {
			if path == d || strings.HasPrefix(path, d+"/") {
				return i
			}
		}
	}
	return -1
}

// TestImportLayers fails when a package of the module imports one of a
// higher layer, or when a package belongs to no layer.
func TestImportLayers(t *testing.T) {
	const format = `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}{{range .TestImports}} {{.}}{{end}}{{range .XTestImports}} {{.}}{{end}}`
	cmd := exec.Command("go", "list", "-f", format, "./...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	var checked int
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		pkg, ok := strings.CutPrefix(fields[0], module+"/")
		if !ok {
			continue // the module root: the doc and these tests only
		}
		from := layerOf(pkg)
		if from < 0 {
			t.Errorf("%s belongs to no layer: add it to layers in layers_test.go and to README's package table", pkg)
			continue
		}
		checked++
		for _, imp := range fields[1:] {
			dep, ok := strings.CutPrefix(imp, module+"/")
			if !ok {
				continue
			}
			if to := layerOf(dep); to > from {
				t.Errorf("%s (layer %s) imports %s (layer %s), a layer above it", pkg, layers[from].name, dep, layers[to].name)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if checked == 0 {
		t.Fatal("go list named no package of the module")
	}
}
