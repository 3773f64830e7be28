package peer_test

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/chunker/chunkertest"
	"github.com/p2pd/p2pd/peer"
	"github.com/p2pd/p2pd/peer/peertest"
)

// verifyCopy checks that n's store holds m's blob, byte for byte.
func verifyCopy(t *testing.T, n *peertest.Node, m *chunker.Manifest, want []byte) {
	t.Helper()
	r, err := n.Store.OpenBlob(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := chunker.Verify(context.Background(), m, r); err != nil {
		t.Fatalf("%s: %v", n.Name, err)
	}
	if want != nil {
		got, err := io.ReadAll(io.NewSectionReader(r, 0, m.Size))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: blob differs", n.Name)
		}
	}
}

func TestPullFromOrigin(t *testing.T) {
	tr := startTracker(t)
	c := peertest.NewCluster(t, tr, peertest.ClusterOptions{Peers: 1})
	data := chunkertest.Bytes(1, 2<<20)
	m := peertest.SeedBlob(t, c.Origin, bytes.NewReader(data), peertest.SmallChunks)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var last peer.Progress
	got, err := c.Peers[0].Engine.Pull(ctx, m.Digest, peer.PullOptions{Progress: func(p peer.Progress) { last = p }})
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(m) {
		t.Fatalf("manifest differs")
	}
	verifyCopy(t, c.Peers[0], m, data)
	if last.Have != len(m.Chunks) || last.Total != len(m.Chunks) || last.BytesFromOrigins != m.Size {
		t.Errorf("final progress %+v, want all %d chunks, %d bytes from origins", last, len(m.Chunks), m.Size)
	}
	st, err := c.Peers[0].Engine.Status(m.Digest)
	if err != nil || !st.Complete || !st.Seeding {
		t.Errorf("status %+v, %v: want complete and seeding", st, err)
	}
	// Pulling again returns at once.
	if _, err := c.Peers[0].Engine.Pull(ctx, m.Digest, peer.PullOptions{}); err != nil {
		t.Fatal(err)
	}
}
