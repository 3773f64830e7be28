package emu

import (
	"context"
	"testing"

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
	return runWith(t, s, Options{})
}

// runWith runs s with o, in a temporary directory, checking that every
// sample was reported.
func runWith(t *testing.T, s scenario.Scenario, o Options) (*result.Result, *result.Summary) {
	t.Helper()
	var samples int
	o.Dir, o.Progress = t.TempDir(), func(result.Sample) { samples++ }
	r, err := Run(context.Background(), s, o)
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
	// The fleet is up before the clock starts: every peer runs at the
	// first sample, and the start took some time that is not in the
	// completion times.
	if first := r.Series[0]; first.Live != 6 || r.FleetStartS <= 0 || sum.FleetStartS != r.FleetStartS {
		t.Errorf("first sample %+v, fleet start %.3fs (summary %.3fs): the fleet was not up before the clock", first, r.FleetStartS, sum.FleetStartS)
	}
	last := r.Series[len(r.Series)-1]
	if last.Complete != 6 || last.OriginBytes+last.PeerBytes < 6*int64(s.Blob.Size) {
		t.Errorf("last sample %+v", last)
	}
	if last.ReplMin < 1 {
		t.Errorf("replication at the end %+v", last)
	}
	// The spread comes from the same replication counts: one entry per
	// chunk the origin cut, and every chunk had a first holder.
	m, err := s.WithDefaults().Cut(context.Background(), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := result.CheckSpread(r.Spread, len(m.Chunks)); err != nil {
		t.Fatal(err)
	}
	for _, c := range r.Spread {
		if c.FirstS < 0 || c.FirstS > last.T {
			t.Fatalf("chunk %d spread %+v in a run that ended at %.2fs", c.Index, c, last.T)
		}
	}
}
