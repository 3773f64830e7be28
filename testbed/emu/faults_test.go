package emu

import (
	"flag"
	"os"
	"testing"
	"time"

	"github.com/p2pd/p2pd/internal/units"
	"github.com/p2pd/p2pd/peer"
	"github.com/p2pd/p2pd/testbed/result"
	"github.com/p2pd/p2pd/testbed/scenario"
)

// The fault scenarios of issue 5 run small in `make test` and large with
// -testbed.large (`make testbed`).
var large = flag.Bool("testbed.large", false, "run the fault scenarios at full size (make testbed)")

// faultFleet is a flash crowd of n honest peers (40 with -testbed.large)
// on 1 MB/s links: slow enough that the pulls last seconds, so that
// events at 1-2 s find them unfinished even on a loaded machine.
func faultFleet(n int) scenario.Scenario {
	s := scenario.Small(n)
	if *large {
		s = scenario.Small(40)
		s.Blob.Size = 16 << 20
		s.Timeout = 10 * time.Minute
	}
	s.Classes[0].Link.Up, s.Classes[0].Link.Down, s.Origins.Up = 1_000_000, 1_000_000, 1_000_000
	return s
}

// honestOutcome checks that every honest peer of class "peer" that was not
// stopped for good completed, and returns how many left.
func honestOutcome(t *testing.T, r *result.Result) (completed, left int) {
	t.Helper()
	for _, p := range r.Peers {
		switch {
		case p.Behavior != scenario.Honest:
		case p.Left:
			left++
		case p.Completed:
			completed++
		default:
			t.Errorf("%s did not complete: %s", p.Name, p.Err)
		}
	}
	return completed, left
}

// event returns the run's record of its event action, failing the test
// if it is missing or failed.
func event(t *testing.T, r *result.Result, action string) result.Event {
	t.Helper()
	for _, e := range r.Events {
		if e.Action == action {
			if e.Err != "" {
				t.Fatalf("event %s failed: %s", action, e.Err)
			}
			return e
		}
	}
	t.Fatalf("no %s event in %+v", action, r.Events)
	return result.Event{}
}

// TestKillFifth: 20% of the honest peers are killed mid-transfer, among a
// corrupt peer and a liar. Every other honest peer completes, and every
// copy reads back intact (Verify): no peer accepted a corrupt byte.
func TestKillFifth(t *testing.T) {
	s := faultFleet(10)
	link := s.Classes[0].Link
	s.Classes = append(s.Classes,
		scenario.Class{Name: "corrupt", Count: 1, Link: link, Behavior: scenario.Corrupt},
		scenario.Class{Name: "liar", Count: 1, Link: link, Behavior: scenario.Liar})
	// At 3s: late enough that a loaded machine has started the peers, early
	// enough that none has finished (an idle one takes about 9s).
	s.Events = []scenario.Event{{At: 3 * time.Second, Action: scenario.Kill, Fraction: 0.2, Class: "peer", Incomplete: true}}
	s = s.WithDefaults()
	r, _ := runWith(t, s, Options{Verify: true})
	n := s.Classes[0].Count
	completed, left := honestOutcome(t, r)
	// A fifth of the peers running and unfinished at the kill: all of
	// them unless a loaded machine started some late.
	e := event(t, r, scenario.Kill)
	if e.Peers < 1 || e.Peers > n/5 || left != e.Peers || completed != n-left {
		t.Fatalf("the kill stopped %d peers; left %d, completed %d of %d", e.Peers, left, completed, n)
	}
}

// TestTrackerOutage: the tracker goes down mid-transfer and comes back
// empty. While it is down the peers keep transferring with the peers they
// know; once it is back, its swarm lists every live peer again within two
// announce intervals (the peers' backoff never exceeds the interval, and
// the tracker's NeedFull gets their full bitfields at once).
func TestTrackerOutage(t *testing.T) {
	const interval = time.Second
	s := faultFleet(8)
	// Twice the blob: the run ends when the last peer completes, and with
	// 4 MiB an idle machine finished them all (5.0–5.6 s) before the
	// tracker, back at 5 s, could list them again.
	s.Blob.Size *= 2
	s.Sample = 100 * time.Millisecond
	s.Events = []scenario.Event{
		{At: 2 * time.Second, Action: scenario.TrackerDown},
		{At: 5 * time.Second, Action: scenario.TrackerUp}, // long enough for an uncapped backoff to reach 4s
	}
	r, _ := runWith(t, s, Options{Verify: true, AnnounceInterval: interval})
	if completed, _ := honestOutcome(t, r); completed != s.NumPeers() {
		t.Fatalf("%d of %d peers completed", completed, s.NumPeers())
	}
	down, up := event(t, r, scenario.TrackerDown), event(t, r, scenario.TrackerUp)
	// Bytes moved while the tracker was down.
	var atDown, atUp *result.Sample
	unanswered := 0 // samples the stopped tracker did not answer
	for i := range r.Series {
		sm := &r.Series[i]
		if atDown == nil && sm.T >= down.EndS {
			atDown = sm
		}
		if atUp == nil && sm.T >= up.StartS {
			atUp = sm
		}
		if sm.T >= down.EndS && sm.T < up.StartS && sm.TrackerPeers == -1 {
			unanswered++
		}
	}
	if atDown == nil || atUp == nil || unanswered == 0 {
		t.Fatalf("no samples of the outage (%v..%v)", down.EndS, up.StartS)
	}
	if moved := atUp.PeerBytes + atUp.OriginBytes - atDown.PeerBytes - atDown.OriginBytes; moved < 64<<10 {
		t.Errorf("only %d bytes moved while the tracker was down (%.2fs..%.2fs)", moved, atDown.T, atUp.T)
	}
	if atUp.Complete == s.NumPeers() {
		t.Logf("every peer had completed before the tracker came back: a loaded machine; the rebuild is still checked")
	}
	// The swarm is rebuilt: the first sample after the restart in which
	// the tracker lists every live peer.
	rebuilt := -1.0
	for _, sm := range r.Series {
		if sm.T >= up.EndS && sm.TrackerPeers == sm.Live && sm.Live > 0 {
			rebuilt = sm.T - up.EndS
			break
		}
	}
	t.Logf("tracker down %.2fs..%.2fs, swarm rebuilt %.2fs after it came back", down.EndS, up.EndS, rebuilt)
	if rebuilt < 0 || rebuilt > 2*interval.Seconds() {
		for _, sm := range r.Series {
			if sm.T >= up.StartS {
				t.Logf("t=%.2f live %d tracker peers %d", sm.T, sm.Live, sm.TrackerPeers)
			}
		}
		t.Fatalf("swarm rebuilt after %.2fs, want within two announce intervals (%v)", rebuilt, 2*interval)
	}
}

