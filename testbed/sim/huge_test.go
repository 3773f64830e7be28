package sim

import (
	"context"
	"flag"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/p2pd/p2pd/internal/procstat"
	"github.com/p2pd/p2pd/testbed/result"
)

var heapProfile = flag.String("sim.heapprofile", "", "with -sim.huge: write a heap profile at the sample where the heap is largest so far, after 2 s of virtual time")

var hugePeers = flag.Int("sim.huge", 0, "run TestHuge: a flash crowd of this many peers (100000 for the issue's target), logging wall time and peak RSS")

// TestHuge runs the scale target, a flash crowd of -sim.huge peers
// on 1 Gbit/s links fetching a 64 MiB blob in 1 MiB chunks from one
// origin, and logs the wall time, the peak RSS and where the heap went. It
// asserts nothing about time or memory: the figures go to
// docs/testbed-sim.md.
//
//	go test -run '^TestHuge$' -v -timeout 30m ./testbed/sim -sim.huge=100000
func TestHuge(t *testing.T) {
	if *hugePeers <= 0 {
		t.Skip("set -sim.huge=N to run")
	}
	s := flashCrowd(*hugePeers, 64<<20, 1<<20, 125_000_000, time.Millisecond)
	s.Name = "huge"
	s.Sample = time.Second
	s.Timeout = 10 * time.Minute
	start := time.Now()
	sm, err := newSim(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	var peakHeap uint64
	var ms runtime.MemStats
	sm.run(context.Background(), func(smp result.Sample) {
		runtime.ReadMemStats(&ms)
		if ms.HeapAlloc > peakHeap && *heapProfile != "" && smp.T >= 2 {
			if f, err := os.Create(*heapProfile); err == nil {
				_ = pprof.WriteHeapProfile(f)
				f.Close()
			}
		}
		peakHeap = max(peakHeap, ms.HeapAlloc)
		t.Logf("t=%5.1fs wall %6.1fs complete %6d live %6d repl %.0f/%.1f/%d heap %5d MiB conns %d events %d queue %d",
			smp.T, time.Since(start).Seconds(), smp.Complete, smp.Live, float64(smp.ReplMin), smp.ReplMean, smp.ReplMax,
			ms.HeapAlloc>>20, len(sm.conns)-len(sm.freeConns), sm.st.events, sm.q.len())
	})
	wall := time.Since(start)
	rss, _ := procstat.PeakRSS()
	r := sm.result()
	sum := r.Summarize()
	t.Logf("%d peers, %d chunks: completed %d, failed %d; p50 %.2fs p99 %.2fs max %.2fs; bound %.2fs; ratio p50 %.2f; origin egress %.2f copies; virtual %v",
		sum.Peers, sm.n, sum.Completed, sum.Failed, sum.P50S, sum.P99S, sum.MaxS, sum.BoundS, sum.RatioP50, sum.OriginEgressCopies, time.Duration(sm.end))
	t.Logf("wall %v, peak RSS %d MiB, peak heap %d MiB, stats %+v", wall, rss>>20, peakHeap>>20, sm.st)
}
