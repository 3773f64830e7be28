package peer_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/p2pd/p2pd/chunker/chunkertest"
	"github.com/p2pd/p2pd/peer"
	"github.com/p2pd/p2pd/peer/byzantine"
	"github.com/p2pd/p2pd/peer/peertest"
)

// A peer that lies in its bitfield (claims every chunk, has none): its
// NotFound answers send the requests elsewhere, the download completes,
// and after 3 × 16 such answers it is banned, with the reason in the
// metric and the log.
func TestBitfieldLiarIsBanned(t *testing.T) {
	tr := startTracker(t)
	c := peertest.NewCluster(t, tr, peertest.ClusterOptions{Peers: 1})
	data := chunkertest.Bytes(7, 6<<20)
	m := peertest.SeedBlob(t, c.Origin, bytes.NewReader(data), peertest.SmallChunks)
	if len(m.Chunks) < 3*16+8 {
		t.Fatalf("%d chunks: too few for the liar to be asked 48 times", len(m.Chunks))
	}

	liar := peertest.NewNode(t, "liar", tr, peertest.TestConfig())
	liar.Wrap = byzantine.ClaimAll
	liar.Start()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// It fetches the manifest and, its store claiming every chunk,
	// believes itself complete at once.
	if _, err := liar.Engine.Pull(ctx, m.Digest, peer.PullOptions{}); err != nil {
		t.Fatal(err)
	}

	puller := c.Peers[0]
	if err := puller.Engine.Connect(ctx, liar.Engine.Addrs()[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := puller.Engine.Pull(ctx, m.Digest, peer.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	verifyCopy(t, puller, m, data)
	liarID := liar.Engine.ID()
	if _, banned := puller.Engine.Banned(liarID); !banned {
		t.Fatalf("the liar is not banned (penalties for lies: %v)", metricValue(t, puller.Registry, "p2pd_peer_penalties_total", "reason", "bitfield_lie"))
	}
	if got := metricValue(t, puller.Registry, "p2pd_peer_bans_total", "reason", "bitfield_lie"); got != 1 {
		t.Errorf("bans{reason=bitfield_lie} = %v, want 1", got)
	}
	if !puller.Logs.Contains("banned peer", liarID, "kind=bitfield_lie", "were not found") {
		t.Errorf("no log of the ban with its reason")
	}
}
