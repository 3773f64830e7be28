package sched

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// download runs one complete download of n chunks from the given peers,
// driven by a deterministic loop: the oldest outstanding request is
// answered (verified) 1ms after the previous answer, and a Tick is sent
// every 32 answers. Answers to cancelled endgame duplicates are delivered
// too, as late answers. It returns the number of events handled.
func download(tb testing.TB, cfg Config, n int, peers []PeerConnected, seed uint64) int {
	s, err := New(cfg, n, Bitset{}, rand.New(rand.NewPCG(seed, 0)))
	if err != nil {
		tb.Fatal(err)
	}
	buf := make([]Action, 0, 256)
	fifo := make([]Action, 0, 4*len(peers)+n)
	head := 0
	now := epoch
	events := 0
	done := false
	handle := func(ev Event) {
		buf = s.HandleAppend(buf[:0], now, ev)
		events++
		for _, a := range buf {
			switch a.Kind {
			case Request:
				fifo = append(fifo, a)
			case Done:
				done = true
			}
		}
	}
	for _, p := range peers {
		handle(p)
	}
	for !done {
		if head == len(fifo) {
			tb.Fatalf("stalled with %d of %d chunks", s.Progress().Held, n)
		}
		a := fifo[head]
		head++
		if head > 1024 && head*2 > len(fifo) {
			fifo = fifo[:copy(fifo, fifo[head:])]
			head = 0
		}
		now = now.Add(time.Millisecond)
		handle(ChunkReceived{Peer: a.Peer, Index: a.Index, Verified: true})
		if events%32 == 0 {
			handle(Tick{})
		}
	}
	return events
}

func seeders(n, k int) []PeerConnected {
	ps := make([]PeerConnected, k)
	for i := range ps {
		ps[i] = PeerConnected{Peer: fmt.Sprintf("peer%03d", i), Have: FullBitset(n)}
	}
	return ps
}

// partialPeers returns k peers that each have a random share of the chunks
// (density), plus one seeder so that the download can complete.
func partialPeers(n, k int, density float64, seed uint64) []PeerConnected {
	r := rand.New(rand.NewPCG(seed, 99))
	ps := make([]PeerConnected, k)
	for i := range ps {
		b := NewBitset(n)
		for j := range n {
			if r.Float64() < density {
				b.Set(j)
			}
		}
		ps[i] = PeerConnected{Peer: fmt.Sprintf("peer%03d", i), Have: b}
	}
	ps[k-1].Have = FullBitset(n)
	return ps
}

// BenchmarkDownload is a full download of 4,096 chunks from 50 peers:
// ns/chunk is the scheduler's cost per chunk, everything included (connects,
// requests, answers, ticks, endgame).
func BenchmarkDownload(b *testing.B) {
	const n = 4096
	for _, bc := range []struct {
		name  string
		peers []PeerConnected
	}{
		{"seeders", seeders(n, 50)},
		{"half", partialPeers(n, 50, 0.5, 1)},
		{"sparse", partialPeers(n, 50, 0.05, 1)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			events := 0
			for b.Loop() {
				events += download(b, Config{}, n, bc.peers, 1)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/chunk")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(events), "ns/event")
			b.ReportMetric(float64(events)/float64(b.N*n), "events/chunk")
		})
	}
}

// BenchmarkEvent measures single events against a scheduler for 4,096
// chunks with 50 connected peers, halfway through a download.
func BenchmarkEvent(b *testing.B) {
	const n = 4096
	setup := func(b *testing.B, peers []PeerConnected) (*Scheduler, []Action) {
		s, err := New(Config{}, n, Bitset{}, rand.New(rand.NewPCG(1, 0)))
		if err != nil {
			b.Fatal(err)
		}
		reqs := make([]Action, 0, 2*n)
		buf := make([]Action, 0, 256)
		for _, p := range peers {
			buf = s.HandleAppend(buf[:0], epoch, p)
			reqs = append(reqs, buf...)
		}
		// Fetch half the blob.
		head := 0
		for s.Progress().Held < n/2 {
			a := reqs[head]
			head++
			buf = s.HandleAppend(buf[:0], epoch, ChunkReceived{Peer: a.Peer, Index: a.Index, Verified: true})
			for _, x := range buf {
				if x.Kind == Request {
					reqs = append(reqs, x)
				}
			}
		}
		return s, reqs[head:]
	}

	// A chunk arrives and its slot is refilled: the download's steady
	// state. Time advances 1ms per event and every 32nd event is a Tick, as
	// in BenchmarkDownload. When the blob is complete the setup is repeated
	// with the timer stopped.
	b.Run("received", func(b *testing.B) {
		for _, bc := range []struct {
			name  string
			peers []PeerConnected
		}{{"seeders", seeders(n, 50)}, {"sparse", partialPeers(n, 50, 0.05, 1)}} {
			b.Run(bc.name, func(b *testing.B) {
				s, reqs := setup(b, bc.peers)
				buf := make([]Action, 0, 64)
				head, now, k := 0, epoch, 0
				for b.Loop() {
					if head == len(reqs) {
						b.StopTimer()
						s, reqs = setup(b, bc.peers)
						head = 0
						b.StartTimer()
					}
					now = now.Add(time.Millisecond)
					if k++; k%32 == 0 {
						buf = s.HandleAppend(buf[:0], now, Tick{})
						continue
					}
					a := reqs[head]
					head++
					buf = s.HandleAppend(buf[:0], now, ChunkReceived{Peer: a.Peer, Index: a.Index, Verified: true})
					for _, x := range buf {
						if x.Kind == Request {
							reqs = append(reqs, x)
						}
					}
				}
			})
		}
	})

	// A peer whose window is full announces a chunk and then turns out not
	// to have it: two availability updates (one bucket move each). The
	// Have goes by peer ID, or by PeerRef (HandleHave).
	for _, byRef := range []bool{false, true} {
		name := "have+notfound"
		if byRef {
			name += "/ref"
		}
		b.Run(name, func(b *testing.B) {
			s, _ := setup(b, partialPeers(n, 50, 0.5, 1))
			// peer000 is busy; pick chunks it does not have.
			p := s.byID["peer000"]
			ref, _ := s.Ref("peer000")
			var missing []int
			for i := range n {
				if !p.have.Has(i) {
					missing = append(missing, i)
				}
			}
			buf := make([]Action, 0, 16)
			k := 0
			for b.Loop() {
				i := missing[k]
				if k++; k == len(missing) {
					k = 0
				}
				if byRef {
					buf = s.HandleHave(buf[:0], epoch, ref, i)
				} else {
					buf = s.HandleAppend(buf[:0], epoch, PeerHave{Peer: "peer000", Index: i})
				}
				buf = s.HandleAppend(buf[:0], epoch, RequestFailed{Peer: "peer000", Index: i, Reason: FailNotFound})
				if len(buf) != 0 {
					b.Fatalf("unexpected actions %v", buf)
				}
			}
		})
	}

	// Tick with nothing due.
	b.Run("tick", func(b *testing.B) {
		s, _ := setup(b, seeders(n, 50))
		buf := make([]Action, 0, 16)
		for b.Loop() {
			buf = s.HandleAppend(buf[:0], epoch, Tick{})
		}
	})

	// A peer connects and disconnects again (its 4 requests are requeued
	// and go to no one, as every other peer's window is full).
	for _, bc := range []struct {
		name string
		have Bitset
	}{{"seeder", FullBitset(n)}, {"half", partialPeers(n, 2, 0.5, 7)[0].Have}} {
		b.Run("connect+disconnect/"+bc.name, func(b *testing.B) {
			s, _ := setup(b, seeders(n, 50))
			buf := make([]Action, 0, 16)
			for b.Loop() {
				buf = s.HandleAppend(buf[:0], epoch, PeerConnected{Peer: "visitor", Have: bc.have})
				buf = s.HandleAppend(buf[:0], epoch, PeerDisconnected{Peer: "visitor"})
			}
		})
	}
}

