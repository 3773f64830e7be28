package sched_test

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/p2pd/p2pd/peer/sched"
)

// TestInOrder: under Config.InOrder peers are asked for the front of the
// blob, the rarest of the first InOrderWindow pending chunks first, and
// the window moves on as chunks arrive.
func TestInOrder(t *testing.T) {
	const n = 200
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s, err := sched.New(sched.Config{MaxInflightPerPeer: 4, InOrder: true}, n, sched.NewBitset(n), rand.New(rand.NewPCG(3, 4)))
	if err != nil {
		t.Fatal(err)
	}
	front := sched.NewBitset(n)
	for i := range 8 {
		front.Set(i)
	}
	// "front" has chunks 0-7; "full" has all, so 8-15 are the rarest of
	// the window.
	got := requestsTo(s.Handle(now, sched.PeerConnected{Peer: "front", Have: front}), "front")
	if !slices.Equal(got, []int{0, 1, 2, 3}) {
		t.Errorf("a peer with the first 8 chunks is asked for %v, want [0 1 2 3]", got)
	}
	got = requestsTo(s.Handle(now, sched.PeerConnected{Peer: "full", Have: sched.FullBitset(n)}), "full")
	if !slices.Equal(got, []int{8, 9, 10, 11}) {
		t.Errorf("a full peer is asked for %v, want the window's rarest [8 9 10 11]", got)
	}
	// As chunks arrive the front moves on.
	var next []int
	for _, i := range []int{8, 9, 10, 11} {
		next = append(next, requestsTo(s.Handle(now, sched.ChunkReceived{Peer: "full", Index: i, Verified: true}), "full")...)
	}
	if !slices.Equal(next, []int{12, 13, 14, 15}) {
		t.Errorf("then %v, want [12 13 14 15]", next)
	}
	next = next[:0]
	for _, i := range []int{12, 13, 14, 15} {
		next = append(next, requestsTo(s.Handle(now, sched.ChunkReceived{Peer: "full", Index: i, Verified: true}), "full")...)
	}
	// The window is 4-7 ("front" has them too) and 16-27: 16.. are rarer.
	if !slices.Equal(next, []int{16, 17, 18, 19}) {
		t.Errorf("then %v, want [16 17 18 19]", next)
	}
}
