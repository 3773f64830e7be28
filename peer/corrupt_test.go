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

// A peer that serves corrupt chunks: they are rejected and fetched
// elsewhere, the peer is banned (metric and log), the download completes.
func TestCorruptPeerIsBanned(t *testing.T) {
	tr := startTracker(t)
	c := peertest.NewCluster(t, tr, peertest.ClusterOptions{Peers: 1})
	data := chunkertest.Bytes(5, 3<<20)
	m := peertest.SeedBlob(t, c.Origin, bytes.NewReader(data), peertest.SmallChunks)

	bad := peertest.NewNode(t, "bad", tr, peertest.TestConfig())
	bad.Wrap = peertest.CorruptReads
	bad.Start()
	peertest.SeedBlob(t, bad, bytes.NewReader(data), peertest.SmallChunks)

	puller := c.Peers[0]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Meet the bad peer before the download starts, so that the
	// scheduler asks it (a peer) before the origin (a fallback).
	if err := puller.Engine.Connect(ctx, bad.Engine.Addrs()[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := puller.Engine.Pull(ctx, m.Digest, peer.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	verifyCopy(t, puller, m, data)

	st := puller.Stats()
	badID := bad.Engine.ID()
	if st.ChunksRejected < 3 {
		t.Errorf("%d chunks rejected, want at least 3 (the ban threshold)", st.ChunksRejected)
	}
	if got := metricValue(t, puller.Registry, "p2pd_peer_chunks_rejected_total"); got != float64(st.ChunksRejected) {
		t.Errorf("chunks_rejected metric %v, stats %d", got, st.ChunksRejected)
	}
	if got := metricValue(t, puller.Registry, "p2pd_peer_bans_total", "reason", "corrupt_chunks"); got != 1 {
		t.Errorf("bans{reason=corrupt_chunks} = %v, want 1", got)
	}
	if _, banned := puller.Engine.Banned(badID); !banned {
		t.Errorf("bad peer %s is not banned", badID)
	}
	if !puller.Logs.Contains("banned peer", badID, "kind=corrupt_chunks", "failed verification") {
		t.Errorf("no log of the ban with its reason")
	}
	if st.BytesFromOrigins == 0 {
		t.Errorf("nothing came from the origin: the rejected chunks were not fetched elsewhere")
	}
	if bst := bad.Stats(); bst.BytesUploaded == 0 {
		t.Errorf("the bad peer served nothing: the test did not exercise it")
	}
	// The banned peer is refused from now on.
	if err := puller.Engine.Connect(ctx, bad.Engine.Addrs()[0]); err == nil {
		t.Errorf("connecting to the banned peer succeeded")
	}
	peertest.Eventually(t, 5*time.Second, func() error {
		if st := puller.Stats(); st.Connections != 1 {
			return errorf("puller has %d connections, want 1 (the origin)", st.Connections)
		}
		return nil
	})
}
