package chunker_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"go.uber.org/goleak"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/chunker/chunkertest"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func mustNew(t testing.TB, cfg chunker.Config) *chunker.Chunker {
	t.Helper()
	c, err := chunker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func split(t testing.TB, c *chunker.Chunker, data []byte) *chunker.Manifest {
	t.Helper()
	m, err := c.Split(context.Background(), bytes.NewReader(data), nil)
	if err != nil {
		t.Fatalf("Split: %v", err)
	}
	return m
}

// checkManifest asserts everything a manifest must say about data.
func checkManifest(t *testing.T, m *chunker.Manifest, data []byte) {
	t.Helper()
	if err := m.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if m.Size != int64(len(data)) || m.Digest != chunker.Sum(data) {
		t.Fatalf("manifest says %d bytes %s, data is %d bytes %s", m.Size, m.Digest, len(data), chunker.Sum(data))
	}
	off := m.Offsets()
	for i, c := range m.Chunks {
		if got := chunker.Sum(data[off[i]:off[i+1]]); got != c.Digest {
			t.Fatalf("chunk %d digest %s, data hashes to %s", i, c.Digest, got)
		}
	}
	if err := chunker.Verify(context.Background(), m, bytes.NewReader(data)); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	enc, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	back, err := chunker.DecodeManifest(enc)
	if err != nil || !back.Equal(m) {
		t.Fatalf("round trip: %v", err)
	}
}

func TestBoundarySizes(t *testing.T) {
	cfg := chunker.Config{}.WithDefaults()
	min, avg, max := cfg.MinSize, cfg.AvgSize, cfg.MaxSize
	// Over a run of zero bytes the gear hash is the constant -gearTable[0]
	// (mod 2^64), far above any threshold, so zeros pin the forced cuts.
	zeros := func(n int) []byte { return make([]byte, n) }
	random := func(n int) []byte { return chunkertest.Bytes(42, n) }
	tests := []struct {
		name  string
		data  []byte
		sizes []int // nil: only check invariants
	}{
		{"empty", nil, []int{}},
		{"one byte", []byte{7}, []int{1}},
		{"min-1", random(min - 1), []int{min - 1}},
		{"min", random(min), []int{min}},
		{"min+1", random(min + 1), []int{min + 1}},
		{"avg", random(avg), nil},
		{"max zeros", zeros(max), []int{max}},
		{"max+1 zeros", zeros(max + 1), []int{max, 1}},
		{"2max+min zeros", zeros(2*max + min), []int{max, max, min}},
		{"max random", random(max), nil},
		{"max+1 random", random(max + 1), nil},
		{"several max random", random(5*max + 3), nil},
	}
	c := mustNew(t, chunker.Config{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := split(t, c, tc.data)
			checkManifest(t, m, tc.data)
			if tc.sizes != nil {
				got := make([]int, len(m.Chunks))
				for i, ch := range m.Chunks {
					got[i] = int(ch.Size)
				}
				if fmt.Sprint(got) != fmt.Sprint(tc.sizes) {
					t.Fatalf("chunk sizes %v, want %v", got, tc.sizes)
				}
			}
			for i, ch := range m.Chunks {
				if int(ch.Size) > max || (i < len(m.Chunks)-1 && int(ch.Size) < min) {
					t.Fatalf("chunk %d has size %d outside [%d, %d]", i, ch.Size, min, max)
				}
			}
		})
	}
}

func TestAverageChunkSize(t *testing.T) {
	data := chunkertest.Bytes(1, 64<<20)
	for _, cfg := range []chunker.Config{{}, {MinSize: 16 << 10, AvgSize: 64 << 10, MaxSize: 256 << 10}} {
		c := mustNew(t, cfg)
		cfg = c.Config()
		m := split(t, c, data)
		mean := m.Size / int64(len(m.Chunks))
		// Normalized chunking puts the mean between avg and avg+avg/2.
		if mean < int64(cfg.AvgSize) || mean > int64(cfg.AvgSize)*3/2 {
			t.Errorf("%+v: mean chunk size %d over %d chunks, want within [avg, 1.5 avg]", cfg, mean, len(m.Chunks))
		}
	}
}

