package peer_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/p2pd/p2pd/chunker/chunkertest"
	"github.com/p2pd/p2pd/peer"
	"github.com/p2pd/p2pd/peer/peertest"
)

// TestPullBindsManifestToBlob: a pull whose manifest the swarm's origin
// vouched for (through the tracker) trusts it, and its per-chunk checks;
// a manifest that only peers serve, or any pull with FullVerify, is
// checked by reading the blob back and hashing it whole.
func TestPullBindsManifestToBlob(t *testing.T) {
	checks := func(n *peertest.Node) (byManifest, byBlob float64) {
		return metricValue(t, n.Registry, "p2pd_peer_pulls_verified_total", "by", "manifest"),
			metricValue(t, n.Registry, "p2pd_peer_pulls_verified_total", "by", "blob")
	}
	pull := func(n *peertest.Node, want []byte, seeder *peertest.Node) {
		t.Helper()
		m := peertest.SeedBlob(t, seeder, bytes.NewReader(want), peertest.SmallChunks)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := n.Engine.Pull(ctx, m.Digest, peer.PullOptions{}); err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
		verifyCopy(t, n, m, want)
	}

	t.Run("vouched by origin", func(t *testing.T) {
		c := peertest.NewCluster(t, startTracker(t), peertest.ClusterOptions{Peers: 1})
		pull(c.Peers[0], chunkertest.Bytes(1, 2<<20), c.Origin)
		if m, b := checks(c.Peers[0]); m != 1 || b != 0 {
			t.Errorf("pulls verified by manifest %v, by blob %v; want 1, 0", m, b)
		}
	})
	t.Run("peers only", func(t *testing.T) {
		c := peertest.NewCluster(t, startTracker(t), peertest.ClusterOptions{Peers: 2, NoOrigin: true})
		pull(c.Peers[1], chunkertest.Bytes(2, 2<<20), c.Peers[0])
		if m, b := checks(c.Peers[1]); m != 0 || b != 1 {
			t.Errorf("pulls verified by manifest %v, by blob %v; want 0, 1", m, b)
		}
	})
	t.Run("full verify", func(t *testing.T) {
		c := peertest.NewCluster(t, startTracker(t), peertest.ClusterOptions{Peers: 1, Config: func(_ string, cfg *peer.Config) {
			cfg.FullVerify = true
		}})
		pull(c.Peers[0], chunkertest.Bytes(3, 2<<20), c.Origin)
		if m, b := checks(c.Peers[0]); m != 0 || b != 1 {
			t.Errorf("pulls verified by manifest %v, by blob %v; want 0, 1", m, b)
		}
	})
}
