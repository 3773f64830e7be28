// Package report turns a testbed run (a result.Result) into files a
// person or a script can read: the per-peer outcomes and the time series
// as CSV, the summary as JSON, the scenario as YAML, four SVG plots drawn
// by a small built-in plotter, and one self-contained HTML page that
// holds them all. PrintSummary is the terminal version of the summary.
package report

import (
	"bytes"
	"cmp"
	_ "embed"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"gopkg.in/yaml.v3"

	"github.com/p2pd/p2pd/internal/fsutil"
	"github.com/p2pd/p2pd/internal/units"
	"github.com/p2pd/p2pd/testbed/result"
	"github.com/p2pd/p2pd/testbed/scenario"
)

// The files Write creates in its directory.
const (
	PeersCSV       = "peers.csv"
	SeriesCSV      = "series.csv"
	SummaryJSON    = "summary.json"
	ScenarioYAML   = "scenario.yaml"
	CDFSVG         = "cdf.svg"
	RatioSVG       = "ratio_vs_n.svg"
	EgressSVG      = "egress.svg"
	ReplicationSVG = "replication.svg"
	SpreadCSV      = "spread.csv"
	SpreadSVG      = "spread.svg"
	ReportHTML     = "report.html"
)

// Write writes the report of r into dir, creating dir if needed: peers.csv,
// series.csv, summary.json, scenario.yaml, cdf.svg, ratio_vs_n.svg,
// egress.svg, replication.svg, report.html and, when the run measured
// how fast each chunk spread (result.Result.Spread), spread.csv and
// spread.svg. sweep, if not empty, holds
// the summaries of runs of the same scenario at several fleet sizes, for
// ratio_vs_n.svg; empty, that plot shows this run alone.
//
// Everything is rendered in memory first, so a result that cannot be
// rendered (a NaN in the summary, say) writes nothing. Each file is then
// written atomically (temp file, fsync, rename), report.html last: a
// reader never sees a half-written file, and once report.html is there so
// is the rest. A failure part way leaves the files written so far.
func Write(dir string, r *result.Result, sweep []*result.Summary) error {
	if r == nil {
		return errors.New("report: no result")
	}
	files, err := render(r, sweep)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	for _, f := range files {
		err := fsutil.WriteFileAtomic(filepath.Join(dir, f.name), 0o644, func(w io.Writer) error {
			_, err := w.Write(f.data)
			return err
		})
		if err != nil {
			return fmt.Errorf("report: %w", err)
		}
	}
	return nil
}

type file struct {
	name string
	data []byte
}

// render produces every file's bytes, in the order Write writes them.
func render(r *result.Result, sweep []*result.Summary) ([]file, error) {
	sum := r.Summarize()
	peers, err := peersCSV(r)
	if err != nil {
		return nil, err
	}
	series, err := seriesCSV(r)
	if err != nil {
		return nil, err
	}
	js, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("summary: %w", err)
	}
	var yb bytes.Buffer
	enc := yaml.NewEncoder(&yb)
	enc.SetIndent(2)
	if err := enc.Encode(r.Scenario); err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	type namedPlot struct {
		name string
		p    *plot
	}
	plots := []namedPlot{
		{CDFSVG, cdfPlot(r)},
		{RatioSVG, ratioPlot(r, sum, sweep)},
		{EgressSVG, egressPlot(r)},
		{ReplicationSVG, replicationPlot(r)},
	}
	files := []file{
		{PeersCSV, peers},
		{SeriesCSV, series},
		{SummaryJSON, append(js, '\n')},
		{ScenarioYAML, yb.Bytes()},
	}
	if len(r.Spread) > 0 {
		spread, err := spreadCSV(r)
		if err != nil {
			return nil, err
		}
		files = append(files, file{SpreadCSV, spread})
		plots = append(plots, namedPlot{SpreadSVG, spreadPlot(r)})
	}
	pg := newPage(r, sum, yb.String())
	for _, p := range plots {
		svg := p.p.svg()
		files = append(files, file{p.name, []byte(svg)})
		pg.Plots = append(pg.Plots, figure{File: p.name, SVG: template.HTML(svg)}) // plot.svg escapes all its text
	}
	var hb bytes.Buffer
	if err := pageTmpl.Execute(&hb, pg); err != nil {
		return nil, fmt.Errorf("report.html: %w", err)
	}
	return append(files, file{ReportHTML, hb.Bytes()}), nil
}

