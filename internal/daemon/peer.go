package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/auth"
	"github.com/p2pd/p2pd/internal/shape"
	"github.com/p2pd/p2pd/internal/wire/ctlwire"
	"github.com/p2pd/p2pd/internal/wire/trackerwire"
	"github.com/p2pd/p2pd/origin/originclient"
	"github.com/p2pd/p2pd/peer"
	"github.com/p2pd/p2pd/peer/control"
	"github.com/p2pd/p2pd/peer/mirror"
	"github.com/p2pd/p2pd/peer/store"
	"github.com/p2pd/p2pd/tracker/trackerclient"
)

// Defaults shared by the roles that run a peer engine.
const (
	DefaultTrackerURL    = "http://" + DefaultTrackerListen
	DefaultControlListen = "127.0.0.1:7402"
)

// NodeConfig is what the peer and origin roles share: where their data
// lives, which tracker they use, and their peer engine and store.
type NodeConfig struct {
	// DataDir holds the chunk store and the identity key.
	DataDir string `yaml:"data_dir"`
	// Tracker is the tracker's base URL.
	Tracker string       `yaml:"tracker"`
	Peer    peer.Config  `yaml:"peer"`
	Store   store.Config `yaml:"store"`
	Log     LogConfig    `yaml:"log"`
	// Security closes the cluster: psk_file keeps outsiders off the
	// peer-to-peer connections, announce_token_file signs the announces,
	// ca_file trusts an https:// tracker's CA. An origin also serves its
	// API with the push and admin tokens and cert_file/key_file.
	Security auth.Config `yaml:"security"`
	// Hooks are set by the testbed, never by a config file.
	Hooks Hooks `yaml:"-"`
}

// Hooks let the testbed emulate a fleet with the same wiring as p2pd.
type Hooks struct {
	// Link shapes the engine's TCP connections (an emulated link).
	Link *shape.Link
	// WrapStore, if set, stands between the engine and its store: the
	// testbed's byzantine peers lie and corrupt through it.
	WrapStore func(peer.Store) peer.Store
}

func (c NodeConfig) withDefaults(role trackerwire.Role) NodeConfig {
	if c.Tracker == "" {
		c.Tracker = DefaultTrackerURL
	}
	c.Peer.Role = role
	c.Peer = c.Peer.WithDefaults()
	if c.Store == (store.Config{}) {
		c.Store = store.DefaultConfig("")
	}
	c.Store.Dir = filepath.Join(c.DataDir, "store")
	return c
}

func (c NodeConfig) validate() error {
	if c.DataDir == "" {
		return errors.New("data_dir is required")
	}
	if err := c.Peer.Validate(); err != nil {
		return err
	}
	return errors.Join(c.Log.Validate(), c.Security.Validate())
}

// engineStack is a store, a tracker client and a peer engine, started.
type engineStack struct {
	store  *store.Store
	engine *peer.Engine
	tc     *trackerclient.Client
	reg    *prometheus.Registry
	tcURL  string
}

