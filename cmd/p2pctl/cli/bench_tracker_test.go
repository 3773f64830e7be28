package cli

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// smallTrackerBench runs in a couple of seconds under the race detector.
var smallTrackerBench = []string{"bench", "tracker", "--in-process", "--peers", "100", "--blobs", "2", "--chunks", "64",
	"--interval", "1s", "--duration", "1s", "--conns", "4"}

func TestBenchTrackerJSON(t *testing.T) {
	code, out, errs := run(t, nil, append(smallTrackerBench, "--json")...)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"announces_per_s", "p50_ms", "p99_ms", "max_ms", "bytes_per_record", "load_per_s", "total_cpu_s"} {
		if v, ok := res[k].(float64); !ok || v <= 0 {
			t.Errorf("key %q missing or zero in %v", k, res)
		}
	}
	if res["errors"] != 0.0 || res["records"] != 200.0 || res["mode"] != "interval" {
		t.Errorf("errors %v records %v mode %v", res["errors"], res["records"], res["mode"])
	}
}

func TestBenchTrackerText(t *testing.T) {
	code, out, errs := run(t, nil, append(smallTrackerBench, "--workers", "2")...)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"load phase", "closed loop, 2 workers", "p99", "bytes per record", "in process", "goal"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestBenchTrackerUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--rate", "10", "--workers", "2"},
		{"--client", "curl"},
		{"--interval", "1500ms"},
		{"--peers", "0", "--blobs", "-1"},
	} {
		if code, _, errs := run(t, nil, append([]string{"bench", "tracker"}, args...)...); code != ExitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, ExitUsage, errs)
		}
	}
}

// TestBenchTrackerChild speaks the child protocol to the hidden flag
// that the benchmark starts this binary with: a tracker config in, its
// address out, then its stats on request, until stdin ends.
func TestBenchTrackerChild(t *testing.T) {
	prof := filepath.Join(t.TempDir(), "cpu.prof")
	in := `{"tracker":{"Listen":"127.0.0.1:0","Log":{"Level":"warn"}},"cpu_profile":"` + prof + `"}` + "\nstats\nprofile\nmem\nendprofile\n"
	code, out, errs := run(t, []byte(in), "bench", "tracker", "--serve-tracker-child")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	var hello struct{ URL string }
	if !sc.Scan() || json.Unmarshal(sc.Bytes(), &hello) != nil || !strings.HasPrefix(hello.URL, "http://127.0.0.1:") {
		t.Fatalf("hello: %q", out)
	}
	for range 4 {
		var st struct {
			CPU       int64  `json:"cpu_ns"`
			HeapAlloc uint64 `json:"heap_alloc"`
		}
		if !sc.Scan() || json.Unmarshal(sc.Bytes(), &st) != nil || st.CPU <= 0 || st.HeapAlloc == 0 {
			t.Fatalf("stats: %q", out)
		}
	}
	if st, err := os.Stat(prof); err != nil || st.Size() == 0 {
		t.Errorf("CPU profile: %v, %v", st, err)
	}
}
