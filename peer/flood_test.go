package peer_test

import (
	"bytes"
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/p2pd/p2pd/chunker/chunkertest"
	"github.com/p2pd/p2pd/internal/wire/peerwire"
	"github.com/p2pd/p2pd/peer"
	"github.com/p2pd/p2pd/peer/peertest"
)

// A request flood from 1,000 streams (20 hostile hosts × 50 streams, each
// stream sending the handshake and then 2,000 chunk requests without ever
// reading the answers) at a seeding node: the resource manager and the
// per-peer limits keep its goroutines and heap bounded, an honest peer
// pulling at the same time completes, and the flooders are banned
// (request_flood: 1,024 requests refused busy within a second count one
// violation).
func TestRequestFlood(t *testing.T) {
	const hosts, streamsPerHost, requestsPerStream = 20, 50, 2000
	tr := startTracker(t)
	n := peertest.StartNode(t, "seed", tr, peertest.TestConfig())
	data := chunkertest.Bytes(21, 4<<20)
	m := peertest.SeedBlob(t, n, bytes.NewReader(data), peertest.SmallChunks)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()

	info := nodeInfo(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var (
		mu              sync.Mutex
		opened, refused int
		streams         []network.Stream
		wg              sync.WaitGroup
	)
	var floods []host.Host
	for range hosts {
		h := rawHost(t)
		floods = append(floods, h)
		if err := h.Connect(ctx, info); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for range streamsPerHost {
				s, err := h.NewStream(ctx, info.ID, protocol.ID(peerwire.ProtocolID))
				if err == nil {
					_ = s.SetWriteDeadline(time.Now().Add(2 * time.Second))
					err = peerwire.Encode(s, peerwire.Hello{Version: peerwire.Version, PeerID: h.ID().String()})
					for i := 0; err == nil && i < requestsPerStream; i++ {
						err = peerwire.Encode(s, peerwire.Request{ReqID: uint32(i + 1), Chunk: m.Chunks[i%len(m.Chunks)].Digest})
					}
				}
				mu.Lock()
				if err != nil {
					refused++
				} else {
					opened++
				}
				if s != nil {
					streams = append(streams, s)
				}
				mu.Unlock()
			}
		})
	}

	// Meanwhile an honest peer pulls the blob from the flooded node.
	start := time.Now()
	p := peertest.StartNode(t, "honest", tr, peertest.TestConfig())
	if _, err := p.Engine.Pull(ctx, m.Digest, peer.PullOptions{}); err != nil {
		t.Fatalf("honest pull under the flood: %v", err)
	}
	pulled := time.Since(start)
	wg.Wait()
	t.Logf("honest pull %v, flood %v", pulled, time.Since(start))
	verifyCopy(t, p, m, data)

	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	g1 := runtime.NumGoroutine()
	heap := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("%d streams taken up to the requests, %d refused or cut; goroutines %d -> %d; heap in use +%d MiB",
		opened, refused, g0, g1, heap>>20)
	if opened+refused != hosts*streamsPerHost {
		t.Fatalf("%d streams tried, want %d", opened+refused, hosts*streamsPerHost)
	}
	// Unbounded, 1,000 streams would hold at least 3 goroutines each in
	// the engine (3,000) and up to 64 chunk buffers each (GiBs); the
	// per-peer stream limit (4 inbound) and the per-session upload bound
	// keep it to a few sessions. The growth counted includes the 20
	// hostile hosts' own goroutines (about 20 each).
	if g1-g0 > 1500 {
		t.Errorf("goroutines grew by %d under the flood", g1-g0)
	}
	if heap > 256<<20 {
		t.Errorf("heap in use grew by %d MiB under the flood", heap>>20)
	}
	// The flooders are banned, for that reason, in the metric and the log.
	banned := 0
	for _, h := range floods {
		if _, ok := n.Engine.Banned(h.ID().String()); ok {
			banned++
			if !n.Logs.Contains("banned peer", h.ID().String(), "kind=request_flood") {
				t.Errorf("ban of %s not logged with its reason", h.ID())
			}
		}
	}
	if got := metricValue(t, n.Registry, "p2pd_peer_bans_total", "reason", "request_flood"); banned == 0 || got != float64(banned) {
		t.Errorf("%d of %d flooders banned, bans{reason=request_flood} = %v", banned, hosts, got)
	}
	// Still answering.
	ping(t, rawHost(t), n)
	for _, s := range streams {
		s.Reset()
	}
}
