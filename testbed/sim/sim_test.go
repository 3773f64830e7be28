package sim

import (
	"context"
	"errors"
	"github.com/p2pd/p2pd/peer"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/units"
	"github.com/p2pd/p2pd/testbed/result"
	"github.com/p2pd/p2pd/testbed/scenario"
)

const gbit = 125_000_000 // bytes/s

// flashCrowd is n honest peers and one origin, all on the same link,
// fetching a blob of size bytes in chunks of chunk bytes.
func flashCrowd(n int, size int64, chunk int, rate units.Rate, latency time.Duration) scenario.Scenario {
	link := scenario.Link{Up: rate, Down: rate, Latency: latency}
	s := scenario.Scenario{
		Name:    "flash-crowd",
		Mode:    scenario.ModeSim,
		Seed:    1,
		Blob:    scenario.Blob{Size: units.Size(size), Chunker: chunker.Config{MinSize: chunk / 4, AvgSize: chunk, MaxSize: chunk * 4}},
		Origins: scenario.Origins{Count: 1, Link: link},
		Classes: []scenario.Class{{Name: "peer", Count: n, Link: link}},
		Timeout: 5 * time.Minute,
	}
	return s.WithDefaults()
}

// run runs s and returns the simulator too, for its counters.
func run(t *testing.T, s scenario.Scenario) (*result.Result, *sim) {
	t.Helper()
	return runTuned(t, s, nil)
}

