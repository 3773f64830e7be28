package archtest

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/p2pd/p2pd"

type pkg struct {
	ImportPath string
	Doc        string
	Imports    []string
	Deps       []string
	Name       string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

func TestPackageDocs(t *testing.T) {
	for _, p := range listPackages(t) {
		if p.Doc == "" {
			t.Errorf("%s has no package doc comment", p.ImportPath)
		}
	}
}

// rules: a package matching the prefix may not depend (directly or not) on
// any module package with one of the forbidden prefixes.
var rules = []struct {
	pkg       string
	forbidden []string
	why       string
}{
	{"chunker", []string{""}, "chunker is the leaf that defines content identity; it imports nothing from the module"},
	{"internal/wire", []string{"peer", "tracker", "origin", "internal/daemon", "testbed"}, "wire codecs are leaves shared by every component"},
	{"tracker", []string{"peer", "origin"}, "the tracker knows peers only through the wire types"},
	{"peer", []string{"tracker/peerstore", "tracker/handout"}, "peers reach the tracker only through trackerclient"},
}

// directRules are checked on direct imports only.
var directRules = []struct {
	pkg       string
	forbidden []string
	why       string
}{
	{"cmd/p2pctl", []string{"peer/store", "peer"}, "p2pctl talks to daemons through their clients; only its bench and testbed commands run nodes, through testbed and testbed/transferbench"},
}

func TestDirectImports(t *testing.T) {
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		for _, r := range directRules {
			if rel != r.pkg && !strings.HasPrefix(rel, r.pkg+"/") {
				continue
			}
			for _, imp := range p.Imports {
				for _, f := range r.forbidden {
					if imp == module+"/"+f {
						t.Errorf("%s imports %s: %s", rel, f, r.why)
					}
				}
			}
		}
	}
}

func TestDependencyRules(t *testing.T) {
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		for _, r := range rules {
			if rel != r.pkg && !strings.HasPrefix(rel, r.pkg+"/") {
				continue
			}
			for _, dep := range p.Deps {
				d, ok := strings.CutPrefix(dep, module+"/")
				if !ok || strings.HasPrefix(d, r.pkg) && r.forbidden[0] == "" {
					continue // outside the module, or inside the package itself
				}
				for _, f := range r.forbidden {
					if f == "" && !strings.HasPrefix(d, r.pkg) || f != "" && (d == f || strings.HasPrefix(d, f+"/")) {
						t.Errorf("%s depends on %s: %s", rel, d, r.why)
					}
				}
			}
		}
	}
}
