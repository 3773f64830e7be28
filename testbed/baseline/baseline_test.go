package baseline

import (
	"context"
	"flag"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/p2pd/p2pd/testbed"
	"github.com/p2pd/p2pd/testbed/result"
	"github.com/p2pd/p2pd/testbed/scenario"
)

func TestMain(m *testing.M) {
	// anacrolix/torrent needs nothing more: its clients' goroutines end
	// with Client.Close and the listeners' Close.
	goleak.VerifyTestMain(m, testbed.IgnoredGoroutines()...)
}

// burst is the depth of small's token buckets (internal/shape: 10 ms at
// the rate, at least 64 KiB): a link can send that much at once.
const burst = 64 << 10

func small(n int) scenario.Scenario { return scenario.Small(n) }

func run(t *testing.T, mode string, s scenario.Scenario) (*result.Result, *result.Summary) {
	t.Helper()
	var samples int
	r, err := Run(context.Background(), mode, s, Options{Dir: t.TempDir(), Progress: func(result.Sample) { samples++ }})
	if err != nil {
		t.Fatal(err)
	}
	sum := r.Summarize()
	t.Logf("%+v", *sum)
	if r.Mode != mode {
		t.Errorf("mode %q, want %q", r.Mode, mode)
	}
	if samples == 0 || len(r.Series) != samples {
		t.Errorf("%d samples reported, %d in the series", samples, len(r.Series))
	}
	return r, sum
}

// checkAllDone checks that all n peers completed (each verified its
// digest, or it would have failed), none faster than the fluid bound
// allows (less the token buckets' initial burst), and that the series
// ends with all of them complete and every piece held n times.
func checkAllDone(t *testing.T, r *result.Result, sum *result.Summary, n int) {
	t.Helper()
	if sum.Peers != n || sum.Completed != n || sum.Failed != 0 {
		for _, p := range r.Peers {
			t.Logf("%+v", p)
		}
		t.Fatalf("peers %d, completed %d, failed %d; want %d completed", sum.Peers, sum.Completed, sum.Failed, n)
	}
	floor := sum.BoundS - burst/4e6 - 0.05
	for _, p := range r.Peers {
		if p.DoneS < floor {
			t.Errorf("%s finished in %.2fs, faster than the bound %.2fs allows", p.Name, p.DoneS, sum.BoundS)
		}
		if p.FromOrigins+p.FromPeers < r.BlobBytes {
			t.Errorf("%s read %d+%d bytes, less than the blob", p.Name, p.FromOrigins, p.FromPeers)
		}
	}
	// The origins' bytes never came faster than their links allow.
	us := float64(r.Scenario.Origins.Up) * float64(r.Scenario.Origins.Count)
	for _, sm := range r.Series {
		if limit := us*sm.T + float64(r.Scenario.Origins.Count)*burst; float64(sm.OriginBytes) > limit {
			t.Errorf("at %.2fs the peers had read %d bytes from the origins, more than their links carry (%.0f)", sm.T, sm.OriginBytes, limit)
		}
	}
	last := r.Series[len(r.Series)-1]
	if last.Complete != n || last.Live != n || last.OriginBytes+last.PeerBytes < int64(n)*r.BlobBytes {
		t.Errorf("last sample %+v", last)
	}
	if last.ReplMin != n || last.ReplMax != n {
		t.Errorf("replication at the end %+v, want %d everywhere", last, n)
	}
	if r.Host.WallSeconds <= 0 {
		t.Errorf("host %+v", r.Host)
	}
}

// TestOriginOnly: every peer gets the blob from the origin, which serves
// N copies; the origin's upload is shared, so the last peer cannot
// finish before N·F/u_s. A late joiner's time counts from its join, and
// byzantine classes are left out.
func TestOriginOnly(t *testing.T) {
	s := small(3)
	link := s.Classes[0].Link
	s.Classes = append(s.Classes,
		scenario.Class{Name: "late", Count: 1, Link: link, JoinAt: 400 * time.Millisecond},
		scenario.Class{Name: "corrupt", Count: 1, Link: link, Behavior: scenario.Corrupt})
	s = s.WithDefaults()
	r, sum := run(t, ModeOriginOnly, s)
	checkAllDone(t, r, sum, 4)
	size := r.BlobBytes
	if r.OriginEgressBytes < 4*size || r.OriginEgressBytes > 4*size+64<<10 {
		t.Errorf("origin egress %d bytes, want 4 copies (%d) and a few headers", r.OriginEgressBytes, 4*size)
	}
	var last float64
	for _, p := range r.Peers {
		if p.FromPeers != 0 || p.FromOrigins < size {
			t.Errorf("%s: %d bytes from peers, %d from origins", p.Name, p.FromPeers, p.FromOrigins)
		}
		if p.Class == "late" && p.JoinS != 0.4 {
			t.Errorf("late joiner %+v", p)
		}
		last = max(last, p.JoinS+p.DoneS)
	}
	shared := float64(4*size)/float64(s.Origins.Up) - burst/4e6 - 0.05
	if last < shared {
		t.Errorf("the last peer finished at %.2fs, before the origin could upload 4 copies (%.2fs)", last, shared)
	}
}

