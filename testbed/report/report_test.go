package report

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/html"
	"gopkg.in/yaml.v3"

	"github.com/p2pd/p2pd/testbed/result"
	"github.com/p2pd/p2pd/testbed/scenario"
)

const evilName = "flash <script>alert(1)</script> & co"

// testResult builds a run of 100 peers: 90 honest in class "fast" (88
// complete at 1..88 s, one fails, one leaves) and 10 corrupt in "byz",
// against a 10 s bound, with a 60-sample series and an origin-only
// baseline whose 89 peers complete at 2, 4, ... 178 s.
//
// Summary: 89 honest peers counted, p50 45 s (4.5x), p99 and max the run's
// 120 s (12x); baseline p50 90 s (9x).
func testResult(t *testing.T) *result.Result {
	t.Helper()
	sc := scenario.Default()
	sc.Name = evilName
	sc.Classes = []scenario.Class{
		{Name: "fast", Count: 90, Link: sc.Origins.Link},
		{Name: "byz", Count: 10, Link: sc.Origins.Link, Behavior: scenario.Corrupt},
	}
	sc.Baselines = []string{"origin-only"}
	sc = sc.WithDefaults()
	if err := sc.Validate(); err != nil {
		t.Fatal(err)
	}
	const blob = 64 << 20
	r := &result.Result{
		Scenario: sc, Mode: "emu", BlobBytes: blob,
		Bound:             scenario.Bound{Seconds: 10, OriginTerm: 0.5, DownloadTerm: 0.5, AggregateTerm: 10, Pipeline: 0.25},
		OriginEgressBytes: 3 * blob / 2,
		Host:              result.Host{CPUSeconds: 40, WallSeconds: 120, Procs: 4, Busy: 0.42, BusySamples: 0.1},
	}
	for i := range 90 {
		p := result.Peer{Name: fmt.Sprintf("fast-%d", i), Class: "fast", Zone: "z1", Behavior: scenario.Honest, JoinS: 0.1,
			FromPeers: blob * 3 / 4, FromOrigins: blob / 4}
		switch i {
		case 88:
			p.Failed, p.Err = true, `timeout, "quoted"`
		case 89:
			p.Left = true
		default:
			p.Completed, p.DoneS = true, float64(i+1)
		}
		r.Peers = append(r.Peers, p)
	}
	for i := range 10 {
		r.Peers = append(r.Peers, result.Peer{Name: fmt.Sprintf("byz-%d", i), Class: "byz", Behavior: scenario.Corrupt, Failed: false})
	}
	for i := range 60 {
		f := float64(i) / 59
		r.Series = append(r.Series, result.Sample{
			T: 2*float64(i) + 2, OriginBytes: int64(f * 1.5 * blob), PeerBytes: int64(f * 88 * blob),
			Complete: int(f * 88), Live: 99, ReplMin: int(f * 80), ReplMean: f * 85, ReplMax: int(f * 89),
		})
	}
	b := &result.Result{Scenario: sc, Mode: "origin-only", Bound: r.Bound, BlobBytes: blob, OriginEgressBytes: 89 * blob}
	for i := range 89 {
		b.Peers = append(b.Peers, result.Peer{Name: fmt.Sprintf("fast-%d", i), Class: "fast", Behavior: scenario.Honest, Completed: true, DoneS: float64(2 * (i + 1))})
	}
	r.Baselines = []*result.Result{b}
	return r
}