// runTuned is run with the peers' configuration adjusted by tune first.
func runTuned(t *testing.T, s scenario.Scenario, tune func(*peer.Config)) (*result.Result, *sim) {
	t.Helper()
	sm, err := newSim(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if tune != nil {
		tune(&sm.pcfg)
	}
	start := time.Now()
	if err := sm.run(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	r := sm.result()
	sum := r.Summarize()
	t.Logf("%s: %d honest peers, %d chunks: completed %d, failed %d; p50 %.3fs p99 %.3fs max %.3fs; bound %.3fs (origin %.3f, download %.3f, aggregate %.3f); p50/bound %.2f; origin egress %.2f copies; ended at %v; wall %v",
		s.Name, sum.Peers, sm.n, sum.Completed, sum.Failed, sum.P50S, sum.P99S, sum.MaxS, sum.BoundS,
		r.Bound.OriginTerm, r.Bound.DownloadTerm, r.Bound.AggregateTerm, sum.RatioP50,
		sum.OriginEgressCopies, time.Duration(sm.end), time.Since(start))
	t.Logf("counters %+v", sm.st)
	return r, sm
}

// checkPhysics fails if any peer finished faster than the fluid model
// allows it: it needs the whole blob through its own download link, and
// every chunk must have left the origins at least once. And the last
// honest peer cannot beat the Kumar-Ross bound.
func checkPhysics(t *testing.T, r *result.Result) {
	t.Helper()
	s := r.Scenario
	last := 0.0
	for _, p := range r.Peers {
		if !p.Completed {
			continue
		}
		var down float64
		for _, c := range s.Classes {
			if c.Name == p.Class {
				down = float64(c.Down)
			}
		}
		floor := r.Bound.OriginTerm
		if down > 0 {
			floor = max(floor, float64(s.Blob.Size)/down)
		}
		// The origin term counts from t=0, the peer's time from its join.
		floor -= p.JoinS
		if p.DoneS < floor*(1-1e-9) {
			t.Errorf("%s finished in %.4fs, faster than its link and the origin allow (%.4fs): the model is broken", p.Name, p.DoneS, floor)
		}
		if p.Behavior == scenario.Honest {
			last = max(last, p.JoinS+p.DoneS)
		}
	}
	if last > 0 && last < r.Bound.Seconds*(1-1e-9) {
		t.Errorf("the last honest peer finished at %.4fs, below the Kumar-Ross bound %.4fs", last, r.Bound.Seconds)
	}
}

func TestFlashCrowd(t *testing.T) {
	s := flashCrowd(50, 64<<20, 1<<20, gbit, time.Millisecond)
	r, sm := run(t, s)
	sum := r.Summarize()
	if sum.Peers != 50 || sum.Completed != 50 || sum.Failed != 0 {
		t.Fatalf("completed %d and failed %d of %d honest peers", sum.Completed, sum.Failed, sum.Peers)
	}
	checkPhysics(t, r)
	if sum.RatioP50 < 1 {
		t.Errorf("p50 %.3fs is below the bound %.3fs", sum.P50S, sum.BoundS)
	}
	// With the engine's defaults this crowd takes ~17x the bound, for
	// reasons in the engine, not the model (docs/testbed-sim.md,
	// "Findings"): the window only catches a large regression.
	if sum.RatioP50 > 25 {
		t.Errorf("p50 is %.1fx the bound, want at most 25x", sum.RatioP50)
	}
	if sum.OriginEgressCopies > 50.0/4 {
		t.Errorf("the origin sent %.1f copies to 50 peers, want well below one each", sum.OriginEgressCopies)
	}
	if sm.st.busy+sm.st.deferred == 0 {
		t.Error("no request was ever refused busy: upload slots and the resend window are not modelled")
	}
	// The series is cumulative and ends with every peer complete.
	last := r.Series[len(r.Series)-1]
	if last.Complete != 50 || last.Live != 50 || last.ReplMin != 50 || last.OriginBytes != r.OriginEgressBytes {
		t.Errorf("last sample %+v", last)
	}
	var peerBytes int64
	for _, p := range r.Peers {
		peerBytes += p.FromPeers
	}
	if last.PeerBytes < peerBytes {
		t.Errorf("peers served %d bytes, but peers received %d from peers", last.PeerBytes, peerBytes)
	}
	for i := 1; i < len(r.Series); i++ {
		a, b := r.Series[i-1], r.Series[i]
		if b.T <= a.T || b.OriginBytes < a.OriginBytes || b.PeerBytes < a.PeerBytes || b.Complete < a.Complete {
			t.Fatalf("series not cumulative at %d: %+v then %+v", i, a, b)
		}
	}
	// Every chunk reached every peer, within the run, after its first
	// copy.
	if err := result.CheckSpread(r.Spread, sm.n); err != nil {
		t.Fatal(err)
	}
	for _, c := range r.Spread {
		if c.FirstS < 0 || c.P99S < 0 || c.P99S > last.T {
			t.Fatalf("chunk %d spread %+v in a run that ended at %.2fs", c.Index, c, last.T)
		}
	}
	if sum.SpreadHalfS <= 0 || sum.SpreadP99S < sum.SpreadHalfS {
		t.Errorf("median spread %.3fs to half, %.3fs to 99%%", sum.SpreadHalfS, sum.SpreadP99S)
	}
}

// TestModelMeetsBound checks the network model where the engine's
// policies do not get in the way: one peer fetching from the origin, and
// two peers with a blob large enough that the origin's resend window and
// busy back-off are small beside it, finish within 10% of the fluid bound.
func TestModelMeetsBound(t *testing.T) {
	for _, tc := range []struct {
		name  string
		peers int
		size  int64
	}{
		{"one peer", 1, 64 << 20},
		{"two peers", 2, 256 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := run(t, flashCrowd(tc.peers, tc.size, 1<<20, gbit, time.Millisecond))
			checkPhysics(t, r)
			sum := r.Summarize()
			if sum.Completed != tc.peers || sum.RatioMax < 1 || sum.RatioMax > 1.1 {
				t.Fatalf("%d of %d completed, the last at %.3fx the bound; want all, within 1.0-1.1x", sum.Completed, tc.peers, sum.RatioMax)
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	s := flashCrowd(30, 32<<20, 1<<20, gbit, time.Millisecond)
	s.Classes[0].Latency, s.Classes[0].Jitter = 2*time.Millisecond, time.Millisecond
	s.Events = []scenario.Event{{At: time.Second, Action: "kill", Fraction: 0.1}}
	a, err := Run(context.Background(), s, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Run(context.Background(), s, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.Host, b.Host = result.Host{}, result.Host{}
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two runs with the same seed differ")
	}
	s.Seed = 2
	c, err := Run(context.Background(), s, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Host = result.Host{}
	c.Scenario.Seed = 1
	if reflect.DeepEqual(a.Peers, c.Peers) {
		t.Fatal("another seed gives the same run: the seed is not used")
	}
}

// TestSlowOrigin: with the origin at a tenth of the peers' rate, the
// origin term is the bound, and no peer can finish before every chunk has
// left the origin once.
func TestSlowOrigin(t *testing.T) {
	s := flashCrowd(30, 32<<20, 1<<20, gbit, time.Millisecond)
	s.Origins.Up = gbit / 10
	r, _ := run(t, s)
	b := r.Bound
	if b.Seconds != b.OriginTerm || b.OriginTerm < 5*max(b.DownloadTerm, b.AggregateTerm) {
		t.Fatalf("bound %+v: the origin term does not dominate", b)
	}
	checkPhysics(t, r)
	sum := r.Summarize()
	if sum.Completed != 30 || sum.RatioP50 < 1 || sum.RatioP50 > 3 {
		t.Fatalf("completed %d of 30, p50 %.2fx the origin-bound; want all within 1-3x", sum.Completed, sum.RatioP50)
	}
}

func TestCorruptPeers(t *testing.T) {
	s := flashCrowd(40, 32<<20, 1<<20, gbit, time.Millisecond)
	s.Classes = append(s.Classes, scenario.Class{Name: "bad", Count: 10, Link: s.Classes[0].Link, Behavior: scenario.Corrupt})
	r, sm := run(t, s)
	sum := r.Summarize()
	if sum.Peers != 40 || sum.Completed != 40 {
		t.Fatalf("%d of %d honest peers completed", sum.Completed, sum.Peers)
	}
	checkPhysics(t, r)
	if sm.st.corrupt == 0 || sm.st.bans == 0 {
		t.Fatalf("corrupt chunks %d, bans %d: the corrupt peers went unnoticed", sm.st.corrupt, sm.st.bans)
	}
	for _, p := range r.Peers {
		if p.Behavior == scenario.Corrupt && p.Failed {
			t.Errorf("byzantine peer %s counted as failed", p.Name)
		}
	}
}

func TestLiars(t *testing.T) {
	s := flashCrowd(40, 32<<20, 1<<20, gbit, time.Millisecond)
	s.Classes = append(s.Classes, scenario.Class{Name: "liar", Count: 10, Link: s.Classes[0].Link, Behavior: scenario.Liar})
	r, sm := run(t, s)
	if sum := r.Summarize(); sum.Completed != 40 {
		t.Fatalf("%d of %d honest peers completed", sum.Completed, sum.Peers)
	}
	checkPhysics(t, r)
	if sm.st.notFound == 0 {
		t.Fatal("no request was refused NotFound: the liars were never asked for what they lack")
	}
}

// TestKill kills a fifth of the peers mid-way: the others complete, the
// killed ones are neither completed nor failed.
func TestKill(t *testing.T) {
	s := flashCrowd(50, 64<<20, 1<<20, gbit, time.Millisecond)
	s.Events = []scenario.Event{{At: 600 * time.Millisecond, Action: "kill", Fraction: 0.2, Incomplete: true}}
	r, _ := run(t, s)
	sum := r.Summarize()
	left := 0
	for _, p := range r.Peers {
		if p.Left {
			left++
		}
	}
	if left != 10 || sum.Peers != 40 || sum.Completed != 40 || sum.Failed != 0 {
		t.Fatalf("left %d, completed %d of %d, failed %d; want 10 left and 40 of 40", left, sum.Completed, sum.Peers, sum.Failed)
	}
	checkPhysics(t, r)
	for _, smp := range r.Series {
		if smp.T > 0.6 && smp.Live != 40 {
			t.Fatalf("%d peers live at %.2fs, want 40", smp.Live, smp.T)
		}
	}
}

// TestLeaveAndJoin: half the peers leave early and come back later,
// keeping what they had; everyone completes, and DoneS counts from the
// first join.
func TestLeaveAndJoin(t *testing.T) {
	s := flashCrowd(20, 32<<20, 1<<20, gbit, time.Millisecond)
	s.Events = []scenario.Event{
		{At: 500 * time.Millisecond, Action: "leave", Fraction: 0.5},
		{At: 3 * time.Second, Action: "join", Fraction: 1},
	}
	r, _ := run(t, s)
	sum := r.Summarize()
	if sum.Completed != 20 || sum.Failed != 0 {
		t.Fatalf("completed %d, failed %d of %d", sum.Completed, sum.Failed, sum.Peers)
	}
	checkPhysics(t, r)
	back := 0
	for _, p := range r.Peers {
		if p.DoneS >= 3 {
			back++
		}
	}
	if back == 0 {
		t.Fatal("no peer finished after the join event: did anyone leave?")
	}
}

func TestLateJoiners(t *testing.T) {
	s := flashCrowd(20, 32<<20, 1<<20, gbit, time.Millisecond)
	s.Classes = append(s.Classes, scenario.Class{Name: "late", Count: 10, Link: s.Classes[0].Link, JoinAt: 10 * time.Second, JoinSpread: 5 * time.Second})
	r, _ := run(t, s)
	if sum := r.Summarize(); sum.Completed != 30 {
		t.Fatalf("%d of %d completed", sum.Completed, sum.Peers)
	}
	checkPhysics(t, r)
	for _, p := range r.Peers {
		if p.Class != "late" {
			continue
		}
		if p.JoinS < 10 || p.JoinS > 15 {
			t.Errorf("%s joined at %.2fs, want 10-15s", p.Name, p.JoinS)
		}
		// The swarm is complete by then: a late joiner fetches from
		// seeders at close to its link rate.
		if p.DoneS > 5 {
			t.Errorf("%s took %.2fs after joining a complete swarm", p.Name, p.DoneS)
		}
	}
}

func TestTimeout(t *testing.T) {
	s := flashCrowd(10, 64<<20, 1<<20, gbit, time.Millisecond)
	s.Timeout = 300 * time.Millisecond
	var samples []result.Sample
	r, err := Run(context.Background(), s, func(smp result.Sample) { samples = append(samples, smp) })
	if err != nil {
		t.Fatal(err)
	}
	sum := r.Summarize()
	if sum.Failed != 10 || sum.Completed != 0 {
		t.Fatalf("completed %d, failed %d of 10 after 300ms: want all failed", sum.Completed, sum.Failed)
	}
	for _, p := range r.Peers {
		if p.Err == "" {
			t.Fatalf("%s failed without a reason", p.Name)
		}
	}
	if !reflect.DeepEqual(samples, r.Series) || len(samples) == 0 || samples[len(samples)-1].T != 0.3 {
		t.Fatalf("progress got %d samples, the series has %d, ending at %v", len(samples), len(r.Series), r.Series[len(r.Series)-1].T)
	}
	if r.Mode != "sim" || r.Scenario.Mode != scenario.ModeSim {
		t.Fatalf("mode %q", r.Mode)
	}
}

func TestScenarioFile(t *testing.T) {
	s, err := scenario.Load("testdata/mixed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r, _ := run(t, s)
	checkPhysics(t, r)
	sum := r.Summarize()
	if sum.Failed != 0 || sum.Completed != sum.Peers || math.IsNaN(sum.RatioP50) {
		t.Fatalf("summary %+v", sum)
	}
}

func TestErrors(t *testing.T) {
	s := flashCrowd(1, 1<<20, 1<<20, gbit, 0)
	s.Origins.Count = 0
	if _, err := Run(context.Background(), s, nil); !errors.Is(err, scenario.ErrInvalid) {
		t.Errorf("no origin: %v, want ErrInvalid", err)
	}
	s = flashCrowd(1, 1<<40, 64<<10, gbit, 0)
	if _, err := Run(context.Background(), s, nil); !errors.Is(err, ErrTooManyChunks) {
		t.Errorf("2^24 chunks: %v, want ErrTooManyChunks", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, flashCrowd(50, 64<<20, 1<<20, gbit, time.Millisecond), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v, want context.Canceled", err)
	}
}

// TestScale logs how long 2,000 peers take; it asserts only that they
// complete (no timed assertions). Skipped with -short and under the race
// detector, which makes it minutes long.
func TestScale(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("long; skipped with -short and -race")
	}
	r, _ := run(t, flashCrowd(2000, 64<<20, 1<<20, gbit, time.Millisecond))
	if sum := r.Summarize(); sum.Completed != 2000 {
		t.Fatalf("%d of 2000 completed", sum.Completed)
	}
}

// TestSlowLinks: at 10 Mbit/s a peer's pipeline of 1 MiB chunks takes
// longer than the request timeout to drain, and a chunk shared by many
// uploads takes longer than that to arrive. The scheduler counts time only
// for a peer's oldest request, and the engine reports a slow chunk's
// progress (ChunkProgress), so nothing times out and everyone completes.
func TestSlowLinks(t *testing.T) {
	s := flashCrowd(30, 32<<20, 1<<20, 10_000_000/8, time.Millisecond)
	s.Timeout = 10 * time.Minute
	r, sm := run(t, s)
	sum := r.Summarize()
	if sum.Completed != 30 {
		t.Fatalf("%d of 30 completed", sum.Completed)
	}
	checkPhysics(t, r)
	if sm.st.timeouts != 0 {
		t.Errorf("%d requests timed out on slow but steady links", sm.st.timeouts)
	}
	if sm.st.progress == 0 {
		t.Error("no chunk progress was reported: transfers this slow take longer than the report period")
	}
	if sum.RatioP50 > 6 {
		t.Errorf("p50 is %.1fx the bound, want at most 6x", sum.RatioP50)
	}
}

// TestSlowLinksSmallChunks: at 5 Mbit/s, a 256 KiB chunk is one Data frame,
// so the engine reports no progress before it has all arrived, and on a
// link shared by tens of uploads that takes longer than the 10s request
// timeout. With a fixed timeout the swarm timed out, failed over and
// escalated to the origin until most peers missed the 5-minute limit
// (36 of 50 completed, 5.2 origin copies); the scheduler's timeout now
// adapts to how long each peer takes.
func TestSlowLinksSmallChunks(t *testing.T) {
	r, _ := run(t, flashCrowd(50, 16<<20, 256<<10, 5_000_000/8, 2*time.Millisecond))
	sum := r.Summarize()
	if sum.Completed != 50 {
		t.Fatalf("%d of 50 completed", sum.Completed)
	}
	checkPhysics(t, r)
	if sum.RatioP99 > 5 {
		t.Errorf("p99 is %.1fx the bound, want at most 5x", sum.RatioP99)
	}
	if sum.OriginEgressCopies > 2 {
		t.Errorf("the origin sent %.2f copies, want at most 2", sum.OriginEgressCopies)
	}
}

// TestStalledPeers: peers that accept requests and never answer join a
// flash crowd. Had they been honest they would have held a share of the
// upload capacity; the honest peers' completion may slow by no more than
// that share (a factor 1/(1-share) over the run without them), with 10%
// slack on average over the seeds and 25% in any one (a swarm is chaotic:
// one late chunk moves the last peer's time). Both runs are simulated, so
// the ratio is exact and the test deterministic. Before a peer's requests
// were released on suspicion (peer/sched), a chunk that only a stalled
// peer held waited for its timeouts, doubled each time, and one seed of
// the second case took 1.95 and 2.3 times as long.
func TestStalledPeers(t *testing.T) {
	seeds := []uint64{1, 2, 3, 4, 5}
	if raceEnabled || testing.Short() {
		seeds = seeds[:2]
	}
	for _, tc := range []struct {
		n, k  int
		size  int64
		chunk int
	}{
		{30, 3, 64 << 20, 1 << 20},
		{20, 2, 256 << 20, 1 << 20},
	} {
		share := float64(tc.k) / float64(1+tc.n+tc.k)
		bound := 1 / (1 - share)
		var sum float64
		for _, seed := range seeds {
			base := flashCrowd(tc.n, tc.size, tc.chunk, 10_000_000, time.Millisecond)
			base.Timeout, base.Seed = 10*time.Minute, seed
			rb, _ := run(t, base)
			bad := base
			bad.Classes = append(bad.Classes[:1:1], scenario.Class{Name: "stall", Count: tc.k, Link: base.Classes[0].Link, Behavior: scenario.Stall})
			r, _ := run(t, bad.WithDefaults())
			sb, sw := rb.Summarize(), r.Summarize()
			if sw.Completed != tc.n {
				t.Fatalf("%d of %d honest peers completed", sw.Completed, tc.n)
			}
			ratio := sw.MaxS / sb.MaxS
			sum += ratio
			t.Logf("%d peers, %d stalled, seed %d: last done at %.2fs, %.2fs without them: x%.2f (their share %.0f%%: x%.2f)",
				tc.n, tc.k, seed, sw.MaxS, sb.MaxS, ratio, 100*share, bound)
			if ratio > bound*1.25 {
				t.Errorf("%d peers, %d stalled, seed %d: x%.2f slower, more than 1.25 × x%.2f", tc.n, tc.k, seed, ratio, bound)
			}
		}
		if mean := sum / float64(len(seeds)); mean > bound*1.1 {
			t.Errorf("%d peers, %d stalled: x%.2f slower on average, more than 1.1 × x%.2f", tc.n, tc.k, mean, bound)
		}
	}
}

// TestStalledOriginBound is testbed/emu's TestStalledPeers, simulated: an
// origin-bound fleet (6 peers at 2 MB/s, the origin at 1 MB/s, 4 MiB of
// 64 KiB chunks) with 2 stalled and 2 slowloris (64 kbit/s up) peers, and
// a request timeout of 1 s for a run of seconds. The bad peers download
// honestly and take first copies from the origin that nobody can then get:
// the honest peers slowed by x1.72-2.74 over these seeds (bound x1.62)
// until an origin that keeps deferring a chunk made it escalate
// (peer/sched) and an escalated request marked the peer the chunk went to
// a hoarder, which the origin then defers while it has others to serve
// (peer.Config.ResendWindow). Bound and slack as in TestStalledPeers.
func TestStalledOriginBound(t *testing.T) {
	seeds := []uint64{1, 2, 3, 4, 5}
	link := scenario.Link{Up: 2_000_000, Down: 2_000_000, Latency: 2 * time.Millisecond}
	base := flashCrowd(6, 4<<20, 64<<10, 2_000_000, 2*time.Millisecond)
	base.Origins.Link = scenario.Link{Up: 1_000_000, Down: 1_000_000, Latency: 2 * time.Millisecond}
	base.Timeout = 2 * time.Minute
	slow := link
	slow.Up = 8_000
	bad := base
	bad.Classes = append(bad.Classes[:1:1],
		scenario.Class{Name: "stall", Count: 2, Link: link, Behavior: scenario.Stall},
		scenario.Class{Name: "slowloris", Count: 2, Link: slow})
	bad = bad.WithDefaults()
	tune := func(c *peer.Config) { c.Sched.RequestTimeout = time.Second }
	share := 4 * float64(link.Up) / float64(base.Origins.Up+10*link.Up)
	bound := 1 / (1 - share)
	var sum float64
	for _, seed := range seeds {
		base.Seed, bad.Seed = seed, seed
		rb, _ := runTuned(t, base, tune)
		r, _ := runTuned(t, bad, tune)
		var maxS float64
		for _, p := range r.Peers {
			if p.Class == "peer" {
				if !p.Completed {
					t.Fatalf("seed %d: %s did not complete", seed, p.Name)
				}
				maxS = max(maxS, p.DoneS)
			}
		}
		ratio := maxS / rb.Summarize().MaxS
		sum += ratio
		t.Logf("seed %d: x%.2f (their share %.0f%%: x%.2f)", seed, ratio, 100*share, bound)
		if ratio > bound*1.25 {
			t.Errorf("seed %d: x%.2f slower, more than 1.25 × x%.2f", seed, ratio, bound)
		}
	}
	if mean := sum / float64(len(seeds)); mean > bound*1.1 {
		t.Errorf("x%.2f slower on average, more than 1.1 × x%.2f", mean, bound)
	}
}
