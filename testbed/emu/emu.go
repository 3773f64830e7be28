// Package emu runs a testbed scenario in emulation: a tracker, the
// origins and every peer in this process, built by internal/daemon exactly
// as p2pd builds them, talking over real loopback TCP sockets with the
// real data plane (libp2p, TLS 1.3, yamux, SHA-256 on every chunk, fsynced
// stores). Each origin and peer gets its emulated link (internal/shape) in
// its transport: upload and download token buckets shared by all its
// connections, and one-way latency with jitter. Byzantine classes run
// with their stores wrapped (peer/byzantine). The testbed/fleet package
// drives the peers: pulls through each peer's control API, as `p2pctl
// pull` does, the events, the sampling and the result. A kill closes the
// node as a leave does.
package emu

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/auth"
	"github.com/p2pd/p2pd/internal/daemon"
	"github.com/p2pd/p2pd/internal/shape"
	"github.com/p2pd/p2pd/origin"
	"github.com/p2pd/p2pd/origin/originclient"
	"github.com/p2pd/p2pd/peer"
	"github.com/p2pd/p2pd/peer/byzantine"
	"github.com/p2pd/p2pd/testbed/fleet"
	"github.com/p2pd/p2pd/testbed/result"
	"github.com/p2pd/p2pd/testbed/scenario"
	"github.com/p2pd/p2pd/tracker"
	"github.com/p2pd/p2pd/tracker/trackerclient"
)

// Options tune a run beyond its scenario.
type Options struct {
	// Dir is where the nodes' data directories go (default
	// fleet.DefaultDir()). A temporary directory is made in it and
	// removed at the end.
	Dir string
	// Logger receives every node's logs (default: discarded).
	Logger *slog.Logger
	// Progress receives each sample as the run goes.
	Progress result.Progress
	// Tune, if set, adjusts every node's peer engine configuration.
	Tune func(*peer.Config)
	// AnnounceInterval is the tracker's; 0 means the tracker's own default
	// (tracker.DefaultAnnounceInterval), which p2pd and the simulator use
	// too. It was 1s here until session 13: 1,000 emulated peers then
	// announced 1,000 times a second, and that alone kept the host 8 points
	// busier (73% against 65% of both CPUs in emulated fanout-1000), enough
	// to flag the run host-bound, for no change in completion times
	// (docs/benchmarks.md, "Session 13").
	AnnounceInterval time.Duration
	// Verify reads every completed peer's copy back after the run and
	// checks it (fleet.Config.Verify).
	Verify bool
}

// cluster is the nodes of a run: the tracker and the origins, and the
// peers as the fleet starts and stops them. It is the fleet's Hosts.
type cluster struct {
	s   scenario.Scenario
	o   Options
	dir string
	log *slog.Logger
	tc  *trackerclient.Client
	// trackerAddr is where the tracker listens, and listens again after
	// a tracker-down event.
	trackerAddr string
	blob        chunker.Digest

	mu      sync.Mutex // tracker and origins, for the service events
	tracker *daemon.Node
	origins []*daemon.Node
	// links are the peers' emulated links, by scenario.Peer.Index: a peer
	// that starts again keeps its link.
	links []*shape.Link
	fleet *fleet.Fleet
	// delta and baseStore are a delta run's: what version 2 changed, and
	// a closed store holding version 1 that every peer's store starts as
	// a copy of (hard links).
	delta     *result.Delta
	baseStore string
	// security is every node's: the emulated fleet runs closed, like a
	// real one (a private network key and tokens made for the run).
	security auth.Config
	creds    *auth.Credentials
}

