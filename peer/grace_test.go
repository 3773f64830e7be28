package peer_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/chunker/chunkertest"
	"github.com/p2pd/p2pd/peer"
	"github.com/p2pd/p2pd/peer/peertest"
)

// A node connected to the origin and to a peer that holds the blobs it
// pulls takes nothing from the origin: the origin's bitfield, which may
// come first, is held back until the peer's has arrived (OriginGrace).
func TestOriginGrace(t *testing.T) {
	tr := startTracker(t)
	c := peertest.NewCluster(t, tr, peertest.ClusterOptions{Peers: 2})
	holder, puller := c.Peers[0], c.Peers[1]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var blobs []*chunker.Manifest
	for i := range 6 {
		m := peertest.SeedBlob(t, c.Origin, bytes.NewReader(chunkertest.Bytes(uint64(100+i), 1<<20)), peertest.SmallChunks)
		if _, err := holder.Engine.Pull(ctx, m.Digest, peer.PullOptions{}); err != nil {
			t.Fatal(err)
		}
		blobs = append(blobs, m)
	}
	// A first pull connects the puller to both through the tracker, which
	// tells it which one is the origin.
	if _, err := puller.Engine.Pull(ctx, blobs[0].Digest, peer.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	for i, m := range blobs[1:] {
		var last peer.Progress
		if _, err := puller.Engine.Pull(ctx, m.Digest, peer.PullOptions{Progress: func(p peer.Progress) { last = p }}); err != nil {
			t.Fatal(err)
		}
		if last.BytesFromOrigins != 0 || last.BytesFromPeers != m.Size {
			t.Errorf("blob %d %s: %d bytes from the origin, %d from peers; want all %d from the peer",
				i+1, m.Digest, last.BytesFromOrigins, last.BytesFromPeers, m.Size)
		}
	}
}
