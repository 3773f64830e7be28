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

// Two peers that dial each other at once end up with one session, the
// same on both sides, and it works.
func TestSimultaneousConnect(t *testing.T) {
	tr := startTracker(t)
	a := peertest.StartNode(t, "a", tr, peertest.TestConfig())
	b := peertest.StartNode(t, "b", tr, peertest.TestConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 5 {
		var g errgroup.Group
		g.Go(func() error { return a.Engine.Connect(ctx, b.Engine.Addrs()[0]) })
		g.Go(func() error { return b.Engine.Connect(ctx, a.Engine.Addrs()[0]) })
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	peertest.Eventually(t, 5*time.Second, func() error {
		if ca, cb := a.Stats().Connections, b.Stats().Connections; ca != 1 || cb != 1 {
			return errorf("connections %d and %d, want 1 and 1", ca, cb)
		}
		return nil
	})
	data := chunkertest.Bytes(16, 1<<20)
	m := peertest.SeedBlob(t, a, bytes.NewReader(data), peertest.SmallChunks)
	if _, err := b.Engine.Pull(ctx, m.Digest, peer.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	verifyCopy(t, b, m, data)
}

// A dial that ends in no session counts as a failure, by the stage that
// failed: connect (no peer listening) or handshake (the peer refuses the
// stream, here for want of inbound room).
func TestDialFailuresCounted(t *testing.T) {
	tr := startTracker(t)
	a := peertest.StartNode(t, "a", tr, peertest.TestConfig())
	full := peertest.TestConfig()
	full.MaxInbound = 1
	b := peertest.StartNode(t, "b", tr, full)
	c := peertest.StartNode(t, "c", tr, peertest.TestConfig())
	gone := peertest.StartNode(t, "gone", tr, peertest.TestConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	addr := gone.Engine.Addrs()[0]
	gone.Stop()
	if err := a.Engine.Connect(ctx, addr); err == nil {
		t.Fatal("connecting to a stopped peer succeeded")
	}
	if got := metricValue(t, a.Registry, "p2pd_peer_dial_failures_total", "stage", "connect"); got != 1 {
		t.Errorf("connect failures = %v, want 1", got)
	}

	if err := c.Engine.Connect(ctx, b.Engine.Addrs()[0]); err != nil {
		t.Fatal(err)
	}
	if err := a.Engine.Connect(ctx, b.Engine.Addrs()[0]); err == nil {
		t.Fatal("connecting to a peer with no inbound room succeeded")
	}
	if got := metricValue(t, a.Registry, "p2pd_peer_dial_failures_total", "stage", "handshake"); got != 1 {
		t.Errorf("handshake failures = %v, want 1", got)
	}
	if st := a.Stats(); st.DialFailures != 2 {
		t.Errorf("Stats().DialFailures = %d, want 2", st.DialFailures)
	}
	if st := c.Stats(); st.DialFailures != 0 {
		t.Errorf("a dial that worked counted as failed: %d", st.DialFailures)
	}
}