// TestGolden pins boundaries across runs, machines and Go versions.
func TestGolden(t *testing.T) {
	tests := []struct {
		name string
		cfg  chunker.Config
		seed uint64
		size int
	}{
		{"default-24MiB", chunker.Config{}, 20261123, 24 << 20},
		{"small-1MiB", chunker.Config{MinSize: 2 << 10, AvgSize: 8 << 10, MaxSize: 32 << 10}, 7, 1 << 20},
		{"no-normalization-2MiB", chunker.Config{MinSize: 4 << 10, AvgSize: 16 << 10, MaxSize: 64 << 10, Normalization: -1}, 99, 2 << 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := chunkertest.Bytes(tc.seed, tc.size)
			c := mustNew(t, tc.cfg)
			m := split(t, c, data)
			var sb strings.Builder
			fmt.Fprintf(&sb, "# chunkertest.Bytes(%d, %d) with %+v\n", tc.seed, tc.size, c.Config())
			fmt.Fprintf(&sb, "blob %s %d\n", m.Digest, m.Size)
			off := m.Offsets()
			for i, c := range m.Chunks {
				fmt.Fprintf(&sb, "%d %d %s\n", off[i], c.Size, c.Digest)
			}
			path := filepath.Join("testdata", "golden", tc.name+".txt")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if got := sb.String(); got != string(want) {
				t.Fatalf("boundaries changed from %s:\n%s", path, firstDiff(string(want), got))
			}
		})
	}
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) && i < len(bl); i++ {
		if al[i] != bl[i] {
			return fmt.Sprintf("line %d:\n  want %s\n  got  %s", i+1, al[i], bl[i])
		}
	}
	return fmt.Sprintf("want %d lines, got %d", len(al), len(bl))
}

// TestResync inserts 100 bytes in the middle of 64 MiB: only the chunks
// around the edit may change.
func TestResync(t *testing.T) {
	data := chunkertest.Bytes(3, 64<<20)
	edited := make([]byte, 0, len(data)+100)
	edited = append(edited, data[:len(data)/2]...)
	edited = append(edited, chunkertest.Bytes(4, 100)...)
	edited = append(edited, data[len(data)/2:]...)

	c := mustNew(t, chunker.Config{})
	before, after := split(t, c, data), split(t, c, edited)
	have := make(map[chunker.Digest]bool)
	for _, ch := range after.Chunks {
		have[ch.Digest] = true
	}
	kept := 0
	for _, ch := range before.Chunks {
		if have[ch.Digest] {
			kept++
		}
	}
	share := float64(kept) / float64(len(before.Chunks))
	t.Logf("%d of %d chunks kept their digest (%.1f%%)", kept, len(before.Chunks), 100*share)
	if share < 0.95 {
		t.Fatalf("only %.1f%% of chunks survived a 100-byte insert, want >= 95%%", 100*share)
	}
}

