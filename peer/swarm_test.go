package peer_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/p2pd/p2pd/chunker/chunkertest"
	"github.com/p2pd/p2pd/peer"
	"github.com/p2pd/p2pd/peer/peertest"
)

// One origin and five peers fetch a 12 MiB blob at once: every copy
// verifies, and the peers share the work, so the origin sends at most
// twice the blob.
func TestSwarm(t *testing.T) {
	tr := startTracker(t)
	c := peertest.NewCluster(t, tr, peertest.ClusterOptions{Peers: 5})
	const size = 12 << 20
	data := chunkertest.Bytes(2, size)
	m := peertest.SeedBlob(t, c.Origin, bytes.NewReader(data), peertest.SmallChunks)
	t.Logf("blob: %d bytes, %d chunks", m.Size, len(m.Chunks))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var g errgroup.Group
	for _, n := range c.Peers {
		g.Go(func() error {
			_, err := n.Engine.Pull(ctx, m.Digest, peer.PullOptions{})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	var fromPeers, fromOrigin uint64
	for _, n := range c.Peers {
		verifyCopy(t, n, m, data)
		st := n.Stats()
		fromPeers += st.BytesFromPeers
		fromOrigin += st.BytesFromOrigins
		t.Logf("%s: from peers %d, from origin %d, uploaded %d, rejected %d", n.Name, st.BytesFromPeers, st.BytesFromOrigins, st.BytesUploaded, st.ChunksRejected)
	}
	up := c.Origin.Stats().BytesUploaded
	t.Logf("origin uploaded %d bytes (%.2f× the blob); peers got %d from peers, %d from the origin", up, float64(up)/float64(size), fromPeers, fromOrigin)
	if up > 2*size {
		t.Errorf("origin uploaded %d bytes, more than twice the blob (%d)", up, 2*size)
	}
	if fromPeers == 0 {
		t.Errorf("no peer fetched anything from another peer")
	}
}
