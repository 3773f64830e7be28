package peer_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/chunker/chunkertest"
	"github.com/p2pd/p2pd/internal/wire/peerwire"
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

// An origin that never answers a manifest request (its link is full of a
// crowd's requests, say) does not hold a pull up while a peer has the
// manifest: the download asks several sources at once.
func TestManifestFromPeerWhileOriginIsMute(t *testing.T) {
	tr := startTracker(t)
	c := peertest.NewCluster(t, tr, peertest.ClusterOptions{Peers: 2, Config: func(_ string, cfg *peer.Config) {
		cfg.RequestTimeout = 10 * time.Minute // a sequential lookup would wait this long on the mute origin
		cfg.ManifestTimeout = 10 * time.Minute
	}})
	data := chunkertest.Bytes(24, 256<<10)
	m := peertest.SeedBlob(t, c.Origin, bytes.NewReader(data), peertest.SmallChunks)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := c.Peers[0].Engine.Pull(ctx, m.Digest, peer.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	c.Origin.Stop()

	// The mute origin: it exchanges Hellos and then reads and drops every
	// frame.
	mute := rawHost(t)
	mute.SetStreamHandler(protocol.ID(peerwire.ProtocolID), func(s network.Stream) {
		defer s.Reset()
		dec := peerwire.NewDecoder(bufio.NewReader(s), 0)
		if err := peerwire.Encode(s, peerwire.Hello{Version: peerwire.Version, PeerID: mute.ID().String()}); err != nil {
			return
		}
		for {
			if _, err := dec.Next(); err != nil {
				return
			}
		}
	})
	mid, err := m.ID()
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, a := range mute.Addrs() {
		addrs = append(addrs, a.String())
	}
	if _, err := tr.Announce(ctx, &trackerwire.AnnounceRequest{
		Blob: m.Digest, PeerID: mute.ID().String(), Addrs: addrs, Manifest: mid,
		Role: trackerwire.RoleOrigin, NumChunks: uint32(len(m.Chunks)), Complete: true, Event: trackerwire.EventStarted,
	}); err != nil {
		t.Fatal(err)
	}

	got, err := c.Peers[1].Engine.Pull(ctx, m.Digest, peer.PullOptions{})
	if err != nil {
		t.Fatalf("pull with a mute origin and a peer that has the blob: %v", err)
	}
	if got.Digest != m.Digest {
		t.Fatalf("pulled %s, want %s", got.Digest, m.Digest)
	}
	verifyCopy(t, c.Peers[1], m, data)
}
