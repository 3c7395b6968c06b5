package wafleet_test

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestEveryPackageHasDoc checks that every package in the module has a
// doc.go with a package comment, so each package says what it is for.
func TestEveryPackageHasDoc(t *testing.T) {
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if path != "." && (strings.HasPrefix(name, ".") || name == "testdata") {
			return filepath.SkipDir
		}
		goFiles, _ := filepath.Glob(filepath.Join(path, "*.go"))
		var nonTest int
		for _, f := range goFiles {
			if !strings.HasSuffix(f, "_test.go") {
				nonTest++
			}
		}
		if nonTest == 0 || path == "." {
			return nil
		}
		docFile := filepath.Join(path, "doc.go")
		f, err := parser.ParseFile(token.NewFileSet(), docFile, nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			t.Errorf("%s: no readable doc.go: %v", path, err)
			return nil
		}
		want := "Package " + f.Name.Name + " "
		if f.Name.Name == "main" {
			want = "Command " + filepath.Base(path) + " " // the go doc convention for commands
		}
		if f.Doc == nil || !strings.HasPrefix(f.Doc.Text(), want) {
			t.Errorf("%s: doc.go has no package comment starting %q", path, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestREADMEListsEveryRoute checks that the route table of README's "HTTP
// API" section and the OpenAPI document (api/openapi.json) name the same
// methods and paths.
func TestREADMEListsEveryRoute(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("api", "openapi.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	documented := make(map[string]bool)
	for path, item := range doc.Paths {
		for method := range item {
			switch method {
			case "get", "put", "post", "delete", "patch", "options", "head", "trace":
				documented[strings.ToUpper(method)+" "+path] = true
			}
		}
	}

	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n### HTTP API\n")
	if !ok {
		t.Fatal(`README has no "### HTTP API" section`)
	}
	section, _, _ = strings.Cut(section, "\n### ")
	route := regexp.MustCompile("`(GET|PUT|POST|DELETE|PATCH) (/[^`?\\[ ]*)")
	listed := make(map[string]bool)
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cell, _, _ := strings.Cut(line[1:], "|") // the request column
		for _, m := range route.FindAllStringSubmatch(cell, -1) {
			listed[m[1]+" "+m[2]] = true
		}
	}
	for r := range documented {
		if !listed[r] {
			t.Errorf("%s is in api/openapi.json but not in README's HTTP API table", r)
		}
	}
	for r := range listed {
		if !documented[r] {
			t.Errorf("README's HTTP API table lists %s, api/openapi.json does not", r)
		}
	}
}
