package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/units"
)

// readManifest reads a binary or JSON manifest file with a size limit.
func readManifest(path string) (*chunker.Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, chunker.MaxManifestJSONBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", path, err)
	}
	m, err := chunker.ParseManifest(b)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", path, err)
	}
	return m, nil
}

func newVerifyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "verify FILE MANIFEST",
		Short: "Check a file against a manifest, chunk by chunk",
		Long: `verify checks that FILE (or standard input for "-") is exactly the blob that
MANIFEST describes: every chunk's size and SHA-256, the whole blob's SHA-256,
and its length. MANIFEST may be the binary form (p2pctl chunk -o) or the JSON
form (p2pctl chunk --json). The manifest itself is checked first: a truncated,
corrupt or self-contradicting manifest is refused with exit code 4.

It reads FILE once, in a stream, and stops at the first chunk that differs,
naming its index and offset; that exits with code 3.`,
		Example: `  p2pctl verify backup.tar backup.p2pm
  p2pctl verify --json backup.tar backup.manifest.json`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := readManifest(args[1])
			if err != nil {
				return err
			}
			in, done, err := g.openInput(args[0], "verify", m.Size)
			if err != nil {
				return err
			}
			err = chunker.Verify(cmd.Context(), m, in)
			done()
			if err != nil {
				return fmt.Errorf("verify %s: %w", args[0], err)
			}
			if g.json {
				return g.printJSON(map[string]any{"ok": true, "digest": m.Digest, "size_bytes": m.Size, "chunks": len(m.Chunks)})
			}
			fmt.Fprintf(g.stdout, "OK %s: %s in %d chunks match %s\n", args[0], units.FormatSize(m.Size), len(m.Chunks), m.Digest)
			return nil
		},
	}
}