// TestReadPatterns: boundaries must not depend on how the reader returns data.
func TestReadPatterns(t *testing.T) {
	data := chunkertest.Bytes(5, 3<<20)
	c := mustNew(t, chunker.Config{MinSize: 8 << 10, AvgSize: 32 << 10, MaxSize: 128 << 10})
	want := split(t, c, data)
	readers := map[string]io.Reader{
		"one byte": iotest.OneByteReader(bytes.NewReader(data)),
		"half":     iotest.HalfReader(bytes.NewReader(data)),
		"data+err": iotest.DataErrReader(bytes.NewReader(data)),
		"bufio 7":  bufio.NewReaderSize(iotest.HalfReader(bytes.NewReader(data)), 16),
	}
	for name, r := range readers {
		t.Run(name, func(t *testing.T) {
			got, err := c.Split(context.Background(), r, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(want) {
				t.Fatal("manifest differs from the one cut from a bytes.Reader")
			}
		})
	}
}

func TestSplitCallback(t *testing.T) {
	data := chunkertest.Bytes(6, 9<<20)
	c := mustNew(t, chunker.Config{})
	var got []byte
	m, err := c.Split(context.Background(), bytes.NewReader(data), func(ch chunker.Chunk, b []byte) error {
		if chunker.Sum(b) != ch.Digest || len(b) != int(ch.Size) {
			return fmt.Errorf("callback got bytes that do not match %s", ch.Digest)
		}
		got = append(got, b...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("callback bytes, concatenated, differ from the input")
	}
	checkManifest(t, m, data)

	stop := errors.New("stop here")
	calls := 0
	_, err = c.Split(context.Background(), bytes.NewReader(data), func(chunker.Chunk, []byte) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("callback error: got %v after %d calls, want %v after 1", err, calls, stop)
	}
}

func TestSplitErrors(t *testing.T) {
	c := mustNew(t, chunker.Config{})
	boom := errors.New("disk on fire")
	r := io.MultiReader(bytes.NewReader(chunkertest.Bytes(1, 5<<20)), iotest.ErrReader(boom))
	if _, err := c.Split(context.Background(), r, nil); !errors.Is(err, boom) {
		t.Fatalf("read error: got %v, want %v", err, boom)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Split(ctx, chunkertest.NewStream(1, 64<<20), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: got %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  chunker.Config
		ok   bool
	}{
		{"defaults", chunker.Config{}, true},
		{"small", chunker.Config{MinSize: 64, AvgSize: 256, MaxSize: 1024}, true},
		{"min below window", chunker.Config{MinSize: 32, AvgSize: 256, MaxSize: 1024}, false},
		{"avg not power of two", chunker.Config{AvgSize: 1000 << 10}, false},
		{"min >= avg", chunker.Config{MinSize: 1 << 20, AvgSize: 1 << 20}, false},
		{"avg >= max", chunker.Config{AvgSize: 4 << 20, MaxSize: 4 << 20}, false},
		{"max over limit", chunker.Config{MaxSize: chunker.MaxChunkSizeLimit + 1}, false},
		{"normalization too high", chunker.Config{Normalization: 9}, false},
		{"normalization off", chunker.Config{Normalization: -1}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, chunker.ErrBadConfig) {
				t.Fatalf("error %v does not wrap ErrBadConfig", err)
			}
			if _, err := chunker.New(tc.cfg); (err == nil) != tc.ok {
				t.Fatalf("New() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// TestBoundedMemory chunks 512 MiB and checks the heap never needed more
// than a handful of maximum-size buffers.
func TestBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("512 MiB stream; skipped with -short")
	}
	c := mustNew(t, chunker.Config{})
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	m, err := c.Split(context.Background(), chunkertest.NewStream(9, 512<<20), nil)
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d chunks, %d MiB allocated in total", len(m.Chunks), alloc>>20)
	if limit := uint64(64 << 20); alloc > limit {
		t.Fatalf("splitting 512 MiB allocated %d MiB, want <= %d MiB", alloc>>20, limit>>20)
	}
}

var huge = flag.Int64("chunker.huge", 0, "size in GiB of the streaming test (run by make bench); 0 skips it")

// TestHugeStream streams a generated blob of at least 10 GiB through Split
// and Verify with bounded memory. It runs from `make bench`.
func TestHugeStream(t *testing.T) {
	if *huge == 0 {
		t.Skip("set -chunker.huge=10 (make bench) to stream 10 GiB")
	}
	size := *huge << 30
	c := mustNew(t, chunker.Config{})
	m, err := c.Split(context.Background(), chunkertest.NewStream(10, size), nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.Size != size {
		t.Fatalf("manifest size %d, want %d", m.Size, size)
	}
	if err := chunker.Verify(context.Background(), m, chunkertest.NewStream(10, size)); err != nil {
		t.Fatal(err)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("%d GiB in %d chunks; heap system memory %d MiB", *huge, len(m.Chunks), ms.HeapSys>>20)
	if ms.HeapSys > 256<<20 {
		t.Fatalf("heap grew to %d MiB", ms.HeapSys>>20)
	}
}
