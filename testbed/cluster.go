package testbed

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/p2pd/p2pd/internal/auth"
	"github.com/p2pd/p2pd/internal/daemon"
	"github.com/p2pd/p2pd/origin"
	"github.com/p2pd/p2pd/origin/originclient"
	"github.com/p2pd/p2pd/origin/upstream"
	"github.com/p2pd/p2pd/peer"
	"github.com/p2pd/p2pd/peer/control/controlclient"
	"github.com/p2pd/p2pd/tracker"
	"github.com/p2pd/p2pd/tracker/trackerclient"
	"go.uber.org/goleak"
)

// Options configure an in-process test cluster.
type Options struct {
	Peers   int
	Tracker tracker.Config
	Origin  origin.Config
	Peer    peer.Config
	// Upstream is the origin's upstream registries for the peers'
	// registry mirrors (each peer runs one on a free port).
	Upstream upstream.Config
	// Security is every node's; empty means credentials made for the
	// cluster (p2pd dev's default), plain HTTP.
	Security auth.Config
	// Logger receives every node's logs (default: discarded).
	Logger *slog.Logger
}

// Cluster is a dev cluster on free loopback ports in a test's temp dir,
// with clients for its APIs. It is torn down by t.Cleanup.
type Cluster struct {
	*daemon.Cluster
	OriginClient  *originclient.Client
	TrackerClient *trackerclient.Client
	Controls      []*controlclient.Client
}

// NewCluster starts a tracker, an origin and o.Peers peers through
// internal/daemon, as p2pd does.
func NewCluster(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	cfg := daemon.DevConfig{
		Peers:         o.Peers,
		DataDir:       t.TempDir(),
		TrackerListen: "127.0.0.1:0",
		OriginListen:  "127.0.0.1:0",
		ControlListen: "127.0.0.1:0",
		MirrorListen:  "127.0.0.1:0",
		Upstream:      o.Upstream,
		Tracker:       o.Tracker,
		Origin:        o.Origin,
		Peer:          o.Peer,
		Security:      o.Security,
	}
	if o.Peers < 1 {
		t.Fatalf("testbed: a cluster needs at least one peer, not %d", o.Peers)
	}
	dc, err := daemon.RunDev(context.Background(), cfg, o.Logger)
	if err != nil {
		t.Fatalf("testbed: start cluster: %v", err)
	}
	c := &Cluster{Cluster: dc}
	t.Cleanup(func() {
		for _, cc := range c.Controls {
			cc.Close()
		}
		if c.OriginClient != nil {
			c.OriginClient.CloseIdleConnections()
		}
		if c.TrackerClient != nil {
			c.TrackerClient.CloseIdleConnections()
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := dc.Close(ctx); err != nil {
			t.Errorf("testbed: close cluster: %v", err)
		}
	})
	if c.OriginClient, err = originclient.New(dc.Origin.URL("http"), originclient.WithHTTPClient(dc.Client(auth.ScopePush))); err != nil {
		t.Fatal(err)
	}
	if c.TrackerClient, err = trackerclient.New(dc.Tracker.URL("http"), trackerclient.WithHTTPClient(dc.Client(auth.ScopeAdmin))); err != nil {
		t.Fatal(err)
	}
	for _, p := range dc.Peers {
		cc, err := controlclient.New(p.Addrs["control"])
		if err != nil {
			t.Fatal(err)
		}
		c.Controls = append(c.Controls, cc)
	}
	return c
}

// Eventually polls f every 20ms until it returns nil, failing the test
// with f's last error after d.
func Eventually(t testing.TB, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v: %v", d, err)
		}
		time.Sleep(20 * time.Millisecond) // the polling interval
	}
}

// IgnoredGoroutines lists goroutines that outlive a cluster by design, for
// goleak: none of ours, only the standard library's and libp2p's
// process-wide ones.
func IgnoredGoroutines() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
		goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreTopFunction("github.com/libp2p/go-libp2p/p2p/transport/tcpreuse.(*ConnMgr).start.func1"),
	}
}
