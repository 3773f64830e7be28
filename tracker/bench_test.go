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

	"github.com/p2pd/p2pd/internal/clock"
	"github.com/p2pd/p2pd/internal/wire/trackerwire"
	"github.com/p2pd/p2pd/tracker/peerstore"
)

// BenchmarkAnnounce measures the announce path in process (decode,
// validate, store, sample, select, encode) for a swarm of 10,000 peers of
// a 1,000-chunk blob, each op a delta announce from the next peer.
func BenchmarkAnnounce(b *testing.B) {
	const numPeers, numChunks = 10000, 1000
	clk := clock.NewFake(clock.DefaultFakeStart)
	store := peerstore.NewMemory(clk, 0)
	srv, err := New(Config{}, Deps{Store: store, Clock: clk, Registry: prometheus.NewRegistry(), Rand: rand.New(rand.NewPCG(1, 1))})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(2, 2))
	bodies := make([][]byte, numPeers)
	for i := range numPeers {
		id := fmt.Sprintf("12D3KooW%044d", i)
		req := &trackerwire.AnnounceRequest{
			Blob: blobA, PeerID: id, Addrs: []string{fmt.Sprintf("/ip4/10.0.%d.%d/tcp/4001", i/256, i%256)},
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
		bodies[i], _ = json.Marshal(req)
	}
	h := srv.Handler()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, trackerwire.PathAnnounce, bytes.NewReader(bodies[i%numPeers])))
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		i++
	}
}
