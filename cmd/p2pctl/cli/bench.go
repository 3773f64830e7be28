package cli

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/spf13/cobra"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/chunker/chunkertest"
	"github.com/p2pd/p2pd/internal/procstat"
	"github.com/p2pd/p2pd/internal/units"
)

func newBenchCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure p2pd's components on this machine",
		Long:  "bench runs reproducible measurements. Figures go in docs/benchmarks.md with the command that produced them.",
	}
	cmd.AddCommand(newBenchChunkerCmd(g), newBenchTransferCmd(g), newBenchTrackerCmd(g))
	return cmd
}

// openProfile creates the file a --cpuprofile flag names, if it names
// one, and points *dst at it. The func it returns closes the file.
func openProfile(path string, dst *io.Writer) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, usageError{err}
	}
	*dst = f
	return func() { f.Close() }, nil
}

// chunkerBench is the JSON output of bench chunker.
type chunkerBench struct {
	summary
	ChunkMBps    float64 `json:"chunk_mbps"`
	SHA256MBps   float64 `json:"sha256_mbps"`
	Ratio        float64 `json:"ratio"`
	GenMBps      float64 `json:"gen_mbps"`
	PeakRSSBytes int64   `json:"peak_rss_bytes"`
	ChunkCPUSecs float64 `json:"chunk_cpu_s"`
	GOMAXPROCS   int     `json:"gomaxprocs"`
	Rounds       int     `json:"rounds"`
}

func newBenchChunkerCmd(g *globals) *cobra.Command {
	var (
		sizeFlag string
		seed     uint64
		rounds   int
		procs    int
	)
	cmd := &cobra.Command{
		Use:   "chunker",
		Short: "Chunk and hash a generated stream, against plain SHA-256 of the same bytes",
		Long: `bench chunker generates a deterministic pseudo-random stream of --size bytes
in memory (it is never held whole: memory stays bounded) and, in the same run:

  1. times the generator alone (gen_mbps), to show it is not the bottleneck;
  2. hashes the stream with plain crypto/sha256 on one goroutine (sha256_mbps);
  3. chunks it: FastCDC boundaries, a SHA-256 per chunk and the SHA-256 of the
     whole blob, which is the real work of ingesting a blob (chunk_mbps).

Steps 2 and 3 alternate for --rounds rounds and the best of each is kept,
which damps noise from other work on the machine. ratio = chunk_mbps /
sha256_mbps. The chunker hashes every byte twice (chunk and blob digests), so
it needs two cores to keep up with one plain SHA-256 stream: --procs 1
shows the single-core cost. peak_rss_bytes is the process's peak resident
memory (VmHWM).

The text output starts with the manifest summary of the generated blob.`,
		Example: `  p2pctl bench chunker
  p2pctl bench chunker --size 4GiB --json
  p2pctl bench chunker --procs 1`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			size, err := units.ParseSize(sizeFlag)
			if err != nil {
				return usageError{err}
			}
			if rounds < 1 {
				return usagef("--rounds must be at least 1")
			}
			if procs > 0 {
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			}
			c, err := g.chunker()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			res := chunkerBench{GOMAXPROCS: runtime.GOMAXPROCS(0), Rounds: rounds}
			st := time.Now()
			if _, err := io.Copy(io.Discard, chunkertest.NewStream(seed, size)); err != nil {
				return err
			}
			res.GenMBps = units.MBps(size, time.Since(st).Seconds())
			var m *chunker.Manifest
			for range rounds {
				h := sha256.New()
				st := time.Now()
				if _, err := io.Copy(h, chunkertest.NewStream(seed, size)); err != nil {
					return err
				}
				res.SHA256MBps = max(res.SHA256MBps, units.MBps(size, time.Since(st).Seconds()))
				if err := ctx.Err(); err != nil {
					return err
				}

				cpu0 := procstat.CPUTime()
				st = time.Now()
				m, err = c.Split(ctx, chunkertest.NewStream(seed, size), nil)
				if err != nil {
					return err
				}
				el := time.Since(st)
				if mbps := units.MBps(size, el.Seconds()); mbps > res.ChunkMBps {
					res.ChunkMBps = mbps
					res.ChunkCPUSecs = (procstat.CPUTime() - cpu0).Seconds()
				}
				var check [sha256.Size]byte
				if h.Sum(check[:0]); chunker.Digest(check) != m.Digest {
					return fmt.Errorf("bench: chunker blob digest %s differs from plain SHA-256 %x", m.Digest, check)
				}
			}
			if res.summary, err = summarize(m); err != nil {
				return err
			}
			res.Ratio = res.ChunkMBps / res.SHA256MBps
			if res.PeakRSSBytes, err = procstat.PeakRSS(); err != nil {
				return err
			}
			if g.json {
				return g.printJSON(res)
			}
			w := g.stdout
			res.summary.print(w)
			fmt.Fprintf(w, "chunk+hash  %8.0f MB/s  (%d procs, %.2f CPU-seconds)\n", res.ChunkMBps, res.GOMAXPROCS, res.ChunkCPUSecs)
			fmt.Fprintf(w, "sha256      %8.0f MB/s  (one stream)\n", res.SHA256MBps)
			fmt.Fprintf(w, "ratio       %8.2f     (chunk+hash / sha256)\n", res.Ratio)
			fmt.Fprintf(w, "generator   %8.0f MB/s\n", res.GenMBps)
			fmt.Fprintf(w, "peak RSS    %s\n", units.FormatSize(res.PeakRSSBytes))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&sizeFlag, "size", "1GiB", "bytes to generate, e.g. 1GiB, 4GiB")
	f.Uint64Var(&seed, "seed", 1, "generator seed")
	f.IntVar(&rounds, "rounds", 2, "alternate plain SHA-256 and chunking this many times, keep the best")
	f.IntVar(&procs, "procs", 0, "GOMAXPROCS for the run (0: all cores)")
	return cmd
}