// Run runs s in emulation mode and returns what it measured.
func Run(ctx context.Context, s scenario.Scenario, o Options) (res *result.Result, err error) {
	s = s.WithDefaults()
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	for _, w := range fleet.CheckFDs(FDsNeeded(s), fmt.Sprintf("emulating %d peers", s.NumPeers())) {
		o.Logger.Warn(w)
	}
	tmp, err := fleet.TempDir(o.Dir, "p2pd-testbed-")
	if err != nil {
		return nil, fmt.Errorf("emu: %w", err)
	}
	defer os.RemoveAll(tmp)
	c := &cluster{s: s, o: o, dir: tmp, log: o.Logger}
	defer func() { err = errors.Join(err, c.close()) }()
	if err := c.setup(ctx); err != nil {
		return nil, err
	}
	c.fleet = fleet.New(fleet.Config{
		Scenario: s, Mode: scenario.ModeEmu, Blob: c.blob, Tracker: c.tc, Hosts: c,
		Logger: c.log, Progress: o.Progress, Verify: o.Verify, Delta: c.delta,
	})
	return c.fleet.Run(ctx), nil
}

func (c *cluster) peerConfig() peer.Config {
	var cfg peer.Config
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	if c.o.Tune != nil {
		c.o.Tune(&cfg)
	}
	return cfg
}

// setup starts the tracker and the origins and pushes the blob to every
// origin.
func (c *cluster) setup(ctx context.Context) error {
	var err error
	if c.security, err = auth.Generate(filepath.Join(c.dir, "credentials"), auth.GenerateOptions{}); err != nil {
		return fmt.Errorf("emu: %w", err)
	}
	if c.creds, err = c.security.Load(); err != nil {
		return fmt.Errorf("emu: %w", err)
	}
	c.trackerAddr = "127.0.0.1:0"
	if c.tracker, err = c.runTracker(ctx); err != nil {
		return err
	}
	c.trackerAddr = c.tracker.Addrs["http"]
	if c.tc, err = trackerclient.New(c.tracker.URL("http"), trackerclient.WithHTTPClient(c.creds.Client(auth.ScopeAdmin, trackerclient.DefaultTimeout))); err != nil {
		return err
	}
	for i := range c.s.Origins.Count {
		n, err := c.runOrigin(ctx, i)
		if err != nil {
			return err
		}
		c.origins = append(c.origins, n)
		oc, err := originclient.New(n.URL("http"), originclient.WithHTTPClient(c.creds.Client(auth.ScopePush, 0)))
		if err != nil {
			return err
		}
		// A delta run's origins hold version 1 as well.
		versions := []int{2}
		if c.s.Blob.Base != nil {
			versions = []int{1, 2}
		}
		for _, v := range versions {
			size := int64(c.s.Blob.Size)
			pr, err := oc.Push(ctx, c.s.BlobVersion(v), originclient.PushOptions{Size: size})
			if err != nil {
				oc.CloseIdleConnections()
				return fmt.Errorf("emu: push version %d to origin %d: %w", v, i, err)
			}
			c.blob = pr.Digest
		}
		oc.CloseIdleConnections()
	}
	if c.s.Blob.Base != nil {
		if err := c.setupBase(ctx); err != nil {
			return err
		}
	}
	for _, p := range c.s.Expand() {
		c.links = append(c.links, c.s.PeerLink(p))
	}
	return nil
}

// runTracker starts a tracker on c.trackerAddr; it runs until closed.
func (c *cluster) runTracker(ctx context.Context) (*daemon.Node, error) {
	n, err := daemon.RunTracker(context.WithoutCancel(ctx), daemon.TrackerConfig{
		Listen:   c.trackerAddr,
		Tracker:  tracker.Config{AnnounceInterval: c.o.AnnounceInterval},
		Security: c.security,
	}, c.log.With("node", "tracker"))
	if err != nil {
		return nil, fmt.Errorf("emu: tracker: %w", err)
	}
	return n, nil
}

