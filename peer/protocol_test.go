package peer_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	lpeer "github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/p2pd/p2pd/internal/wire/peerwire"
	"github.com/p2pd/p2pd/peer"
	"github.com/p2pd/p2pd/peer/peertest"
)

// rawHost is a bare libp2p host on the engine's transport stack, to speak
// the protocol by hand.
func rawHost(t *testing.T) host.Host {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h, err := peer.NewHost(peer.Config{}, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// rawStream opens a protocol stream from h to n.
func rawStream(t *testing.T, h host.Host, n *peertest.Node) (network.Stream, *peerwire.Decoder) {
	t.Helper()
	info := nodeInfo(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Connect(ctx, info); err != nil {
		t.Fatal(err)
	}
	s, err := h.NewStream(ctx, info.ID, protocol.ID(peerwire.ProtocolID))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Reset() })
	_ = s.SetDeadline(time.Now().Add(10 * time.Second))
	return s, peerwire.NewDecoder(bufio.NewReader(s), 0)
}

// nodeInfo is n's peer ID and first address.
func nodeInfo(t testing.TB, n *peertest.Node) lpeer.AddrInfo {
	t.Helper()
	a, err := ma.NewMultiaddr(n.Engine.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	info, err := lpeer.AddrInfoFromP2pAddr(a)
	if err != nil {
		t.Fatal(err)
	}
	return *info
}

// hello does the handshake on a raw stream.
func hello(t *testing.T, h host.Host, s network.Stream, dec *peerwire.Decoder) {
	t.Helper()
	helloWith(t, h, s, dec, 0)
}

// helloWith is hello advertising features (peerwire.Hello.Features).
func helloWith(t *testing.T, h host.Host, s network.Stream, dec *peerwire.Decoder, features uint32) {
	t.Helper()
	if err := peerwire.Encode(s, peerwire.Hello{Version: peerwire.Version, PeerID: h.ID().String(), Features: features}); err != nil {
		t.Fatal(err)
	}
	msg, err := dec.Next()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := msg.(peerwire.Hello); !ok {
		t.Fatalf("first frame %s, want Hello", msg.Type())
	}
}

// ping checks that the engine answers on a fresh stream.
func ping(t *testing.T, h host.Host, n *peertest.Node) {
	t.Helper()
	s, dec := rawStream(t, h, n)
	hello(t, h, s, dec)
	if err := peerwire.Encode(s, peerwire.Ping{Nonce: 42}); err != nil {
		t.Fatal(err)
	}
	msg, err := dec.Next()
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := msg.(peerwire.Pong); !ok || p.Nonce != 42 {
		t.Fatalf("answer to Ping: %#v", msg)
	}
	s.Close()
}

// expectReset waits for the engine to drop the stream.
func expectReset(t *testing.T, dec *peerwire.Decoder) {
	t.Helper()
	for {
		msg, err := dec.Next()
		if err != nil {
			if errors.Is(err, peerwire.ErrMalformed) || errors.Is(err, peerwire.ErrFrameTooLarge) {
				t.Fatalf("engine sent a bad frame: %v", err)
			}
			return
		}
		if _, ok := msg.(peerwire.Reject); !ok {
			t.Fatalf("unexpected %s while waiting for the reset", msg.Type())
		}
	}
}

func TestOversizedFrame(t *testing.T) {
	tr := startTracker(t)
	n := peertest.StartNode(t, "server", tr, peertest.TestConfig())
	h := rawHost(t)
	s, dec := rawStream(t, h, n)
	hello(t, h, s, dec)
	// A length prefix over the limit, then some bytes.
	var hdr [5]byte
	binary.BigEndian.PutUint32(hdr[:], peerwire.MaxFrameSize+1)
	hdr[4] = byte(peerwire.TypeData)
	if _, err := s.Write(hdr[:]); err != nil {
		t.Fatal(err)
	}
	expectReset(t, dec)
	peertest.Eventually(t, 5*time.Second, func() error {
		if got := metricValue(t, n.Registry, "p2pd_peer_penalties_total", "reason", "protocol_violation"); got != 1 {
			return errorf("penalties %v, want 1", got)
		}
		return nil
	})
	if _, banned := n.Engine.Banned(h.ID().String()); banned {
		t.Errorf("banned after one violation")
	}
	if !n.Logs.Contains("peer broke the protocol", h.ID().String(), "frame too large") {
		t.Errorf("violation not logged")
	}
	ping(t, h, n) // still healthy, and still talking to this peer
}

func TestMalformedFramesGetPeerBanned(t *testing.T) {
	tr := startTracker(t)
	n := peertest.StartNode(t, "server", tr, peertest.TestConfig())
	h := rawHost(t)
	for i := range peer.DefaultPenaltyThreshold {
		s, dec := rawStream(t, h, n)
		hello(t, h, s, dec)
		// A Ping frame with a 4-byte payload (a Ping has 8).
		if _, err := s.Write([]byte{0, 0, 0, 5, byte(peerwire.TypePing), 1, 2, 3, 4}); err != nil {
			t.Fatal(err)
		}
		expectReset(t, dec)
		peertest.Eventually(t, 5*time.Second, func() error {
			if got := n.Stats().Penalties; got != uint64(i+1) {
				return errorf("penalties %d, want %d", got, i+1)
			}
			return nil
		})
	}
	if _, banned := n.Engine.Banned(h.ID().String()); !banned {
		t.Fatalf("not banned after %d violations", peer.DefaultPenaltyThreshold)
	}
	if got := metricValue(t, n.Registry, "p2pd_peer_bans_total", "reason", "protocol_violation"); got != 1 {
		t.Errorf("bans{reason=protocol_violation} = %v, want 1", got)
	}
	if !n.Logs.Contains("banned peer", h.ID().String(), "kind=protocol_violation") {
		t.Errorf("ban not logged with its reason")
	}
	// A banned peer's new stream is refused with Reject{0, Banned}. The ban
	// closed the connection; wait until this end has noticed, or the
	// stream would open on the dying connection and be reset with it.
	info := nodeInfo(t, n)
	peertest.Eventually(t, 5*time.Second, func() error {
		if c := h.Network().Connectedness(info.ID); c == network.Connected {
			return errorf("still connected to the server after the ban")
		}
		return nil
	})
	s, dec := rawStream(t, h, n)
	msg, err := dec.Next()
	if err != nil {
		t.Fatalf("no Reject before the close: %v", err)
	}
	if r, ok := msg.(peerwire.Reject); !ok || r.ReqID != 0 || r.Code != peerwire.RejectBanned {
		t.Fatalf("got %#v, want Reject{0, Banned}", msg)
	}
	if _, err := dec.Next(); err == nil {
		t.Fatalf("stream stays open after the Reject")
	}
	s.Close()
	// Others are still served.
	ping(t, rawHost(t), n)
}

func TestVersionMismatch(t *testing.T) {
	tr := startTracker(t)
	n := peertest.StartNode(t, "server", tr, peertest.TestConfig())
	h := rawHost(t)
	s, dec := rawStream(t, h, n)
	if err := peerwire.Encode(s, peerwire.Hello{Version: 2 << 8, PeerID: h.ID().String()}); err != nil {
		t.Fatal(err)
	}
	var got []peerwire.Message
	for {
		msg, err := dec.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, network.ErrReset) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Logf("stream ended with %v", err)
			}
			break
		}
		got = append(got, msg)
	}
	if len(got) != 2 {
		t.Fatalf("got %d frames, want Hello and Reject: %#v", len(got), got)
	}
	if r, ok := got[1].(peerwire.Reject); !ok || r.ReqID != 0 || r.Code != peerwire.RejectVersion {
		t.Fatalf("second frame %#v, want Reject{0, Version}", got[1])
	}
	ping(t, h, n) // a compatible Hello is still welcome
}
