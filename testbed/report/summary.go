package report

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/p2pd/p2pd/internal/units"
	"github.com/p2pd/p2pd/testbed/result"
)

// PrintSummary writes s for a terminal, as `p2pctl testbed run` shows it:
// a line for the scenario, then an aligned table with one row for this
// run and one per baseline (peers, completed and failed, the bound, and
// p50, p99 and max with their ratios to the bound, origin egress in
// copies of the blob), then the pipeline term, the median chunk's spread
// (when measured), the host-bound flag and the fleet's start.
func PrintSummary(w io.Writer, s *result.Summary) {
	fmt.Fprintf(w, "scenario %s (%s), blob %s\n\n", s.Name, s.Mode, units.FormatSize(s.BlobBytes))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tPEERS\tCOMPLETED\tFAILED\tBOUND\tP50\tP99\tMAX\tORIGIN EGRESS")
	for _, r := range rows(s) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", r.Run, r.Peers, r.Completed, r.Failed, r.Bound, r.P50, r.P99, r.Max, r.Egr)
	}
	tw.Flush()
	if s.ChangedBytes > 0 {
		fmt.Fprintf(w, "\ndelta: %s changed, %s in changed chunks (the bound's F), %s moved: %.3f per peer over the changed bytes\n",
			units.FormatSize(s.ChangedBytes), units.FormatSize(s.ChangedChunkBytes), units.FormatSize(s.BytesMoved), s.MovedPerPeerOverChanged)
	}
	fmt.Fprintf(w, "\npipeline term %s (not in the bound); ratios are completion time / bound\n", secs(s.PipelineS))
	if t := spreadText(s); t != "" {
		fmt.Fprintf(w, "median chunk spread after its first copy: %s\n", t)
	}
	if s.HostBound {
		fmt.Fprintf(w, "host_bound: YES: the host's CPUs were %.0f%% busy and the testbed waited %.0f%% of their time for them; the machine, not the emulated links, set the pace, so these times overstate what the links allow\n", 100*s.HostBusy, 100*s.HostWait)
	} else {
		fmt.Fprintf(w, "host_bound: no (host CPUs %.0f%% busy, %.0f%% waited for)\n", 100*s.HostBusy, 100*s.HostWait)
	}
	if s.HostBusyStretchS > 0 {
		fmt.Fprintf(w, "the host set the pace for %s without a break, from %s into the run\n", secs(s.HostBusyStretchS), secs(s.HostBusyStretchAtS))
	}
	if s.FleetStartS > 0 {
		fmt.Fprintf(w, "the fleet started in %s before the clock (and the pulls) started\n", secs(s.FleetStartS))
	}
}
