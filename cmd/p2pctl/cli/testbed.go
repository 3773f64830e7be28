package cli

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/p2pd/p2pd/internal/progress"
	"github.com/p2pd/p2pd/internal/units"
	"github.com/p2pd/p2pd/testbed/report"
	"github.com/p2pd/p2pd/testbed/result"
	tbrun "github.com/p2pd/p2pd/testbed/run"
	"github.com/p2pd/p2pd/testbed/scenario"
)

func newTestbedCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "testbed",
		Short: "Emulate or simulate a fleet and measure fan-out against the physical limit",
		Long: `testbed runs scenarios: a blob, origins, a fleet of peers in capacity classes
with emulated links (upload, download, latency, jitter, loss), late joiners,
churn and byzantine peers. Every run is compared with the Kumar-Ross fluid
lower bound T_min = max(F/u_s, F/d_min, N·F/(u_s + Σu_i)); see docs/testbed.md.`,
	}
	cmd.AddCommand(newTestbedRunCmd(g))
	return cmd
}

func newTestbedRunCmd(g *globals) *cobra.Command {
	var (
		out, dir, p2pd                   string
		peers                            int
		blobSize, peerUp, peerDown, orUp string
		latency                          time.Duration
		seed                             uint64
		mode                             string
		sweep                            []int
	)
	cmd := &cobra.Command{
		Use:   "run [SCENARIO.yaml]",
		Short: "Run a scenario (default: a 20-peer flash crowd on 1 Gbit/s links) and report",
		Long: `run runs a scenario in one of three modes:

  emu    (default) tracker, origins and peers in this process, built as p2pd
         builds them, over real loopback sockets and the real data plane;
         each host's link is shaped in its transport.
  netns  real p2pd processes, one network namespace each, links shaped with
         tc tbf (needs root; at most 64 hosts).
  sim    the tracker's hand-out and the peers' scheduler in virtual time, no
         sockets and no bytes: 100,000 peers fit.

Without a file it runs the built-in flash crowd; the shipped scenarios are
in testbed/scenarios/ (fanout-100, fanout-1000, heterogeneous, churn-10pct,
byzantine-5pct, late-joiners, two-zones, nightly-backup-delta, sim-100k...),
each saying at its top what it shows. Flags override the file:
--peers resizes the fleet (every class in proportion), --peer-up, --peer-down
and --latency apply to every class, --origin-up to the origins. Rates take
bits ("1Gbit", "100Mbit") or bytes ("125MB/s").

A progress line shows the bytes delivered, peers complete and origin egress
(on a terminal). The summary gives p50, p99 and max completion as ratios to
the bound, origin egress in copies of the blob, and host_bound: whether this
machine's CPUs rather than the emulated links set the pace (then the ratios
say more about the machine than about p2pd). Baselines listed in the
scenario run after it on the same links.

--out DIR writes peers.csv, series.csv, summary.json, scenario.yaml, four SVG
plots and a self-contained report.html.

--sweep N1,N2,... runs the scenario once per fleet size (resized as --peers
does) and plots completion time over the bound against N; the report and the
summary are those of the last size, with every size's summary under "sweep"
in the JSON.`,
		Example: `  p2pctl testbed run
  p2pctl testbed run --peers 50 --blob-size 128MiB --peer-up 100Mbit --latency 5ms --out /tmp/run1
  p2pctl testbed run testbed/scenarios/churn-10pct.yaml --json
  p2pctl testbed run testbed/scenarios/nightly-backup-delta.yaml --mode sim --json
  p2pctl testbed run --mode sim --peers 100000 --blob-size 1GiB`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s := scenario.Default()
			if len(args) == 1 {
				var err error
				if s, err = scenario.Load(args[0]); err != nil {
					return usageError{err}
				}
			}
			var o scenario.Overrides
			f := cmd.Flags()
			if f.Changed("peers") {
				o.Peers = &peers
			}
			if f.Changed("seed") {
				o.Seed = &seed
			}
			if f.Changed("latency") {
				o.Latency = &latency
			}
			if f.Changed("mode") {
				m := scenario.Mode(mode)
				o.Mode = &m
			}
			if f.Changed("blob-size") {
				n, err := units.ParseSize(blobSize)
				if err != nil {
					return usageError{err}
				}
				o.BlobSize = &n
			}
			for _, r := range []struct {
				name string
				val  string
				dst  **units.Rate
			}{{"peer-up", peerUp, &o.PeerUp}, {"peer-down", peerDown, &o.PeerDown}, {"origin-up", orUp, &o.OriginUp}} {
				if !f.Changed(r.name) {
					continue
				}
				n, err := units.ParseRate(r.val)
				if err != nil {
					return usagef("--%s: %v", r.name, err)
				}
				rate := units.Rate(n)
				*r.dst = &rate
			}
			base, err := o.Apply(s)
			if err != nil {
				return usageError{err}
			}
			sizes := sweep
			if len(sizes) == 0 {
				sizes = []int{base.NumPeers()}
			}
			var (
				r    *result.Result
				sums []*result.Summary
			)
			for _, n := range sizes {
				s, err := scenario.Overrides{Peers: &n}.Apply(base)
				if err != nil {
					return usageError{fmt.Errorf("--sweep %d: %w", n, err)}
				}
				if r, err = runOne(cmd, g, s, dir, p2pd); err != nil {
					return err
				}
				sums = append(sums, r.Summarize())
			}
			sum := sums[len(sums)-1]
			if out != "" {
				if err := report.Write(out, r, sums); err != nil {
					return err
				}
			}
			if g.json {
				if len(sweep) > 0 {
					return g.printJSON(struct {
						*result.Summary
						Sweep []*result.Summary `json:"sweep"`
					}{sum, sums})
				}
				return g.printJSON(sum)
			}
			if len(sweep) > 0 {
				for _, s := range sums[:len(sums)-1] {
					report.PrintSummary(g.stdout, s)
					fmt.Fprintln(g.stdout)
				}
			}
			report.PrintSummary(g.stdout, sum)
			if out != "" {
				fmt.Fprintf(g.stdout, "report: %s/%s\n", out, report.ReportHTML)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "write CSVs, plots and report.html to this directory")
	f.StringVar(&dir, "dir", "", "where emulated nodes keep their data (default /dev/shm when present)")
	f.IntVar(&peers, "peers", scenario.DefaultPeers, "number of peers")
	f.StringVar(&blobSize, "blob-size", "64MiB", "blob size")
	f.StringVar(&peerUp, "peer-up", "1Gbit", "peer upload capacity")
	f.StringVar(&peerDown, "peer-down", "1Gbit", "peer download capacity")
	f.StringVar(&orUp, "origin-up", "1Gbit", "origin upload capacity (all origins each)")
	f.DurationVar(&latency, "latency", scenario.DefaultLatency, "one-way latency added to every host")
	f.Uint64Var(&seed, "seed", 1, "seed for the blob, the jitter and the simulation")
	f.StringVar(&mode, "mode", string(scenario.ModeEmu), "emu, netns or sim")
	f.IntSliceVar(&sweep, "sweep", nil, "run once per fleet size, e.g. 10,20,50,100")
	f.StringVar(&p2pd, "p2pd", "", "p2pd binary for --mode netns (default: p2pd next to p2pctl, else built from the module here)")
	return cmd
}

// runOne runs s with a progress line per stage (the main run, then each
// baseline) on a terminal.
func runOne(cmd *cobra.Command, g *globals, s scenario.Scenario, dir, p2pd string) (*result.Result, error) {
	total := int64(s.NumPeers()) * int64(s.Blob.Size)
	var bar *progress.Bar
	if p2pd == "" {
		p2pd = siblingP2PD()
	}
	opts := tbrun.Options{
		Dir:    dir,
		P2PD:   p2pd,
		Logger: slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Stage: func(name string) {
			bar.Finish()
			bar = progress.New(g.stderr, fmt.Sprintf("%s N=%d", name, s.NumPeers()), total, g.quiet || g.json)
		},
		Progress: func(sm result.Sample) {
			bar.Set(sm.OriginBytes+sm.PeerBytes, fmt.Sprintf("%d/%d complete, origin %.2f copies",
				sm.Complete, s.NumPeers(), float64(sm.OriginBytes)/float64(s.Blob.Size)))
		},
	}
	r, err := tbrun.Run(cmd.Context(), s, opts)
	bar.Finish()
	return r, err
}

// siblingP2PD returns the p2pd binary next to this executable, or "" (netns
// mode then builds one).
func siblingP2PD() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	p := filepath.Join(filepath.Dir(exe), "p2pd")
	if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
		return p
	}
	return ""
}
