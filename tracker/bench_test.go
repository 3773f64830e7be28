package tracker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/clock"
	"github.com/p2pd/p2pd/internal/wire/trackerwire"
	"github.com/p2pd/p2pd/tracker/peerstore"
)

// BenchmarkAnnounce measures the announce path in process (decode,
// validate, store, sample, select, encode), each op a delta announce of
// a 1,000-chunk blob: swarms=1 from the next of 10,000 peers of one
// swarm; swarms=10 from a random one of 10,000 peers × 10 blobs, the
// shape of `p2pctl bench tracker`, whose records do not fit in the CPU's
// caches.
func BenchmarkAnnounce(b *testing.B) {
	for _, swarms := range []int{1, 10} {
		b.Run(fmt.Sprintf("swarms=%d", swarms), func(b *testing.B) { benchmarkAnnounce(b, swarms) })
	}
}

func benchmarkAnnounce(b *testing.B, swarms int) {
	const numPeers, numChunks = 10000, 1000
	clk := clock.NewFake(clock.DefaultFakeStart)
	store := peerstore.NewMemory(clk, 0)
	srv, err := New(Config{}, Deps{Store: store, Clock: clk, Registry: prometheus.NewRegistry(), Rand: rand.New(rand.NewPCG(1, 1))})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(2, 2))
	var bodies [][]byte
	for s := range swarms {
		blob := blobA
		if s > 0 {
			blob = chunker.Sum(fmt.Appendf(nil, "blob %d", s))
		}
		for i := range numPeers {
			id := fmt.Sprintf("12D3KooW%044d", i)
			req := &trackerwire.AnnounceRequest{
				Blob: blob, PeerID: id, Addrs: []string{fmt.Sprintf("/ip4/10.0.%d.%d/tcp/4001", i/256, i%256)},
				Role: trackerwire.RolePeer, NumChunks: numChunks, Bitfield: trackerwire.NewBitfield(numChunks),
				Zone: fmt.Sprintf("zone-%d", i%3), Rack: fmt.Sprintf("rack-%d", i%60),
			}
			if i < 3 {
				req.Role, req.Complete, req.Bitfield = trackerwire.RoleOrigin, true, nil
			} else {
				for range rng.IntN(numChunks) {
					req.Bitfield.Set(uint32(rng.IntN(numChunks)))
				}
			}
			if _, err := store.Announce(context.Background(), req); err != nil {
				b.Fatal(err)
			}
			req.Bitfield = nil
			req.Delta = &trackerwire.Delta{Added: []uint32{uint32(rng.IntN(numChunks)), uint32(rng.IntN(numChunks))}}
			if req.Complete {
				req.Delta = nil
			}
			body, _ := json.Marshal(req)
			bodies = append(bodies, body)
		}
	}
	if swarms > 1 {
		rng.Shuffle(len(bodies), func(i, j int) { bodies[i], bodies[j] = bodies[j], bodies[i] })
	}
	h := srv.Handler()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, trackerwire.PathAnnounce, bytes.NewReader(bodies[i%len(bodies)])))
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		i++
	}
}
