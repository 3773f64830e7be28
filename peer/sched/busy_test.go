package sched_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
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
	took, done := drive(t, s, []sched.Event{
		sched.PeerConnected{Peer: "origin", Origin: true, Have: sched.FullBitset(n)},
		sched.PeerConnected{Peer: "stalled", Have: sched.FullBitset(n)},
		sched.PeerConnected{Peer: "honest", Have: sched.BitsetOf(n, firstN(good)...)},
	}, time.Hour, func(_ time.Duration, a sched.Action) ([]sched.Event, bool) {
		switch {
		case a.Kind == sched.Request && a.Peer == "stalled":
			return []sched.Event{sched.RequestFailed{Peer: a.Peer, Index: a.Index, Reason: sched.FailBusy}}, false
		case a.Kind == sched.Request:
			return []sched.Event{sched.ChunkReceived{Peer: a.Peer, Index: a.Index, Verified: true}}, false
		}
		return nil, a.Kind == sched.Done
	})
	switch {
	case !done:
		t.Fatalf("the chunk was never fetched (%v of virtual time): busy answers retried for ever", took)
	case took > 10*timeout:
		t.Errorf("done after %v, want within a few request timeouts", took)
	}
}

// drive feeds s the events of queue and what react answers to its
// actions, with a Tick whenever nothing else is queued, until react says
// stop, the virtual time reaches limit or 10,000 events were handled. It
// returns the virtual time taken and whether react stopped it.
func drive(t *testing.T, s *sched.Scheduler, queue []sched.Event, limit time.Duration,
	react func(elapsed time.Duration, a sched.Action) (more []sched.Event, stop bool)) (time.Duration, bool) {
	t.Helper()
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	now := start
	for step := 0; step < 10_000 && now.Sub(start) < limit; step++ {
		if len(queue) == 0 {
			at, ok := s.NextTick()
			if !ok {
				t.Fatalf("nothing to wait for at %v", now.Sub(start))
			}
			now = at
			queue = append(queue, sched.Tick{})
		}
		ev := queue[0]
		queue = queue[1:]
		for _, a := range s.Handle(now, ev) {
			more, stop := react(now.Sub(start), a)
			if stop {
				return now.Sub(start), true
			}
			queue = append(queue, more...)
		}
	}
	return now.Sub(start), false
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
// origin is asked, instead of the stalled peer again and again, with
// Escalated set, so that the origin's resend window does not hold it back
// (when the stalled peer connects first; connected first, the origin is
// simply asked).
func TestLastChunkAtStalledPeerGoesToOrigin(t *testing.T) {
	for _, stalledFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("stalledFirst=%v", stalledFirst), func(t *testing.T) {
			const timeout = time.Second
			const n = 100
			held := sched.BitsetOf(n, firstN(n-1)...)
			s, err := sched.New(sched.Config{RequestTimeout: timeout}, n, held, rand.New(rand.NewPCG(1, 2)))
			if err != nil {
				t.Fatal(err)
			}
			queue := []sched.Event{
				sched.PeerConnected{Peer: "origin", Origin: true, Have: sched.FullBitset(n)},
				sched.PeerConnected{Peer: "stalled", Have: sched.FullBitset(n)},
			}
			if stalledFirst {
				queue[0], queue[1] = queue[1], queue[0]
			}
			took, done := drive(t, s, queue, time.Hour, func(_ time.Duration, a sched.Action) ([]sched.Event, bool) {
				if a.Kind == sched.Request && a.Peer == "origin" {
					if stalledFirst && !a.Escalated {
						t.Errorf("chunk %d, which timed out at the only peer that has it, asked of the origin without Escalated", a.Index)
					}
					return []sched.Event{sched.ChunkReceived{Peer: a.Peer, Index: a.Index, Verified: true}}, false
				}
				return nil, a.Kind == sched.Done
			})
			switch {
			case !done:
				t.Fatalf("the chunk was never fetched (%v of virtual time)", took)
			case took > 5*timeout:
				t.Errorf("done after %v, want within a few request timeouts", took)
			}
		})
	}
}

