package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/fsutil"
	"github.com/p2pd/p2pd/internal/progress"
	"github.com/p2pd/p2pd/internal/units"
)

// summary is what p2pctl prints about a manifest.
type summary struct {
	Digest     chunker.Digest `json:"digest"`
	ManifestID chunker.Digest `json:"manifest_digest"`
	Size       int64          `json:"size_bytes"`
	Chunks     int            `json:"chunks"`
	MinChunk   int64          `json:"min_chunk_bytes"`
	AvgChunk   int64          `json:"avg_chunk_bytes"`
	MaxChunk   int64          `json:"max_chunk_bytes"`
}

func summarize(m *chunker.Manifest) (summary, error) {
	id, err := m.ID()
	if err != nil {
		return summary{}, err
	}
	s := summary{Digest: m.Digest, ManifestID: id, Size: m.Size, Chunks: len(m.Chunks)}
	for i, c := range m.Chunks {
		n := int64(c.Size)
		if i == 0 || n < s.MinChunk {
			s.MinChunk = n
		}
		s.MaxChunk = max(s.MaxChunk, n)
	}
	if s.Chunks > 0 {
		s.AvgChunk = s.Size / int64(s.Chunks)
	}
	return s, nil
}

func (s summary) print(w io.Writer) {
	fmt.Fprintf(w, "blob      %s\n", s.Digest)
	fmt.Fprintf(w, "manifest  %s\n", s.ManifestID)
	fmt.Fprintf(w, "size      %s (%d bytes)\n", units.FormatSize(s.Size), s.Size)
	fmt.Fprintf(w, "chunks    %d (min %s, avg %s, max %s)\n", s.Chunks,
		units.FormatSize(s.MinChunk), units.FormatSize(s.AvgChunk), units.FormatSize(s.MaxChunk))
}

// openInput opens FILE, or stdin for "-", behind a progress bar labelled
// label. The bar's total is the file's size, or size when that is unknown.
// done closes the input and finishes the bar.
func (g *globals) openInput(name, label string, size int64) (r io.Reader, done func(), err error) {
	var in io.ReadCloser = io.NopCloser(g.stdin)
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, nil, err
		}
		st, err := f.Stat()
		if err != nil || st.IsDir() {
			f.Close()
			if err == nil {
				err = usagef("%s is a directory", name)
			}
			return nil, nil, err
		}
		in, size = f, st.Size()
	}
	bar := progress.New(g.stderr, label, size, g.quiet || g.json)
	return bar.Reader(in), func() { bar.Finish(); in.Close() }, nil
}

func newChunkCmd(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "chunk FILE",
		Short: "Split a file into content-defined chunks and print its manifest summary",
		Long: `chunk reads FILE (or standard input for "-") once, cuts it into
content-defined chunks, hashes every chunk and the whole blob with SHA-256, and
prints a summary: blob digest, manifest digest, size, chunk count and the
smallest, mean and largest chunk.

With --json it prints the whole manifest as JSON instead (the form that
"p2pctl verify" reads back). With -o it also writes the canonical binary
manifest to a file, atomically (temp file, fsync, rename).

Chunk sizes come from --min-size/--avg-size/--max-size or the config file's
chunker section; the defaults are 256KiB/1MiB/4MiB.`,
		Example: `  p2pctl chunk backup.tar
  p2pctl chunk --json backup.tar > backup.manifest.json
  pg_dump mydb | p2pctl chunk -o mydb.p2pm -`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.chunker()
			if err != nil {
				return err
			}
			in, done, err := g.openInput(args[0], "chunk", -1)
			if err != nil {
				return err
			}
			m, err := c.Split(cmd.Context(), in, nil)
			done()
			if err != nil {
				return fmt.Errorf("chunk %s: %w", args[0], err)
			}
			if out != "" {
				enc, err := m.MarshalBinary()
				if err != nil {
					return err
				}
				if err := fsutil.WriteFileAtomic(out, 0o644, func(w io.Writer) error { _, err := w.Write(enc); return err }); err != nil {
					return err
				}
			}
			if g.json {
				return g.printJSON(m)
			}
			s, err := summarize(m)
			if err != nil {
				return err
			}
			s.print(g.stdout)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "also write the binary manifest to this file")
	return cmd
}

// exactArgs is cobra.ExactArgs with a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s takes %d argument(s), got %d; see --help", cmd.CommandPath(), n, len(args))
		}
		return nil
	}
}
