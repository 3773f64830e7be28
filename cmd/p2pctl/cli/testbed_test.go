package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/p2pd/p2pd/testbed/report"
)

// TestTestbedRun runs a small emulated scenario from a YAML file with flags
// on top, and checks the JSON summary's keys and the report directory.
func TestTestbedRun(t *testing.T) {
	sc := writeFile(t, "s.yaml", []byte(`
name: cli-test
blob:
  size: 2MiB
  chunk: 64KiB
origins: {count: 1, up: 32Mbit, down: 32Mbit}
classes:
  - {name: peer, count: 2, up: 32Mbit, down: 32Mbit}
`))
	out := filepath.Join(t.TempDir(), "report")
	code, js, errs := run(t, nil, "testbed", "run", sc, "--peers", "3", "--latency", "1ms", "--json", "--out", out, "--dir", t.TempDir())
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var sum map[string]any
	if err := json.Unmarshal([]byte(js), &sum); err != nil {
		t.Fatalf("%v: %s", err, js)
	}
	for _, k := range []string{"peers", "completed", "failed", "blob_bytes", "bound_s", "p50_s", "p99_s", "max_s",
		"ratio_p50", "ratio_p99", "origin_egress_bytes", "host_bound"} {
		if _, ok := sum[k]; !ok {
			t.Errorf("summary lacks %q: %s", k, js)
		}
	}
	if sum["peers"] != 3.0 || sum["completed"] != 3.0 || sum["blob_bytes"] != float64(2<<20) {
		t.Errorf("summary %s", js)
	}
	if b, err := os.ReadFile(filepath.Join(out, report.ReportHTML)); err != nil || !strings.Contains(string(b), "cli-test") {
		t.Errorf("report.html: %v", err)
	}

	for _, bad := range [][]string{
		{"testbed", "run", "--peer-up", "fast"},
		{"testbed", "run", "--mode", "quantum"},
		{"testbed", "run", filepath.Join(t.TempDir(), "missing.yaml")},
	} {
		if code, _, errs := run(t, nil, bad...); code != ExitUsage || errs == "" {
			t.Errorf("%v: exit %d, stderr %q; want %d and a message", bad, code, errs, ExitUsage)
		}
	}
}