// A busy but healthy swarm: two peers hold chunk 0 and turn every request
// for it away busy for a long time (their upload slots are taken by
// others), but one of them has delivered a chunk to this peer before. The
// chunk waits for them rather than going to the origin, which sent it
// once already. (Counting every long busy spell as a failure made the
// origin send a simulated 100-peer crowd 1.45 copies instead of 1.05.)
func TestBusyHealthyPeersDoNotEscalate(t *testing.T) {
	const timeout = time.Second
	const n = 2
	s, err := sched.New(sched.Config{RequestTimeout: timeout}, n, sched.NewBitset(n), rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	drive(t, s, []sched.Event{
		sched.PeerConnected{Peer: "a", Have: sched.BitsetOf(n, 0)},
		sched.PeerConnected{Peer: "b", Have: sched.FullBitset(n)},
		sched.PeerConnected{Peer: "origin", Origin: true, Have: sched.FullBitset(n)},
	}, 20*timeout, func(elapsed time.Duration, a sched.Action) ([]sched.Event, bool) {
		switch {
		case a.Kind != sched.Request:
		case a.Peer == "origin":
			t.Fatalf("origin asked for chunk %d at +%v although healthy peers hold it", a.Index, elapsed)
		case a.Index == 1:
			return []sched.Event{sched.ChunkReceived{Peer: a.Peer, Index: a.Index, Verified: true}}, false
		default:
			return []sched.Event{sched.RequestFailed{Peer: a.Peer, Index: a.Index, Reason: sched.FailBusy}}, false
		}
		return nil, false
	})
	if st, _ := s.PeerStats("b"); st.Received != 1 {
		t.Fatalf("b delivered %d chunks, want 1 (the test's premise)", st.Received)
	}
}

// An origin that defers a chunk (it just sent it to another peer) is asked
// for another chunk at once, not paused as a busy peer would be, and for
// the deferred one again only after DeferBackoff.
func TestDeferredChunkWaitsOriginKeepsServing(t *testing.T) {
	const n = 8
	const backoff = 3 * time.Second
	s, err := sched.New(sched.Config{DeferBackoff: backoff, MaxInflightPerOrigin: 1}, n, sched.NewBitset(n), rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s.Handle(t0, sched.PeerConnected{Peer: "p", Have: sched.NewBitset(n)}) // so that MaxInflightPerOrigin applies
	acts := s.Handle(t0, sched.PeerConnected{Peer: "origin", Origin: true, Have: sched.FullBitset(n)})
	first := requestsTo(acts, "origin")
	if len(first) != 1 {
		t.Fatalf("origin got requests %v, want one", first)
	}
	deferred := first[0]
	acts = s.Handle(t0.Add(time.Millisecond), sched.RequestFailed{Peer: "origin", Index: deferred, Reason: sched.FailDeferred})
	next := requestsTo(acts, "origin")
	if len(next) != 1 || next[0] == deferred {
		t.Fatalf("after deferring chunk %d the origin got requests %v, want one other chunk at once", deferred, next)
	}
	// Take every other chunk from the origin; the deferred one must wait.
	now := t0.Add(2 * time.Millisecond)
	for len(next) > 0 {
		if next[0] == deferred {
			t.Fatalf("deferred chunk %d asked again at +%v, before DeferBackoff", deferred, now.Sub(t0))
		}
		acts = s.Handle(now, sched.ChunkReceived{Peer: "origin", Index: next[0], Verified: true})
		next = requestsTo(acts, "origin")
	}
	at, ok := s.NextTick()
	if !ok || at.Sub(t0) < backoff {
		t.Fatalf("next tick %v (ok %v), want the end of the deferral at +%v", at.Sub(t0), ok, backoff)
	}
	acts = s.Handle(at, sched.Tick{})
	if got := requestsTo(acts, "origin"); len(got) != 1 || got[0] != deferred {
		t.Fatalf("after the deferral the origin got requests %v, want chunk %d", got, deferred)
	}
}

// requestsTo returns the chunks acts request from peer, in order.
func requestsTo(acts []sched.Action, peer string) []int {
	var out []int
	for _, a := range acts {
		if a.Kind == sched.Request && a.Peer == peer {
			out = append(out, a.Index)
		}
	}
	return out
}

// TestDeferredAgainEscalates: an origin that keeps deferring a chunk (it
// sent it to a peer that passes it on to nobody, or announces it too late
// to matter) gets an escalated request for it, which it serves, once the
// chunk has been deferred for a suspect peer's wait; not before, so that
// on slow links, where announcements take seconds, the origin sends no
// second copies.
func TestDeferredAgainEscalates(t *testing.T) {
	const n = 2
	cfg := sched.Config{DeferBackoff: time.Second, RequestTimeout: 24 * time.Second, MaxInflightPerOrigin: 1}
	// With nothing delivered yet, a peer is suspect after RequestTimeout/8.
	wait := cfg.RequestTimeout / 8
	for _, tc := range []struct {
		name      string
		advertise bool // a peer announces the chunk after its second deferral
	}{{"hoarded", false}, {"announced", true}} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := sched.New(cfg, n, sched.NewBitset(n), rand.New(rand.NewPCG(1, 2)))
			if err != nil {
				t.Fatal(err)
			}
			t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
			s.Handle(t0, sched.PeerConnected{Peer: "p", Have: sched.NewBitset(n)})
			acts := s.Handle(t0, sched.PeerConnected{Peer: "origin", Origin: true, Have: sched.FullBitset(n)})
			c := requestsTo(acts, "origin")[0]
			now, deferrals := t0, 0
			for step := 0; step < 100; step++ {
				var asked *sched.Action
				for i := range acts {
					if a := acts[i]; a.Kind == sched.Request && a.Index == c {
						asked = &acts[i]
					}
				}
				if asked == nil {
					at, ok := s.NextTick()
					if !ok {
						t.Fatalf("chunk %d: nothing to wait for at +%v after %d deferrals", c, now.Sub(t0), deferrals)
					}
					now = at
					acts = s.Handle(now, sched.Tick{})
					continue
				}
				if tc.advertise && deferrals == 2 {
					if asked.Peer != "p" {
						t.Fatalf("chunk %d, announced by p, asked of %s", c, asked.Peer)
					}
					return
				}
				if asked.Peer != "origin" {
					t.Fatalf("chunk %d asked of %s", c, asked.Peer)
				}
				// Deferred for at least the wait and DeferBackoff since
				// the first deferral (at t0): the request says so.
				want := deferrals > 0 && now.Sub(t0) >= max(wait, cfg.DeferBackoff)+cfg.DeferBackoff
				if asked.Escalated != want {
					t.Fatalf("request %d for chunk %d at +%v: escalated %v, want %v", deferrals+1, c, now.Sub(t0), asked.Escalated, want)
				}
				if asked.Escalated {
					return
				}
				now = now.Add(time.Millisecond)
				acts = s.Handle(now, sched.RequestFailed{Peer: "origin", Index: c, Reason: sched.FailDeferred})
				deferrals++
				if tc.advertise && deferrals == 2 {
					acts = append(acts, s.Handle(now, sched.PeerHave{Peer: "p", Index: c})...)
				}
				for _, o := range requestsTo(acts, "origin") {
					if o != c {
						acts = append(acts, s.Handle(now, sched.ChunkReceived{Peer: "origin", Index: o, Verified: true})...)
					}
				}
			}
			t.Fatalf("chunk %d never escalated", c)
		})
	}
}

