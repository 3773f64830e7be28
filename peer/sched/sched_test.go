package sched

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"
)

func TestBitset(t *testing.T) {
	b := NewBitset(130)
	if b.Len() != 130 || b.Count() != 0 || b.String() != "-" {
		t.Fatalf("new: len %d count %d %q", b.Len(), b.Count(), b)
	}
	for _, i := range []int{0, 1, 2, 63, 64, 65, 129} {
		b.Set(i)
	}
	if got, want := b.String(), "0-2,63-65,129"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	if b.Count() != 7 || !b.Has(64) || b.Has(3) || b.Has(-1) || b.Has(130) {
		t.Errorf("Count/Has wrong: %d", b.Count())
	}
	b.Clear(64)
	b.Clear(1000) // ignored
	if b.Has(64) || b.Count() != 6 {
		t.Error("Clear did not clear")
	}
	if got := slices.Collect(b.All()); !slices.Equal(got, []int{0, 1, 2, 63, 65, 129}) {
		t.Errorf("All = %v", got)
	}
	c := b.Clone()
	c.Set(5)
	if b.Has(5) || !c.Has(5) || b.Equal(c) {
		t.Error("Clone shares storage")
	}
	if f := FullBitset(130); f.Count() != 130 || f.String() != "0-129" {
		t.Errorf("FullBitset = %s (%d)", f, f.Count())
	}
	for _, r := range [][2]int{{0, 0}, {3, 70}, {64, 128}, {0, 130}, {129, 130}} {
		x := NewBitset(130)
		x.SetRange(r[0], r[1])
		for i := range 130 {
			if x.Has(i) != (i >= r[0] && i < r[1]) {
				t.Fatalf("SetRange(%d, %d): Has(%d) = %v", r[0], r[1], i, x.Has(i))
			}
		}
	}
	if got := BitsetFromBools([]bool{true, false, true}); !got.Equal(BitsetOf(3, 0, 2)) {
		t.Errorf("BitsetFromBools = %s", got)
	}
	defer func() {
		if recover() == nil {
			t.Error("Set out of range did not panic")
		}
	}()
	b.Set(130)
}

func TestBitsetCopyIntoMasks(t *testing.T) {
	long := FullBitset(200)
	dst := NewBitset(70)
	if n := long.copyInto(dst); n != 70 || dst.Count() != 70 {
		t.Errorf("longer source: count %d, want 70", n)
	}
	short := BitsetOf(10, 3)
	if n := short.copyInto(dst); n != 1 || !dst.Has(3) {
		t.Errorf("shorter source: count %d, %s", n, dst)
	}
}

