package peer_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/p2pd/p2pd/chunker/chunkertest"
	"github.com/p2pd/p2pd/peer"
	"github.com/p2pd/p2pd/peer/peertest"
)

// With EnableQUIC, engines that listen on QUIC only talk over it.
func TestQUIC(t *testing.T) {
	tr := startTracker(t)
	c := peertest.NewCluster(t, tr, peertest.ClusterOptions{Peers: 1, Config: func(_ string, cfg *peer.Config) {
		cfg.EnableQUIC = true
		cfg.ListenAddrs = []string{"/ip4/127.0.0.1/udp/0/quic-v1"}
	}})
	for _, a := range c.Origin.Engine.Addrs() {
		if !strings.Contains(a, "/quic-v1/") {
			t.Fatalf("address %s is not QUIC", a)
		}
	}
	data := chunkertest.Bytes(17, 1<<20)
	m := peertest.SeedBlob(t, c.Origin, bytes.NewReader(data), peertest.SmallChunks)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Peers[0].Engine.Pull(ctx, m.Digest, peer.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	verifyCopy(t, c.Peers[0], m, data)
}

// A private network key rules QUIC out, with an error that says so: libp2p's
// QUIC transport would ignore the key and let anyone connect.
func TestQUICRefusesPSK(t *testing.T) {
	psk := bytes.Repeat([]byte{7}, 32)
	err := peer.Config{EnableQUIC: true, PSK: psk}.Validate()
	if !errors.Is(err, peer.ErrBadConfig) || !strings.Contains(err.Error(), "QUIC") {
		t.Fatalf("QUIC with a PSK: %v", err)
	}
	if err := (peer.Config{PSK: psk[:31]}).Validate(); !errors.Is(err, peer.ErrBadConfig) {
		t.Fatalf("31-byte PSK: %v", err)
	}
	if err := (peer.Config{PSK: psk}).Validate(); err != nil {
		t.Fatalf("TCP with a PSK: %v", err)
	}
}