// TestMaxInflightCapsAllPeers: Config.MaxInflight caps the requests
// outstanding over all peers, and a request that ends frees its place for
// any peer, not only the one that answered.
func TestMaxInflightCapsAllPeers(t *testing.T) {
	const n = 10
	s, now := capped(t, sched.Config{MaxInflightPerPeer: 4, MaxInflight: 2}, n)
	a, b := sched.NewBitset(n), sched.NewBitset(n)
	a.Set(0)
	a.Set(1)
	for i := 2; i < n; i++ {
		b.Set(i)
	}
	acts := s.Handle(now, sched.PeerConnected{Peer: "a", Have: a})
	if got := requestsTo(acts, "a"); len(got) != 2 {
		t.Fatalf("a got requests %v, want its two chunks", got)
	}
	acts = s.Handle(now, sched.PeerConnected{Peer: "b", Have: b})
	if got := requestsTo(acts, "b"); len(got) != 0 {
		t.Fatalf("b got requests %v with two outstanding, want none", got)
	}
	acts = s.Handle(now, sched.ChunkReceived{Peer: "a", Index: 0, Verified: true})
	if got := requestsTo(acts, "b"); len(got) != 1 {
		t.Fatalf("after a delivered, b got requests %v, want one", got)
	}
	if p := s.Progress(); p.Requests != 2 {
		t.Fatalf("%d requests outstanding, want 2", p.Requests)
	}
}

