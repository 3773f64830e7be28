package emu

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/p2pd/p2pd/testbed"
	"github.com/p2pd/p2pd/testbed/result"
	"github.com/p2pd/p2pd/testbed/scenario"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testbed.IgnoredGoroutines()...)
}

func small(n int) scenario.Scenario { return scenario.Small(n) }

func run(t *testing.T, s scenario.Scenario) (*result.Result, *result.Summary) {
	t.Helper()
	var samples int
	r, err := Run(context.Background(), s, Options{Dir: t.TempDir(), Progress: func(result.Sample) { samples++ }})
	if err != nil {
		t.Fatal(err)
	}
	sum := r.Summarize()
	t.Logf("%+v", *sum)
	if samples == 0 || len(r.Series) != samples {
		t.Errorf("%d samples reported, %d in the series", samples, len(r.Series))
	}
	return r, sum
}

// TestFlashCrowd: every peer completes; no peer beats the fluid bound
// (the links are really shaped); the origin serves about one copy.
func TestFlashCrowd(t *testing.T) {
	s := small(6)
	r, sum := run(t, s)
	if sum.Completed != 6 || sum.Failed != 0 {
		for _, p := range r.Peers {
			t.Logf("%+v", p)
		}
		t.Fatalf("completed %d, failed %d of 6", sum.Completed, sum.Failed)
	}
	// Lower bounds only: shaping must not let anyone finish faster than
	// the bound allows (F/d_min = 4 MiB at 4 MB/s ≈ 1.05 s), less the
	// token buckets' initial burst.
	floor := sum.BoundS - float64(64<<10)/4e6 - 0.05
	for _, p := range r.Peers {
		if p.DoneS < floor {
			t.Errorf("%s finished in %.2fs, faster than the bound %.2fs allows", p.Name, p.DoneS, sum.BoundS)
		}
	}
	if sum.OriginEgressCopies > 2 {
		t.Errorf("origin served %.2f copies", sum.OriginEgressCopies)
	}
	last := r.Series[len(r.Series)-1]
	if last.Complete != 6 || last.OriginBytes+last.PeerBytes < 6*int64(s.Blob.Size) {
		t.Errorf("last sample %+v", last)
	}
	if last.ReplMin < 1 {
		t.Errorf("replication at the end %+v", last)
	}
}

// TestByzantineAndChurn: a corrupt peer and a liar do not stop the honest
// ones; a kill event takes two honest peers out, who count as left.
func TestByzantineAndChurn(t *testing.T) {
	s := small(6)
	// Links at 1 MB/s: the pulls take seconds, so the kill at 1.5 s finds
	// peers started and unfinished even on a loaded machine.
	s.Classes[0].Link.Up, s.Classes[0].Link.Down, s.Origins.Up = 1_000_000, 1_000_000, 1_000_000
	link := s.Classes[0].Link
	s.Classes = append(s.Classes,
		scenario.Class{Name: "corrupt", Count: 1, Link: link, Behavior: scenario.Corrupt},
		scenario.Class{Name: "liar", Count: 1, Link: link, Behavior: scenario.Liar})
	s.Events = []scenario.Event{{At: 1500 * time.Millisecond, Action: "kill", Count: 2, Class: "peer", Incomplete: true}}
	s = s.WithDefaults()
	r, sum := run(t, s)
	left := 0
	for _, p := range r.Peers {
		if p.Left {
			left++
		}
	}
	if left != 2 || sum.Peers != 4 || sum.Completed != 4 {
		for _, p := range r.Peers {
			t.Logf("%+v", p)
		}
		t.Fatalf("left %d, peers %d, completed %d; want 2, 4, 4", left, sum.Peers, sum.Completed)
	}
}
