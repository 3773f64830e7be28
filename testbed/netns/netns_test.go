package netns

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sync/errgroup"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/testbed"
	"github.com/p2pd/p2pd/testbed/emu"
	"github.com/p2pd/p2pd/testbed/result"
	"github.com/p2pd/p2pd/testbed/scenario"
)

var (
	compare     = flag.Bool("netns.compare", false, "run the same scenario in netns and emu modes and compare completion times (TestCompareWithEmu)")
	compareRuns = flag.Int("netns.compare.runs", 5, "runs of each mode in TestCompareWithEmu")
	maxHosts    = flag.Bool("netns.max", false, "run TestMaxHosts: 63 peers and an origin, the most netns mode runs (about 30 s; host-bound on 2 cores)")
)

// p2pdBin is the p2pd binary the tests run, built once by TestMain when
// netns mode can run here.
var p2pdBin string

func TestMain(m *testing.M) {
	flag.Parse()
	code := func() int {
		if Available() == nil {
			dir, err := os.MkdirTemp("", "p2pd-netns-test-")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer os.RemoveAll(dir)
			if p2pdBin, err = buildP2PD(context.Background(), dir); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		return m.Run()
	}()
	if code == 0 {
		if err := goleak.Find(testbed.IgnoredGoroutines()...); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// needNetns skips t unless netns mode can run here (root, ip, tc).
func needNetns(t *testing.T) {
	t.Helper()
	if err := Available(); err != nil {
		t.Skip(err)
	}
}

// ours lists the namespaces, and root-namespace links, named with the
// runs' prefix.
func ours(t *testing.T) []string {
	t.Helper()
	ns, err := namespaces(PrefixBase)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := links(PrefixBase)
	if err != nil {
		t.Fatal(err)
	}
	return append(ns, ls...)
}

// noLeftovers checks, when t ends, that no namespace or root-namespace
// link with the runs' prefix exists that did not exist when it started.
func noLeftovers(t *testing.T) {
	t.Helper()
	before := ours(t)
	t.Cleanup(func() {
		for _, n := range ours(t) {
			if !slices.Contains(before, n) {
				t.Errorf("%s left behind", n)
			}
		}
	})
}

// testLogger collects a run's log and prints it if the test fails.
func testLogger(t *testing.T) *slog.Logger {
	var mu sync.Mutex
	var buf bytes.Buffer
	w := writerFunc(func(b []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(b)
	})
	t.Cleanup(func() {
		if t.Failed() {
			mu.Lock()
			t.Logf("log:\n%s", buf.String())
			mu.Unlock()
		}
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func TestTBFParameters(t *testing.T) {
	if _, ok := tbfFor(0); ok {
		t.Fatal("a zero rate is unlimited: no qdisc")
	}
	for _, tc := range []struct {
		rate         int64
		burst, limit int64
	}{
		{2_500_000, 64 << 10, 64<<10 + 256<<10},                     // 20 Mbit/s: the floors
		{12_500_000, 125_000, 125_000 + 625_000},                    // 100 Mbit/s: 10 ms, 50 ms
		{125_000_000, 1_250_000, 1_250_000 + 6_250_000},             // 1 Gbit/s
		{1 << 41, tbfMaxRate / 100, tbfMaxRate/100 + tbfMaxRate/20}, // capped
	} {
		q, ok := tbfFor(tc.rate)
		if !ok || q.Burst != tc.burst || q.Limit != tc.limit {
			t.Errorf("tbfFor(%d) = %+v, want burst %d limit %d", tc.rate, q, tc.burst, tc.limit)
		}
	}
	if got, want := (tbf{Rate: 2_500_000, Burst: 65536, Limit: 327680}).args(), "tbf rate 20000000bit burst 65536 limit 327680"; got != want {
		t.Errorf("args = %q, want %q", got, want)
	}
}

func TestProcCPU(t *testing.T) {
	c, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if c < 0 || c > time.Hour {
		t.Fatalf("own CPU time %v", c)
	}
}

func TestWarnings(t *testing.T) {
	s := small()
	if w := Warnings(s); len(w) != 0 {
		t.Fatalf("latency 0: warnings %q", w)
	}
	s.Classes[0].Latency = time.Millisecond
	if w := Warnings(s); len(w) != 1 {
		t.Fatalf("latency on one class: warnings %q", w)
	}
}

func TestCleanupRefusesForeignPrefixes(t *testing.T) {
	for _, p := range []string{"", "p2", "p2t-", "p2t1234567", "eth", "p2tXYZ"} {
		if err := Cleanup(p); err == nil {
			t.Errorf("Cleanup(%q) accepted", p)
		}
	}
}

// testTopo creates the network of s, deleted when t ends.
func testTopo(t *testing.T, s scenario.Scenario) *topo {
	t.Helper()
	tp, err := newTopo(context.Background(), s, s.Expand())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tp.teardown(); err != nil {
			t.Error(err)
		}
	})
	return tp
}

// listenIn listens on TCP in h's namespace, on its address, until t ends.
func listenIn(t *testing.T, h *host) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := inNetns(h.ns, func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(h.addr.String(), "0"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// TestShapedLink: a TCP transfer between two hosts takes no less time
// than their tbf rates allow (less one burst), and the network is gone
// after teardown.
func TestShapedLink(t *testing.T) {
	needNetns(t)
	noLeftovers(t)
	const rate = 2_500_000 // 20 Mbit/s
	s := small()
	s.Classes[0].Count = 1
	s.Origins.Link = scenario.Link{Up: rate, Down: rate}
	tp := testTopo(t, s)
	origin, peer := tp.hosts[1], tp.hosts[2]
	ln := listenIn(t, peer)
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}()
	const size = 4 << 20
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := dialer{ns: origin.ns}.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := io.Copy(c, io.LimitReader(zeros{}, size)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if n := <-got; n != size {
		t.Fatalf("received %d bytes, want %d", n, size)
	}
	took := time.Since(start)
	q, _ := tbfFor(rate)
	floor := time.Duration(float64(size-2*q.Burst) / rate * float64(time.Second))
	t.Logf("%d bytes in %v: %.2f MB/s of payload through a %.2f MB/s link", size, took, size/took.Seconds()/1e6, float64(rate)/1e6)
	if took < floor {
		t.Errorf("%d bytes took %v, less than the %v the shaping allows", size, took, floor)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestTopologyAtMaxHosts: with the most hosts a run may have, every host
// reaches every other over TCP at once. This needs the permanent
// neighbour entries: the kernel's ARP table, shared by all namespaces,
// would overflow otherwise.
func TestTopologyAtMaxHosts(t *testing.T) {
	needNetns(t)
	noLeftovers(t)
	s := small()
	s.Classes[0].Count = scenario.MaxNetnsHosts - s.Origins.Count
	tp := testTopo(t, s)
	lns := make([]net.Listener, len(tp.hosts))
	for i, h := range tp.hosts {
		lns[i] = listenIn(t, h)
		go func() {
			for {
				c, err := lns[i].Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var g errgroup.Group
	g.SetLimit(8)
	for _, h := range tp.hosts {
		g.Go(func() error {
			var conns []net.Conn
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			for _, ln := range lns {
				if ln.Addr().(*net.TCPAddr).IP.String() == h.addr.String() {
					continue
				}
				c, err := dialer{ns: h.ns}.DialContext(ctx, "tcp", ln.Addr().String())
				if err != nil {
					return fmt.Errorf("%s to %s: %w", h.id, ln.Addr(), err)
				}
				conns = append(conns, c) // held, so that every pair is live at once
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

// TestCleanup: Cleanup, and scripts/netns-clean.sh, remove a run's
// namespaces and what is in them.
func TestCleanup(t *testing.T) {
	needNetns(t)
	noLeftovers(t)
	s := small()
	for _, clean := range []struct {
		name string
		f    func(prefix string) error
	}{
		{"Cleanup", Cleanup},
		{"scripts/netns-clean.sh", func(prefix string) error {
			out, err := exec.Command("../../scripts/netns-clean.sh", prefix).CombinedOutput()
			t.Logf("netns-clean.sh: %s", out)
			return err
		}},
	} {
		tp, err := newTopo(context.Background(), s, s.Expand())
		if err != nil {
			t.Fatal(err)
		}
		if ns, _ := namespaces(tp.prefix); len(ns) != len(tp.hosts)+1 {
			t.Fatalf("namespaces %v, want %d", ns, len(tp.hosts)+1)
		}
		// A process inside one of them, as a killed run leaves.
		sleeper := exec.Command("ip", "netns", "exec", tp.hosts[1].ns, "sleep", "60")
		if err := sleeper.Start(); err != nil {
			t.Fatal(err)
		}
		if err := clean.f(tp.prefix); err != nil {
			t.Fatalf("%s: %v", clean.name, err)
		}
		if err := sleeper.Wait(); err == nil {
			t.Errorf("%s: the process in the namespace was not killed", clean.name)
		}
		if ns, _ := namespaces(tp.prefix); len(ns) != 0 {
			t.Fatalf("namespaces %v left after %s", ns, clean.name)
		}
	}
}

// TestCancelAndPanic: a run whose context is cancelled, or whose caller
// panics in the middle, still stops every process and deletes its
// network.
func TestCancelAndPanic(t *testing.T) {
	needNetns(t)
	noLeftovers(t)
	s := small()
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		start := time.Now()
		r, err := Run(ctx, s, Options{P2PD: p2pdBin, Dir: t.TempDir(), Logger: testLogger(t), Verify: true,
			Progress: func(sm result.Sample) {
				if sm.T >= 1 {
					cancel()
				}
			}})
		t.Logf("cancelled run returned after %v: %v", time.Since(start).Round(time.Millisecond), err)
		if err == nil {
			if sum := r.Summarize(); sum.Completed == sum.Peers {
				t.Errorf("every peer completed although the run was cancelled at 1s: %+v", sum)
			}
		}
	})
	t.Run("panic", func(t *testing.T) {
		defer func() {
			if v := recover(); v != "boom" {
				t.Errorf("recovered %v, want the progress callback's panic", v)
			}
		}()
		Run(context.Background(), s, Options{P2PD: p2pdBin, Dir: t.TempDir(), Logger: testLogger(t),
			Progress: func(sm result.Sample) {
				if sm.T >= 1 {
					panic("boom")
				}
			}})
		t.Error("Run returned instead of panicking")
	})
}

// small is the scenario of TestRun: 4 peers and an origin on 20 Mbit/s
// links, an 8 MiB blob in 64 KiB chunks, no latency.
func small() scenario.Scenario {
	s := scenario.Default()
	s.Name = "netns-small"
	s.Mode = scenario.ModeNetns
	s.Blob = scenario.Blob{Size: 8 << 20, Chunker: chunker.Config{MinSize: 16 << 10, AvgSize: 64 << 10, MaxSize: 256 << 10}}
	link := scenario.Link{Up: 2_500_000, Down: 2_500_000}
	s.Origins = scenario.Origins{Count: 1, Link: link}
	s.Classes = []scenario.Class{{Name: "peer", Count: 4, Link: link}}
	s.Timeout = 2 * time.Minute
	return s.WithDefaults()
}

func run(t *testing.T, s scenario.Scenario) (*result.Result, *result.Summary) {
	t.Helper()
	var samples int
	start := time.Now()
	r, err := Run(context.Background(), s, Options{P2PD: p2pdBin, Dir: t.TempDir(), Logger: testLogger(t), Verify: true,
		Progress: func(result.Sample) { samples++ }})
	if err != nil {
		t.Fatal(err)
	}
	sum := r.Summarize()
	t.Logf("%+v (%v in all)", *sum, time.Since(start).Round(time.Millisecond))
	if samples == 0 || len(r.Series) != samples {
		t.Errorf("%d samples reported, %d in the series", samples, len(r.Series))
	}
	return r, sum
}

// TestRun: four real peers complete with verified copies; none beats the
// fluid bound (lower bounds only); the origin serves about one copy; no
// namespace or link is left behind.
func TestRun(t *testing.T) {
	needNetns(t)
	noLeftovers(t)
	s := small()
	r, sum := run(t, s)
	if sum.Completed != 4 || sum.Failed != 0 {
		for _, p := range r.Peers {
			t.Logf("%+v", p)
		}
		t.Fatalf("completed %d, failed %d of 4", sum.Completed, sum.Failed)
	}
	// F/d_min = 8 MiB at 2.5 MB/s ≈ 3.36 s, less the bucket's burst that
	// may arrive at once.
	q, _ := tbfFor(2_500_000)
	floor := sum.BoundS - float64(q.Burst)/2.5e6 - 0.05
	for _, p := range r.Peers {
		if p.DoneS < floor {
			t.Errorf("%s finished in %.2fs, faster than the bound %.2fs allows", p.Name, p.DoneS, sum.BoundS)
		}
		if p.FromPeers+p.FromOrigins < int64(s.Blob.Size) {
			t.Errorf("%s received %d bytes of %d", p.Name, p.FromPeers+p.FromOrigins, s.Blob.Size)
		}
	}
	if sum.OriginEgressCopies > 2 {
		t.Errorf("origin served %.2f copies", sum.OriginEgressCopies)
	}
	last := r.Series[len(r.Series)-1]
	if last.Complete != 4 || last.Live != 4 || last.OriginBytes+last.PeerBytes < 4*int64(s.Blob.Size) {
		t.Errorf("last sample %+v", last)
	}
	if last.ReplMin < 1 {
		t.Errorf("replication at the end %+v", last)
	}
	if r.Host.CPUSeconds <= 0 {
		t.Errorf("host %+v: the processes' CPU time is not counted", r.Host)
	}
}

// TestChurn: a peer killed (SIGKILL) and one that leaves (SIGTERM) count
// as left; a peer that leaves and joins again completes on the same data
// directory.
func TestChurn(t *testing.T) {
	needNetns(t)
	noLeftovers(t)
	s := small()
	s.Classes = []scenario.Class{
		{Name: "peer", Count: 2, Link: s.Classes[0].Link},
		{Name: "crash", Count: 1, Link: s.Classes[0].Link},
		{Name: "back", Count: 1, Link: s.Classes[0].Link},
	}
	s.Events = []scenario.Event{
		{At: time.Second, Action: "kill", Count: 1, Class: "crash", Incomplete: true},
		{At: time.Second, Action: "leave", Count: 1, Class: "back", Incomplete: true},
		{At: 2 * time.Second, Action: "join", Count: 1, Class: "back"},
	}
	s = s.WithDefaults()
	r, sum := run(t, s)
	byName := map[string]result.Peer{}
	for _, p := range r.Peers {
		byName[p.Name] = p
	}
	if p := byName["crash-0"]; !p.Left || p.Failed || p.Completed {
		t.Errorf("killed peer %+v, want left", p)
	}
	// Its byte counts may miss the last chunks of its first run, whose
	// progress the leave cut short.
	if p := byName["back-0"]; !p.Completed || p.FromPeers+p.FromOrigins == 0 {
		t.Errorf("peer that came back %+v, want completed", p)
	}
	if sum.Peers != 3 || sum.Completed != 3 {
		for _, p := range r.Peers {
			t.Logf("%+v", p)
		}
		t.Fatalf("peers %d, completed %d; want 3, 3", sum.Peers, sum.Completed)
	}
}

// TestMaxHosts runs the most processes netns mode allows: 63 peers and
// an origin (and the tracker), 16 MiB in 256 KiB chunks on 100 Mbit/s
// links. Every peer completes with a verified copy. On 2 cores the run is
// host-bound, so it says nothing about timing; it runs only when asked:
//
//	go test ./testbed/netns -run TestMaxHosts -netns.max -count=1 -v
func TestMaxHosts(t *testing.T) {
	if !*maxHosts {
		t.Skip("64 processes: run with -netns.max")
	}
	needNetns(t)
	noLeftovers(t)
	s := small()
	s.Blob = scenario.Blob{Size: 16 << 20, Chunk: 256 << 10}
	link := scenario.Link{Up: 12_500_000, Down: 12_500_000}
	s.Origins.Link = link
	s.Classes[0].Count = scenario.MaxNetnsHosts - s.Origins.Count
	s.Classes[0].Link = link
	r, sum := run(t, s.WithDefaults())
	if sum.Completed != sum.Peers || sum.Peers != scenario.MaxNetnsHosts-1 {
		for _, p := range r.Peers {
			if !p.Completed {
				t.Logf("%+v", p)
			}
		}
		t.Fatalf("completed %d of %d", sum.Completed, sum.Peers)
	}
}

// TestUnsupported: byzantine classes are refused before anything starts.
func TestUnsupported(t *testing.T) {
	s := small()
	s.Classes = append(s.Classes, scenario.Class{Name: "liar", Count: 1, Link: s.Classes[0].Link, Behavior: scenario.Liar})
	if _, err := Run(context.Background(), s.WithDefaults(), Options{}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Run with a liar class: %v, want ErrUnsupported", err)
	}
}

// compareScenario is the scenario both modes run in TestCompareWithEmu,
// testbed/scenarios/netns-small.yaml: 8 peers and an origin on 100 Mbit/s links,
// no latency, a 32 MiB blob in 1 MiB chunks.
func compareScenario(t *testing.T) scenario.Scenario {
	s, err := scenario.Load("../scenarios/netns-small.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestCompareWithEmu checks the emulation against real processes at small
// N: the same scenario in both modes, alternately, compareRuns times
// each; the medians over the runs of each mode's p50, p99 and max
// completion times must agree within 15%. A single run of either mode
// varies by up to ±15% on its own, hence the medians. Timing on a shared
// machine varies, so it runs only when asked:
//
//	go test ./testbed/netns -run TestCompareWithEmu -netns.compare -count=1 -v
func TestCompareWithEmu(t *testing.T) {
	if !*compare {
		t.Skip("timing comparison: run with -netns.compare")
	}
	needNetns(t)
	noLeftovers(t)
	s := compareScenario(t)
	modes := []struct {
		name string
		run  func() (*result.Result, error)
		sums []*result.Summary
	}{
		{name: "netns", run: func() (*result.Result, error) {
			return Run(context.Background(), s, Options{P2PD: p2pdBin, Dir: t.TempDir(), Logger: testLogger(t)})
		}},
		{name: "emu", run: func() (*result.Result, error) {
			return emu.Run(context.Background(), s, emu.Options{Dir: t.TempDir()})
		}},
	}
	t.Logf("scenario: %d peers, 1 origin, %d MiB blob, %d KiB chunks, links %.0f Mbit/s, latency 0; bound %.3fs (pipeline %.3fs)",
		s.NumPeers(), s.Blob.Size>>20, s.Blob.Chunker.AvgSize>>10, float64(s.Origins.Up)*8/1e6, s.Bound().Seconds, s.Bound().Pipeline)
	for i := range *compareRuns {
		for j := range modes {
			m := &modes[j]
			r, err := m.run()
			if err != nil {
				t.Fatalf("%s run %d: %v", m.name, i, err)
			}
			sum := r.Summarize()
			t.Logf("run %d %-5s completed %d/%d p50 %.3fs p99 %.3fs max %.3fs origin copies %.2f host busy %.2f host_bound %v",
				i, m.name, sum.Completed, sum.Peers, sum.P50S, sum.P99S, sum.MaxS, sum.OriginEgressCopies, sum.HostBusy, sum.HostBound)
			if sum.Completed != sum.Peers {
				t.Fatalf("%s run %d: %d of %d peers completed", m.name, i, sum.Completed, sum.Peers)
			}
			m.sums = append(m.sums, sum)
		}
	}
	median := func(sums []*result.Summary, f func(*result.Summary) float64) float64 {
		var v []float64
		for _, s := range sums {
			v = append(v, f(s))
		}
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	for _, c := range []struct {
		name string
		f    func(*result.Summary) float64
	}{
		{"p50", func(s *result.Summary) float64 { return s.P50S }},
		{"p99", func(s *result.Summary) float64 { return s.P99S }},
		{"max", func(s *result.Summary) float64 { return s.MaxS }},
	} {
		n, e := median(modes[0].sums, c.f), median(modes[1].sums, c.f)
		ratio := n / e
		t.Logf("median %s: netns %.3fs emu %.3fs netns/emu %.3f", c.name, n, e, ratio)
		if ratio < 0.85 || ratio > 1.15 {
			t.Errorf("median %s: netns %.3fs vs emu %.3fs: ratio %.3f, not within 15%%", c.name, n, e, ratio)
		}
	}
}
