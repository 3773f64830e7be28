package sched_test

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/p2pd/p2pd/peer/sched"
)

// A driver feeds events in and carries actions out. Here a single seeder
// answers every request at once (chunk 1 is held already, so it is never
// requested); a real engine sends the requests over the
// network and feeds the answers back as they arrive.
func Example() {
	s, err := sched.New(sched.Config{MaxInflightPerPeer: 2}, 4, sched.BitsetOf(4, 1), rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		panic(err)
	}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	queue := []sched.Event{sched.PeerConnected{Peer: "seed", Have: sched.FullBitset(4)}}
	for len(queue) > 0 {
		ev := queue[0]
		queue = queue[1:]
		for _, a := range s.Handle(now, ev) {
			fmt.Println(a)
			if a.Kind == sched.Request {
				queue = append(queue, sched.ChunkReceived{Peer: a.Peer, Index: a.Index, Verified: true})
			}
		}
		now = now.Add(time.Millisecond)
	}
	fmt.Printf("%+v\n", s.Progress())
	// Output:
	// request seed 3
	// request seed 2
	// have 3
	// request seed 0
	// have 2
	// have 0
	// done
	// {Chunks:4 Held:4 Missing:0 Pending:0 Inflight:0 Requests:0 Peers:1 Endgame:false Done:true}
}
