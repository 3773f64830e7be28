package trackerbench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// childEnv makes the test binary the tracker's child process (ServeChild)
// instead of running the tests.
const childEnv = "TRACKERBENCH_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		if err := ServeChild(context.Background(), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// small is a fleet that runs in a second under the race detector.
func small() Options {
	// A long TTL: records announced at the start must not expire before
	// the end on a loaded machine (the test counts them).
	return Options{Peers: 200, Blobs: 2, Chunks: 100, Interval: time.Second, TTL: time.Minute, Duration: time.Second, Conns: 8}
}

// checkResult checks that a run's figures are filled in and that nothing
// failed. No figure is judged: the machine's speed is not the test's.
func checkResult(t *testing.T, o Options, res Result) {
	t.Helper()
	b, _ := json.Marshal(res)
	t.Logf("%s", b)
	if res.Records != o.Peers*o.Blobs || res.Errors != 0 || res.LoadErrors != 0 || res.FirstError != "" {
		t.Errorf("records %d, errors %d+%d (%s)", res.Records, res.LoadErrors, res.Errors, res.FirstError)
	}
	if res.Announces <= 0 || res.AnnouncesPerS <= 0 || res.P50Ms <= 0 || res.P99Ms < res.P50Ms || res.MaxMs < res.P99Ms ||
		res.ServiceP99Ms <= 0 || res.LoadPerS <= 0 || res.LoadS <= 0 || res.TotalCPUS <= 0 || res.HandoutAvg <= 0 {
		t.Errorf("figures missing: %+v", res)
	}
	if res.RecordsHeld != int64(res.Records) {
		t.Errorf("tracker holds %d records of %d", res.RecordsHeld, res.Records)
	}
	if res.TrackerHeap1 <= res.TrackerHeap0 || res.BytesPerRecord <= 0 || res.TrackerRSS <= 0 {
		t.Errorf("memory figures missing: heap %d -> %d, %.0f bytes per record, RSS %d",
			res.TrackerHeap0, res.TrackerHeap1, res.BytesPerRecord, res.TrackerRSS)
	}
	// JSON keys the issue asks for.
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"announces_per_s", "p99_ms", "bytes_per_record"} {
		if v, ok := m[k].(float64); !ok || v <= 0 {
			t.Errorf("JSON %q = %v", k, m[k])
		}
	}
}

func TestRunInterval(t *testing.T) {
	o := small()
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, o, res)
	if res.Mode != ModeInterval || res.OfferedPerS != 400 || res.TrackerProcess != "in-process" || res.TrackerCPUS != 0 {
		t.Errorf("mode %s offered %v process %s tracker CPU %v", res.Mode, res.OfferedPerS, res.TrackerProcess, res.TrackerCPUS)
	}
	if want := int64(400 * o.Duration.Seconds()); res.Offered != want || res.AnsweredFraction <= 0 || res.AnsweredFraction > 1 {
		t.Errorf("offered %d (want %d), answered fraction %v", res.Offered, want, res.AnsweredFraction)
	}
	// Every announce of the schedule is accounted for: answered, failed,
	// or still unsent when the time was up.
	if got := res.Announces + res.Errors + res.Missed; got != res.Offered {
		t.Errorf("%d answered + %d failed + %d missed = %d, want the %d offered", res.Announces, res.Errors, res.Missed, got, res.Offered)
	}
}

func TestRunClosedTrackerClient(t *testing.T) {
	o := small()
	o.Workers, o.Client = 4, ClientTracker
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, o, res)
	if res.Mode != ModeClosed || res.OfferedPerS != 0 || res.Conns != 4 || res.Client != ClientTracker {
		t.Errorf("mode %s offered %v conns %d client %s", res.Mode, res.OfferedPerS, res.Conns, res.Client)
	}
}

// TestRunChild runs the tracker in a child process (this test binary,
// which TestMain turns into ServeChild), where CPU is split.
func TestRunChild(t *testing.T) {
	t.Setenv(childEnv, "1")
	o := small()
	o.Rate, o.Child = 300, []string{os.Args[0]}
	o.TrackerCPUProfile = filepath.Join(t.TempDir(), "tracker.prof")
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, o, res)
	if st, err := os.Stat(o.TrackerCPUProfile); err != nil || st.Size() == 0 {
		t.Errorf("tracker CPU profile: %v", err)
	}
	if res.Mode != ModeRate || res.OfferedPerS != 300 || res.TrackerProcess != "child" || res.TrackerCPUS <= 0 || res.LoadgenCPUS <= 0 ||
		res.TrackerCPUUsPerAnnounce <= 0 {
		t.Errorf("mode %s offered %v process %s CPU %v + %v", res.Mode, res.OfferedPerS, res.TrackerProcess, res.TrackerCPUS, res.LoadgenCPUS)
	}
}

func TestRunCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	o := small()
	o.Duration = time.Hour
	time.AfterFunc(500*time.Millisecond, cancel)
	start := time.Now()
	if _, err := Run(ctx, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > time.Minute {
		t.Errorf("a canceled run took %v to stop", d)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		ok   bool
	}{
		{"zero", Options{}, true},
		{"rate and workers", Options{Rate: 10, Workers: 2}, false},
		{"no chunks", Options{Chunks: -1}, false},
		{"too many origins", Options{Peers: 2, Origins: 3}, false},
		{"odd interval", Options{Interval: 1500 * time.Millisecond}, false},
		{"short ttl", Options{Interval: 5 * time.Second, TTL: 6 * time.Second}, false},
		{"client", Options{Client: "curl"}, false},
		{"profile in process", Options{TrackerCPUProfile: "x"}, false},
		{"negative conns", Options{Conns: -1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Validate()
			if (err == nil) != tc.ok || err != nil && !errors.Is(err, ErrBadOptions) {
				t.Errorf("Validate = %v", err)
			}
		})
	}
}

// TestReadStatsMeasuresHeap checks the measurement behind
// Result.BytesPerRecord: the live heap after GC, before and after
// allocating objects of a known size that stay alive, grows by their
// size, and garbage in between is not counted.
func TestReadStatsMeasuresHeap(t *testing.T) {
	const n, size = 20000, 1000 // 1000 bytes is a size class of its own (1024)
	base := runtime.NumGoroutine()
	before := readStats(base)
	keep := make([][]byte, n)
	for i := range keep {
		keep[i] = make([]byte, size)
		_ = make([]byte, size) // garbage
	}
	after := readStats(base)
	runtime.KeepAlive(keep)
	// Each object costs its size class, plus its slice header in keep.
	per := (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / n
	if want := 1024.0 + 24; per < 0.95*want || per > 1.05*want {
		t.Errorf("measured %.0f bytes per object, want about %.0f", per, want)
	}
	if after.CPU <= 0 || after.RSS <= 0 || after.Goroutines <= 0 {
		t.Errorf("stats %+v", after)
	}
}

var (
	measure = flag.Bool("trackerbench.measure", false, "run TestMeasure: the full benchmark, in process")
)

// TestMeasure runs the benchmark in process and logs the Result
// as JSON, when -trackerbench.measure is given:
//
//	go test -run TestMeasure -v ./testbed/trackerbench -trackerbench.measure
func TestMeasure(t *testing.T) {
	if !*measure {
		t.Skip("set -trackerbench.measure to measure")
	}
	res, err := Run(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(res)
	t.Logf("%s", b)
}

// TestGoalMet pins the definition of Result.GoalMet: an open loop offered
// the goal rate meets it when it answers 99.5% of what it offered, which
// it can (it could never answer more than it offered).
func TestGoalMet(t *testing.T) {
	ok := Result{Mode: ModeInterval, OfferedPerS: 20000, AnsweredFraction: 0.998, AnnouncesPerS: 19958, P99Ms: 35, BytesPerRecord: 555}
	for _, tc := range []struct {
		name string
		edit func(*Result)
		want bool
	}{
		{"kept up with 20,000/s", func(*Result) {}, true},
		{"offered less", func(r *Result) { r.OfferedPerS = 19000 }, false},
		{"fell behind", func(r *Result) { r.AnsweredFraction = 0.99 }, false},
		{"slow", func(r *Result) { r.P99Ms = 50 }, false},
		{"errors", func(r *Result) { r.Errors = 1 }, false},
		{"load errors", func(r *Result) { r.LoadErrors = 1 }, false},
		{"memory", func(r *Result) { r.BytesPerRecord = 1024 }, false},
		{"rate above the goal", func(r *Result) { r.Mode, r.OfferedPerS = ModeRate, 25000 }, true},
		{"closed loop fast enough", func(r *Result) { r.Mode, r.OfferedPerS, r.AnsweredFraction, r.AnnouncesPerS = ModeClosed, 0, 0, 21450 }, true},
		{"closed loop too slow", func(r *Result) { r.Mode, r.OfferedPerS, r.AnsweredFraction = ModeClosed, 0, 0 }, false},
	} {
		r := ok
		tc.edit(&r)
		if got := goalMet(r); got != tc.want {
			t.Errorf("%s: goalMet = %v, want %v", tc.name, got, tc.want)
		}
	}
}
