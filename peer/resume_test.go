package peer_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/p2pd/p2pd/chunker/chunkertest"
	"github.com/p2pd/p2pd/peer"
	"github.com/p2pd/p2pd/peer/peertest"
)

// A peer closed in the middle of a download and restarted on the same
// directory resumes: it keeps its peer ID, and the chunks it had verified
// are not fetched again.
func TestResumeAfterRestart(t *testing.T) {
	tr := startTracker(t)
	c := peertest.NewCluster(t, tr, peertest.ClusterOptions{NoOrigin: false})
	const size = 6 << 20
	data := chunkertest.Bytes(6, size)
	m := peertest.SeedBlob(t, c.Origin, bytes.NewReader(data), peertest.SmallChunks)

	cfg := peertest.TestConfig()
	cfg.DownloadRate = 4 << 20  // slow enough to stop it half way
	cfg.Sched.MaxDuplicates = 1 // no endgame duplicates: every byte fetched is needed
	p := peertest.StartNode(t, "puller", tr, cfg)
	id := p.Engine.ID()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	third := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		_, err := p.Engine.Pull(ctx, m.Digest, peer.PullOptions{Progress: func(pr peer.Progress) {
			if pr.Total > 0 && pr.Have >= pr.Total/3 {
				select {
				case <-third:
				default:
					close(third)
				}
			}
		}})
		errc <- err
	}()
	select {
	case <-third:
	case err := <-errc:
		t.Fatalf("pull ended before a third of the chunks arrived: %v", err)
	}
	// The rate limit is there to make the restart land mid-download; on a
	// loaded machine the download may be slower than it anyway, which is
	// fine: what matters is that chunks were still missing (checked below).
	t.Logf("the download rate limit held the download back for %v", p.Stats().DownloadRateDelay)
	p.Stop()
	if err := <-errc; !errors.Is(err, peer.ErrClosed) {
		t.Fatalf("interrupted pull: %v, want ErrClosed", err)
	}

	p.Start()
	if got := p.Engine.ID(); got != id {
		t.Errorf("peer ID changed across the restart: %s, then %s", id, got)
	}
	var held int64
	for _, ch := range m.Chunks {
		if p.Store.Has(ch.Digest) {
			held += int64(ch.Size)
		}
	}
	if held == 0 || held == size {
		t.Fatalf("%d of %d bytes held after the interruption; the test needs a partial download", held, size)
	}
	var last peer.Progress
	if _, err := p.Engine.Pull(ctx, m.Digest, peer.PullOptions{Progress: func(pr peer.Progress) { last = pr }}); err != nil {
		t.Fatal(err)
	}
	verifyCopy(t, p, m, data)
	st := p.Stats()
	fetched := int64(st.BytesFromPeers + st.BytesFromOrigins)
	t.Logf("held %d of %d bytes at the restart, then fetched %d", held, size, fetched)
	if fetched > size-held {
		t.Errorf("fetched %d bytes after the restart, but only %d were missing", fetched, size-held)
	}
	if got := last.BytesFromPeers + last.BytesFromOrigins; got != size-held {
		t.Errorf("progress counts %d bytes fetched, want %d", got, size-held)
	}
}