func TestConfig(t *testing.T) {
	d := DefaultConfig()
	want := Config{MaxInflightPerPeer: 4, MaxInflightPerOrigin: 2, RequestTimeout: 10 * time.Second, EndgameThreshold: 8, MaxDuplicates: 2,
		OriginPolicy: OriginFallback, OriginAfterFailures: 2, BanThreshold: 3, BusyBackoff: 50 * time.Millisecond,
		MaxBusyBackoff: time.Second, OriginBusyBackoff: 250 * time.Millisecond, MaxOriginBusyBackoff: 8 * time.Second,
		DeferBackoff: time.Second}
	if d != want {
		t.Errorf("DefaultConfig = %+v, want %+v", d, want)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
	if err := d.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	bad := []Config{
		{MaxInflightPerPeer: -1},
		{MaxInflightPerPeer: MaxMaxInflightPerPeer + 1},
		{RequestTimeout: -time.Second},
		{EndgameThreshold: -1},
		{MaxDuplicates: -1},
		{MaxDuplicates: MaxMaxDuplicates + 1},
		{OriginPolicy: 7},
		{OriginAfterFailures: -1},
		{BanThreshold: -2},
		{BusyBackoff: -1},
		{MaxInflightPerOrigin: -1},
		{MinInflightPerPeer: -1},
		{MinInflightPerPeer: MaxMaxInflightPerPeer + 1},
		{MaxInflightPerOrigin: MaxMaxInflightPerPeer + 1},
		{MaxBusyBackoff: -1},
		{MaxBusyBackoff: 10 * time.Millisecond},                     // below the default BusyBackoff
		{BusyBackoff: 2 * time.Second, MaxBusyBackoff: time.Second}, // below BusyBackoff
		{OriginBusyBackoff: -1},
		{MaxOriginBusyBackoff: -1},
		{MaxOriginBusyBackoff: 100 * time.Millisecond},                          // below the default OriginBusyBackoff
		{OriginBusyBackoff: 2 * time.Second, MaxOriginBusyBackoff: time.Second}, // below OriginBusyBackoff
	}
	for _, c := range bad {
		err := c.Validate()
		if !errors.Is(err, ErrBadConfig) {
			t.Errorf("%+v: Validate = %v, want ErrBadConfig", c, err)
		}
		if _, err := New(c, 10, Bitset{}, nil); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%+v: New = %v, want ErrBadConfig", c, err)
		}
	}
	s, err := New(Config{MaxDuplicates: 1}, 3, Bitset{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Config(); got.MaxDuplicates != 1 || got.MaxInflightPerPeer != 4 {
		t.Errorf("Config() = %+v: defaults not filled in or setting lost", got)
	}
	// A busy backoff beyond the default cap raises the cap to it.
	if got := (Config{BusyBackoff: 5 * time.Second}).withDefaults().MaxBusyBackoff; got != 5*time.Second {
		t.Errorf("MaxBusyBackoff = %v with a 5s BusyBackoff, want 5s", got)
	}
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		n    int
		have Bitset
		want string
	}{
		{-1, Bitset{}, "chunks"},
		{MaxChunks + 1, Bitset{}, "chunks"},
		{10, NewBitset(9), "length 9"},
	} {
		_, err := New(Config{}, tc.n, tc.have, nil)
		if !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%d, len %d) = %v, want ErrBadConfig mentioning %q", tc.n, tc.have.Len(), err, tc.want)
		}
	}
}

func TestActionString(t *testing.T) {
	for a, want := range map[Action]string{
		{Kind: Request, Peer: "p", Index: 3}:  "request p 3",
		{Kind: Cancel, Peer: "p", Index: 3}:   "cancel p 3",
		{Kind: Ban, Peer: "p", Reason: "why"}: "ban p: why",
		{Kind: Have, Index: 9}:                "have 9",
		{Kind: Done}:                          "done",
		{Kind: 0, Peer: "x", Index: 1}:        `ActionKind(0) "x" 1 ""`,
	} {
		if got := a.String(); got != want {
			t.Errorf("%#v.String() = %q, want %q", a, got, want)
		}
	}
	if FailBusy.String() != "busy" || FailNotFound.String() != "notfound" || FailError.String() != "error" {
		t.Error("FailReason names")
	}
	if OriginFallback.String() != "fallback" || OriginAsPeer.String() != "peer" {
		t.Error("OriginPolicy names")
	}
}

// firstRequests connects one seeder to a fresh scheduler seeded with seed
// and returns the chunks it is asked for.
func firstRequests(t *testing.T, seed uint64) []int {
	s, err := New(Config{}, 256, Bitset{}, rand.New(rand.NewPCG(seed, 0)))
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, a := range s.Handle(epoch, PeerConnected{Peer: "p", Have: FullBitset(256)}) {
		got = append(got, a.Index)
	}
	return got
}

// Equally rare chunks are picked at random, so that downloaders spread over
// the blob, but reproducibly for a given seed.
func TestTieBreak(t *testing.T) {
	if a, b := firstRequests(t, 42), firstRequests(t, 42); !slices.Equal(a, b) {
		t.Errorf("same seed, different picks: %v and %v", a, b)
	}
	firsts := map[int]bool{}
	for seed := range uint64(40) {
		firsts[firstRequests(t, seed)[0]] = true
	}
	// 40 draws from 256 equally rare chunks: a fixed order would give 1.
	if len(firsts) < 25 {
		t.Errorf("40 seeds picked only %d distinct first chunks", len(firsts))
	}
}

