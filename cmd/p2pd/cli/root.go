// Package cli implements the p2pd command line: one cobra command per role.
// Each reads its YAML config (--config), applies flags on top, and hands
// the result to internal/daemon, which does all the wiring.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/p2pd/p2pd/internal/config"
	"github.com/p2pd/p2pd/internal/daemon"
)

// Exit codes.
const (
	ExitOK    = 0 // stopped cleanly (including on SIGINT/SIGTERM)
	ExitError = 1 // the role failed
	ExitUsage = 2 // bad flags or config
)

type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// Main runs p2pd with args and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := &cobra.Command{
		Use:   "p2pd",
		Short: "The p2pd daemon: tracker, origin and peer roles",
		Long: `p2pd sends large blobs to fleets of servers peer-to-peer. One binary runs
each role:

  p2pd tracker   records which peers hold which chunks and hands out peers
  p2pd origin    accepts pushes, chunks and stores them, seeds them to peers
  p2pd peer      fetches blobs from other peers, verifies and serves them
  p2pd dev       a tracker, an origin and N peers in one process, no config
  p2pd init      generate a cluster's credentials (keys, tokens, CA)

Every role reads a YAML file (--config) with flags on top, logs each
listener's real address (port 0 picks a free one), serves Prometheus metrics
on /metrics, and shuts down gracefully on SIGINT or SIGTERM.

Exit codes: 0 clean stop, 1 failure, 2 bad flags or config.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newTrackerCmd(stderr), newOriginCmd(stderr), newPeerCmd(stderr), newDevCmd(stdout, stderr), newInitCmd(stdout))
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintln(stderr, "p2pd:", err)
	var ue usageError
	if errors.As(err, &ue) || errors.Is(err, config.ErrInvalid) {
		return ExitUsage
	}
	return ExitError
}

// loadConfig fills dst from the --config file; flags are applied after.
func loadConfig(path string, dst any) error {
	if err := config.LoadFile(path, dst); err != nil {
		return usageError{err}
	}
	return nil
}

// wait blocks until the node stops, by itself or because ctx ended
// (a signal), and then closes it gracefully.
func wait(ctx context.Context, n *daemon.Node) error {
	select {
	case <-n.Done():
		return n.Err()
	case <-ctx.Done():
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return n.Close(cctx)
}

func newTrackerCmd(stderr io.Writer) *cobra.Command {
	var (
		cfgPath string
		cfg     daemon.TrackerConfig
		creds   credsFlag
	)
	cmd := &cobra.Command{
		Use:   "tracker",
		Short: "Run a tracker: the HTTP/JSON announce API",
		Long: `tracker serves the announce API under /v1/ (POST /v1/announce,
GET /v1/swarms, GET /v1/swarms/{digest}), /healthz and /metrics. Its state is
soft: peers that stop announcing expire after peer_ttl, and a restarted
tracker rebuilds its view from the next round of announces.

Config (YAML, all optional):
  listen: 127.0.0.1:7400
  tracker:
    announce_interval: 5s
    peer_ttl: 15s
    handout_limit: 50
    max_origins: 2
    origin_handouts: 16     # requesters each origin is handed to per interval (-1: all)
  log: {level: info, format: text}
  security:                 # see p2pd init; without it anyone may announce
    announce_token_file: /etc/p2pd/announce.token
    admin_token_file: /etc/p2pd/admin.token
    cert_file: /etc/p2pd/server.crt   # serve TLS
    key_file: /etc/p2pd/server.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			listen := cfg.Listen
			if err := loadConfig(cfgPath, &cfg); err != nil {
				return err
			}
			if cmd.Flags().Changed("listen") {
				cfg.Listen = listen
			}
			if err := creds.apply(&cfg.Security); err != nil {
				return err
			}
			if err := cfg.WithDefaults().Validate(); err != nil {
				return usageError{err}
			}
			n, err := daemon.RunTracker(cmd.Context(), cfg, daemon.NewLogger(cfg.Log, stderr))
			if err != nil {
				return err
			}
			return wait(cmd.Context(), n)
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "YAML config file")
	cmd.Flags().StringVar(&cfg.Listen, "listen", daemon.DefaultTrackerListen, "HTTP listen address (port 0: any)")
	creds.add(cmd)
	return cmd
}
