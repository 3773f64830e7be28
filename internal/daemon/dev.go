package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/p2pd/p2pd/internal/auth"
	"github.com/p2pd/p2pd/origin"
	"github.com/p2pd/p2pd/origin/upstream"
	"github.com/p2pd/p2pd/peer"
	"github.com/p2pd/p2pd/peer/mirror"
	"github.com/p2pd/p2pd/tracker"
)

// DevConfig configures `p2pd dev`: a tracker, an origin and N peers in one
// process. The zero value (plus Peers) runs on the default ports with a
// temporary data directory.
type DevConfig struct {
	// Peers is the number of peer daemons (default 3).
	Peers int `yaml:"peers"`
	// DataDir holds every node's data under tracker/, origin/, peer-N/.
	// Empty means a temporary directory removed by Close.
	DataDir string `yaml:"data_dir"`
	// TrackerListen, OriginListen and ControlListen (the first peer's
	// control API; the others pick free ports) default to the roles'
	// defaults, so that p2pctl finds them without flags. Port 0 works.
	TrackerListen string `yaml:"tracker_listen"`
	OriginListen  string `yaml:"origin_listen"`
	ControlListen string `yaml:"control_listen"`
	// MirrorListen is the first peer's registry mirror (default
	// DefaultMirrorListen; the others pick free ports); "off" runs no
	// mirrors.
	MirrorListen string `yaml:"mirror_listen"`
	// Upstream is the origin's upstream container registries, which the
	// mirrors pull images through (none by default).
	Upstream upstream.Config `yaml:"upstream"`
	// Tracker, Origin and Peer tune the components; a dev cluster announces
	// every second by default, so that it converges quickly.
	Tracker tracker.Config `yaml:"tracker"`
	Origin  origin.Config  `yaml:"origin"`
	Peer    peer.Config    `yaml:"peer"`
	Log     LogConfig      `yaml:"log"`
	// Security is every node's. Left empty, a dev cluster is closed all
	// the same: RunDev generates a private network key and the three
	// tokens into DataDir/credentials (see Cluster.Credentials), unless
	// Open is set. A dev cluster serves plain HTTP unless Security names
	// a certificate.
	Security auth.Config `yaml:"security"`
	// Open runs the cluster without credentials: anyone who can reach it
	// may announce, push and fetch.
	Open bool `yaml:"open"`
}

// WithDefaults fills zero fields.
func (c DevConfig) WithDefaults() DevConfig {
	if c.Peers == 0 {
		c.Peers = 3
	}
	if c.TrackerListen == "" {
		c.TrackerListen = DefaultTrackerListen
	}
	if c.OriginListen == "" {
		c.OriginListen = DefaultOriginListen
	}
	if c.ControlListen == "" {
		c.ControlListen = DefaultControlListen
	}
	if c.MirrorListen == "" {
		c.MirrorListen = DefaultMirrorListen
	}
	if c.Tracker.AnnounceInterval == 0 {
		c.Tracker.AnnounceInterval = time.Second
	}
	return c
}

// Validate reports why c cannot run.
func (c DevConfig) Validate() error {
	if c.Peers < 0 || c.Peers > 1000 {
		return fmt.Errorf("dev: peers %d is outside 0..1000", c.Peers)
	}
	if c.Open && c.Security != (auth.Config{}) {
		return errors.New("dev: open and security exclude each other")
	}
	return errors.Join(c.Tracker.Validate(), c.Origin.Validate(), c.Peer.Validate(), c.Log.Validate(), c.Security.Validate(), c.Upstream.Validate())
}

// Cluster is a running dev cluster.
type Cluster struct {
	Tracker *Node
	Origin  *Node
	Peers   []*Node
	DataDir string
	// Security is the nodes' credentials configuration; CredentialsDir
	// the directory RunDev generated them into (empty if it did not).
	Security       auth.Config
	CredentialsDir string
	// Credentials are the loaded credentials; Client makes HTTP clients
	// that sign with them.
	Credentials *auth.Credentials
	tempDir     bool
}