// TestBitTorrent: every leecher gets the blob; they trade pieces, so the
// seeder uploads less than one copy per leecher; the bytes the leechers
// read from the seeder add up to what it wrote.
func TestBitTorrent(t *testing.T) {
	const n = 4
	r, sum := run(t, ModeBitTorrent, small(n))
	checkAllDone(t, r, sum, n)
	if sum.OriginEgressCopies >= n || sum.OriginEgressCopies < 1 {
		t.Errorf("origin egress %.2f copies, want at least 1 and fewer than %d", sum.OriginEgressCopies, n)
	}
	var fromOrigins, fromPeers int64
	for _, p := range r.Peers {
		fromOrigins += p.FromOrigins
		fromPeers += p.FromPeers
	}
	if fromPeers == 0 {
		t.Error("no bytes from peers")
	}
	t.Logf("seeder wrote %d bytes, leechers read %d from it and %d from each other", r.OriginEgressBytes, fromOrigins, fromPeers)
	if d := r.OriginEgressBytes - fromOrigins; d < 0 || d > r.OriginEgressBytes/20 {
		t.Errorf("the leechers read %d bytes from the seeder, which wrote %d", fromOrigins, r.OriginEgressBytes)
	}
}

// TestTimeout: peers that cannot finish in time fail, with a reason, and
// every goroutine still stops (TestMain).
func TestTimeout(t *testing.T) {
	for _, mode := range []string{ModeOriginOnly, ModeBitTorrent} {
		t.Run(mode, func(t *testing.T) {
			s := small(2)
			s.Timeout = 300 * time.Millisecond
			r, sum := run(t, mode, s)
			if sum.Failed != 2 || sum.Completed != 0 {
				t.Fatalf("completed %d, failed %d; want 2 failed", sum.Completed, sum.Failed)
			}
			for _, p := range r.Peers {
				if !strings.Contains(p.Err, "timeout") {
					t.Errorf("%s: err %q", p.Name, p.Err)
				}
			}
		})
	}
}

func TestPieceLength(t *testing.T) {
	for avg, want := range map[int]int64{64 << 10: 64 << 10, 1 << 20: 1 << 20, 16 << 10: 16 << 10, 8 << 10: DefaultPieceLength, 48 << 10: DefaultPieceLength} {
		s := small(1)
		s.Blob.Chunker.AvgSize = avg
		if got := pieceLength(s); got != want {
			t.Errorf("avg %d: piece length %d, want %d", avg, got, want)
		}
	}
}

var large = flag.Bool("baseline.large", false, "run TestLarge: both baselines on the default scenario (20 peers, 64 MiB, 1 Gbit/s)")

// TestLarge prints both baselines' figures on the default scenario. It
// is skipped unless -baseline.large is given; run it without -race.
func TestLarge(t *testing.T) {
	if !*large {
		t.Skip("-baseline.large not set")
	}
	s := scenario.Default().WithDefaults()
	for _, mode := range []string{ModeOriginOnly, ModeBitTorrent} {
		t.Run(mode, func(t *testing.T) {
			r, err := Run(context.Background(), mode, s, Options{})
			if err != nil {
				t.Fatal(err)
			}
			sum := r.Summarize()
			t.Logf("%s: %d/%d completed; bound %.3fs; p50 %.3fs (%.2f×), p99 %.3fs (%.2f×), max %.3fs; origin egress %.2f copies; host busy %.2f, host-bound %v",
				mode, sum.Completed, sum.Peers, sum.BoundS, sum.P50S, sum.RatioP50, sum.P99S, sum.RatioP99, sum.MaxS, sum.OriginEgressCopies, sum.HostBusy, sum.HostBound)
		})
	}
}
