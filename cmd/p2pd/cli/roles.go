package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/p2pd/p2pd/internal/daemon"
	"github.com/p2pd/p2pd/internal/units"
	"github.com/p2pd/p2pd/peer/mirror"
	"github.com/p2pd/p2pd/peer/store"
	"github.com/p2pd/p2pd/testbed"
)

// nodeFlags are the flags the origin and peer roles share.
type nodeFlags struct {
	dataDir, tracker, p2pListen string
	creds                       credsFlag
}

func (f *nodeFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.dataDir, "data-dir", "", "directory for the chunk store and identity key (required)")
	cmd.Flags().StringVar(&f.tracker, "tracker", "", "tracker URL (default "+daemon.DefaultTrackerURL+")")
	cmd.Flags().StringVar(&f.p2pListen, "p2p-listen", "", "libp2p listen multiaddr (default /ip4/127.0.0.1/tcp/0)")
	f.creds.add(cmd)
}

func (f *nodeFlags) apply(cmd *cobra.Command, c *daemon.NodeConfig) error {
	if cmd.Flags().Changed("data-dir") {
		c.DataDir = f.dataDir
	}
	if cmd.Flags().Changed("tracker") {
		c.Tracker = f.tracker
	}
	if cmd.Flags().Changed("p2p-listen") {
		c.Peer.ListenAddrs = []string{f.p2pListen}
	}
	return f.creds.apply(&c.Security)
}

const nodeConfigHelp = `  data_dir: /var/lib/p2pd
  tracker: http://127.0.0.1:7400
  peer:
    listen_addrs: [/ip4/0.0.0.0/tcp/4001]
    upload_slots: 4
    upload_rate: 0          # bytes/s per remote peer, 0 = unlimited
    download_rate: 0
    zone: eu-west-1a
  store:
    capacity: 107374182400  # bytes, 0 = unlimited
    verify_on_read: first-read  # or always, never
  log: {level: info, format: text}
  security:                 # see p2pd init; without it the cluster is open
    psk_file: /etc/p2pd/swarm.key            # private network: only holders connect
    announce_token_file: /etc/p2pd/announce.token
    ca_file: /etc/p2pd/ca.crt                # trust an https:// tracker or origin`

func newOriginCmd(stderr io.Writer) *cobra.Command {
	var (
		cfgPath, listen string
		nf              nodeFlags
	)
	cmd := &cobra.Command{
		Use:   "origin",
		Short: "Run an origin: accept pushes, chunk and store them, seed them to peers",
		Long: `origin serves the push API (PUT /v1/blobs, GET /v1/blobs/{digest}[/manifest|/data],
DELETE, /healthz, /metrics) and runs a peer engine with role "origin" that
announces every stored blob to the tracker and serves it over the peer
protocol. Peers use it as a fallback; the tracker keeps its load low. Stored
blobs survive restarts and are announced again.

With security tokens (p2pd init), pushes need the push token, deletes the
admin token, and reads any token; security.cert_file and key_file make the
API serve TLS.

Config (YAML, all optional but data_dir):
  listen: 127.0.0.1:7401
  origin:
    max_blob_size: 0
    chunker: {min_size: 262144, avg_size: 1048576, max_size: 4194304}
` + nodeConfigHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := daemon.OriginConfig{NodeConfig: daemon.NodeConfig{Store: store.DefaultConfig("")}}
			if err := loadConfig(cfgPath, &cfg); err != nil {
				return err
			}
			if err := nf.apply(cmd, &cfg.NodeConfig); err != nil {
				return err
			}
			if cmd.Flags().Changed("listen") {
				cfg.Listen = listen
			}
			if err := cfg.WithDefaults().Validate(); err != nil {
				return usageError{err}
			}
			n, err := daemon.RunOrigin(cmd.Context(), cfg, daemon.NewLogger(cfg.Log, stderr))
			if err != nil {
				return err
			}
			return wait(cmd.Context(), n)
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "YAML config file")
	cmd.Flags().StringVar(&listen, "listen", daemon.DefaultOriginListen, "push API listen address (port 0: any)")
	nf.add(cmd)
	return cmd
}

func newPeerCmd(stderr io.Writer) *cobra.Command {
	var (
		cfgPath, control, mirrorListen, originURL string
		nf                                        nodeFlags
	)
	cmd := &cobra.Command{
		Use:   "peer",
		Short: "Run a peer: fetch blobs from the swarm, verify them, serve them",
		Long: `peer runs the peer engine: it fetches blobs from other peers over libp2p
(TCP + TLS 1.3 + yamux), rarest chunk first, verifies every chunk's SHA-256
before storing or serving it, bans peers that send bad data, and serves what
it holds. Chunks it already holds from other blobs are never fetched again.

p2pctl drives it through the local control API (--control), on loopback or a
unix socket only, which also serves /metrics.

It also serves a pull-only OCI registry mirror on loopback (--mirror, default
127.0.0.1:7403; "off" disables it): point containerd's hosts.toml or Docker's
registry-mirrors at it, and image layers come through the swarm. Manifests
and first copies of layers come through the origin (--origin), which fetches
them from its configured upstream registries. See docs/containers.md.

Config (YAML, all optional but data_dir):
  control: 127.0.0.1:7402   # or unix:/run/p2pd/control.sock
  mirror:
    listen: 127.0.0.1:7403  # or off
    origin: http://127.0.0.1:7401
    default_registry: docker.io   # for requests without ?ns= (Docker)
` + nodeConfigHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := daemon.PeerConfig{NodeConfig: daemon.NodeConfig{Store: store.DefaultConfig("")}}
			if err := loadConfig(cfgPath, &cfg); err != nil {
				return err
			}
			if err := nf.apply(cmd, &cfg.NodeConfig); err != nil {
				return err
			}
			if cmd.Flags().Changed("control") {
				cfg.Control = control
			}
			if cmd.Flags().Changed("mirror") || cfg.Mirror.Listen == "" {
				cfg.Mirror.Listen = mirrorListen
			}
			if cmd.Flags().Changed("origin") {
				cfg.Mirror.Origin = originURL
			}
			if err := cfg.WithDefaults().Validate(); err != nil {
				return usageError{err}
			}
			n, err := daemon.RunPeer(cmd.Context(), cfg, daemon.NewLogger(cfg.Log, stderr))
			if err != nil {
				return err
			}
			return wait(cmd.Context(), n)
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "YAML config file")
	cmd.Flags().StringVar(&control, "control", daemon.DefaultControlListen, "control API address: loopback host:port or unix:/path")
	cmd.Flags().StringVar(&mirrorListen, "mirror", daemon.DefaultMirrorListen, `registry mirror address (loopback host:port), or "off"`)
	cmd.Flags().StringVar(&originURL, "origin", mirror.DefaultOrigin, "origin URL the registry mirror resolves images through")
	nf.add(cmd)
	return cmd
}

