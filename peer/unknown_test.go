package peer_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/wire/trackerwire"
	"github.com/p2pd/p2pd/peer"
	"github.com/p2pd/p2pd/peer/peertest"
)

// A blob nobody has fails with ErrNotFound within ManifestTimeout.
func TestPullUnknownBlob(t *testing.T) {
	const timeout = 1500 * time.Millisecond
	tr := startTracker(t)
	c := peertest.NewCluster(t, tr, peertest.ClusterOptions{Peers: 1, Config: func(_ string, cfg *peer.Config) {
		cfg.ManifestTimeout = timeout
	}})
	p := c.Peers[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	pull := func(t *testing.T, d chunker.Digest, why string) {
		t.Helper()
		start := time.Now()
		m, err := p.Engine.Pull(ctx, d, peer.PullOptions{})
		took := time.Since(start)
		if !errors.Is(err, peer.ErrNotFound) || m != nil {
			t.Fatalf("Pull = %v, %v; want ErrNotFound", m, err)
		}
		if !strings.Contains(err.Error(), why) || !strings.Contains(err.Error(), d.String()) {
			t.Errorf("error %q does not name the blob and say %q", err, why)
		}
		if took < timeout || took > timeout+3*time.Second {
			t.Errorf("took %v, want about the manifest timeout %v", took, timeout)
		}
		if _, err := p.Engine.Status(d); !errors.Is(err, peer.ErrNotFound) {
			t.Errorf("Status after the failed pull: %v, want ErrNotFound", err)
		}
	}

	t.Run("no swarm", func(t *testing.T) {
		pull(t, chunker.Sum([]byte("nobody has this")), "knows no swarm")
	})
	t.Run("every peer says NotFound", func(t *testing.T) {
		// The tracker hands out the origin for a blob it does not have.
		d := chunker.Sum([]byte("the origin does not have this"))
		_, err := tr.Announce(ctx, &trackerwire.AnnounceRequest{
			Blob: d, PeerID: c.Origin.Engine.ID(), Addrs: []string{strings.Split(c.Origin.Engine.Addrs()[0], "/p2p/")[0]},
			Role: trackerwire.RoleOrigin, NumChunks: 10, Complete: true, Event: trackerwire.EventStarted,
		})
		if err != nil {
			t.Fatal(err)
		}
		pull(t, d, "answered NotFound")
	})
}