func TestWrite(t *testing.T) {
	r := testResult(t)
	dir := filepath.Join(t.TempDir(), "out") // Write creates it
	if err := Write(dir, r, nil); err != nil {
		t.Fatal(err)
	}
	// Every file, and no temp file left over (names sorted).
	assertOnly(t, dir, CDFSVG, EgressSVG, PeersCSV, RatioSVG, ReplicationSVG, ReportHTML, ScenarioYAML, SeriesCSV, SummaryJSON)

	for _, tc := range []struct {
		file, header string
		rows         int // with the header
		// spot says what is wrong with a few chosen cells, or "".
		spot func(rows [][]string) string
	}{
		{PeersCSV, "name,class,zone,behavior,join_s,done_s,completed,failed,left,from_peers,from_origins,err", 101, func(rows [][]string) string {
			if got := rows[89]; got[0] != "fast-88" || got[7] != "true" || got[11] != `timeout, "quoted"` {
				return fmt.Sprintf("failed peer's row %q", got)
			}
			if got := rows[3]; got[5] != "3" || got[4] != "0.1" || got[6] != "true" || got[9] != fmt.Sprint(48<<20) {
				return fmt.Sprintf("peer row %q", got)
			}
			return ""
		}},
		{SeriesCSV, "t,origin_bytes,peer_bytes,complete,live,repl_min,repl_mean,repl_max", 61, func(rows [][]string) string {
			if last := rows[60]; last[0] != "120" || last[1] != fmt.Sprint(96<<20) || last[6] != "85" {
				return fmt.Sprintf("last sample %q", last)
			}
			return ""
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			rows := readCSV(t, filepath.Join(dir, tc.file))
			if len(rows) != tc.rows {
				t.Fatalf("%d rows, want %d with the header", len(rows), tc.rows)
			}
			if h := strings.Join(rows[0], ","); h != tc.header {
				t.Fatalf("header %s, want %s", h, tc.header)
			}
			if msg := tc.spot(rows); msg != "" {
				t.Fatal(msg)
			}
		})
	}
	t.Run("summary.json", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(dir, SummaryJSON))
		if err != nil {
			t.Fatal(err)
		}
		var got result.Summary
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if want := r.Summarize(); !reflect.DeepEqual(&got, want) {
			t.Fatalf("summary.json\n got %+v\nwant %+v", got, want)
		}
		if got.P50S != 45 || got.P99S != 120 || got.RatioP50 != 4.5 || got.Baselines["origin-only"].P50S != 90 {
			t.Fatalf("the fixture's summary moved: %+v", got)
		}
		if !bytes.Contains(b, []byte("\n  \"name\": ")) {
			t.Fatalf("not indented:\n%s", b)
		}
	})
	t.Run("scenario.yaml", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(dir, ScenarioYAML))
		if err != nil {
			t.Fatal(err)
		}
		got, err := scenario.Parse(b) // strict: the file is a loadable scenario
		if err != nil {
			t.Fatalf("%v\n%s", err, b)
		}
		// Compared as YAML: a nil list reads back empty.
		var again bytes.Buffer
		enc := yaml.NewEncoder(&again)
		enc.SetIndent(2)
		if err := enc.Encode(got); err != nil {
			t.Fatal(err)
		}
		if again.String() != string(b) || got.Name != evilName || got.Classes[1].Behavior != scenario.Corrupt {
			t.Fatalf("scenario.yaml does not round-trip:\n%s\nreads back as\n%s", b, again.String())
		}
	})
	for _, tc := range []struct {
		file   string
		curves int
		legend []string
	}{
		{CDFSVG, 2, []string{"p2pd (emu)", "origin-only", "bound 10.00 s"}},
		{RatioSVG, 2, []string{"p50 / bound", "p99 / bound", "bound (ratio 1)"}},
		{EgressSVG, 2, []string{"served by origins", "served by peers", "one blob (64.00 MiB)"}},
		{ReplicationSVG, 3, []string{"min", "mean", "max"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(dir, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			svg := parseSVG(t, b)
			if svg.curves != tc.curves {
				t.Errorf("%d curves, want %d", svg.curves, tc.curves)
			}
			if bytes.Contains(b, []byte("<script")) {
				t.Error("the scenario name is not escaped")
			}
			if !slices.ContainsFunc(svg.texts, func(s string) bool { return strings.HasSuffix(s, ": "+evilName) }) {
				t.Errorf("no title naming the scenario in %q", svg.texts)
			}
			for _, l := range tc.legend {
				if !slices.Contains(svg.texts, l) {
					t.Errorf("no legend entry %q in %q", l, svg.texts)
				}
			}
			if svg.ticks < 4 {
				t.Errorf("%d tick labels", svg.ticks)
			}
		})
	}
	t.Run("report.html", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(dir, ReportHTML))
		if err != nil {
			t.Fatal(err)
		}
		doc, err := html.Parse(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		count := map[string]int{}
		var pre, text strings.Builder
		for n := range doc.Descendants() {
			switch n.Type {
			case html.ElementNode:
				count[n.Data]++
				for _, a := range n.Attr {
					if a.Key == "href" || a.Key == "src" || strings.HasPrefix(a.Key, "on") {
						t.Errorf("<%s %s=%q>: the page must be self-contained, with no links or scripts", n.Data, a.Key, a.Val)
					}
				}
			case html.TextNode:
				text.WriteString(n.Data + "\n")
				if n.Parent != nil && n.Parent.Data == "pre" {
					pre.WriteString(n.Data)
				}
			}
		}
		if count["script"] != 0 || count["link"] != 0 || count["img"] != 0 || count["a"] != 0 {
			t.Errorf("elements %v: want no script, link, img or a", count)
		}
		if count["svg"] != 4 || count["path"] != 9 || count["style"] != 1 || count["table"] != 3 {
			t.Errorf("elements %v: want 4 inline svg with 9 curves, one style, 3 tables", count)
		}
		if !strings.Contains(pre.String(), "name: "+evilName) {
			t.Errorf("the scenario's YAML is not shown as text:\n%s", pre.String())
		}
		for _, s := range []string{
			"45.00 s (4.50x)", "120.00 s (12.00x)", "1.50 copies", // ours
			"90.00 s (9.00x)", "89.00 copies", // the baseline's
			"origin-only", "10.00 s", "0.25 s", "host_bound: no", "10% of the sampling periods",
			"aggregate upload (binding)", "N·F / (u_s + Σu_i)",
		} {
			if !strings.Contains(text.String(), s) {
				t.Errorf("report.html does not say %q", s)
			}
		}
		// Per class: fast has 90 peers, 88 complete, p50 45 s; byz 10
		// that neither complete nor fail.
		if !regexpRow(text.String(), "fast", "honest", "90", "88", "1", "1", "45.00 s") ||
			!regexpRow(text.String(), "byz", "corrupt", "10", "0", "0", "0", "-") {
			t.Errorf("class rows wrong:\n%s", text.String())
		}
	})
}

