package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/p2pd/p2pd/internal/auth"
)

// credsFlag is --credentials DIR: the security files of a directory that
// p2pd init wrote, under their standard names, on top of the config file.
type credsFlag struct{ dir string }

func (f *credsFlag) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.dir, "credentials", "", "directory written by p2pd init: use the credentials it holds (overrides the config's security section)")
}

func (f *credsFlag) apply(dst *auth.Config) error {
	if f.dir == "" {
		return nil
	}
	c, err := auth.DirConfig(f.dir)
	if err != nil {
		return usageError{err}
	}
	c.MaxClockSkew = dst.MaxClockSkew
	*dst = c
	return nil
}

// initResult is what p2pd init prints with --json: the files it wrote and
// the security section each role's config needs.
type initResult struct {
	Dir      string      `json:"dir"`
	Files    []string    `json:"files"`
	Tracker  auth.Config `json:"tracker"`
	Origin   auth.Config `json:"origin"`
	Peer     auth.Config `json:"peer"`
	P2pctl   p2pctlCfg   `json:"p2pctl"`
	Snippets string      `json:"yaml"`
}

// p2pctlCfg is the part of p2pctl's config file that init suggests.
type p2pctlCfg struct {
	Credentials string `json:"credentials" yaml:"credentials"`
}

func newInitCmd(stdout io.Writer) *cobra.Command {
	var (
		dir     string
		hosts   []string
		force   bool
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "init --dir DIR [--host NAME]...",
		Short: "Generate a cluster's credentials: private network key, tokens, CA",
		Long: `init writes a new set of credentials into DIR (created with mode 0700; every
secret file 0600, written atomically), and prints the security section of
each role's YAML config, so that a fleet can be closed without openssl:

  swarm.key        libp2p private network key: only nodes holding it can
                   connect to a peer or an origin (every node)
  announce.token   signs announces and reads (tracker, origins, peers)
  push.token       pushes to an origin (origins, and whoever pushes)
  admin.token      deletes from an origin, reads everything (tracker, origins,
                   operators)

With --host (the names and addresses clients use to reach the tracker and the
origins; repeat it), init also makes a cluster CA (ca.crt, ca.key) and a
server certificate for those hosts (server.crt, server.key): the tracker's and
origins' HTTP APIs then serve TLS, and every node and p2pctl trusts ca.crt.
Keep ca.key offline once the certificate is made.

Copy to each machine only what its role needs. Tokens never cross the network:
requests carry an HMAC signature made with them, valid once and for 30s.
See docs/security.md for what this protects against, and what not.`,
		Example: `  p2pd init --dir /etc/p2pd --host tracker.internal --host origin.internal
  p2pd init --dir ./creds --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return usageError{fmt.Errorf("--dir is required")}
			}
			c, err := auth.Generate(dir, auth.GenerateOptions{Hosts: hosts, Force: force})
			if err != nil {
				return err
			}
			res := initResult{Dir: filepath.Dir(c.PSKFile), P2pctl: p2pctlCfg{Credentials: filepath.Dir(c.PSKFile)}}
			for _, f := range []string{c.PSKFile, c.AnnounceTokenFile, c.PushTokenFile, c.AdminTokenFile, c.CAFile, filepath.Join(res.Dir, auth.FileCAKey), c.CertFile, c.KeyFile} {
				if f != "" && (f != filepath.Join(res.Dir, auth.FileCAKey) || c.CAFile != "") {
					res.Files = append(res.Files, f)
				}
			}
			res.Tracker = auth.Config{AnnounceTokenFile: c.AnnounceTokenFile, AdminTokenFile: c.AdminTokenFile, CertFile: c.CertFile, KeyFile: c.KeyFile}
			res.Origin = auth.Config{PSKFile: c.PSKFile, AnnounceTokenFile: c.AnnounceTokenFile, PushTokenFile: c.PushTokenFile,
				AdminTokenFile: c.AdminTokenFile, CertFile: c.CertFile, KeyFile: c.KeyFile, CAFile: c.CAFile}
			res.Peer = auth.Config{PSKFile: c.PSKFile, AnnounceTokenFile: c.AnnounceTokenFile, CAFile: c.CAFile}
			if res.Snippets, err = snippets(res); err != nil {
				return err
			}
			if jsonOut {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			fmt.Fprintf(stdout, "credentials written to %s:\n", res.Dir)
			for _, f := range res.Files {
				fmt.Fprintf(stdout, "  %s\n", filepath.Base(f))
			}
			fmt.Fprintf(stdout, "\n%s", res.Snippets)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory to write the credentials into (required)")
	cmd.Flags().StringSliceVar(&hosts, "host", nil, "DNS name or IP address of the tracker or an origin: makes a CA and a TLS certificate for them (repeatable)")
	cmd.Flags().BoolVar(&force, "force", false, "replace credentials already in --dir")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the files and config sections as JSON")
	return cmd
}

// snippets renders the YAML config sections of res, one per role.
func snippets(res initResult) (string, error) {
	var out string
	for _, r := range []struct {
		title string
		v     any
	}{
		{"p2pd tracker --config", map[string]any{"security": res.Tracker}},
		{"p2pd origin --config", map[string]any{"security": res.Origin}},
		{"p2pd peer --config", map[string]any{"security": res.Peer}},
		{"p2pctl --config (or --credentials DIR, or P2PD_CREDENTIALS)", res.P2pctl},
	} {
		b, err := yaml.Marshal(r.v)
		if err != nil {
			return "", fmt.Errorf("init: %w", err)
		}
		out += "# " + r.title + "\n" + string(b) + "\n"
	}
	return out, nil
}
