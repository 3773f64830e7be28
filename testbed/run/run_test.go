package run

import (
	"context"
	"testing"

	"go.uber.org/goleak"

	"github.com/p2pd/p2pd/testbed"
	"github.com/p2pd/p2pd/testbed/scenario"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testbed.IgnoredGoroutines()...)
}

// TestModesAndBaselines: the mode a scenario names runs, then each
// baseline, whose results come back attached.
func TestModesAndBaselines(t *testing.T) {
	s := scenario.Small(3)
	s.Mode = scenario.ModeSim
	s.Baselines = []string{"origin-only"}
	var stages []string
	r, err := Run(context.Background(), s, Options{Dir: t.TempDir(), Stage: func(n string) { stages = append(stages, n) }})
	if err != nil {
		t.Fatal(err)
	}
	if r.Mode != "sim" || len(r.Baselines) != 1 || r.Baselines[0].Mode != "origin-only" {
		t.Fatalf("mode %s, baselines %d", r.Mode, len(r.Baselines))
	}
	if len(stages) != 2 || stages[0] != "sim" || stages[1] != "origin-only" {
		t.Fatalf("stages %v", stages)
	}
	sum := r.Summarize()
	if sum.Completed != 3 || sum.Baselines["origin-only"].Completed != 3 {
		t.Fatalf("summary %+v", sum)
	}
	s.Baselines = []string{"carrier-pigeon"}
	if _, err := Run(context.Background(), s, Options{}); err == nil {
		t.Fatal("unknown baseline accepted")
	}
}