// TestMaxInflightLeavesFallbackOriginOut: requests at a fallback origin
// neither count against Config.MaxInflight nor wait for room under it
// (MaxInflightPerOrigin caps them), so a peer whose budget is spent on
// peers still fetches from the origin what no peer has, and one whose
// origin requests are slow still asks peers.
func TestMaxInflightLeavesFallbackOriginOut(t *testing.T) {
	const n = 6
	s, now := capped(t, sched.Config{MaxInflightPerPeer: 4, MaxInflightPerOrigin: 2, MaxInflight: 1}, n)
	a, b := sched.NewBitset(n), sched.NewBitset(n)
	a.Set(0)
	a.Set(1)
	b.Set(2)
	b.Set(3)
	acts := s.Handle(now, sched.PeerConnected{Peer: "a", Have: a})
	toA := requestsTo(acts, "a")
	if len(toA) != 1 {
		t.Fatalf("a got requests %v, want one (MaxInflight 1)", toA)
	}
	acts = s.Handle(now, sched.PeerConnected{Peer: "b", Have: b})
	if got := requestsTo(acts, "b"); len(got) != 0 {
		t.Fatalf("b got requests %v with a's request outstanding, want none", got)
	}
	acts = s.Handle(now, sched.PeerConnected{Peer: "origin", Origin: true, Have: sched.FullBitset(n)})
	if got := requestsTo(acts, "origin"); len(got) != 2 || slices.ContainsFunc(got, func(i int) bool { return i < 4 }) {
		t.Fatalf("origin got requests %v with a's request outstanding, want chunks 4 and 5", got)
	}
	acts = s.Handle(now, sched.ChunkReceived{Peer: "a", Index: toA[0], Verified: true})
	if got := append(requestsTo(acts, "a"), requestsTo(acts, "b")...); len(got) != 1 {
		t.Fatalf("after a delivered, a and b got requests %v, want one", got)
	}
	if p := s.Progress(); p.Requests != 3 {
		t.Fatalf("%d requests outstanding, want 3: two at the origin, one at a peer", p.Requests)
	}
}

// TestMaxInflightFreedPlaceGoesToAnyPeer: when a place under
// Config.MaxInflight frees and no peer has just delivered (here the chunk
// turned up in the local store), the peer that takes it is drawn at
// random, not the first one connected. Always the first, a flash crowd's
// downloads sent nearly all their requests to the peers that joined first
// (docs/benchmarks.md, "Session 14"). A peer that has just delivered
// gets its next request at once, as a pipeline would.
func TestMaxInflightFreedPlaceGoesToAnyPeer(t *testing.T) {
	const n = 200
	s, now := capped(t, sched.Config{MaxInflightPerPeer: 4, MaxInflight: 1}, n)
	peers := []string{"a", "b", "c", "d"}
	var asked []sched.Action
	for _, id := range peers {
		asked = append(asked, s.Handle(now, sched.PeerConnected{Peer: id, Have: sched.FullBitset(n)})...)
	}
	got := map[string]int{}
	const rounds = 100
	for range rounds {
		r := onlyRequest(t, asked)
		got[r.Peer]++
		asked = s.Handle(now, sched.ChunkStoredLocally{Index: r.Index})
	}
	for _, id := range peers {
		if got[id] < rounds/len(peers)/3 {
			t.Fatalf("requests per peer %v: %s got too few of %d", got, id, rounds)
		}
	}
	// A peer that delivers keeps first call on the place its answer frees.
	last := onlyRequest(t, asked)
	for range 20 {
		asked = s.Handle(now, sched.ChunkReceived{Peer: last.Peer, Index: last.Index, Verified: true})
		if got := requestsTo(asked, last.Peer); len(got) != 1 {
			t.Fatalf("after %s delivered chunk %d, actions %v: want its next request", last.Peer, last.Index, asked)
		}
		last.Index = requestsTo(asked, last.Peer)[0]
	}
}

// capped returns a scheduler for n chunks, none held, with cfg (which
// sets MaxInflight), and the time to drive it at.
func capped(t *testing.T, cfg sched.Config, n int) (*sched.Scheduler, time.Time) {
	t.Helper()
	s, err := sched.New(cfg, n, sched.NewBitset(n), rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	return s, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
}

// onlyRequest returns the one Request among acts, failing t if there is
// not exactly one (a copy: acts may be the scheduler's reused buffer).
func onlyRequest(t *testing.T, acts []sched.Action) sched.Action {
	t.Helper()
	var reqs []sched.Action
	for _, a := range acts {
		if a.Kind == sched.Request {
			reqs = append(reqs, a)
		}
	}
	if len(reqs) != 1 {
		t.Fatalf("requests %v, want one (MaxInflight 1)", reqs)
	}
	return reqs[0]
}
