package wafleet_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
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