// Peers that share a blob should not all start with the same chunk, even
// when some chunks are rarer: the rarest tier is spread over too.
func TestRarestTierSpread(t *testing.T) {
	counts := map[int]int{}
	for seed := range uint64(200) {
		s, _ := New(Config{MaxInflightPerPeer: 1}, 100, Bitset{}, rand.New(rand.NewPCG(seed, 1)))
		s.Handle(epoch, PeerConnected{Peer: "a", Have: BitsetOf(100, 99)}) // takes 99
		half := NewBitset(100)
		half.SetRange(0, 50)
		s.Handle(epoch, PeerConnected{Peer: "b", Have: half}) // takes one of 0-49
		// c has everything: 50-98 are rarer (only c) than 0-49 (b and c).
		acts := s.Handle(epoch, PeerConnected{Peer: "c", Have: FullBitset(100)})
		if len(acts) != 1 || acts[0].Index < 50 || acts[0].Index > 98 {
			t.Fatalf("seed %d: c asked for %v, want one of the rarest chunks 50-98", seed, acts)
		}
		counts[acts[0].Index]++
	}
	if len(counts) < 35 {
		t.Errorf("200 runs picked only %d of the 49 rarest chunks", len(counts))
	}
}

func TestPointerEvents(t *testing.T) {
	s, _ := New(Config{MaxInflightPerPeer: 1, MaxDuplicates: 1}, 2, Bitset{}, rand.New(rand.NewPCG(1, 1)))
	acts := s.Handle(epoch, &PeerConnected{Peer: "p", Have: FullBitset(2)})
	if len(acts) != 1 || acts[0].Kind != Request {
		t.Fatalf("connect: %v", acts)
	}
	i := acts[0].Index
	acts = s.Handle(epoch, &ChunkReceived{Peer: "p", Index: i, Verified: true})
	if len(acts) != 2 || acts[0] != (Action{Kind: Have, Index: i}) || acts[1].Kind != Request {
		t.Fatalf("received: %v", acts)
	}
	acts = s.Handle(epoch, &ChunkStoredLocally{Index: 1 - i})
	if want := []Action{{Kind: Cancel, Peer: "p", Index: 1 - i}, {Kind: Have, Index: 1 - i}, {Kind: Done}}; !slices.Equal(acts, want) {
		t.Fatalf("stored: %v, want %v", acts, want)
	}
	if acts := s.Handle(epoch, &Tick{}); acts != nil {
		t.Fatalf("tick after done: %v", acts)
	}
	if acts := s.Handle(epoch, nil); acts != nil {
		t.Fatalf("nil event: %v", acts)
	}
}

func TestOutOfRangeIgnored(t *testing.T) {
	s, _ := New(Config{}, 4, Bitset{}, rand.New(rand.NewPCG(1, 1)))
	s.Handle(epoch, PeerConnected{Peer: "p", Have: BitsetOf(4, 0)})
	for _, ev := range []Event{
		PeerHave{Peer: "p", Index: 4}, PeerHave{Peer: "p", Index: -1},
		ChunkReceived{Peer: "p", Index: 9, Verified: true}, ChunkReceived{Peer: "p", Index: -3},
		RequestFailed{Peer: "p", Index: 7}, ChunkStoredLocally{Index: 4},
		PeerHave{Peer: "nobody", Index: 1}, PeerBitfield{Peer: "nobody", Have: FullBitset(4)},
		RequestFailed{Peer: "nobody", Index: 1}, PeerDisconnected{Peer: "nobody"},
	} {
		if acts := s.Handle(epoch, ev); acts != nil {
			t.Errorf("%T%+v: %v, want nothing", ev, ev, acts)
		}
		if err := s.checkInvariants(); err != nil {
			t.Fatalf("%T%+v: %v", ev, ev, err)
		}
	}
	if st, _ := s.PeerStats("p"); st.Bad != 0 || st.Offences != 0 {
		t.Errorf("out-of-range events counted against the peer: %+v", st)
	}
	if s.Availability(4) != 0 || s.Availability(-1) != 0 || s.Availability(0) != 1 {
		t.Error("Availability")
	}
}

