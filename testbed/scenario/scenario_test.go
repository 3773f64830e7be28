package scenario

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/p2pd/p2pd/internal/units"
)

func TestParse(t *testing.T) {
	s, err := Parse([]byte(`
name: mixed
mode: sim
seed: 7
blob: {size: 1GiB, chunk: 256KiB}
origins: {count: 2, up: 1Gbit, down: 1Gbit, latency: 2ms}
classes:
  - {name: fast, count: 90, up: 1Gbit, down: 1Gbit, latency: 1ms, zones: [a, b], racks: 2}
  - {name: slow, count: 10, up: 100Mbit, down: 200Mbit, join_at: 5s, join_spread: 9s}
  - {name: bad, count: 2, up: 1Gbit, down: 1Gbit, behavior: corrupt}
events:
  - {at: 10s, action: kill, fraction: 0.2, class: fast, incomplete: true}
baselines: [origin-only]
`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Mode != ModeSim || s.Seed != 7 || s.Blob.Size != 1<<30 || s.NumPeers() != 102 || s.NumHonest() != 100 || s.Timeout != DefaultTimeout ||
		s.Blob.Chunker.AvgSize != 256<<10 || s.Blob.Chunker.MinSize != 64<<10 || s.Blob.Chunker.MaxSize != 1<<20 {
		t.Fatalf("parsed %+v", s)
	}
	peers := s.Expand()
	if len(peers) != 102 || peers[0].Zone != "a" || peers[1].Zone != "b" || peers[2].Rack != "r1" {
		t.Fatalf("expand: %+v %+v %+v", peers[0], peers[1], peers[2])
	}
	slow := peers[90:100]
	if slow[0].JoinAt != 5*time.Second || slow[9].JoinAt != 14*time.Second || slow[0].Link.Up != 12_500_000 {
		t.Fatalf("slow joiners: %+v ... %+v", slow[0], slow[9])
	}
	if peers[101].Behavior != Corrupt || peers[0].Behavior != Honest {
		t.Fatal("behaviors not expanded")
	}
}

func TestParseErrors(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown key":      "peers: 3\n",
		"bad mode":         "mode: fast\n",
		"bad rate":         "origins: {count: 1, up: quick}\n",
		"no origin":        "origins: {count: 0, up: 1Gbit}\n",
		"no origin upload": "origins: {count: 1, up: 0}\n",
		"loss":             "classes: [{name: a, count: 1, loss: 1}]\n",
		"dup class":        "classes: [{name: a, count: 1}, {name: a, count: 1}]\n",
		"class traversal":  "classes: [{name: ../../etc, count: 1}]\n",
		"class dot-dot":    "classes: [{name: .., count: 1}]\n",
		"class slash":      "classes: [{name: a/b, count: 1}]\n",
		"only byzantine":   "classes: [{name: a, count: 3, behavior: liar}]\n",
		"event count":      "events: [{at: 1s, action: kill}]\n",
		"event class":      "events: [{at: 1s, action: kill, count: 1, class: nope}]\n",
		"event action":     "events: [{at: 1s, action: explode, count: 1}]\n",
		"baseline":         "baselines: [carrier-pigeon]\n",
		"netns size":       "mode: netns\nclasses: [{name: a, count: 64}]\n",
		"two documents":    "seed: 1\n---\nseed: 2\n",
	} {
		if _, err := Parse([]byte(doc)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Parse = %v, want ErrInvalid", name, err)
		}
	}
}

func TestBound(t *testing.T) {
	// Kraken's published run: 3 GB to 2,600 hosts at 300 MB/s. With the
	// origin at the same 300 MB/s, the aggregate term is
	// 2600·3e9/(300e6·2601) ≈ 10.0 s, which is what makes p50 = 10 s
	// "≈ 1.0× the bound".
	s := Default()
	s.Blob.Size = 3_000_000_000
	s.Origins = Origins{Count: 1, Link: Link{Up: 300_000_000, Down: 300_000_000}}
	s.Classes = []Class{{Name: "host", Count: 2600, Behavior: Honest, Link: Link{Up: 300_000_000, Down: 300_000_000}}}
	s = s.WithDefaults()
	b := s.Bound()
	if math.Abs(b.Seconds-10) > 0.01 || b.OriginTerm != 10 || b.DownloadTerm != 10 {
		t.Fatalf("Kraken bound = %+v, want 10 s", b)
	}
	// Kraken's run had 5 origins: the origin term falls to 2 s, and the
	// bound stays 10 s, set by the hosts' download and the crowd's upload.
	s.Origins.Count = 5
	if b := s.Bound(); math.Abs(b.Seconds-10) > 0.01 || b.OriginTerm != 2 || b.DownloadTerm != 10 {
		t.Fatalf("Kraken bound with 5 origins = %+v, want 10 s with an origin term of 2 s", b)
	}
	s.Origins.Count = 1
	// The origin is the bottleneck when it is slow.
	s.Origins.Up = 30_000_000
	if b := s.Bound(); b.Seconds != 100 {
		t.Fatalf("slow origin: %+v, want 100 s", b)
	}
	// Byzantine peers count for nothing; a slow class sets d_min.
	s.Origins.Up = 300_000_000
	s.Classes = append(s.Classes, Class{Name: "slow", Count: 1, Behavior: Honest, Link: Link{Up: 300_000_000, Down: 100_000_000}},
		Class{Name: "bad", Count: 1000, Behavior: Liar, Link: Link{Up: 1e12, Down: 1e12}})
	if b := s.Bound(); b.Seconds != 30 || b.DownloadTerm != 30 {
		t.Fatalf("with a slow class: %+v, want 30 s", b)
	}
	if b.Pipeline <= 0 {
		t.Fatalf("pipeline term %v", b.Pipeline)
	}
}

func TestOverrides(t *testing.T) {
	s := Default()
	s.Classes = append(s.Classes, Class{Name: "slow", Count: 5, Link: Link{Up: 1, Down: 1}})
	n, size, up := 100, int64(1<<20), units.Rate(1000)
	lat := 3 * time.Millisecond
	mode := ModeSim
	got, err := Overrides{Peers: &n, BlobSize: &size, PeerUp: &up, Latency: &lat, Mode: &mode}.Apply(s)
	if err != nil {
		t.Fatal(err)
	}
	if got.NumPeers() != 100 || got.Classes[1].Count != 20 || got.Blob.Size != 1<<20 || got.Classes[1].Up != 1000 ||
		got.Origins.Latency != lat || got.Mode != ModeSim || got.Classes[0].Down != DefaultRate {
		t.Fatalf("applied: %+v", got)
	}
	if s.Classes[1].Count != 5 {
		t.Fatal("Apply changed its input")
	}
	zero := 0
	if _, err := (Overrides{Peers: &zero}).Apply(Default()); !errors.Is(err, ErrInvalid) {
		t.Fatalf("zero peers: %v", err)
	}
}

// TestShippedScenarios: every file in testbed/scenarios/ parses and
// validates, has a bound, and cuts its blob into at least 128 chunks (so
// that the chunk pipeline costs under 8% at N=1000); the nine scenarios
// issue 4 names are there. The count is the chunker's, on the scenario's
// bytes: a content-defined cut makes fewer chunks than size/average (a
// 4 MiB blob at 32 KiB: 111). Blobs over countLimit are not read (the
// race detector makes the chunker slow); they must make twice 128 by
// size/average instead.
func TestShippedScenarios(t *testing.T) {
	files, err := filepath.Glob("../scenarios/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios found: %v", err)
	}
	// Older scenarios whose figures in docs/benchmarks.md were measured
	// with fewer, larger chunks; changing them would orphan the figures.
	fewChunks := map[string]bool{"validate-100.yaml": true, "netns-small.yaml": true}
	have := map[string]bool{}
	for _, f := range files {
		name := filepath.Base(f)
		have[name] = true
		s, err := Load(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if b := s.Bound(); b.Seconds <= 0 {
			t.Errorf("%s: bound %+v", f, b)
		}
		if !fewChunks[name] {
			checkChunks(t, name, s)
		}
		if s.Name+".yaml" != name {
			t.Errorf("%s: named %q, want the file's name", f, s.Name)
		}
	}
	for _, name := range []string{
		"fanout-100.yaml", "fanout-1000.yaml", "heterogeneous.yaml", "churn-10pct.yaml", "byzantine-5pct.yaml",
		"late-joiners.yaml", "two-zones.yaml", "nightly-backup-delta.yaml", "sim-100k.yaml",
	} {
		if !have[name] {
			t.Errorf("testbed/scenarios/%s is missing (issue 4 ships it)", name)
		}
	}
}

// countLimit is the largest shipped blob TestShippedScenarios chunks.
const countLimit = 64 << 20

// checkChunks fails t unless s's blob holds at least 128 chunks; see
// TestShippedScenarios.
func checkChunks(t *testing.T, name string, s Scenario) {
	t.Helper()
	size, avg := int64(s.Blob.Size), int64(s.Blob.Chunker.AvgSize)
	if size > countLimit {
		if n := size / avg; n < 2*128 {
			t.Errorf("%s: %d bytes in chunks of %d make %d chunks by size/average, want at least 256 for a blob too large to chunk here", name, size, avg, n)
		}
		return
	}
	versions := 1
	if s.Blob.Base != nil {
		versions = 2
	}
	for v := 1; v <= versions; v++ {
		m, err := s.Cut(context.Background(), v, nil)
		if err != nil {
			t.Fatalf("%s: chunk version %d: %v", name, v, err)
		}
		if len(m.Chunks) < 128 {
			t.Errorf("%s: version %d of the blob (%d bytes) cuts into %d chunks of %d on average, want at least 128", name, v, size, len(m.Chunks), avg)
		}
	}
}

// FuzzParse: a scenario file, as p2pctl testbed run reads it, never
// panics the parser or the expansion of its classes into peers, and a
// scenario that parses validates.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"name: flash\nmode: emu\nseed: 1\nblob: {size: 64MiB, chunk: 1MiB}\norigins: {count: 1, up: 1Gbit}\nclasses: [{name: a, count: 20, up: 100Mbit, down: 1Gbit}]\n",
		"mode: sim\nclasses: [{name: a, count: 100000, zones: [z1, z2], racks: 2}]\nevents: [{at: 1s, action: kill, count: 2, class: a}]\n",
		"classes: [{name: b, count: 3, behavior: corrupt}, {name: h, count: 3, latency: 20ms, jitter: 5ms, loss: 0.01}]\nbaselines: [origin-only, bittorrent]\n",
		"classes: [{name: ../x, count: 1}]\n",
		"blob: {size: 8MiB, chunk: 64KiB, base: {changed: 0.05, regions: 8}}\nconns: {max: 5, inbound: 10}\n",
		"blob: {size: -1}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Parse(b)
		if err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("Parse accepted a scenario that does not validate: %v", err)
		}
		n := 0
		for _, c := range s.Classes {
			n += c.Count
		}
		if n <= 10000 { // expansion allocates per peer
			_ = s.Expand()
		}
	})
}
