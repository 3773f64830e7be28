package cli

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/fsutil"
	"github.com/p2pd/p2pd/internal/progress"
	"github.com/p2pd/p2pd/internal/units"
	"github.com/p2pd/p2pd/internal/wire/ctlwire"
	"github.com/p2pd/p2pd/peer/control/controlclient"
)

func parseDigestArg(s string) (chunker.Digest, error) {
	d, err := chunker.ParseDigest(s)
	if err != nil {
		return d, usageError{err}
	}
	return d, nil
}

func (g *globals) control() (*controlclient.Client, error) { return controlclient.New(g.cfg.Peer) }

func newPullCmd(g *globals) *cobra.Command {
	var (
		out  string
		mode string
	)
	cmd := &cobra.Command{
		Use:   "pull DIGEST [-o FILE]",
		Short: "Fetch a blob through the local peer daemon, and write it to a file",
		Long: `pull asks the local p2pd peer (--peer) to fetch DIGEST from the swarm: from
other peers first, from the origin only as a fallback. Every chunk is verified
by the daemon as it arrives. On a terminal a progress bar shows the rate, the
ETA and how many bytes came from peers and from the origin.

With -o, the blob is then written to FILE atomically (temp file in the same
directory, fsync, rename) with exactly the --mode permissions (the umask does not
apply), and its SHA-256 is checked
again while writing: a mismatch leaves no file and exits with code 3. Without
-o the blob stays in the daemon, which keeps seeding it.`,
		Example: `  p2pctl pull sha256:4f2a… -o /var/backups/db.tar
  p2pctl pull --json sha256:4f2a…`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := parseDigestArg(args[0])
			if err != nil {
				return err
			}
			perm, err := strconv.ParseUint(mode, 8, 32)
			if err != nil || perm > 0o777 {
				return usagef("--mode %q: want octal permissions such as 0644", mode)
			}
			c, err := g.control()
			if err != nil {
				return usageError{err}
			}
			defer c.Close()
			ctx := cmd.Context()
			var (
				bar  *progress.Bar
				last ctlwire.Progress
			)
			show := func(p ctlwire.Progress) {
				if bar == nil {
					bar = progress.New(g.stderr, "pull", p.Size, g.quiet || g.json)
				}
				last = p
				bar.Set(p.Bytes, fmt.Sprintf("peers %s, origin %s, %d conns",
					units.FormatSize(p.BytesFromPeers), units.FormatSize(p.BytesFromOrigins), p.Peers))
			}
			blob, err := c.Pull(ctx, d, show)
			if err == nil {
				// The daemon sends progress at most every 200ms, so the last
				// update may predate the end: the final line shows the result.
				show(ctlwire.Progress{Bytes: blob.Size, Size: blob.Size, Peers: last.Peers,
					BytesFromPeers: blob.BytesFromPeers, BytesFromOrigins: blob.BytesFromOrigins})
			}
			bar.Finish()
			if err != nil {
				return fmt.Errorf("pull %s: %w", d, err)
			}
			if out != "" {
				if err := g.writeBlob(cmd, c, d, out, os.FileMode(perm)); err != nil {
					return err
				}
			}
			if g.json {
				return g.printJSON(map[string]any{"blob": blob, "file": out})
			}
			fmt.Fprintf(g.stdout, "%s %s in %.2fs (peers %s, origin %s)\n", d, units.FormatSize(blob.Size),
				blob.Elapsed.Seconds(), units.FormatSize(blob.BytesFromPeers), units.FormatSize(blob.BytesFromOrigins))
			if out != "" {
				fmt.Fprintf(g.stdout, "written to %s, verified\n", out)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the blob to this file")
	cmd.Flags().StringVar(&mode, "mode", "0644", "permissions of the written file (octal)")
	return cmd
}

// writeBlob streams d from the daemon into path atomically, verifying its
// SHA-256 before the rename.
func (g *globals) writeBlob(cmd *cobra.Command, c *controlclient.Client, d chunker.Digest, path string, perm os.FileMode) error {
	rc, _, err := c.Open(cmd.Context(), d)
	if err != nil {
		return err
	}
	defer rc.Close()
	// The mode is set with chmod, exactly as asked: the umask does not
	// narrow it, and 0000 means 0000.
	err = fsutil.AtomicFile{Perm: perm, ExactPerm: true}.Write(path, func(w io.Writer) error {
		h := sha256.New()
		if _, err := io.Copy(io.MultiWriter(w, h), rc); err != nil {
			return err
		}
		if got := chunker.Digest(h.Sum(nil)); got != d {
			return fmt.Errorf("%w: the daemon's bytes hash to %s", chunker.ErrDigestMismatch, got)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func newLsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List the blobs the local peer daemon holds",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.control()
			if err != nil {
				return usageError{err}
			}
			defer c.Close()
			blobs, err := c.Blobs(cmd.Context())
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(blobs)
			}
			tw := tabwriter.NewWriter(g.stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DIGEST\tSIZE\tCHUNKS\tCOMPLETE\tSEEDING")
			for _, b := range blobs {
				fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%v\t%v\n", b.Digest, units.FormatSize(b.Size), b.Have, b.Chunks, b.Complete, b.Seeding)
			}
			return tw.Flush()
		},
	}
}

func newRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm DIGEST",
		Short: "Stop seeding a blob and let the local peer daemon evict its chunks",
		Long: `rm tells the local peer to stop announcing and serving DIGEST and unpins it.
Its chunks become evictable; chunks shared with other blobs stay.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := parseDigestArg(args[0])
			if err != nil {
				return err
			}
			c, err := g.control()
			if err != nil {
				return usageError{err}
			}
			defer c.Close()
			if err := c.Remove(cmd.Context(), d); err != nil {
				return err
			}
			if g.json {
				return g.printJSON(map[string]any{"removed": d})
			}
			fmt.Fprintln(g.stdout, "removed", d)
			return nil
		},
	}
}

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status DIGEST",
		Short: "Show a swarm's progress from the tracker",
		Long: `status asks the tracker (--tracker) about DIGEST's swarm: every live peer with
how many chunks it holds, how many peers are complete, and how many bytes
origins and peers have served.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := parseDigestArg(args[0])
			if err != nil {
				return err
			}
			c, err := g.trackerClient()
			if err != nil {
				return err
			}
			defer c.CloseIdleConnections()
			st, err := c.Swarm(cmd.Context(), d)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(st)
			}
			fmt.Fprintf(g.stdout, "blob %s: %d chunks, %d peers (%d complete, %d origins)\n", st.Blob, st.NumChunks, len(st.Peers), st.Complete, st.Origins)
			fmt.Fprintf(g.stdout, "served by origins %s, by peers %s\n", units.FormatSize(int64(st.BytesFromOrigins)), units.FormatSize(int64(st.BytesFromPeers)))
			tw := tabwriter.NewWriter(g.stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PEER\tROLE\tHAVE\tCOMPLETE\tUP\tDOWN\tZONE")
			for _, p := range st.Peers {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%v\t%s\t%s\t%s\n", p.PeerID, p.Role, p.Have, p.Complete,
					units.FormatSize(int64(p.Uploaded)), units.FormatSize(int64(p.Downloaded)), p.Zone)
			}
			return tw.Flush()
		},
	}
}