// regexpRow reports whether cells appear as consecutive text nodes.
func regexpRow(text string, cells ...string) bool {
	return strings.Contains(text, "\n"+strings.Join(cells, "\n")+"\n")
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

type svgDoc struct {
	curves, ticks, circles int
	texts                  []string
}

// parseSVG decodes b as XML, strictly, and counts its curves (<path> and
// <polyline>), markers and tick labels.
func parseSVG(t *testing.T, b []byte) svgDoc {
	t.Helper()
	var d svgDoc
	dec := xml.NewDecoder(bytes.NewReader(b))
	var stack []string
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not XML: %v\n%s", err, b)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if len(stack) == 0 && (tok.Name.Local != "svg" || tok.Name.Space != "http://www.w3.org/2000/svg") {
				t.Fatalf("root element %v", tok.Name)
			}
			stack = append(stack, tok.Name.Local)
			switch tok.Name.Local {
			case "path", "polyline":
				d.curves++
			case "circle":
				d.circles++
			}
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if s := strings.TrimSpace(string(tok)); s != "" && stack[len(stack)-1] == "text" {
				d.texts = append(d.texts, s)
				if _, err := fmt.Sscanf(s, "%g", new(float64)); err == nil {
					d.ticks++
				}
			}
		}
	}
	if len(stack) != 0 || d.texts == nil {
		t.Fatalf("unclosed elements %v or no text", stack)
	}
	return d
}

func TestRatioSweep(t *testing.T) {
	r := testResult(t)
	sweep := []*result.Summary{
		{Peers: 1000, BoundS: 10, RatioP50: 1.4, RatioP99: 2.1},
		{Peers: 20, BoundS: 10, RatioP50: 1.1, RatioP99: 1.3},
		{Peers: 200, BoundS: 10, RatioP50: 1.2, RatioP99: 1.6},
		{Peers: 50}, // no bound: left out
		nil,
	}
	p := ratioPlot(r, r.Summarize(), sweep)
	if !p.logX {
		t.Error("N spanning two decades is not on a log axis")
	}
	if got := p.curves[1].pts; !slices.Equal(got, []point{{20, 1.3}, {200, 1.6}, {1000, 2.1}}) {
		t.Errorf("p99 points %v, want sorted by N", got)
	}
	svg := parseSVG(t, []byte(p.svg()))
	if svg.curves != 2 || svg.circles != 6 {
		t.Errorf("%d curves, %d markers; want 2 and 6", svg.curves, svg.circles)
	}
	for _, l := range []string{"10", "100", "1000"} {
		if !slices.Contains(svg.texts, l) {
			t.Errorf("no log tick %q in %q", l, svg.texts)
		}
	}
	// Without a sweep: this run's single point.
	p = ratioPlot(r, r.Summarize(), nil)
	if p.logX || !slices.Equal(p.curves[0].pts, []point{{89, 4.5}}) {
		t.Errorf("single run: log %v, points %v", p.logX, p.curves[0].pts)
	}
}