// Client returns an HTTP client for the cluster's tracker and origin
// that signs its requests with the token of scope (unsigned in an open
// cluster).
func (c *Cluster) Client(scope auth.Scope) *http.Client {
	return c.Credentials.Client(scope, 0)
}

// RunDev starts a tracker, an origin and cfg.Peers peers, each through the
// same Run function its role uses, and returns once all are serving.
func RunDev(ctx context.Context, cfg DevConfig, lg *slog.Logger) (_ *Cluster, err error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Cluster{DataDir: cfg.DataDir}
	if c.DataDir == "" {
		if c.DataDir, err = os.MkdirTemp("", "p2pd-dev-"); err != nil {
			return nil, err
		}
		c.tempDir = true
	}
	defer func() {
		if err != nil {
			c.Close(context.WithoutCancel(ctx))
		}
	}()
	c.Security = cfg.Security
	if c.Security == (auth.Config{}) && !cfg.Open {
		c.CredentialsDir = filepath.Join(c.DataDir, "credentials")
		if _, serr := os.Stat(filepath.Join(c.CredentialsDir, auth.FilePSK)); serr == nil { // a data dir used before
			c.Security, err = auth.DirConfig(c.CredentialsDir)
		} else {
			c.Security, err = auth.Generate(c.CredentialsDir, auth.GenerateOptions{})
		}
		if err != nil {
			return nil, fmt.Errorf("dev: %w", err)
		}
		lg.Info("dev cluster is closed: credentials in "+c.CredentialsDir+" (p2pctl --credentials)", "dir", c.CredentialsDir)
	}
	if c.Credentials, err = c.Security.Load(); err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	if c.Tracker, err = RunTracker(ctx, TrackerConfig{Listen: cfg.TrackerListen, Tracker: cfg.Tracker, Security: c.Security}, lg); err != nil {
		return nil, err
	}
	node := func(name string) NodeConfig {
		return NodeConfig{DataDir: filepath.Join(c.DataDir, name), Tracker: c.Tracker.URL("http"), Peer: cfg.Peer, Security: c.Security}
	}
	if c.Origin, err = RunOrigin(ctx, OriginConfig{NodeConfig: node("origin"), Listen: cfg.OriginListen, Origin: cfg.Origin, Upstream: cfg.Upstream}, lg); err != nil {
		return nil, err
	}
	for i := range cfg.Peers {
		ctl, mir := "127.0.0.1:0", "127.0.0.1:0"
		if i == 0 {
			ctl, mir = cfg.ControlListen, cfg.MirrorListen
		}
		if cfg.MirrorListen == "off" {
			mir = "off"
		}
		p, err := RunPeer(ctx, PeerConfig{NodeConfig: node(fmt.Sprintf("peer-%d", i)), Control: ctl,
			Mirror: mirror.Config{Listen: mir, Origin: c.Origin.URL("http")}}, lg.With("peer", i))
		if err != nil {
			return nil, err
		}
		c.Peers = append(c.Peers, p)
	}
	return c, nil
}

// Done is closed when any node of the cluster stops by itself.
func (c *Cluster) Done() <-chan struct{} {
	done := make(chan struct{})
	var once sync.Once
	for _, n := range c.nodes() {
		go func() {
			select {
			case <-n.Done():
				once.Do(func() { close(done) })
			case <-done:
			}
		}()
	}
	return done
}

func (c *Cluster) nodes() []*Node {
	var out []*Node
	for _, n := range append(append([]*Node{}, c.Peers...), c.Origin, c.Tracker) {
		if n != nil {
			out = append(out, n)
		}
	}
	return out
}

// Close stops the peers, then the origin, then the tracker, and removes a
// temporary data directory.
func (c *Cluster) Close(ctx context.Context) error {
	var errs []error
	for _, n := range c.nodes() {
		errs = append(errs, n.Close(ctx))
	}
	if c.tempDir {
		errs = append(errs, os.RemoveAll(c.DataDir))
	}
	return errors.Join(errs...)
}
