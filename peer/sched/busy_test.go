package sched_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/p2pd/p2pd/peer/sched"
)

// A peer that holds every chunk and answers every request busy, for ever
// (a stalled peer: its upload slots are all held by requests it never
// finishes), and an honest peer that holds 90 of the 100: once the
// stalled peer has answered nothing but busy for RequestTimeout, each
// chunk it is asked for counts a failure there and, with no other peer to
// try, goes to the origin. (Busy answers used to be retried at it for
// ever, more chunks missing than endgame's threshold.)
func TestForeverBusyPeerEscalatesToOrigin(t *testing.T) {
	const timeout = time.Second
	const n, good = 100, 90
	s, err := sched.New(sched.Config{RequestTimeout: timeout}, n, sched.NewBitset(n), rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	start := now
	queue := []sched.Event{
		sched.PeerConnected{Peer: "origin", Origin: true, Have: sched.FullBitset(n)},
		sched.PeerConnected{Peer: "stalled", Have: sched.FullBitset(n)},
		sched.PeerConnected{Peer: "honest", Have: sched.BitsetOf(n, firstN(good)...)},
	}
	for step := 0; step < 10_000; step++ {
		if len(queue) == 0 {
			at, ok := s.NextTick()
			if !ok {
				t.Fatalf("nothing to wait for at %v, and the chunk is missing", now.Sub(start))
			}
			now = at
			queue = append(queue, sched.Tick{})
		}
		ev := queue[0]
		queue = queue[1:]
		for _, a := range s.Handle(now, ev) {
			switch {
			case a.Kind == sched.Request && a.Peer == "stalled":
				queue = append(queue, sched.RequestFailed{Peer: a.Peer, Index: a.Index, Reason: sched.FailBusy})
			case a.Kind == sched.Request:
				queue = append(queue, sched.ChunkReceived{Peer: a.Peer, Index: a.Index, Verified: true})
			case a.Kind == sched.Done:
				if took := now.Sub(start); took > 10*timeout {
					t.Errorf("done after %v, want within a few request timeouts", took)
				}
				return
			}
		}
	}
	t.Fatalf("the chunk was never fetched (%v of virtual time): busy answers retried for ever", now.Sub(start))
}

func firstN(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// The last chunk, held only by a peer that never answers (its requests
// time out) and by the origin: after OriginAfterFailures timeouts the
// origin is asked, instead of the stalled peer again and again.
func TestLastChunkAtStalledPeerGoesToOrigin(t *testing.T) {
	const timeout = time.Second
	const n = 100
	held := sched.BitsetOf(n, firstN(n-1)...)
	s, err := sched.New(sched.Config{RequestTimeout: timeout}, n, held, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	start := now
	queue := []sched.Event{
		sched.PeerConnected{Peer: "origin", Origin: true, Have: sched.FullBitset(n)},
		sched.PeerConnected{Peer: "stalled", Have: sched.FullBitset(n)},
	}
	for step := 0; step < 10_000; step++ {
		if len(queue) == 0 {
			at, ok := s.NextTick()
			if !ok {
				t.Fatalf("nothing to wait for at %v, and the chunk is missing", now.Sub(start))
			}
			now = at
			queue = append(queue, sched.Tick{})
		}
		ev := queue[0]
		queue = queue[1:]
		for _, a := range s.Handle(now, ev) {
			switch {
			case a.Kind == sched.Request && a.Peer == "origin":
				queue = append(queue, sched.ChunkReceived{Peer: a.Peer, Index: a.Index, Verified: true})
			case a.Kind == sched.Done:
				if took := now.Sub(start); took > 5*timeout {
					t.Errorf("done after %v, want within a few request timeouts", took)
				}
				return
			}
		}
	}
	t.Fatalf("the chunk was never fetched (%v of virtual time)", now.Sub(start))
}
