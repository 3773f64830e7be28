package peer_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/chunker/chunkertest"
	"github.com/p2pd/p2pd/peer"
	"github.com/p2pd/p2pd/peer/peertest"
)

// Concurrent Pulls of one blob share one download.
func TestConcurrentPullsShareOneDownload(t *testing.T) {
	tr := startTracker(t)
	c := peertest.NewCluster(t, tr, peertest.ClusterOptions{Peers: 1})
	const size = 4 << 20
	data := chunkertest.Bytes(9, size)
	m := peertest.SeedBlob(t, c.Origin, bytes.NewReader(data), peertest.SmallChunks)
	p := c.Peers[0]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var g errgroup.Group
	got := make([]*chunker.Manifest, 3)
	for i := range got {
		g.Go(func() error {
			var err error
			got[i], err = p.Engine.Pull(ctx, m.Digest, peer.PullOptions{})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	for i, gm := range got {
		if !gm.Equal(m) {
			t.Errorf("pull %d returned another manifest", i)
		}
	}
	if st := p.Stats(); st.BytesFromOrigins+st.BytesFromPeers != size {
		t.Errorf("fetched %d bytes for a %d-byte blob", st.BytesFromOrigins+st.BytesFromPeers, size)
	}
	if n := p.Logs.Count("pull complete"); n != 1 {
		t.Errorf("%d downloads completed, want 1", n)
	}
	verifyCopy(t, p, m, data)
}

// A Pull whose context ends stops the download when it was the only one
// waiting, and a later Pull starts afresh.
func TestPullCancel(t *testing.T) {
	tr := startTracker(t)
	c := peertest.NewCluster(t, tr, peertest.ClusterOptions{Peers: 1, Config: func(name string, cfg *peer.Config) {
		if name == "origin" {
			cfg.UploadRate = 1 << 20
		}
	}})
	data := chunkertest.Bytes(10, 1<<20)
	m := peertest.SeedBlob(t, c.Origin, bytes.NewReader(data), peertest.SmallChunks)
	p := c.Peers[0]
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		_, err := p.Engine.Pull(ctx, m.Digest, peer.PullOptions{Progress: func(pr peer.Progress) {
			if pr.Have > 0 {
				select {
				case <-started:
				default:
					close(started)
				}
			}
		}})
		errc <- err
	}()
	<-started
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("cancelled pull succeeded")
	}
	peertest.Eventually(t, 5*time.Second, func() error {
		if len(p.Engine.Blobs()) != 0 {
			return errorf("blobs after the cancelled pull: %+v", p.Engine.Blobs())
		}
		return nil
	})
	ctx2, cancel2 := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel2()
	if _, err := p.Engine.Pull(ctx2, m.Digest, peer.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	verifyCopy(t, p, m, data)
}
