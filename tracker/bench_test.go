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
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/auth"
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
//
// signed=1 is swarms=1 on a closed tracker: each announce signed with the
// announce token (signed before the timer starts) and checked.
func BenchmarkAnnounce(b *testing.B) {
	for _, swarms := range []int{1, 10} {
		b.Run(fmt.Sprintf("swarms=%d", swarms), func(b *testing.B) { benchmarkAnnounce(b, swarms, false) })
	}
	b.Run("swarms=1/signed=1", func(b *testing.B) { benchmarkAnnounce(b, 1, true) })
}

func benchmarkAnnounce(b *testing.B, swarms int, signed bool) {
	const numPeers, numChunks = 10000, 1000
	const token = "p2pd_benchmark-announce-token-0123456789"
	clk := clock.NewFake(clock.DefaultFakeStart)
	store := peerstore.NewMemory(clk, 0)
	var v *auth.Verifier
	if signed {
		v = auth.NewVerifier(auth.Keys{Announce: token}, auth.VerifierOptions{MaxReplayEntries: 1 << 30, MaxClockSkew: time.Hour}) // signed before the run
	}
	srv, err := New(Config{}, Deps{Store: store, Clock: clk, Registry: prometheus.NewRegistry(), Rand: rand.New(rand.NewPCG(1, 1)), Auth: v})
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
	var sigs []string
	if signed {
		sigs = make([]string, b.N)
		for i := range sigs {
			body := bodies[i%len(bodies)]
			sigs[i], _ = auth.Sign(auth.ScopeAnnounce, token, http.MethodPost, trackerwire.PathAnnounce, auth.BodyHash(body), time.Now())
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, trackerwire.PathAnnounce, bytes.NewReader(bodies[i%len(bodies)]))
		if signed {
			req.Header.Set("Authorization", sigs[i])
		}
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}