func fmtFloat(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func peersCSV(r *result.Result) ([]byte, error) {
	rows := [][]string{{"name", "class", "zone", "behavior", "join_s", "done_s", "completed", "failed", "left", "from_peers", "from_origins", "err"}}
	for _, p := range r.Peers {
		rows = append(rows, []string{p.Name, p.Class, p.Zone, string(p.Behavior), fmtFloat(p.JoinS), fmtFloat(p.DoneS),
			strconv.FormatBool(p.Completed), strconv.FormatBool(p.Failed), strconv.FormatBool(p.Left),
			strconv.FormatInt(p.FromPeers, 10), strconv.FormatInt(p.FromOrigins, 10), p.Err})
	}
	return csvBytes(PeersCSV, rows)
}

func seriesCSV(r *result.Result) ([]byte, error) {
	rows := [][]string{{"t", "origin_bytes", "peer_bytes", "complete", "live", "repl_min", "repl_mean", "repl_max"}}
	for _, s := range r.Series {
		rows = append(rows, []string{fmtFloat(s.T), strconv.FormatInt(s.OriginBytes, 10), strconv.FormatInt(s.PeerBytes, 10),
			strconv.Itoa(s.Complete), strconv.Itoa(s.Live), strconv.Itoa(s.ReplMin), fmtFloat(s.ReplMean), strconv.Itoa(s.ReplMax)})
	}
	return csvBytes(SeriesCSV, rows)
}

func spreadCSV(r *result.Result) ([]byte, error) {
	rows := [][]string{{"index", "first_s", "half_s", "p99_s", "held"}}
	for _, c := range r.Spread {
		rows = append(rows, []string{strconv.Itoa(c.Index), fmtFloat(c.FirstS), fmtFloat(c.HalfS), fmtFloat(c.P99S), strconv.FormatBool(c.Held)})
	}
	return csvBytes(SpreadCSV, rows)
}

func csvBytes(name string, rows [][]string) ([]byte, error) {
	var b bytes.Buffer
	if err := csv.NewWriter(&b).WriteAll(rows); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return b.Bytes(), nil
}

// counted reports whether p counts in completion times, as in Summarize:
// an honest peer that no event removed for good.
func counted(p result.Peer) bool { return p.Behavior == scenario.Honest && !p.Left }

// cdfCurve is the completion-time CDF of r's honest peers: the fraction
// of them complete against seconds after joining. Peers that failed stay
// in the denominator, so the curve then stops short of 1.
func cdfCurve(name string, r *result.Result) curve {
	var times []float64
	n := 0
	for _, p := range r.Peers {
		if !counted(p) {
			continue
		}
		n++
		if p.Completed {
			times = append(times, p.DoneS)
		}
	}
	slices.Sort(times)
	c := curve{name: name, step: true, pts: []point{{0, 0}}}
	for i, t := range times {
		c.pts = append(c.pts, point{t, float64(i+1) / float64(n)})
	}
	return c
}

func cdfPlot(r *result.Result) *plot {
	p := &plot{
		title:    "Completion time CDF, honest peers: " + r.Scenario.Name,
		xLabel:   "seconds after joining",
		yLabel:   "fraction of honest peers complete",
		curves:   []curve{cdfCurve(runName(r.Mode), r)},
		yInclude: []float64{0, 1},
	}
	for _, b := range r.Baselines {
		if b != nil {
			p.curves = append(p.curves, cdfCurve(b.Mode, b))
		}
	}
	if r.Bound.Seconds > 0 {
		p.refs = append(p.refs, refLine{name: fmt.Sprintf("bound %.2f s", r.Bound.Seconds), vertical: true, at: r.Bound.Seconds})
	}
	return p
}

// ratioPlot shows the p50 and p99 completion times over the bound against
// the number of honest peers, one point per run of sweep (or this run's
// own summary when sweep is empty).
func ratioPlot(r *result.Result, sum *result.Summary, sweep []*result.Summary) *plot {
	if len(sweep) == 0 {
		sweep = []*result.Summary{sum}
	}
	var runs []*result.Summary
	for _, s := range sweep {
		if s != nil && s.Peers > 0 && s.BoundS > 0 {
			runs = append(runs, s)
		}
	}
	slices.SortFunc(runs, func(a, b *result.Summary) int { return cmp.Compare(a.Peers, b.Peers) })
	p50 := curve{name: "p50 / bound", markers: true}
	p99 := curve{name: "p99 / bound", markers: true}
	for _, s := range runs {
		p50.pts = append(p50.pts, point{float64(s.Peers), s.RatioP50})
		p99.pts = append(p99.pts, point{float64(s.Peers), s.RatioP99})
	}
	return &plot{
		title:    "Completion time over the bound vs fleet size: " + r.Scenario.Name,
		xLabel:   "honest peers (N)",
		yLabel:   "completion time / bound",
		curves:   []curve{p50, p99},
		refs:     []refLine{{name: "bound (ratio 1)", at: 1}},
		logX:     len(runs) > 1 && runs[len(runs)-1].Peers >= 10*runs[0].Peers,
		yInclude: []float64{0},
	}
}

// byteUnit picks the binary unit in which n reads best.
func byteUnit(n int64) (float64, string) {
	div := 1.0
	for _, u := range []string{"B", "KiB", "MiB", "GiB"} {
		if float64(n) < 1024*div {
			return div, u
		}
		div *= 1024
	}
	return div, "TiB"
}

func egressPlot(r *result.Result) *plot {
	top := r.BlobBytes
	for _, s := range r.Series {
		top = max(top, s.OriginBytes, s.PeerBytes)
	}
	div, unit := byteUnit(top)
	origins := curve{name: "served by origins"}
	peers := curve{name: "served by peers"}
	for _, s := range r.Series {
		origins.pts = append(origins.pts, point{s.T, float64(s.OriginBytes) / div})
		peers.pts = append(peers.pts, point{s.T, float64(s.PeerBytes) / div})
	}
	p := &plot{
		title:    "Bytes served, cumulative: " + r.Scenario.Name,
		xLabel:   "seconds since the run began",
		yLabel:   "served (" + unit + ")",
		curves:   []curve{origins, peers},
		yInclude: []float64{0},
	}
	if r.BlobBytes > 0 {
		p.refs = []refLine{{name: "one blob (" + units.FormatSize(r.BlobBytes) + ")", at: float64(r.BlobBytes) / div}}
	}
	return p
}

func replicationPlot(r *result.Result) *plot {
	lo := curve{name: "min", step: true}
	mean := curve{name: "mean", step: true}
	hi := curve{name: "max", step: true}
	for _, s := range r.Series {
		lo.pts = append(lo.pts, point{s.T, float64(s.ReplMin)})
		mean.pts = append(mean.pts, point{s.T, s.ReplMean})
		hi.pts = append(hi.pts, point{s.T, float64(s.ReplMax)})
	}
	return &plot{
		title:    "Chunk replication over honest peers: " + r.Scenario.Name,
		xLabel:   "seconds since the run began",
		yLabel:   "honest peers holding a chunk",
		curves:   []curve{hi, mean, lo},
		yInclude: []float64{0},
	}
}

// spreadPlot draws, for each chunk by the time its first honest peer
// held it, how long it then took to reach half and 99% of them, against
// the bound's pipeline term. Chunks held from the start are left out.
func spreadPlot(r *result.Result) *plot {
	sp := slices.Clone(r.Spread)
	slices.SortStableFunc(sp, func(a, b result.ChunkSpread) int { return cmp.Compare(a.FirstS, b.FirstS) })
	half := curve{name: "to half the peers", markers: true}
	p99 := curve{name: "to 99% of them", markers: true}
	for _, c := range sp {
		if c.FirstS < 0 || c.Held {
			continue
		}
		if c.HalfS >= 0 {
			half.pts = append(half.pts, point{c.FirstS, c.HalfS - c.FirstS})
		}
		if c.P99S >= 0 {
			p99.pts = append(p99.pts, point{c.FirstS, c.P99S - c.FirstS})
		}
	}
	p := &plot{
		title:    "Chunk spread after its first copy: " + r.Scenario.Name,
		xLabel:   "when a chunk's first peer held it (s)",
		yLabel:   "seconds from then",
		curves:   []curve{half, p99},
		yInclude: []float64{0},
	}
	if r.Bound.Pipeline > 0 {
		p.refs = []refLine{{name: "pipeline term " + secs(r.Bound.Pipeline), at: r.Bound.Pipeline}}
	}
	return p
}

// runName labels this run's row and curve.
func runName(mode string) string { return "p2pd (" + mode + ")" }

// row is one run's line of the summary table, formatted.
type row struct {
	Run                       string
	Peers, Completed, Failed  int
	Bound, P50, P99, Max, Egr string
}

func secs(v float64) string { return fmt.Sprintf("%.2f s", v) }

func withRatio(v, ratio, bound float64) string {
	if bound <= 0 {
		return secs(v)
	}
	return fmt.Sprintf("%s (%.2fx)", secs(v), ratio)
}

func rowOf(run string, s *result.Summary) row {
	return row{
		Run: run, Peers: s.Peers, Completed: s.Completed, Failed: s.Failed,
		Bound: secs(s.BoundS),
		P50:   withRatio(s.P50S, s.RatioP50, s.BoundS),
		P99:   withRatio(s.P99S, s.RatioP99, s.BoundS),
		Max:   withRatio(s.MaxS, s.RatioMax, s.BoundS),
		Egr:   fmt.Sprintf("%.2f copies", s.OriginEgressCopies),
	}
}

// rows is s's table: this run, then its baselines by name.
func rows(s *result.Summary) []row {
	out := []row{rowOf(runName(s.Mode), s)}
	names := make([]string, 0, len(s.Baselines))
	for n := range s.Baselines {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if b := s.Baselines[n]; b != nil {
			out = append(out, rowOf(n, b))
		}
	}
	return out
}

// hostExplanation says in words what the host-bound flag means for r.
func hostExplanation(r *result.Result) string {
	if r.Scenario.Mode == scenario.ModeSim {
		return "Simulations run in virtual time: the host cannot set their pace."
	}
	busy := fmt.Sprintf("The host's CPUs were at least %.0f%% busy, or the testbed waited at least %.0f%% of their time for them, in %.0f%% of the sampling periods (%.0f%% busy and %.0f%% waited for overall); a run is flagged host-bound from %.0f%% of the periods.",
		100*result.HostBoundBusy, 100*result.HostBoundWait, 100*r.Host.BusySamples, 100*r.Host.Busy, 100*r.Host.Wait, 100*result.HostBoundShare)
	if r.Host.BusyStretchS > 0 {
		busy += fmt.Sprintf(" The longest stretch of such periods lasted %.1f s, from %.1f s into the run.", r.Host.BusyStretchS, r.Host.BusyStretchAtS)
	}
	pace := " The emulated links, not the machine, set the pace."
	if r.HostBound() {
		pace = " The machine running the testbed, not the emulated links, set the pace: the completion times overstate what the links allow. Rerun with fewer peers, on a larger machine, or in sim mode."
	}
	return busy + pace + startText(r)
}

// startText says how long the fleet took to start before the clock.
func startText(r *result.Result) string {
	if r.FleetStartS <= 0 {
		return ""
	}
	return fmt.Sprintf(" The peers that join at 0 started in %.1f s before the clock started; their pulls start with it.", r.FleetStartS)
}

// classRow is one class of peers in the per-class table.
type classRow struct {
	Name, Behavior                 string
	Count, Completed, Failed, Left int
	P50                            string
	times                          []float64
}

// classRows tallies r's peers by class, in the scenario's order of
// classes. P50 follows Summarize: over the peers that completed or
// failed, a failed one counting as finishing at the end of the run.
func classRows(r *result.Result) []classRow {
	var out []classRow
	idx := map[string]int{}
	add := func(name string, b scenario.Behavior) *classRow {
		i, ok := idx[name]
		if !ok {
			i = len(out)
			idx[name] = i
			out = append(out, classRow{Name: name, Behavior: string(b)})
		}
		return &out[i]
	}
	for _, c := range r.Scenario.Classes {
		add(c.Name, c.Behavior)
	}
	for _, p := range r.Peers {
		c := add(p.Class, p.Behavior)
		c.Count++
		switch {
		case p.Left:
			c.Left++
		case p.Completed:
			c.Completed++
			c.times = append(c.times, p.DoneS)
		case p.Failed:
			c.Failed++
			c.times = append(c.times, math.Inf(1))
		}
	}
	for i := range out {
		c := &out[i]
		slices.Sort(c.times)
		switch v := result.Quantile(c.times, 0.5); {
		case len(c.times) == 0:
			c.P50 = "-"
		case math.IsInf(v, 1):
			c.P50 = secs(r.Host.WallSeconds)
		default:
			c.P50 = secs(v)
		}
	}
	return out
}

// figure is one plot on the page.
type figure struct {
	File string
	SVG  template.HTML
}

// boundTerm is one term of the fluid bound.
type boundTerm struct {
	Name, Formula, Value string
	Binding              bool
}

// page is what report.html shows.
type page struct {
	Name, Mode, YAML string
	Blob             string
	Rows             []row
	Bound            string
	Terms            []boundTerm
	Pipeline         string
	// Spread is the median chunk's spread (Summary.SpreadHalfS and
	// SpreadP99S), formatted; empty when not measured.
	Spread      string
	HostBound   bool
	HostExplain string
	Classes     []classRow
	Plots       []figure
	// Delta is a delta run's figures (scenario blob.base), or nil.
	Delta *deltaView
}

// deltaView is a delta run's figures, formatted.
type deltaView struct {
	Changed, ChangedChunks, Moved, PerPeer string
}

func deltaOf(s *result.Summary) *deltaView {
	if s.ChangedBytes == 0 {
		return nil
	}
	return &deltaView{
		Changed:       fmt.Sprintf("%s (%d bytes)", units.FormatSize(s.ChangedBytes), s.ChangedBytes),
		ChangedChunks: fmt.Sprintf("%s (%.2fx the changed bytes)", units.FormatSize(s.ChangedChunkBytes), float64(s.ChangedChunkBytes)/float64(s.ChangedBytes)),
		Moved:         units.FormatSize(s.BytesMoved),
		PerPeer:       fmt.Sprintf("%.3f", s.MovedPerPeerOverChanged),
	}
}

func newPage(r *result.Result, s *result.Summary, yml string) *page {
	term := func(name, formula string, v float64) boundTerm {
		t := boundTerm{Name: name, Formula: formula, Value: "unlimited (dropped)", Binding: v > 0 && v == r.Bound.Seconds}
		if v > 0 {
			t.Value = secs(v)
		}
		return t
	}
	return &page{
		Name: r.Scenario.Name, Mode: r.Mode, YAML: yml,
		Blob:  units.FormatSize(r.BlobBytes),
		Rows:  rows(s),
		Bound: secs(r.Bound.Seconds),
		Terms: []boundTerm{
			term("origin upload", "F / u_s", r.Bound.OriginTerm),
			term("slowest download", "F / d_min", r.Bound.DownloadTerm),
			term("aggregate upload", "N·F / (u_s + Σu_i)", r.Bound.AggregateTerm),
		},
		Pipeline:    secs(r.Bound.Pipeline),
		Spread:      spreadText(s),
		HostBound:   s.HostBound,
		HostExplain: hostExplanation(r),
		Classes:     classRows(r),
		Delta:       deltaOf(s),
	}
}

// spreadText says how fast the median chunk spread, or "" if the run did
// not measure it.
func spreadText(s *result.Summary) string {
	if s.SpreadHalfS == 0 && s.SpreadP99S == 0 {
		return ""
	}
	p99 := "never"
	if s.SpreadP99S > 0 {
		p99 = secs(s.SpreadP99S)
	}
	return fmt.Sprintf("%s to half the peers, %s to 99%% of them", secs(s.SpreadHalfS), p99)
}

//go:embed report.html.tmpl
var pageSrc string

var pageTmpl = template.Must(template.New(ReportHTML).Parse(pageSrc))