// Time never runs backwards: a request made by an event stamped earlier than
// one already seen counts as made at the latest time seen.
func TestClockNeverGoesBack(t *testing.T) {
	s, _ := New(Config{RequestTimeout: 10 * time.Second, MaxInflightPerPeer: 1, MaxDuplicates: 1}, 2, Bitset{}, rand.New(rand.NewPCG(1, 1)))
	handle := func(now time.Time, ev Event) []Action {
		t.Helper()
		acts := s.Handle(now, ev)
		if err := s.checkInvariants(); err != nil {
			t.Fatalf("%T at %v: %v", ev, now.Sub(epoch), err)
		}
		return acts
	}
	if acts := handle(epoch, PeerConnected{Peer: "p", Have: BitsetOf(2, 0)}); len(acts) != 1 {
		t.Fatalf("connect p: %v", acts)
	}
	if acts := handle(epoch.Add(25*time.Second), Tick{}); len(acts) != 2 {
		t.Fatalf("tick at 25s: %v, want a cancel and a new request", acts)
	}
	// Stamped 0s, handled after 25s: q's request is made "at 25s".
	if acts := handle(epoch, PeerConnected{Peer: "q", Have: BitsetOf(2, 1)}); len(acts) != 1 {
		t.Fatalf("connect q: %v", acts)
	}
	if acts := handle(epoch.Add(30*time.Second), Tick{}); len(acts) != 0 {
		t.Fatalf("tick at 30s: %v: the request made after 25s timed out early", acts)
	}
	// q's request times out after its 10s. p's request, made again at
	// 25s after p stalled, has twice the timeout: 20s.
	if acts := handle(epoch.Add(35*time.Second), Tick{}); len(acts) != 2 || acts[0].Peer != "q" {
		t.Fatalf("tick at 35s: %v, want q's request cancelled and made again", acts)
	}
	if acts := handle(epoch.Add(45*time.Second), Tick{}); len(acts) != 2 || acts[0].Peer != "p" {
		t.Fatalf("tick at 45s: %v, want p's request cancelled and made again", acts)
	}
}

// A driver that reuses its action buffer handles events without allocating
// (once the timeout queue has reached its steady-state size).
func TestHandleAppendDoesNotAllocate(t *testing.T) {
	const n = 4096
	s, _ := New(Config{MaxDuplicates: 1, RequestTimeout: 50 * time.Millisecond}, n, Bitset{}, rand.New(rand.NewPCG(1, 1)))
	buf := make([]Action, 0, 64)
	var outstanding []Action
	for p := range 8 {
		buf = s.HandleAppend(buf[:0], epoch, PeerConnected{Peer: peerName(p), Have: FullBitset(n)})
		outstanding = append(outstanding, buf...)
	}
	now := epoch
	// Answer the oldest outstanding request, which issues a new one, and tick.
	step := func() {
		a := outstanding[0]
		outstanding = append(outstanding[:0], outstanding[1:]...)
		now = now.Add(time.Millisecond)
		buf = s.HandleAppend(buf[:0], now, ChunkReceived{Peer: a.Peer, Index: a.Index, Verified: true})
		for _, b := range buf {
			if b.Kind == Request {
				outstanding = append(outstanding, b)
			}
		}
		buf = s.HandleAppend(buf[:0], now, Tick{})
	}
	for range 1000 {
		step()
	}
	if allocs := testing.AllocsPerRun(1000, step); allocs > 0 {
		t.Errorf("%.3f allocations per received chunk and tick, want 0", allocs)
	}
	if s.Progress().Held < 2000 {
		t.Fatalf("only %d chunks held: the loop did not run", s.Progress().Held)
	}
}

func peerName(i int) string { return "peer" + string(rune('A'+i%26)) + string(rune('a'+i/26%26)) }

