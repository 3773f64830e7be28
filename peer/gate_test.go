package peer_test

import (
	"context"
	"errors"
	"testing"
	"time"

	lpeer "github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pd/p2pd/internal/shape"
	"github.com/p2pd/p2pd/peer/peertest"
)

// maxInbound is the cap of the gate tests' node.
const maxInbound = 2

// cappedNode starts a node that takes at most max inbound connections and
// returns its address.
func cappedNode(t *testing.T, max int) lpeer.AddrInfo {
	t.Helper()
	cfg := peertest.TestConfig()
	cfg.MaxInbound = max
	n := peertest.NewNode(t, "capped", startTracker(t), cfg)
	n.Start()
	return nodeInfo(t, n)
}

// Over MaxInbound, a dialler's connection is refused before its TLS
// handshake: it does not connect at all, where before it connected and
// only its stream was refused. A slot freed by a closed connection is free
// again.
func TestInboundCapRefusesBeforeHandshake(t *testing.T) {
	info := cappedNode(t, maxInbound)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, b := rawHost(t), rawHost(t)
	if err := a.Connect(ctx, info); err != nil {
		t.Fatalf("first dialler: %v", err)
	}
	if err := b.Connect(ctx, info); err != nil {
		t.Fatalf("second dialler: %v", err)
	}
	if err := rawHost(t).Connect(ctx, info); err == nil {
		t.Fatal("a third dialler connected to a node with MaxInbound 2 (a connection over the cap)")
	}
	// The first dialler leaves; its slot frees once the node sees the
	// close. (A fresh host each time: a host remembers failed dials.)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	peertest.Eventually(t, 10*time.Second, func() error {
		if err := rawHost(t).Connect(ctx, info); err != nil {
			return errors.New("the slot of a closed connection is still taken")
		}
		return nil
	})
}

// Dials that arrive together, before any handshake has finished, are
// counted against the cap as they are accepted. The dialers' links add
// 100 ms each way, so that all the dials are in before the first
// handshake ends.
func TestInboundCapHoldsAgainstSimultaneousDials(t *testing.T) {
	info := cappedNode(t, maxInbound)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const dialers = 8
	errs := make(chan error, dialers)
	for range dialers {
		h := rawHostOn(t, shape.New(shape.Config{Latency: 100 * time.Millisecond}))
		go func() { errs <- h.Connect(ctx, info) }()
	}
	ok := 0
	for range dialers {
		if <-errs == nil {
			ok++
		}
	}
	if ok == 0 || ok > maxInbound {
		t.Fatalf("%d of %d simultaneous dials connected, want 1 to %d", ok, dialers, maxInbound)
	}
}