// TestDownloadLoop checks the benchmark driver itself, so that a broken
// loop cannot produce flattering numbers: every chunk is fetched, and with
// seeders about one event per chunk is needed.
func TestDownloadLoop(t *testing.T) {
	const n = 4096
	events := download(t, Config{}, n, seeders(n, 50), 1)
	if events < n || events > n+n/8 {
		t.Errorf("%d events for %d chunks", events, n)
	}
	download(t, Config{}, n, partialPeers(n, 50, 0.05, 1), 1)
}

// BenchmarkHaveCold is the simulator's hot loop: Haves delivered by
// PeerRef in groups of 30 (a Have reaching a peer's neighbours), each to a
// different one of many Schedulers (64 chunks, 30 peers each), so that
// the cost is mostly cache misses. Peers announce their chunks in a
// random order; the first Haves of each peer draw requests until its
// window is full, later ones only move availability. "prefetch" calls
// Prefetch on a group's Schedulers before handling it. Besides ns/op (per
// group), it reports the process's CPU time per Have, which a loaded
// machine inflates less than wall time.
func BenchmarkHaveCold(b *testing.B) {
	const (
		scheds = 20000
		n      = 64
		npeers = 30
		group  = 30
	)
	type have struct {
		s, p int32
		idx  int
	}
	var (
		ss   []*Scheduler
		refs [][]PeerRef
		todo []have
		k    int
	)
	setup := func() {
		r := rand.New(rand.NewPCG(1, 2))
		ss = make([]*Scheduler, scheds)
		refs = make([][]PeerRef, scheds)
		todo = todo[:0]
		buf := make([]Action, 0, 64)
		for i := range ss {
			s, err := New(Config{}, n, Bitset{}, rand.New(rand.NewPCG(uint64(i), 0)))
			if err != nil {
				b.Fatal(err)
			}
			ss[i] = s
			for j := range npeers {
				id := fmt.Sprintf("p%d", j)
				buf = s.HandleAppend(buf[:0], epoch, PeerConnected{Peer: id, Have: NewBitset(n)})
				ref, _ := s.Ref(id)
				refs[i] = append(refs[i], ref)
				for _, idx := range r.Perm(n)[:n/2] {
					todo = append(todo, have{int32(i), int32(j), idx})
				}
			}
		}
		r.Shuffle(len(todo), func(i, j int) { todo[i], todo[j] = todo[j], todo[i] })
		k = 0
	}
	for _, prefetch := range []bool{false, true} {
		name := "one-by-one"
		if prefetch {
			name = "prefetch"
		}
		b.Run(name, func(b *testing.B) {
			setup()
			buf := make([]Action, 0, 64)
			cpu0 := cpuTime()
			for b.Loop() {
				if k+group > len(todo) {
					b.StopTimer()
					setup()
					b.StartTimer()
				}
				g := todo[k : k+group]
				k += group
				if prefetch {
					for _, h := range g {
						ss[h.s].Prefetch(refs[h.s][h.p], h.idx)
					}
				}
				for _, h := range g {
					buf = ss[h.s].HandleHave(buf[:0], epoch, refs[h.s][h.p], h.idx)
				}
			}
			if cpu := cpuTime() - cpu0; cpu > 0 {
				b.ReportMetric(float64(cpu)/float64(b.N*group), "cpu-ns/have")
			}
		})
	}
}