// A chunk that fails at many peers remembers only the last maxExcluded of
// them, and the oldest one forgotten becomes eligible again.
func TestExclusionsBounded(t *testing.T) {
	s, _ := New(Config{MaxInflightPerPeer: 1, MaxDuplicates: 1, BanThreshold: 100, OriginAfterFailures: 100},
		2, BitsetOf(2, 1), rand.New(rand.NewPCG(1, 1)))
	var peers []string
	for k := range maxExcluded + 2 {
		peers = append(peers, peerName(k))
		s.Handle(epoch, PeerConnected{Peer: peers[k], Have: BitsetOf(2, 0)})
	}
	// Each asked peer sends garbage; the next one that has not failed yet
	// is asked.
	for k := range maxExcluded {
		acts := s.Handle(epoch, ChunkReceived{Peer: peers[k], Index: 0})
		if want := []Action{{Kind: Request, Peer: peers[k+1], Index: 0}}; !slices.Equal(acts, want) {
			t.Fatalf("failure %d: %v, want %v", k+1, acts, want)
		}
		if err := s.checkInvariants(); err != nil {
			t.Fatal(err)
		}
	}
	// The 9th failure pushes the first failer out of the list, and as the
	// first connected peer it gets the chunk back.
	acts := s.Handle(epoch, ChunkReceived{Peer: peers[maxExcluded], Index: 0})
	if want := []Action{{Kind: Request, Peer: peers[0], Index: 0}}; !slices.Equal(acts, want) {
		t.Fatalf("failure %d: %v, want %v", maxExcluded+1, acts, want)
	}
	if n := len(s.excl[0]); n != maxExcluded {
		t.Errorf("%d peers excluded, want %d", n, maxExcluded)
	}
	if err := s.checkInvariants(); err != nil {
		t.Fatal(err)
	}
	acts = s.Handle(epoch, ChunkReceived{Peer: peers[0], Index: 0, Verified: true})
	if want := []Action{{Kind: Have, Index: 0}, {Kind: Done}}; !slices.Equal(acts, want) {
		t.Fatalf("delivery: %v, want %v", acts, want)
	}
	if held := s.Held(); !held.Equal(FullBitset(2)) {
		t.Errorf("Held() = %s", held)
	}
	if len(s.excl) != 0 {
		t.Errorf("exclusions kept after the chunk arrived: %v", s.excl)
	}
}