func startEngine(ctx context.Context, c NodeConfig, cr *auth.Credentials, lg *slog.Logger) (*engineStack, error) {
	if err := os.MkdirAll(c.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	st, err := store.Open(c.Store, store.WithLogger(lg.With("component", "store")))
	if err != nil {
		return nil, err
	}
	tc, err := trackerclient.New(c.Tracker, trackerclient.WithHTTPClient(cr.Client(auth.ScopeAnnounce, trackerclient.DefaultTimeout)))
	if err != nil {
		st.Close()
		return nil, err
	}
	reg := newRegistry()
	var ps peer.Store = st
	if c.Hooks.WrapStore != nil {
		ps = c.Hooks.WrapStore(st)
	}
	c.Peer.PSK = cr.PSK
	eng, err := peer.New(c.Peer, peer.Deps{Store: ps, Tracker: tc, Logger: lg.With("component", "peer"), Registry: reg, Link: c.Hooks.Link})
	if err != nil {
		st.Close()
		return nil, err
	}
	if err := eng.Start(ctx); err != nil {
		eng.Close(context.WithoutCancel(ctx))
		st.Close()
		return nil, err
	}
	lg.Info("peer engine started", "peer_id", eng.ID(), "addrs", eng.Addrs(), "tracker", c.Tracker,
		"private_network", len(cr.PSK) > 0, "signed_announces", cr.Keys.Announce != "")
	return &engineStack{store: st, engine: eng, tc: tc, reg: reg, tcURL: c.Tracker}, nil
}

// close stops the engine and then closes the store.
func (s *engineStack) close(ctx context.Context) error {
	return errors.Join(s.closeEngine(ctx), s.store.Close())
}

// closeEngine stops the engine, finishing or discarding chunk writes in
// flight; Pulls in progress fail with peer.ErrClosed. It outlives ctx's
// cancellation, bounded by 30s.
func (s *engineStack) closeEngine(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	err := s.engine.Close(ctx)
	s.tc.CloseIdleConnections()
	return err
}

// PeerConfig is the YAML configuration of `p2pd peer`.
type PeerConfig struct {
	NodeConfig `yaml:",inline"`
	// Control is the local control API's address for p2pctl: a loopback
	// host:port, or unix:/path.
	Control string `yaml:"control"`
	// Mirror is the OCI registry mirror (off unless Mirror.Listen is
	// set; `p2pd peer` sets DefaultMirrorListen). Its address is
	// Node.Addrs["mirror"].
	Mirror mirror.Config `yaml:"mirror"`
}

// DefaultMirrorListen is where `p2pd peer` serves its registry mirror.
const DefaultMirrorListen = "127.0.0.1:7403"

func (c PeerConfig) mirrorOn() bool { return c.Mirror.Listen != "" && c.Mirror.Listen != "off" }

// WithDefaults fills zero fields.
func (c PeerConfig) WithDefaults() PeerConfig {
	c.NodeConfig = c.NodeConfig.withDefaults(trackerwire.RolePeer)
	if c.Control == "" {
		c.Control = DefaultControlListen
	}
	return c
}

// Validate reports why c cannot run.
func (c PeerConfig) Validate() error {
	return errors.Join(c.NodeConfig.validate(), c.Mirror.Validate())
}

// RunPeer starts a peer daemon: store, engine and control API. Its control
// address is Node.Addrs["control"]; its libp2p addresses Node.Addrs["p2p"].
func RunPeer(ctx context.Context, cfg PeerConfig, lg *slog.Logger) (*Node, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("peer: %w", err)
	}
	lg = lg.With("role", "peer")
	cr, err := loadSecurity("peer", cfg.Security)
	if err != nil {
		return nil, err
	}
	ln, err := control.Listen(cfg.Control)
	if err != nil {
		return nil, err
	}
	var mln net.Listener
	if cfg.mirrorOn() {
		if mln, err = listen("mirror", cfg.Mirror.Listen); err != nil {
			ln.Close()
			return nil, err
		}
	}
	closeListeners := func() {
		ln.Close()
		if mln != nil {
			mln.Close()
		}
	}
	es, err := startEngine(ctx, cfg.NodeConfig, cr, lg)
	if err != nil {
		closeListeners()
		return nil, err
	}
	var mir *mirror.Server
	var oc *originclient.Client
	if mln != nil {
		oc, err = originclient.New(cfg.Mirror.WithDefaults().Origin, originclient.WithUserAgent("p2pd-mirror"), originclient.WithHTTPClient(cr.Client(auth.ScopeAnnounce, 0)))
		if err == nil {
			mir, err = mirror.New(cfg.Mirror, mirror.Deps{Origin: oc, Blobs: engineAdapter{es}, Logger: lg.With("component", "mirror"), Registry: es.reg})
		}
		if err != nil {
			closeListeners()
			return nil, errors.Join(err, es.close(ctx))
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	n := newNode("peer", cancel)
	fns := []func(context.Context) error{}
	if mir != nil {
		n.Addrs["mirror"] = mln.Addr().String()
		fns = append(fns, func(ctx context.Context) error {
			defer oc.CloseIdleConnections()
			return mir.Serve(ctx, mln)
		})
	}
	n.Addrs["control"] = ln.Addr().String()
	if ln.Addr().Network() == "unix" {
		n.Addrs["control"] = "unix:" + ln.Addr().String()
	}
	n.Addrs["p2p"] = es.engine.Addrs()[0]
	ctl := control.New(engineAdapter{es}, es.reg, lg)
	n.run(ctx, append(fns, func(ctx context.Context) error {
		served := make(chan error, 1)
		go func() { served <- ctl.Serve(ctx, ln) }()
		select {
		case err := <-served: // serving failed
			return errors.Join(err, es.close(ctx))
		case <-ctx.Done():
		}
		// The engine stops while the control API shuts down: that ends
		// the pulls in progress, whose requests the API's graceful
		// shutdown would otherwise wait for until its timeout, pulling
		// on after the signal. The store closes last, once no request
		// can read it.
		err := es.closeEngine(ctx)
		return errors.Join(<-served, err, es.store.Close())
	})...)
	return n, nil
}

// engineAdapter presents the peer engine to the control API.
type engineAdapter struct{ s *engineStack }

func (a engineAdapter) Info() ctlwire.NodeInfo {
	e := a.s.engine
	return ctlwire.NodeInfo{PeerID: e.ID(), Addrs: e.Addrs(), Role: string(e.Config().Role), Tracker: a.s.tcURL}
}

func blobOf(b peer.BlobInfo) ctlwire.Blob {
	return ctlwire.Blob{Digest: b.Blob, ManifestID: b.ManifestID, Size: b.Size, Chunks: b.Chunks, Have: b.Have, Complete: b.Complete, Seeding: b.Seeding}
}

func notFound(err error) error {
	if errors.Is(err, peer.ErrNotFound) {
		return fmt.Errorf("%w: %w", control.ErrNotFound, err)
	}
	return err
}

func (a engineAdapter) Pull(ctx context.Context, d chunker.Digest, progress func(ctlwire.Progress)) (ctlwire.Blob, error) {
	return a.pull(ctx, d, progress, false)
}

// PullInOrder is Pull fetching the chunks near the front of the blob
// first, for the mirror, which streams them out in order.
func (a engineAdapter) PullInOrder(ctx context.Context, d chunker.Digest, progress func(ctlwire.Progress)) (ctlwire.Blob, error) {
	return a.pull(ctx, d, progress, true)
}

func (a engineAdapter) pull(ctx context.Context, d chunker.Digest, progress func(ctlwire.Progress), inOrder bool) (ctlwire.Blob, error) {
	start := time.Now()
	var last peer.Progress
	_, err := a.s.engine.Pull(ctx, d, peer.PullOptions{InOrder: inOrder, Progress: func(p peer.Progress) {
		last = p
		progress(ctlwire.Progress{Have: p.Have, Total: p.Total, Bytes: p.Bytes, Size: p.Size,
			BytesFromPeers: p.BytesFromPeers, BytesFromOrigins: p.BytesFromOrigins, Peers: p.Peers})
	}})
	if err != nil {
		return ctlwire.Blob{}, notFound(err)
	}
	info, err := a.s.engine.Status(d)
	if err != nil {
		return ctlwire.Blob{}, notFound(err)
	}
	b := blobOf(info)
	b.Elapsed = time.Since(start)
	b.BytesFromPeers, b.BytesFromOrigins = last.BytesFromPeers, last.BytesFromOrigins
	return b, nil
}

func (a engineAdapter) Blobs() []ctlwire.Blob {
	var out []ctlwire.Blob
	for _, b := range a.s.engine.Blobs() {
		out = append(out, blobOf(b))
	}
	return out
}

func (a engineAdapter) Remove(ctx context.Context, d chunker.Digest) error {
	return notFound(a.s.engine.Remove(ctx, d))
}

// Manifest, HasChunk and ReadChunk let the registry mirror stream a blob
// while it downloads.
func (a engineAdapter) Manifest(d chunker.Digest) (*chunker.Manifest, error) {
	return a.s.engine.Manifest(d)
}

func (a engineAdapter) HasChunk(d chunker.Digest) bool { return a.s.store.Has(d) }

func (a engineAdapter) ReadChunk(ctx context.Context, d chunker.Digest, dst []byte) ([]byte, error) {
	return a.s.store.ReadChunk(ctx, d, dst)
}

// OpenChunk lets the mirror send a stored, trusted chunk's file with
// sendfile.
func (a engineAdapter) OpenChunk(ctx context.Context, d chunker.Digest) (*os.File, error) {
	f, _, err := a.s.store.OpenChunk(ctx, d)
	return f, err
}

func (a engineAdapter) Open(ctx context.Context, d chunker.Digest) (io.ReadSeekCloser, int64, error) {
	info, err := a.s.engine.Status(d)
	if err != nil {
		return nil, 0, notFound(err)
	}
	if !info.Complete {
		return nil, 0, fmt.Errorf("%w: %s is not complete here (%d of %d chunks)", control.ErrNotFound, d, info.Have, info.Chunks)
	}
	m, err := a.s.store.Manifest(ctx, info.ManifestID)
	if err != nil {
		return nil, 0, notFound(err)
	}
	br, err := a.s.store.OpenBlob(ctx, m)
	if err != nil {
		return nil, 0, err
	}
	return br, br.Size(), nil
}