func newDevCmd(stdout, stderr io.Writer) *cobra.Command {
	var (
		cfgPath, demo string
		peers         int
		anyPorts      bool
		cfg           daemon.DevConfig
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a tracker, an origin and N peers in one process, with no config",
		Long: `dev starts a whole system on this machine for a first try: a tracker on
127.0.0.1:7400, an origin on 127.0.0.1:7401 and N peers, the first with its
control API on 127.0.0.1:7402, so that p2pctl works with no flags:

  p2pd dev --peers 5 &
  p2pctl --credentials DATA/credentials push backup.tar   # prints sha256:...
  p2pctl pull sha256:... -o copy.tar

--any-ports binds every listener to a free port instead. Data lives in a
temporary directory unless --data-dir is given.

The cluster is closed, like a real one: dev generates a private network key
and the push, announce and admin tokens into DATA/credentials and prints
that directory; give it to p2pctl with --credentials (or P2PD_CREDENTIALS).
--open runs without credentials instead.

--demo SIZE runs the main job and exits: push a generated SIZE blob, pull it on
every peer at once, print each peer's completion time, the bytes served by
peers versus the origin, and check every copy's SHA-256. The exit code is 1 if
any copy failed.`,
		Example: `  p2pd dev --peers 20 --demo 256MiB
  p2pd dev --peers 5`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dataDir := cfg.DataDir
			if err := loadConfig(cfgPath, &cfg); err != nil {
				return err
			}
			if cmd.Flags().Changed("peers") || cfg.Peers == 0 {
				cfg.Peers = peers
			}
			if cmd.Flags().Changed("data-dir") {
				cfg.DataDir = dataDir
			}
			if anyPorts {
				cfg.TrackerListen, cfg.OriginListen, cfg.ControlListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
			}
			var size int64
			if demo != "" {
				var err error
				if size, err = units.ParseSize(demo); err != nil || size <= 0 {
					return usageError{fmt.Errorf("--demo %q: want a size such as 256MiB", demo)}
				}
				if !cmd.Flags().Changed("any-ports") {
					cfg.TrackerListen, cfg.OriginListen, cfg.ControlListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
				}
				if cfg.Log.Level == "" {
					cfg.Log.Level = "warn"
				}
			}
			if err := cfg.WithDefaults().Validate(); err != nil {
				return usageError{err}
			}
			ctx := cmd.Context()
			c, err := daemon.RunDev(ctx, cfg, daemon.NewLogger(cfg.Log, stderr))
			if err != nil {
				return err
			}
			defer func() {
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
				defer cancel()
				c.Close(cctx)
			}()
			fmt.Fprintf(stdout, "tracker  %s\norigin   %s\n", c.Tracker.URL("http"), c.Origin.URL("http"))
			for i, p := range c.Peers {
				fmt.Fprintf(stdout, "peer-%d   control %s  p2p %s  mirror %s\n", i, p.Addrs["control"], p.Addrs["p2p"], p.Addrs["mirror"])
			}
			fmt.Fprintf(stdout, "data     %s\n", c.DataDir)
			if c.CredentialsDir != "" {
				fmt.Fprintf(stdout, "closed   p2pctl --credentials %s (or export P2PD_CREDENTIALS=%[1]s)\n", c.CredentialsDir)
			}
			fmt.Fprintln(stdout)
			if demo == "" {
				fmt.Fprintln(stdout, "running; Ctrl-C stops")
				select {
				case <-ctx.Done():
				case <-c.Done():
				}
				return nil
			}
			f, err := testbed.RunFanOut(ctx, c, size, uint64(time.Now().UnixNano()))
			if err != nil {
				return err
			}
			f.Print(stdout)
			return f.Err()
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "YAML config file (see internal/daemon.DevConfig)")
	cmd.Flags().IntVar(&peers, "peers", 3, "number of peers")
	cmd.Flags().StringVar(&cfg.DataDir, "data-dir", "", "data directory (default: a temporary one, removed at exit)")
	cmd.Flags().BoolVar(&anyPorts, "any-ports", false, "bind every listener to a free port")
	cmd.Flags().BoolVar(&cfg.Open, "open", false, "run without credentials: anyone who reaches the cluster may use it")
	cmd.Flags().StringVar(&demo, "demo", "", "run the fan-out demo with a blob of this size, then exit")
	return cmd
}
