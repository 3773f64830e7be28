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

// A peer holding yesterday's backup fetches only the chunks that changed
// to get today's.
func TestDedupAcrossBlobs(t *testing.T) {
	tr := startTracker(t)
	c := peertest.NewCluster(t, tr, peertest.ClusterOptions{Peers: 1})
	const size = 16 << 20
	v1 := chunkertest.Bytes(7, size)
	v2 := bytes.Clone(v1)
	// Change about 5% in four places.
	patch := chunkertest.Bytes(8, 4*200<<10)
	for i, off := range []int{1 << 20, 5 << 20, 9 << 20, 13 << 20} {
		copy(v2[off:off+200<<10], patch[i*200<<10:])
	}
	m1 := peertest.SeedBlob(t, c.Origin, bytes.NewReader(v1), peertest.SmallChunks)
	m2 := peertest.SeedBlob(t, c.Origin, bytes.NewReader(v2), peertest.SmallChunks)

	p := c.Peers[0]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := p.Engine.Pull(ctx, m1.Digest, peer.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	before := p.Stats()
	var last peer.Progress
	if _, err := p.Engine.Pull(ctx, m2.Digest, peer.PullOptions{Progress: func(pr peer.Progress) { last = pr }}); err != nil {
		t.Fatal(err)
	}
	verifyCopy(t, p, m2, v2)
	after := p.Stats()
	fetched := (after.BytesFromPeers + after.BytesFromOrigins) - (before.BytesFromPeers + before.BytesFromOrigins)
	t.Logf("v2: fetched %d of %d bytes (%.1f%%)", fetched, size, 100*float64(fetched)/size)
	if fetched > size/10 {
		t.Errorf("fetched %d bytes for v2, more than 10%% of %d", fetched, size)
	}
	if fetched == 0 || last.BytesFromOrigins+last.BytesFromPeers == 0 {
		t.Errorf("fetched nothing: v2 is not v1")
	}
	// Both blobs are pinned and seeded.
	for _, bi := range p.Engine.Blobs() {
		if !bi.Complete || !bi.Seeding {
			t.Errorf("blob %s: %+v, want complete and seeding", bi.Blob, bi)
		}
	}
	if n := len(p.Engine.Blobs()); n != 2 {
		t.Errorf("%d blobs, want 2", n)
	}
}