// TestOriginRestart: the origin stops and starts again on its data
// directory mid-transfer; nothing is lost, every peer completes with an
// intact copy.
func TestOriginRestart(t *testing.T) {
	s := faultFleet(6)
	s.Events = []scenario.Event{{At: time.Second, Action: scenario.OriginRestart}}
	r, _ := runWith(t, s, Options{Verify: true})
	event(t, r, scenario.OriginRestart)
	if completed, _ := honestOutcome(t, r); completed != s.NumPeers() {
		t.Fatalf("%d of %d peers completed", completed, s.NumPeers())
	}
}

// TestStalledPeers: peers that accept requests and never answer (stall)
// and peers that answer at a trickle (slowloris: 64 kbit/s up) join a
// fleet. Request timeouts, suspicion (peer/sched) and endgame should move
// their requests elsewhere, so that the honest fleet's completion slows by
// no more than the share of the upload capacity those peers would have
// held had they been honest: at most the run without them × 1/(1-share),
// with 25% slack for a loaded machine. Both runs are in this test; only
// their ratio counts.
//
// It runs in `make testbed` (-testbed.large: 40 honest peers, 16 MiB;
// without the flag, the small fleet below). The small fleet is
// origin-bound (1 MB/s): the stalled and slowloris peers download
// honestly and take first copies from the origin, which nobody else can
// then get. Two rules keep that near their share: a chunk the origin keeps
// deferring escalates (peer/sched), and an escalated request marks the
// peer the origin sent the chunk to a hoarder, which the origin then
// defers while it has others to serve (peer.Config.ResendWindow). Small,
// five runs on a quiet machine: x1.54-2.07 against x2.02 allowed (x2.2-3.4
// before the rules), one over: too close to the line for `make test`
// under -race on 2 cores, so `make test` runs the same fleet simulated
// instead (testbed/sim TestStalledOriginBound, deterministic).
func TestStalledPeers(t *testing.T) {
	if testing.Short() || !*large && os.Getenv("P2PD_EMU_STALLED") == "" {
		t.Skip("run by make testbed (or with P2PD_EMU_STALLED=1 for the small fleet): emulated timing is too close to the bound for make test under -race; testbed/sim TestStalledOriginBound runs this fleet in make test")
	}
	base := faultFleet(6)
	base.Classes[0].Link.Up, base.Classes[0].Link.Down = 2_000_000, 2_000_000
	// The request timeout scaled to a run of seconds (10s by default, for
	// runs of minutes).
	o := Options{Tune: func(c *peer.Config) { c.RequestTimeout = time.Second }}
	_, b := runWith(t, base, o)
	bad := base
	link := base.Classes[0].Link
	slow := link
	slow.Up = units.Rate(8_000)
	bad.Classes = append(bad.Classes[:1:1],
		scenario.Class{Name: "stall", Count: 2, Link: link, Behavior: scenario.Stall},
		scenario.Class{Name: "slowloris", Count: 2, Link: slow})
	r, w := runWith(t, bad.WithDefaults(), o)
	// The honest peers of class "peer" only: the slowloris class is
	// honest but for its link.
	var maxS float64
	for _, p := range r.Peers {
		if p.Class == "peer" {
			if !p.Completed {
				t.Fatalf("%s did not complete: %s", p.Name, p.Err)
			}
			maxS = max(maxS, p.DoneS)
		}
	}
	// Had the four bad peers been honest, they would have held this share
	// of the upload capacity.
	k, n := 4.0, float64(base.NumPeers())
	share := k * float64(link.Up) / (float64(base.Origins.Up) + (n+k)*float64(link.Up))
	limit := b.MaxS / (1 - share) * 1.25
	t.Logf("without them: max %.2fs; with them: max %.2fs (x%.2f; p50 %.2fs vs %.2fs); their share %.0f%%: x%.2f, limit with slack %.2fs",
		b.MaxS, maxS, maxS/b.MaxS, w.P50S, b.P50S, 100*share, 1/(1-share), limit)
	if maxS > limit {
		t.Fatalf("the honest peers took %.2fs with stalled and slow peers, %.2fs without: more than %.2fs", maxS, b.MaxS, limit)
	}
}
