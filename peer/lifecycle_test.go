package peer_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/chunker/chunkertest"
	"github.com/p2pd/p2pd/peer"
	"github.com/p2pd/p2pd/peer/peertest"
	"github.com/p2pd/p2pd/peer/sched"
	"github.com/p2pd/p2pd/peer/store"
)

// An origin that restarts seeds its pinned blobs again, under the same
// peer ID, and new peers fetch from it.
func TestRestartReseeds(t *testing.T) {
	tr := startTracker(t)
	c := peertest.NewCluster(t, tr, peertest.ClusterOptions{Peers: 1})
	data := chunkertest.Bytes(13, 1<<20)
	m := peertest.SeedBlob(t, c.Origin, bytes.NewReader(data), peertest.SmallChunks)
	id := c.Origin.Engine.ID()
	key := filepath.Join(c.Origin.Dir, peer.DefaultIdentityFileName)
	fi, err := os.Stat(key)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("identity key mode %v, want 0600", fi.Mode().Perm())
	}

	c.Origin.Restart()
	if got := c.Origin.Engine.ID(); got != id {
		t.Errorf("peer ID %s after restart, was %s", got, id)
	}
	blobs := c.Origin.Engine.Blobs()
	if len(blobs) != 1 || blobs[0].Blob != m.Digest || !blobs[0].Seeding || !blobs[0].Complete || blobs[0].Chunks != len(m.Chunks) {
		t.Fatalf("blobs after restart: %+v", blobs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Peers[0].Engine.Pull(ctx, m.Digest, peer.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	verifyCopy(t, c.Peers[0], m, data)
}

func TestRemove(t *testing.T) {
	tr := startTracker(t)
	c := peertest.NewCluster(t, tr, peertest.ClusterOptions{Peers: 1})
	m := peertest.SeedBlob(t, c.Origin, bytes.NewReader(chunkertest.Bytes(14, 1<<20)), peertest.SmallChunks)
	p := c.Peers[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := p.Engine.Pull(ctx, m.Digest, peer.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	id, _ := m.ID()
	if ms := p.Store.Manifests(); len(ms) != 1 || ms[0].ID != id || !ms[0].Pinned {
		t.Fatalf("store manifests after the pull: %+v", ms)
	}
	if err := p.Engine.Remove(ctx, m.Digest); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Engine.Status(m.Digest); !errors.Is(err, peer.ErrNotFound) {
		t.Errorf("Status after Remove: %v, want ErrNotFound", err)
	}
	if ms := p.Store.Manifests(); len(ms) != 0 {
		t.Errorf("store manifests after Remove: %+v", ms)
	}
	if err := p.Engine.Remove(ctx, m.Digest); !errors.Is(err, peer.ErrNotFound) {
		t.Errorf("second Remove: %v, want ErrNotFound", err)
	}
	// The chunks stay (evictable) and a new Pull fetches nothing.
	before := p.Stats()
	if _, err := p.Engine.Pull(ctx, m.Digest, peer.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	if after := p.Stats(); after.BytesFromOrigins+after.BytesFromPeers != before.BytesFromOrigins+before.BytesFromPeers {
		t.Errorf("pulling again fetched %d bytes", after.BytesFromOrigins+after.BytesFromPeers-before.BytesFromOrigins-before.BytesFromPeers)
	}
}

func TestSeedIncomplete(t *testing.T) {
	tr := startTracker(t)
	n := peertest.StartNode(t, "n", tr, peertest.TestConfig())
	m := peertest.AddBlob(t, n, bytes.NewReader(chunkertest.Bytes(15, 1<<20)), peertest.SmallChunks)
	if err := n.Store.Delete(context.Background(), m.Chunks[3].Digest); err != nil {
		t.Fatal(err)
	}
	if err := n.Engine.Seed(context.Background(), m); !errors.Is(err, peer.ErrIncomplete) {
		t.Fatalf("Seed: %v, want ErrIncomplete", err)
	}
	if len(n.Engine.Blobs()) != 0 {
		t.Errorf("incomplete blob listed: %+v", n.Engine.Blobs())
	}
}

func TestLifecycle(t *testing.T) {
	tr := startTracker(t)
	st, err := store.Open(store.DefaultConfig(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	e, err := peer.New(peertest.TestConfig(), peer.Deps{Store: st, Tracker: tr})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Pull(ctx, chunker.Sum(nil), peer.PullOptions{}); !errors.Is(err, peer.ErrNotStarted) {
		t.Errorf("Pull before Start: %v", err)
	}
	if e.ID() != "" || e.Addrs() != nil {
		t.Errorf("ID and Addrs before Start: %q %v", e.ID(), e.Addrs())
	}
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx); err == nil {
		t.Errorf("second Start succeeded")
	}
	if len(e.Addrs()) == 0 {
		t.Errorf("no addresses")
	}
	for range 2 {
		if err := e.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Seed(ctx, &chunker.Manifest{}); err == nil {
		t.Errorf("Seed after Close succeeded")
	}
	if _, err := e.Pull(ctx, chunker.Sum([]byte("x")), peer.PullOptions{}); !errors.Is(err, peer.ErrClosed) {
		t.Errorf("Pull after Close: %v, want ErrClosed", err)
	}
	if err := e.Start(ctx); !errors.Is(err, peer.ErrClosed) {
		t.Errorf("Start after Close: %v, want ErrClosed", err)
	}
	// Close without Start.
	e2, err := peer.New(peertest.TestConfig(), peer.Deps{Store: st, Tracker: tr})
	if err != nil {
		t.Fatal(err)
	}
	if err := e2.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*peer.Config)
	}{
		{"bad listen addr", func(c *peer.Config) { c.ListenAddrs = []string{"127.0.0.1:0"} }},
		{"bad role", func(c *peer.Config) { c.Role = "leech" }},
		{"negative rate", func(c *peer.Config) { c.UploadRate = -1 }},
		{"negative slots", func(c *peer.Config) { c.UploadSlots = -1 }},
		{"huge piece", func(c *peer.Config) { c.PieceSize = 2 << 20 }},
		{"negative timeout", func(c *peer.Config) { c.ManifestTimeout = -time.Second }},
		{"bad sched", func(c *peer.Config) { c.Sched.OriginPolicy = sched.OriginPolicy(9) }},
		{"bad announce", func(c *peer.Config) { c.Announce.Jitter = 2 }},
		{"long zone", func(c *peer.Config) { c.Zone = string(make([]byte, 65)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := peertest.TestConfig()
			tc.mod(&cfg)
			if err := cfg.Validate(); !errors.Is(err, peer.ErrBadConfig) {
				t.Errorf("Validate: %v, want ErrBadConfig", err)
			}
		})
	}
	if err := (peer.Config{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
	if d := (peer.Config{}).WithDefaults(); d.UploadSlots != peer.DefaultUploadSlots || d.Sched.RequestTimeout != peer.DefaultRequestTimeout ||
		d.Sched.MaxInflight != peer.DefaultMaxInflightTotal {
		t.Errorf("defaults: %+v", d)
	}
	// A negative MaxInflight (no cap, for long fat paths) survives the
	// defaults and is valid.
	uncapped := peer.Config{Sched: sched.Config{MaxInflight: -1}}
	if d := uncapped.WithDefaults(); d.Sched.MaxInflight != -1 {
		t.Errorf("MaxInflight -1 became %d", d.Sched.MaxInflight)
	}
	if err := uncapped.Validate(); err != nil {
		t.Errorf("MaxInflight -1: %v", err)
	}
	if _, err := peer.New(peer.Config{}, peer.Deps{}); !errors.Is(err, peer.ErrBadConfig) {
		t.Errorf("New without deps: %v", err)
	}
}
