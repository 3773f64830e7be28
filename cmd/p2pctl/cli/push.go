package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/p2pd/p2pd/internal/auth"
	"github.com/p2pd/p2pd/internal/units"
	"github.com/p2pd/p2pd/origin/originclient"
)

func newPushCmd(g *globals) *cobra.Command {
	var expect string
	cmd := &cobra.Command{
		Use:   "push FILE",
		Short: "Upload a file to the origin, which chunks and seeds it; prints its digest",
		Long: `push streams FILE (or standard input for "-") to the origin (--origin), which
chunks it on the fly, stores and pins the chunks, and seeds the blob to peers.
It prints the blob digest (sha256:<hex>), which "p2pctl pull" takes.

With --digest, the origin checks the blob against the expected digest and keeps
nothing on a mismatch (exit code 3). A closed origin needs the push token
(--push-token, $P2PD_PUSH_TOKEN, the config's push_token, or push.token in
--credentials DIR); the request is signed with it, the token itself is never
sent.`,
		Example: `  p2pctl push backup.tar
  pg_dump mydb | p2pctl push --json -`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := originclient.PushOptions{Size: -1}
			if expect != "" {
				d, err := parseDigestArg(expect)
				if err != nil {
					return err
				}
				opts.ExpectedDigest = &d
			}
			c, err := g.originClient(auth.ScopePush)
			if err != nil {
				return err
			}
			defer c.CloseIdleConnections()
			in, done, err := g.openInput(args[0], "push", -1)
			if err != nil {
				return err
			}
			res, err := c.Push(cmd.Context(), in, opts)
			done()
			if err != nil {
				return fmt.Errorf("push %s: %w", args[0], err)
			}
			if g.json {
				return g.printJSON(res)
			}
			fmt.Fprintln(g.stdout, res.Digest)
			fmt.Fprintf(g.stderr, "pushed %s in %d chunks (manifest %s)\n", units.FormatSize(res.Size), res.Chunks, res.ManifestDigest)
			return nil
		},
	}
	cmd.Flags().StringVar(&expect, "digest", "", "expected blob digest; the origin keeps nothing if it differs")
	return cmd
}