func TestWriteFailures(t *testing.T) {
	t.Run("dir is a file", func(t *testing.T) {
		parent := t.TempDir()
		dir := filepath.Join(parent, "report")
		if err := os.WriteFile(dir, []byte("keep"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := Write(dir, testResult(t), nil); err == nil {
			t.Fatal("Write into a file succeeded")
		}
		assertOnly(t, parent, "report")
		if b, _ := os.ReadFile(dir); string(b) != "keep" {
			t.Fatalf("the file was changed: %q", b)
		}
	})
	t.Run("unrenderable result", func(t *testing.T) {
		dir := t.TempDir()
		r := testResult(t)
		r.Host.Busy = math.NaN() // summary.json cannot hold it
		if err := Write(dir, r, nil); err == nil {
			t.Fatal("Write of a NaN summary succeeded")
		}
		assertOnly(t, dir)
	})
	t.Run("file in the way", func(t *testing.T) {
		dir := t.TempDir()
		// A directory where series.csv goes: the rename fails after
		// peers.csv is written; no temp file may remain.
		if err := os.Mkdir(filepath.Join(dir, SeriesCSV), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := Write(dir, testResult(t), nil); err == nil {
			t.Fatal("Write over a directory succeeded")
		}
		assertOnly(t, dir, PeersCSV, SeriesCSV)
	})
}

// assertOnly fails unless dir holds exactly names.
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, names) {
		t.Fatalf("%s holds %v, want %v", dir, got, names)
	}
}

func TestPrintSummary(t *testing.T) {
	var b strings.Builder
	PrintSummary(&b, testResult(t).Summarize())
	out := b.String()
	lines := strings.Split(out, "\n")
	var header, ours, base string
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "RUN "):
			header = l
		case strings.HasPrefix(l, "p2pd (emu) "):
			ours = l
		case strings.HasPrefix(l, "origin-only "):
			base = l
		}
	}
	if header == "" || ours == "" || base == "" {
		t.Fatalf("want a header, a row for the run and one for the baseline:\n%s", out)
	}
	for _, c := range []struct{ col, ours, base string }{
		{"PEERS", "89", "89"},
		{"FAILED", "1", "0"},
		{"P50", "45.00 s (4.50x)", "90.00 s (9.00x)"},
		{"MAX", "120.00 s (12.00x)", "178.00 s (17.80x)"},
		{"ORIGIN EGRESS", "1.50 copies", "89.00 copies"},
	} {
		i := strings.Index(header, c.col)
		if i < 0 || !strings.HasPrefix(ours[i:], c.ours) || !strings.HasPrefix(base[i:], c.base) {
			t.Errorf("column %s: want %q and %q aligned under it:\n%s", c.col, c.ours, c.base, out)
		}
	}
	for _, s := range []string{"scenario " + evilName + " (emu), blob 64.00 MiB", "pipeline term 0.25 s", "host_bound: no (host CPUs 42% busy, 0% waited for)"} {
		if !strings.Contains(out, s) {
			t.Errorf("no %q in:\n%s", s, out)
		}
	}
	s := testResult(t).Summarize()
	s.HostBound = true
	b.Reset()
	PrintSummary(&b, s)
	if !strings.Contains(b.String(), "host_bound: YES") {
		t.Errorf("a host-bound run is not flagged:\n%s", b.String())
	}
	if strings.Contains(out, "chunk spread") {
		t.Errorf("a spread is printed for a run that measured none:\n%s", out)
	}
	s.SpreadHalfS, s.SpreadP99S = 6.5, 0
	b.Reset()
	PrintSummary(&b, s)
	if want := "median chunk spread after its first copy: 6.50 s to half the peers, never to 99% of them"; !strings.Contains(b.String(), want) {
		t.Errorf("no %q in:\n%s", want, b.String())
	}
}

