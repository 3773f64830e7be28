package archtest

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// fuzzFunc matches the fuzz targets scripts/fuzz.sh runs.
var fuzzFunc = regexp.MustCompile(`(?m)^func (Fuzz[A-Za-z0-9_]*)\(f \*testing\.F\)`)

// TestFuzzCorpora: every fuzz target has a committed seed corpus in its
// package's testdata/fuzz/FuzzXxx/, which plain go test (make test) runs,
// and is written so that scripts/fuzz.sh finds it.
func TestFuzzCorpora(t *testing.T) {
	root := filepath.Join("..", "..")
	n := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.Contains(string(b), "func Fuzz") && len(fuzzFunc.FindAll(b, -1)) != strings.Count(string(b), "\nfunc Fuzz") {
			t.Errorf("%s: a fuzz target is not declared as func FuzzXxx(f *testing.F), so scripts/fuzz.sh misses it", path)
		}
		for _, m := range fuzzFunc.FindAllSubmatch(b, -1) {
			n++
			dir := filepath.Join(filepath.Dir(path), "testdata", "fuzz", string(m[1]))
			ents, err := os.ReadDir(dir)
			if err != nil || len(ents) == 0 {
				t.Errorf("%s: %s has no seed corpus in %s", path, m[1], dir)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Fatalf("found only %d fuzz targets", n)
	}
	t.Logf("%d fuzz targets, each with a corpus", n)
}