// runOrigin starts origin i on its data directory; it runs until closed.
func (c *cluster) runOrigin(ctx context.Context, i int) (*daemon.Node, error) {
	n, err := daemon.RunOrigin(context.WithoutCancel(ctx), daemon.OriginConfig{
		NodeConfig: daemon.NodeConfig{
			DataDir:  filepath.Join(c.dir, fmt.Sprintf("origin-%d", i)),
			Tracker:  "http://" + c.trackerAddr,
			Peer:     c.peerConfig(),
			Hooks:    daemon.Hooks{Link: c.s.OriginLink(i)},
			Security: c.security,
		},
		Listen: "127.0.0.1:0",
		Origin: origin.Config{Chunker: c.s.Blob.Chunker},
	}, c.log.With("node", fmt.Sprintf("origin-%d", i)))
	if err != nil {
		return nil, fmt.Errorf("emu: origin %d: %w", i, err)
	}
	return n, nil
}

// StopTracker stops the tracker; its records are gone.
func (c *cluster) StopTracker(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tracker == nil {
		return errors.New("emu: the tracker is not running")
	}
	err := c.tracker.Close(ctx)
	c.tracker = nil
	return err
}

// StartTracker starts a new, empty tracker where the old one listened.
func (c *cluster) StartTracker(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tracker != nil {
		return errors.New("emu: the tracker is running")
	}
	n, err := c.runTracker(ctx)
	if err != nil {
		return err
	}
	c.tracker = n
	return nil
}

// RestartOrigins stops every origin and starts it again on its data
// directory, as a restarted p2pd origin would be.
func (c *cluster) RestartOrigins(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, n := range c.origins {
		if n == nil {
			continue
		}
		err := n.Close(ctx)
		c.origins[i] = nil
		if err != nil {
			return fmt.Errorf("emu: stop origin %d: %w", i, err)
		}
		if c.origins[i], err = c.runOrigin(ctx, i); err != nil {
			return err
		}
	}
	return nil
}

// StartPeer starts p's node on its data directory, with its link and,
// for a byzantine class, its store wrapped. Stop closes the node, for a
// kill as for a leave.
func (c *cluster) StartPeer(ctx context.Context, p scenario.Peer) (fleet.Node, error) {
	hooks := daemon.Hooks{Link: c.links[p.Index]}
	switch p.Behavior {
	case scenario.Corrupt:
		hooks.WrapStore = byzantine.CorruptReads
	case scenario.Liar:
		hooks.WrapStore = byzantine.ClaimAll
	case scenario.Stall:
		hooks.WrapStore = byzantine.Stall
	}
	cfg := c.peerConfig()
	cfg.Zone, cfg.Rack = p.Zone, p.Rack
	cfg.MaxConns = cmp.Or(c.s.Conns.Max, cfg.MaxConns)
	cfg.MaxInbound = cmp.Or(c.s.Conns.Inbound, cfg.MaxInbound)
	dataDir := filepath.Join(c.dir, p.Name)
	if err := c.preload(dataDir); err != nil {
		return fleet.Node{}, err
	}
	// The node outlives the run's context, which ends before the copies
	// are verified; Stop and the fleet's Close stop it.
	n, err := daemon.RunPeer(context.WithoutCancel(ctx), daemon.PeerConfig{
		NodeConfig: daemon.NodeConfig{DataDir: dataDir, Tracker: "http://" + c.trackerAddr, Peer: cfg, Hooks: hooks, Security: c.security},
		Control:    "127.0.0.1:0",
	}, c.log.With("node", p.Name))
	if err != nil {
		return fleet.Node{}, err
	}
	return fleet.Node{
		Control: n.Addrs["control"],
		Stop:    func(ctx context.Context, _ bool) error { return n.Close(ctx) },
	}, nil
}

// close stops every node: the peers, then the origins, then the tracker.
func (c *cluster) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	if c.fleet != nil {
		errs = append(errs, c.fleet.Close(ctx))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.origins {
		if n != nil {
			errs = append(errs, n.Close(ctx))
		}
	}
	if c.tc != nil {
		c.tc.CloseIdleConnections()
	}
	if c.tracker != nil {
		errs = append(errs, c.tracker.Close(ctx))
	}
	return errors.Join(errs...)
}
