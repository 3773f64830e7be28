package fleet

import (
	"context"
	"testing"
	"time"

	"github.com/p2pd/p2pd/testbed/result"
)

// TestSample: the loop stops at the sample take calls the last, and
// passes every sample it keeps to progress.
func TestSample(t *testing.T) {
	var seen []result.Sample
	n := 0
	series := Sample(context.Background(), time.Millisecond, result.NewHostMeter(time.Now(), nil),
		func(sm result.Sample) { seen = append(seen, sm) },
		func(time.Time) (result.Sample, bool) {
			n++
			return result.Sample{Live: n}, n == 3
		})
	if len(series) != 3 || len(seen) != 3 || series[2].Live != 3 || seen[2].Live != 3 {
		t.Fatalf("series %+v, progress saw %+v; want 3 samples", series, seen)
	}
}

// TestSampleContextEnds: when ctx ends, the loop takes one last sample at
// once, without waiting for the period, and stops.
func TestSampleContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	series := Sample(ctx, time.Hour, result.NewHostMeter(start, nil), nil,
		func(time.Time) (result.Sample, bool) { return result.Sample{}, false })
	if len(series) != 1 || time.Since(start) > time.Minute {
		t.Fatalf("%d samples after %v; want 1, at once", len(series), time.Since(start))
	}
}