// HandleHave through a PeerRef is PeerHave by ID; a ref goes stale when its
// connection ends, even if the peer connects again, and refs of another
// Scheduler and the zero ref are ignored.
func TestPeerRef(t *testing.T) {
	newSched := func() *Scheduler {
		s, err := New(Config{MaxInflightPerPeer: 1, MaxDuplicates: 1}, 4, BitsetOf(4, 0), rand.New(rand.NewPCG(1, 1)))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s, other := newSched(), newSched()
	s.Handle(epoch, PeerConnected{Peer: "p"})
	other.Handle(epoch, PeerConnected{Peer: "p"})
	if _, ok := s.Ref("nobody"); ok {
		t.Error("Ref of an unknown peer is ok")
	}
	ref, ok := s.Ref("p")
	if !ok {
		t.Fatal("no ref for a connected peer")
	}
	oref, _ := other.Ref("p")
	check := func(what string, acts, want []Action) {
		t.Helper()
		if !slices.Equal(acts, want) {
			t.Errorf("%s: %v, want %v", what, acts, want)
		}
		if err := s.checkInvariants(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	check("have 1 by ref", s.HandleHave(nil, epoch, ref, 1), []Action{{Kind: Request, Peer: "p", Index: 1}})
	check("have 2 by ID", s.Handle(epoch, PeerHave{Peer: "p", Index: 2}), nil)
	check("other scheduler's ref", s.HandleHave(nil, epoch, oref, 3), nil)
	check("zero ref", s.HandleHave(nil, epoch, PeerRef{}, 3), nil)
	check("out of range", s.HandleHave(nil, epoch, ref, 9), nil)
	if st, _ := s.PeerStats("p"); st.Have != 2 {
		t.Errorf("p advertises %d chunks, want 2 (1 and 2)", st.Have)
	}
	s.Handle(epoch, PeerDisconnected{Peer: "p"})
	s.Handle(epoch, PeerConnected{Peer: "p"})
	check("stale ref after a reconnect", s.HandleHave(nil, epoch, ref, 3), nil)
	if st, _ := s.PeerStats("p"); st.Have != 0 {
		t.Errorf("a stale ref changed the new connection's advertisement: %d chunks", st.Have)
	}
	stale := ref
	ref, _ = s.Ref("p")
	check("fresh ref", s.HandleHave(nil, epoch, ref, 3), []Action{{Kind: Request, Peer: "p", Index: 3}})
	// Failures and deliveries by ref: HandleFailed and HandleReceived.
	check("failure through a stale ref", s.HandleFailed(nil, epoch, stale, 3, FailError), nil)
	check("busy by ref", s.HandleFailed(nil, epoch, ref, 3, FailBusy), nil)
	if st, _ := s.PeerStats("p"); st.Failures != 1 || st.Inflight != 0 {
		t.Errorf("after one busy answer by ref: %+v, want 1 failure and no request outstanding", st)
	}
	check("chunk through a stale ref", s.HandleReceived(nil, epoch, stale, 3, true), []Action{{Kind: Have, Index: 3}})
	check("corrupt chunk by ref", s.HandleReceived(nil, epoch, ref, 2, false), nil)
	if st, _ := s.PeerStats("p"); st.Bad != 1 {
		t.Errorf("after a corrupt chunk by ref: %+v, want 1 bad", st)
	}
}

// HandleHave allocates nothing either.
func TestHandleHaveDoesNotAllocate(t *testing.T) {
	const n = 4096
	s, _ := New(Config{MaxInflightPerPeer: 1, MaxDuplicates: 1}, n, Bitset{}, rand.New(rand.NewPCG(1, 1)))
	s.Handle(epoch, PeerConnected{Peer: "busy", Have: FullBitset(n)}) // takes the one request
	s.Handle(epoch, PeerConnected{Peer: "p"})
	ref, _ := s.Ref("p")
	buf := make([]Action, 0, 8)
	i := 0
	if allocs := testing.AllocsPerRun(1000, func() {
		buf = s.HandleHave(buf[:0], epoch, ref, i)
		i++
	}); allocs > 0 {
		t.Errorf("%.3f allocations per Have, want 0", allocs)
	}
}

// TestSlowSteadyPeer: a peer whose every chunk takes 25s to arrive, in one
// piece (no ChunkProgress: a chunk sent as a single Data frame, on a link
// shared by many uploads), is slow, not stalled. With a fixed 10s timeout
// every request to it timed out before it could be answered, and the
// download never completed. Its timeout now adapts to the wait it is seen
// to need: after at most a few timeouts the chunks arrive.
func TestSlowSteadyPeer(t *testing.T) {
	const (
		n     = 8
		serve = 25 * time.Second // per chunk, from when it is the peer's oldest request
	)
	s, err := New(Config{RequestTimeout: 10 * time.Second, MaxInflightPerPeer: 2, MaxDuplicates: 1}, n, Bitset{}, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	var (
		now      time.Duration
		queue    []int         // the peer's requests, in order; it serves queue[0]
		headFrom time.Duration // when queue[0] became the head
		done     bool
	)
	apply := func(acts []Action) {
		for _, a := range acts {
			switch a.Kind {
			case Request:
				if len(queue) == 0 {
					headFrom = now
				}
				queue = append(queue, a.Index)
			case Cancel:
				k := slices.Index(queue, a.Index)
				queue = slices.Delete(queue, k, k+1)
				if k == 0 {
					headFrom = now // the upload stops; the next one starts from nothing
				}
			case Done:
				done = true
			}
		}
		if err := s.checkInvariants(); err != nil {
			t.Fatal(err)
		}
	}
	apply(s.Handle(epoch, PeerConnected{Peer: "slow", Have: FullBitset(n)}))
	for step := 0; !done; step++ {
		if step > 1000 || now > time.Hour {
			st, _ := s.PeerStats("slow")
			t.Fatalf("not done after %v: %+v", now, st)
		}
		tick, ok := s.NextTick()
		at := tick.Sub(epoch)
		if len(queue) > 0 && (!ok || headFrom+serve < at) {
			now = headFrom + serve
			i := queue[0]
			queue, headFrom = queue[1:], now
			apply(s.Handle(epoch.Add(now), ChunkReceived{Peer: "slow", Index: i, Verified: true}))
			continue
		}
		if !ok {
			t.Fatalf("at %v: nothing outstanding, no tick due, not done", now)
		}
		now = max(now, at)
		apply(s.Handle(epoch.Add(now), Tick{}))
	}
	st, _ := s.PeerStats("slow")
	t.Logf("done at %v; %+v", now, st)
	// The first request times out at 10s and the next at 20s; at 40s the
	// timeout exceeds the 25s the peer needs.
	if st.Timeouts > 4 {
		t.Errorf("%d requests timed out at a peer that answers every 25s", st.Timeouts)
	}
	if limit := n*serve + time.Minute; now > limit {
		t.Errorf("done at %v, want at most %v", now, limit)
	}
}

// TestSchedulerLayout checks that what a PeerHave touches in a Scheduler
// stays within its first four cache lines (see Scheduler).
func TestSchedulerLayout(t *testing.T) {
	var s Scheduler
	if end := unsafe.Offsetof(s.sink) + unsafe.Sizeof(s.sink); end > 256 {
		t.Errorf("the fields a PeerHave touches end at byte %d, want at most 256", end)
	}
}

// The driver's tag of a connection comes back in its Requests and Cancels.
func TestTagInActions(t *testing.T) {
	s, err := New(Config{MaxInflightPerPeer: 1, MaxDuplicates: 1}, 2, Bitset{}, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	acts := s.Handle(epoch, PeerConnected{Peer: "p", Have: BitsetOf(2, 1), Tag: 7})
	if want := []Action{{Kind: Request, Peer: "p", Index: 1, Tag: 7}}; !slices.Equal(acts, want) {
		t.Fatalf("connect: %v, want %v", acts, want)
	}
	acts = s.Handle(epoch, ChunkStoredLocally{Index: 1})
	if len(acts) == 0 || acts[0] != (Action{Kind: Cancel, Peer: "p", Index: 1, Tag: 7}) {
		t.Fatalf("stored locally: %+v, want a Cancel with tag 7 first", acts)
	}
}

// With MinInflightPerPeer set, MaxInflightPerPeer is shared out among the
// connected peers, rounded up: a lone peer gets it all, the next ones less
// as more connect (but no less than the floor), and when a peer leaves the
// others may have more.
func TestDepthShared(t *testing.T) {
	s, err := New(Config{MaxInflightPerPeer: 8, MinInflightPerPeer: 2}, 64, Bitset{}, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	outstanding := func(acts []Action) map[string]int {
		n := map[string]int{}
		for _, a := range acts {
			if a.Kind == Request {
				n[a.Peer]++
			}
		}
		return n
	}
	all := FullBitset(64)
	if got := outstanding(s.Handle(epoch, PeerConnected{Peer: "a", Have: all}))["a"]; got != 8 {
		t.Fatalf("a lone peer got %d requests, want 8", got)
	}
	for _, c := range []struct {
		id   string
		want int // ceil(8/n) for n peers, at least 2
	}{{"b", 4}, {"c", 3}, {"d", 2}} {
		if got := outstanding(s.Handle(epoch, PeerConnected{Peer: c.id, Have: all}))[c.id]; got != c.want {
			t.Fatalf("peer %s got %d requests, want %d", c.id, got, c.want)
		}
	}
	// With a gone, three are left: each may have 3, so only d gets more.
	got := outstanding(s.Handle(epoch, PeerDisconnected{Peer: "a"}))
	if got["d"] != 1 || got["b"] != 0 || got["c"] != 0 {
		t.Fatalf("after a left: new requests %v, want one more at d only", got)
	}
	if err := s.checkInvariants(); err != nil {
		t.Fatal(err)
	}
}