func TestAxis(t *testing.T) {
	for _, tc := range []struct {
		name      string
		vs        []float64
		log, zero bool
		ticks     []float64
	}{
		{"seconds from zero", []float64{0.3, 9.2}, false, true, []float64{0, 2, 4, 6, 8, 10}},
		{"fraction", []float64{0, 1}, false, false, []float64{0, 0.2, 0.4, 0.6, 0.8, 1}},
		{"one value", []float64{5, 5}, false, false, []float64{4, 4.5, 5, 5.5, 6}},
		{"no data", nil, false, true, []float64{0, 0.2, 0.4, 0.6, 0.8, 1}},
		{"negative", []float64{-3, 7}, false, false, []float64{-4, -2, 0, 2, 4, 6, 8}},
		{"log", []float64{20, 1000}, true, false, []float64{10, 20, 50, 100, 200, 500, 1000}},
		{"log ignores non-positive", []float64{0, -1, 3, 8}, true, false, []float64{1, 2, 5, 10}},
		{"NaN and Inf ignored", []float64{math.NaN(), 1, 3, math.Inf(1)}, false, false, []float64{1, 1.5, 2, 2.5, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAxis(tc.vs, tc.log, tc.zero, 0, 100)
			if !slices.EqualFunc(a.ticks, tc.ticks, func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }) {
				t.Fatalf("ticks %v, want %v", a.ticks, tc.ticks)
			}
			first, last := a.ticks[0], a.ticks[len(a.ticks)-1]
			if math.Abs(a.px(first)) > 1e-9 || math.Abs(a.px(last)-100) > 1e-9 {
				t.Fatalf("ticks %v..%v map to %v..%v, want the axis ends", first, last, a.px(first), a.px(last))
			}
		})
	}
	if got := tickLabel(axis{ticks: []float64{0, 0.25, 0.5}}, 1); got != "0.25" {
		t.Errorf("tick label %q", got)
	}
}

// TestDeltaReport: a delta run's figures appear in report.html and in
// the terminal summary; a plain run shows no delta section.
func TestDeltaReport(t *testing.T) {
	r := testResult(t)
	r.Baselines = nil
	r.Delta = &result.Delta{ChangedBytes: 1 << 20, ChangedChunkBytes: 3 << 19}
	s := r.Summarize()
	// 90 fast peers with 64 MiB each, 10 byzantine with nothing.
	if want := 90.0 * 64 / 100; s.BytesMoved != 90*64<<20 || s.MovedPerPeerOverChanged != want {
		t.Fatalf("bytes moved %d, per peer over changed %v, want %v", s.BytesMoved, s.MovedPerPeerOverChanged, want)
	}
	dir := t.TempDir()
	if err := Write(dir, r, nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, ReportHTML))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<h2>Delta</h2>", "changed_chunk_bytes", "1.50 MiB (1.50x the changed bytes)", "57.600"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("report.html does not say %q", want)
		}
	}
	var out strings.Builder
	PrintSummary(&out, s)
	if !strings.Contains(out.String(), "delta: 1.00 MiB changed, 1.50 MiB in changed chunks") {
		t.Errorf("summary:\n%s", out.String())
	}
	r.Delta = nil
	if err := Write(dir, r, nil); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, ReportHTML)); strings.Contains(string(b), "<h2>Delta</h2>") {
		t.Error("a plain run's report has a delta section")
	}
}

// TestWriteSpread: a run that measured each chunk's spread also gets
// spread.csv, spread.svg and the median in report.html; a chunk that
// never reached 99% is written as -1 and left out of the plot.
func TestWriteSpread(t *testing.T) {
	r := testResult(t)
	r.Spread = []result.ChunkSpread{
		{Index: 0, FirstS: 2, HalfS: 12, P99S: 30},
		{Index: 1, FirstS: 4, HalfS: 10.5, P99S: -1},
		{Index: 2, FirstS: 0.25, HalfS: 0.25, P99S: 0.25, Held: true},
	}
	dir := t.TempDir()
	if err := Write(dir, r, nil); err != nil {
		t.Fatal(err)
	}
	assertOnly(t, dir, CDFSVG, EgressSVG, PeersCSV, RatioSVG, ReplicationSVG, ReportHTML, ScenarioYAML, SeriesCSV, SpreadCSV, SpreadSVG, SummaryJSON)
	rows := readCSV(t, filepath.Join(dir, SpreadCSV))
	if got := fmt.Sprint(rows); got != "[[index first_s half_s p99_s held] [0 2 12 30 false] [1 4 10.5 -1 false] [2 0.25 0.25 0.25 true]]" {
		t.Fatalf("spread.csv %s", got)
	}
	page, err := os.ReadFile(filepath.Join(dir, ReportHTML))
	if err != nil {
		t.Fatal(err)
	}
	// Medians: to half, 6.5 s and 10 s (nearest rank: 6.5 s); to 99%,
	// chunk 0's 28 s.
	if want := "6.50 s to half the peers, 28.00 s to 99% of them"; !strings.Contains(string(page), want) {
		t.Fatalf("report.html does not say %q", want)
	}
	svg, err := os.ReadFile(filepath.Join(dir, SpreadSVG))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(svg), "pipeline term 0.25 s") || !strings.Contains(string(svg), "to 99% of them") {
		t.Fatalf("spread.svg lacks its curves or the pipeline line:\n%s", svg)
	}
}
