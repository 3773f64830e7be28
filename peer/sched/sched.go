package sched

import (
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/p2pd/p2pd/chunker"
)

// tags numbers Schedulers, so that a PeerRef of one is stale for another.
var tags atomic.Uint32

// MaxChunks is the largest manifest a Scheduler accepts.
const MaxChunks = chunker.MaxManifestChunks

const (
	// scanBudget bounds the rarest-first bucket scan for one pick. A peer
	// that advertises few of the pending chunks would otherwise walk most of
	// them; past the budget the pick switches to intersecting bitsets, which
	// costs O(chunks/64 + candidates).
	scanBudget = 64
	// sparseSkips is how many picks for a peer skip the bucket scan after it
	// ran out of budget for that peer: a peer that advertises few of the
	// pending chunks tends to stay that way for a while.
	sparseSkips = 8
	// maxExcluded bounds the peers remembered per chunk as having failed it.
	maxExcluded = 8
	// stallLevels is how many request timeouts a peer can have: level L
	// is RequestTimeout<<L, so at most 16 times RequestTimeout (see
	// Scheduler.level).
	stallLevels = 5
	// gapSlack: a peer's timeout is at least this many times its longest
	// recent wait for data (peer.gap), and a peer is suspected of stalling
	// after this many times the longest recent wait over all peers
	// (Scheduler.suspectAfter).
	gapSlack = 3
	// suspectFloor: a peer is never suspected of stalling before its
	// oldest request has waited RequestTimeout/suspectFloor without data.
	suspectFloor = 8
)

// chunkState is the per-chunk bookkeeping, kept to 16 bytes because a
// simulator runs one Scheduler per simulated peer.
//
// A chunk is in exactly one of three states: held (bit in Scheduler.held),
// pending (missing and not requested: bit in Scheduler.pending, listed in
// buckets[avail] at pos) or requested (listed in Scheduler.inflight at pos,
// nreq outstanding requests; nreq is 0 only transiently inside a handler).
type chunkState struct {
	avail   int32  // connected peers advertising it, beyond Scheduler.base; fallback origins excluded
	origins int32  // connected fallback origins advertising it
	pos     int32  // index in its bucket or in Scheduler.inflight; -1 when held
	nreq    uint16 // outstanding requests
	fails   uint16 // failed attempts (timeouts, rejections, corrupt data), saturating
}

// peer is a connected peer. What a PeerHave touches comes first, in 64
// bytes, with a small manifest's bitset stored inline (small), so that the
// event costs few cache misses: a simulator delivers hundreds of millions
// of them, each to a different Scheduler.
type peer struct {
	have     Bitset
	small    [smallWords]uint64
	tag      uint32 // Scheduler.tag of its scheduler, for PeerRef
	count    int32  // members of have
	window   uint16 // current pipelining depth, 1..MaxInflightPerPeer
	nreqs    uint16 // len(reqs), here to keep canAsk within these 64 bytes
	fallback bool   // origin under OriginFallback: availability counted in chunkState.origins
	full     bool   // advertised every chunk when it connected (or in a bitfield): counted in Scheduler.base
	gone     bool   // disconnected or banned
	paused   bool   // busy backoff until `until`; listed in Scheduler.paused

	reqs   []int32 // chunks requested, in request order (the order the peer answers in)
	slot   int32   // index in Scheduler.slots
	origin bool    // connected as an origin
	// suspect: its oldest request waited Scheduler.suspectAfter without
	// data, so its requests were released (chunkState.nreq does not count
	// them, and the chunks may be requested elsewhere) while they stay
	// outstanding. It gets no new requests until it has none left.
	suspect bool
	dirty   bool  // queued in Scheduler.dirty
	skips   uint8 // picks left that go straight to pickSparse
	streak  uint8 // busy pauses since it last delivered a chunk: the next pause is BusyBackoff << streak
	id      string
	userTag uint32 // PeerConnected.Tag
	until   time.Duration
	// busySince is when the first of its busy answers since it last
	// delivered a chunk came (valid while busy).
	busySince time.Duration
	busy      bool
	// since is when the oldest outstanding request became the oldest, or
	// last made progress: the peer stalls at since + RequestTimeout<<level.
	// Peers with requests outstanding are listed by since, oldest first,
	// from Scheduler.stallHead[level] through next.
	since      time.Duration
	prev, next *peer
	level      uint8 // its timeout level while on a stall list
	// Peers that may become suspect (requests outstanding, not suspect,
	// not a fallback origin) are also listed by since, from
	// Scheduler.watchHead through wnext.
	wprev, wnext *peer
	// gap estimates the longest the peer's oldest request waits for data
	// (from when it became the oldest or last made progress; decayMax),
	// raised when the peer stalls. It sets the peer's timeout level
	// (Scheduler.level).
	gap   time.Duration
	stats PeerStats
}

// full reports whether the requests outstanding at peers other than
// fallback origins have reached Config.MaxInflight.
func (s *Scheduler) full() bool {
	return s.cfg.MaxInflight > 0 && s.nreqs-s.nfallback >= s.cfg.MaxInflight
}

// unrequest counts one request at p (not suspect) as no longer
// outstanding.
func (s *Scheduler) unrequest(p *peer) {
	s.nreqs--
	if p.fallback {
		s.nfallback--
	}
}

// smallWords is the size of a bitset kept inside a peer (128 chunks).
const smallWords = 2

// canAsk reports whether p may be sent another request now: it is not
// paused, there is room under Config.MaxInflight unless p is a fallback
// origin, and p has fewer requests outstanding than its window and than
// its share of the depth (Scheduler.depth), or, for a fallback origin
// while other peers are connected, than MaxInflightPerOrigin.
func (s *Scheduler) canAsk(p *peer) bool {
	if p.paused {
		return false
	}
	if !p.fallback && s.full() {
		s.capped = true
		return false
	}
	w := int(p.window)
	switch {
	case !p.fallback:
		w = min(w, int(s.depth))
	case s.npeers > 0:
		w = min(w, s.cfg.MaxInflightPerOrigin)
	}
	// suspect is read last: it lies outside the first cache line, which
	// a peer whose window is full never leaves.
	return int(p.nreqs) < w && !p.suspect
}

func (p *peer) requesting(i int32) bool { return slices.Contains(p.reqs, i) }

// Scheduler decides which chunk to request from which peer. It is a pure
// state machine: Handle feeds it one Event and returns the Actions to take.
// It starts no goroutines, does no I/O and reads no clock; it is not safe
// for concurrent use.
type Scheduler struct {
	// What a PeerHave touches comes first, in four cache lines
	// (TestSchedulerLayout), with a small manifest's pending set stored
	// inline: a simulator runs one Scheduler per peer and delivers each
	// event to a different one, so every cache line an event touches is a
	// miss.
	now          time.Duration // since epoch; never decreases
	epoch        time.Time
	n            int
	nheld        int
	endgameAt    int // endgame while 0 < n-nheld <= endgameAt
	started      bool
	doneSent     bool
	wakeAll      bool   // fill every peer at the end of this event
	capped       bool   // a peer was not asked for want of room under Config.MaxInflight
	tag          uint32 // tells this Scheduler's peers from others', for PeerRef
	haveFrom     *peer  // the sender of the Have being handled
	pending      Bitset
	chunks       []chunkState
	npending     int
	pendingSmall [smallWords]uint64
	out          []Action  // actions of the event being handled
	dirty        []*peer   // peers to fill at the end of this event
	buckets      [][]int32 // pending chunks by chunkState.avail
	nonEmpty     []uint64  // bit a set iff buckets[a] is non-empty
	sink         uint32    // what Prefetch read, so that its reads are kept

	base       int32 // connected non-origin peers counted as having every chunk
	npeers     int   // connected peers that are not fallback origins
	depth      int32 // the most requests outstanding at one of them (setDepth)
	cfg        Config
	rng        *rand.Rand
	held       Bitset
	escalated  Bitset // missing chunks that may go to an origin because they failed on peers
	nescalated int
	inflight   []int32 // requested chunks

	peers []*peer // connected, in connection order
	// peerSlot[k] is peers[k].slot, and pausedSlots has the slots of the
	// paused peers: wake skips paused peers without touching them, each
	// a cache miss away in a simulator.
	peerSlot    []int32
	pausedSlots []uint64
	byID        map[string]*peer
	slots       []*peer           // connected peers by slot, nil for free slots
	free        []int32           // free slots
	offences    map[string]int    // corrupt chunks per peer ID, across connections
	banned      map[string]string // peer ID -> ban reason
	excl        map[int32][]*peer // peers that failed a chunk; avoided for it while others have it
	// Peers with requests outstanding, one list per timeout level, each by
	// peer.since and so in the order they stall.
	stallHead [stallLevels]*peer
	stallTail [stallLevels]*peer
	gap       time.Duration // peer.gap over the samples of all peers: a new peer's first estimate
	sampled   bool          // gap has a sample
	paused    []*peer       // peers in busy backoff
	// pausedUntil[k] is paused[k].until, so that tick and NextTick find
	// the pauses that end without touching the peers.
	pausedUntil []time.Duration
	nreqs       int   // outstanding requests, not counting suspect peers'
	nfallback   int   // those of nreqs outstanding at fallback origins
	delivered   *peer // the peer that delivered a chunk in this event, if any
	// The peers that may become suspect, by since (peer.wprev, wnext).
	watchHead, watchTail *peer
	nsuspect             int     // suspect peers
	fresh                []*peer // suspectPeers' buffer
	// deferred holds the chunks an origin deferred (FailDeferred): origins
	// are not asked for them until their entry in deferQ, in time order,
	// expires.
	deferred Bitset
	deferQ   []deferral
	// firstDeferred is when an origin first deferred each missing chunk
	// it has deferred (see deferChunk).
	firstDeferred map[int32]time.Duration
	// urgent holds the escalated chunks that failed on peers in earnest
	// (a timeout, an error, corrupt data) or that only suspect peers
	// hold: an origin is asked for them with Action.Escalated, which it
	// serves even within its resend window. A chunk escalated by busy
	// answers alone is not urgent: its holders are alive.
	urgent Bitset
}

// deferral is a chunk deferred by an origin, until a time.
type deferral struct {
	i     int32
	until time.Duration
}

// New returns a Scheduler for a blob of numChunks chunks, of which those in
// have are already held locally (deduplicated from another blob, or kept
// from before a restart) and are never requested. have may be the zero
// Bitset for "none". rng breaks ties between equally rare chunks, so that
// peers fetching the same blob do not all chase the same chunk; nil means a
// randomly seeded generator. A simulator passes a seeded one to make runs
// reproducible.
//
// If every chunk is already held, the first event handled emits Done.
func New(cfg Config, numChunks int, have Bitset, rng *rand.Rand) (*Scheduler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if numChunks < 0 || numChunks > MaxChunks {
		return nil, fmt.Errorf("%w: %d chunks, want 0 to %d", ErrBadConfig, numChunks, MaxChunks)
	}
	if have.Len() != 0 && have.Len() != numChunks {
		return nil, fmt.Errorf("%w: held bitset has length %d, manifest has %d chunks", ErrBadConfig, have.Len(), numChunks)
	}
	if rng == nil {
		rng = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	s := &Scheduler{
		tag:           tags.Add(1),
		cfg:           cfg.withDefaults(),
		n:             numChunks,
		rng:           rng,
		chunks:        make([]chunkState, numChunks),
		held:          NewBitset(numChunks),
		escalated:     NewBitset(numChunks),
		deferred:      NewBitset(numChunks),
		firstDeferred: make(map[int32]time.Duration),
		urgent:        NewBitset(numChunks),
		buckets:       make([][]int32, 1, 8),
		byID:          make(map[string]*peer),
		offences:      make(map[string]int),
		banned:        make(map[string]string),
		excl:          make(map[int32][]*peer),
	}
	if words(numChunks) <= smallWords {
		s.pending = BitsetIn(s.pendingSmall[:], numChunks)
	} else {
		s.pending = NewBitset(numChunks)
	}
	if s.cfg.MaxDuplicates > 1 {
		s.endgameAt = s.cfg.EndgameThreshold
	}
	s.setDepth()
	s.nheld = have.copyInto(s.held)
	s.buckets[0] = make([]int32, 0, numChunks-s.nheld)
	for i := range s.chunks {
		if s.held.Has(i) {
			s.chunks[i].pos = -1
			continue
		}
		s.pending.Set(i)
		s.npending++
		s.bucketAdd(int32(i))
	}
	return s, nil
}

// Handle processes one event that happened at now and returns the actions
// it calls for, in order (nil if none). Time never runs backwards for the
// scheduler: a now earlier than one seen before is taken as that one.
func (s *Scheduler) Handle(now time.Time, ev Event) []Action {
	return s.HandleAppend(nil, now, ev)
}

// HandleAppend is Handle appending the actions to dst, so that a driver can
// reuse one buffer and handle events without allocating.
func (s *Scheduler) HandleAppend(dst []Action, now time.Time, ev Event) []Action {
	s.out = dst
	s.advance(now)
	switch e := ev.(type) {
	case PeerConnected:
		s.connect(e)
	case *PeerConnected:
		s.connect(*e)
	case PeerDisconnected:
		s.disconnect(e.Peer)
	case *PeerDisconnected:
		s.disconnect(e.Peer)
	case PeerHave:
		s.peerHave(e.Peer, e.Index)
	case *PeerHave:
		s.peerHave(e.Peer, e.Index)
	case PeerBitfield:
		s.bitfield(e.Peer, e.Have)
	case *PeerBitfield:
		s.bitfield(e.Peer, e.Have)
	case ChunkProgress:
		s.progress(e.Peer, e.Index)
	case *ChunkProgress:
		s.progress(e.Peer, e.Index)
	case ChunkReceived:
		s.received(e)
	case *ChunkReceived:
		s.received(*e)
	case RequestFailed:
		s.failed(e)
	case *RequestFailed:
		s.failed(*e)
	case Tick, *Tick:
		s.tick()
	case ChunkStoredLocally:
		s.stored(e.Index)
	case *ChunkStoredLocally:
		s.stored(e.Index)
	}
	return s.finish()
}

// PeerRef is a handle on a connected peer, for a driver that delivers many
// events about it: HandleHave through a PeerRef saves looking the peer up
// by its ID. A PeerRef is valid for one connection; once the peer
// disconnects, is banned or connects again, it is stale, and events through
// it are ignored, like events naming an unknown peer, as are events through
// the zero PeerRef and through another Scheduler's.
type PeerRef struct{ p *peer }

// Ref returns the handle of connected peer id; ok is false if it is not
// connected.
func (s *Scheduler) Ref(id string) (ref PeerRef, ok bool) {
	p := s.byID[id]
	return PeerRef{p}, p != nil
}

// HandleHave is HandleAppend for PeerHave{Peer: the peer of ref, Index:
// index}, with the same effects and actions, for the event a simulator
// delivers most. It does not box an event in an interface nor look the
// peer up by ID.
func (s *Scheduler) HandleHave(dst []Action, now time.Time, ref PeerRef, index int) []Action {
	s.out = dst
	s.advance(now)
	if p := s.live(ref); p != nil {
		s.peerHaveP(p, index)
	}
	return s.finish()
}

// HandleFailed is HandleAppend for RequestFailed{Peer: the peer of ref,
// Index: index, Reason: reason}, without the event's boxing and the look-up
// by ID: a simulator delivers one for every busy answer.
func (s *Scheduler) HandleFailed(dst []Action, now time.Time, ref PeerRef, index int, reason FailReason) []Action {
	s.out = dst
	s.advance(now)
	if p := s.live(ref); p != nil {
		s.failedP(p, index, reason)
	}
	return s.finish()
}

// HandleReceived is HandleAppend for ChunkReceived{Peer: the peer of ref,
// Index: index, Verified: verified}. Through a stale ref the chunk counts
// as one from a peer that disconnected: a verified one is accepted, a
// corrupt one counts against the peer's ID.
func (s *Scheduler) HandleReceived(dst []Action, now time.Time, ref PeerRef, index int, verified bool) []Action {
	s.out = dst
	s.advance(now)
	var id string
	if ref.p != nil {
		id = ref.p.id
	}
	s.receivedFrom(s.live(ref), id, index, verified)
	return s.finish()
}

// live returns the peer of ref, or nil if ref is stale or another
// Scheduler's.
func (s *Scheduler) live(ref PeerRef) *peer {
	if p := ref.p; p != nil && p.tag == s.tag && !p.gone {
		return p
	}
	return nil
}

// Prefetch reads the memory that HandleHave(ref, index) reads first, and
// changes nothing that matters. A driver that delivers one Have to many
// Schedulers (a simulator: each is a few cache misses away) calls
// Prefetch on all of them and then HandleHave on each, so that their
// cache misses overlap rather than come one after the other.
func (s *Scheduler) Prefetch(ref PeerRef, index int) {
	// One field from each of the Scheduler's first four cache lines.
	x := uint32(s.now) + uint32(len(s.chunks)) + uint32(len(s.out)) + uint32(len(s.buckets))
	if p := ref.p; p != nil {
		x += uint32(p.count)
	}
	if s.inRange(index) {
		c := &s.chunks[index]
		x += uint32(c.avail)
		if s.pending.Has(index) {
			// The bucket it leaves: its slot and the last one.
			b := s.buckets[c.avail]
			x += uint32(b[c.pos]) + uint32(b[len(b)-1])
		}
	}
	s.sink = x
}

// finish schedules requests after an event and returns its actions.
func (s *Scheduler) finish() []Action {
	s.schedule()
	if !s.doneSent && s.nheld == s.n {
		s.doneSent = true
		s.emit(Action{Kind: Done})
	}
	out := s.out
	s.out = nil
	return out
}

func (s *Scheduler) advance(now time.Time) {
	if !s.started {
		s.started, s.epoch = true, now
	}
	if d := now.Sub(s.epoch); d > s.now {
		s.now = d
	}
}

func (s *Scheduler) emit(a Action) { s.out = append(s.out, a) }

func (s *Scheduler) inRange(i int) bool { return uint(i) < uint(s.n) }

// ---- events ----

func (s *Scheduler) connect(e PeerConnected) {
	if reason, ok := s.banned[e.Peer]; ok {
		s.emit(Action{Kind: Ban, Peer: e.Peer, Reason: reason})
		return
	}
	if old := s.byID[e.Peer]; old != nil {
		s.removePeer(old)
	}
	p := &peer{
		id:       e.Peer,
		tag:      s.tag,
		userTag:  e.Tag,
		origin:   e.Origin,
		fallback: e.Origin && s.cfg.OriginPolicy == OriginFallback,
		window:   uint16(s.cfg.MaxInflightPerPeer),
		gap:      s.gap,
	}
	if words(s.n) <= smallWords {
		p.have = BitsetIn(p.small[:], s.n)
	} else {
		p.have = NewBitset(s.n)
	}
	p.count = int32(e.Have.copyInto(p.have))
	switch {
	case p.fallback:
		for i := range p.have.All() {
			s.chunks[i].origins++
		}
	case int(p.count) == s.n && s.n > 0:
		// A seeder raises every chunk's availability alike, which leaves
		// the rarity order as it was: count it once instead of n times.
		p.full = true
		s.base++
	default:
		for i := range p.have.All() {
			s.incAvail(int32(i))
		}
	}
	if k := len(s.free); k > 0 {
		p.slot = s.free[k-1]
		s.free = s.free[:k-1]
		s.slots[p.slot] = p
	} else {
		p.slot = int32(len(s.slots))
		s.slots = append(s.slots, p)
	}
	s.setPausedSlot(p.slot, false) // sizes pausedSlots for wake
	s.peers = append(s.peers, p)
	s.peerSlot = append(s.peerSlot, p.slot)
	s.byID[p.id] = p
	if !p.fallback {
		s.npeers++
		s.setDepth()
	}
	s.markDirty(p)
}

// setDepth shares the pipelining depth out among the npeers connected
// peers (Config.MinInflightPerPeer). A peer whose share shrank keeps the
// requests it has; one whose share grew is filled at the end of the event
// (a peer leaving wakes all).
func (s *Scheduler) setDepth() {
	d := s.cfg.MaxInflightPerPeer
	if m := s.cfg.MinInflightPerPeer; m > 0 && s.npeers > 1 {
		d = min(d, max(m, (d+s.npeers-1)/s.npeers))
	}
	s.depth = int32(d)
}

func (s *Scheduler) disconnect(id string) {
	if p := s.byID[id]; p != nil {
		s.removePeer(p)
	}
}

func (s *Scheduler) peerHave(id string, idx int) {
	if p := s.byID[id]; p != nil {
		s.peerHaveP(p, idx)
	}
}

func (s *Scheduler) peerHaveP(p *peer, idx int) {
	s.haveFrom = p
	if !s.inRange(idx) || p.have.Has(idx) {
		return
	}
	i := int32(idx)
	p.have.Set(idx)
	p.count++
	if p.fallback {
		s.chunks[i].origins++
	} else {
		s.incAvail(i)
	}
	// Every peer with a free slot had nothing left to fetch before this
	// event, so the new chunk is p's only candidate.
	if s.pending.Has(idx) && s.canAsk(p) && s.eligible(p, i) {
		s.request(p, i)
	}
}

func (s *Scheduler) bitfield(id string, have Bitset) {
	p := s.byID[id]
	if p == nil {
		return
	}
	nb := NewBitset(s.n)
	cnt := have.copyInto(nb)
	old := p.have
	for k := range old.w {
		if old.w[k]&^nb.w[k] != 0 {
			// Losing a holder can make a chunk eligible elsewhere (an
			// origin, an excluded peer): reconsider everyone.
			s.wakeAll = true
			break
		}
	}
	newFull := cnt == s.n && s.n > 0
	switch {
	case p.fallback:
		forDiff(old, nb, func(i int32) { s.chunks[i].origins-- }, func(i int32) { s.chunks[i].origins++ })
	case p.full && newFull:
	case p.full:
		s.base--
		for i := range nb.All() {
			s.incAvail(int32(i))
		}
	case newFull:
		s.base++
		for i := range old.All() {
			s.decAvail(int32(i))
		}
	default:
		forDiff(old, nb, s.decAvail, s.incAvail)
	}
	if !p.fallback {
		p.full = newFull
	}
	copy(p.have.w, nb.w) // p.have may be stored in p
	p.count = int32(cnt)
	s.markDirty(p)
}

// forDiff calls lost for every member of old not in nb, then gained for
// every member of nb not in old.
func forDiff(old, nb Bitset, lost, gained func(int32)) {
	for k := range old.w {
		for w := old.w[k] &^ nb.w[k]; w != 0; w &= w - 1 {
			lost(int32(k<<6 + bits.TrailingZeros64(w)))
		}
	}
	for k := range nb.w {
		for w := nb.w[k] &^ old.w[k]; w != 0; w &= w - 1 {
			gained(int32(k<<6 + bits.TrailingZeros64(w)))
		}
	}
}

func (s *Scheduler) received(e ChunkReceived) {
	s.receivedFrom(s.byID[e.Peer], e.Peer, e.Index, e.Verified)
}

// receivedFrom handles chunk index from peer id, which is p if connected
// (else p is nil).
func (s *Scheduler) receivedFrom(p *peer, id string, index int, verified bool) {
	if !s.inRange(index) {
		return
	}
	i := int32(index)
	if p != nil && len(p.reqs) > 0 && p.reqs[0] == i {
		s.sample(p)
	}
	had := p != nil && s.dropReq(p, i)
	if had {
		s.markDirty(p)
	}
	if verified && had {
		s.delivered = p
	}
	if verified {
		if p != nil {
			p.stats.Received++
			p.streak, p.busy = 0, false
			if had && int(p.window) < s.cfg.MaxInflightPerPeer {
				p.window++
			}
		}
		s.hold(i)
		return
	}
	if p != nil {
		p.stats.Bad++
	}
	if !s.held.Has(index) {
		s.penalize(i, p, true, true)
	}
	s.requeueIfIdle(i)
	if _, ok := s.banned[id]; ok || id == "" {
		return
	}
	s.offences[id]++
	if n := s.offences[id]; n >= s.cfg.BanThreshold {
		s.ban(id, p, fmt.Sprintf("%d chunks failed verification", n))
	}
}

func (s *Scheduler) failed(e RequestFailed) {
	if p := s.byID[e.Peer]; p != nil {
		s.failedP(p, e.Index, e.Reason)
	}
}

// failedP handles connected peer p's rejection of its request for chunk
// index.
func (s *Scheduler) failedP(p *peer, index int, reason FailReason) {
	if !s.inRange(index) {
		return
	}
	i := int32(index)
	had := s.dropReq(p, i)
	if reason == FailNotFound {
		s.clearHave(p, i)
	}
	if !had {
		return
	}
	if reason == FailDeferred && !p.fallback {
		reason = FailBusy
	}
	if reason != FailDeferred {
		p.stats.Failures++
	}
	switch reason {
	case FailDeferred:
		s.deferChunk(i)
		s.markDirty(p)
	case FailBusy:
		// A peer that has answered nothing but busy for its request
		// timeout (all its upload slots held by requests it never
		// finishes: a stalled peer) fails the chunk as a timeout would,
		// if every other peer that has the chunk is the same, so that
		// the chunk escalates to the origin instead of being retried at
		// them for ever. In a busy but healthy swarm some holder is
		// delivering, and the chunk waits for it rather than going to
		// the origin a second time.
		if s.longBusy(p) && !s.holderBut(p, i, s.longBusy) {
			s.penalize(i, p, true, false)
		}
		s.pause(p)
	case FailError:
		s.penalize(i, p, true, true)
		s.markDirty(p)
	default:
		s.markDirty(p)
	}
	s.requeueIfIdle(i)
}

// longBusy reports whether p looks stalled rather than merely busy: it
// has answered nothing but busy for twice its request timeout and never
// delivered a chunk to this peer. In a busy swarm, a healthy peer that
// holds a popular chunk may turn one requester away for a long time, but
// it delivers now and then.
func (s *Scheduler) longBusy(p *peer) bool {
	return p.busy && p.stats.Received == 0 && s.now-p.busySince >= 2*s.timeout(s.level(p))
}

// deferChunk keeps origins from being asked for chunk i for DeferBackoff.
// An origin defers a chunk it has just sent to another peer, which is to
// pass it on. If no peer has offered it yet when the origin defers it
// again, at least suspectAfter (the wait without data that makes a peer
// suspect of stalling) and DeferBackoff after it first did, the chunk
// escalates: the origin's copy went to a peer that hoards it, or that
// announces it too slowly to matter (a slowloris peer's Have waits behind
// its trickle of data), and the next request tells the origin so
// (Action.Escalated).
// Until then the chunk stays deferred however often it is asked for, so
// that on slow links, where Haves take seconds, the origin does not send
// second copies.
func (s *Scheduler) deferChunk(i int32) {
	if s.deferred.Has(int(i)) {
		return
	}
	if at, ok := s.firstDeferred[i]; ok {
		if d, _ := s.suspectAfter(); s.now-at >= max(d, s.cfg.DeferBackoff) {
			s.escalate(i)
		}
	} else {
		s.firstDeferred[i] = s.now
	}
	s.deferred.Set(int(i))
	s.deferQ = append(s.deferQ, deferral{i: i, until: s.now + s.cfg.DeferBackoff})
}

// pause leaves busy peer p alone for a while, unless it is paused already
// (a busy answer to a request made before the pause): BusyBackoff, doubled
// for every pause since p last delivered a chunk, at most MaxBusyBackoff
// (OriginBusyBackoff and MaxOriginBusyBackoff for a fallback origin).
func (s *Scheduler) pause(p *peer) {
	if p.paused {
		return
	}
	if !p.busy {
		p.busy, p.busySince = true, s.now
	}
	base, limit := s.cfg.BusyBackoff, s.cfg.MaxBusyBackoff
	if p.fallback {
		base, limit = s.cfg.OriginBusyBackoff, s.cfg.MaxOriginBusyBackoff
	}
	d := base << p.streak
	if d <= 0 || d >= limit {
		d = limit
	} else {
		p.streak++
	}
	p.until = s.now + d
	p.paused = true
	s.paused = append(s.paused, p)
	s.pausedUntil = append(s.pausedUntil, p.until)
	s.setPausedSlot(p.slot, true)
}

// progress: part of chunk idx arrived from peer id. If that is its oldest
// request, the peer is not stalled: its clock restarts.
func (s *Scheduler) progress(id string, idx int) {
	p := s.byID[id]
	if p != nil && len(p.reqs) > 0 && p.reqs[0] == int32(idx) {
		s.sample(p)
		s.touch(p)
	}
}

// sample: data for p's oldest request arrived, which waited for it since
// p.since. The wait goes into p's estimate and the scheduler's.
func (s *Scheduler) sample(p *peer) {
	x := s.now - p.since
	p.gap = decayMax(p.gap, x)
	s.gap = decayMax(s.gap, x)
	s.sampled = true
}

// decayMax estimates the longest wait for data: a sample x above the
// estimate g replaces it, one below moves it an eighth of the way down. A
// timeout must cover the long waits, and short ones come in between (the
// rest of a chunk after a progress report, a chunk that was sent whole
// before the one in front was received).
func decayMax(g, x time.Duration) time.Duration {
	if x >= g {
		return x
	}
	return g - (g-x)/8
}

// level returns p's timeout level: its oldest request times out after
// RequestTimeout<<level without data, the least such timeout that is at
// least gapSlack times p's longest wait for data (peer.gap), and at most
// RequestTimeout<<(stallLevels-1). A peer whose share of a slow link
// delivers a chunk only every 20s is given 80s (the least level at or above
// 60s); a peer that stalls has its gap raised so that its next timeout is
// twice the one that expired, until shorter waits bring the estimate down.
func (s *Scheduler) level(p *peer) uint8 {
	var l uint8
	for l < stallLevels-1 && s.cfg.RequestTimeout<<l < gapSlack*p.gap {
		l++
	}
	return l
}

// timeout is the stall timeout of a peer at level l.
func (s *Scheduler) timeout(l uint8) time.Duration { return s.cfg.RequestTimeout << l }

// suspectAfter is how long a peer's oldest request may wait without data
// before the peer is suspected of stalling: gapSlack times the longest
// recent wait for data over all peers (Scheduler.gap), and at least
// RequestTimeout/suspectFloor. ok is false until some peer has delivered
// data: until then nothing tells a stalled peer from a slow start.
func (s *Scheduler) suspectAfter() (d time.Duration, ok bool) {
	return max(gapSlack*s.gap, s.cfg.RequestTimeout/suspectFloor), s.sampled
}

// suspectPeers suspects the peers whose oldest request has waited d
// without data, while the fleet's chunks come in a third of that. Their
// requests are released: they stay outstanding (a late answer is welcome,
// and the stall timeout still runs), but the chunks count as unrequested,
// so that other peers are asked for them at once rather than after the
// timeout; a suspect peer gets nothing new until it has answered or lost
// them all. A chunk that no peer but suspect ones advertises may go to a
// fallback origin, as if it had failed OriginAfterFailures times (a
// stalled peer may hold chunks it fetched from the origin and passed on
// to nobody). A peer that merely answers slowly loses its chunks to
// faster peers this way, which is what its share of the capacity is
// worth. Nothing counts as a failure. A peer none of whose chunks another
// peer or an origin advertises is left alone until its clock restarts:
// releasing them would change nothing but its pipeline.
func (s *Scheduler) suspectPeers(d time.Duration) {
	fresh := s.fresh[:0]
	for p := s.watchHead; p != nil && p.since+d <= s.now; p = s.watchHead {
		s.unwatch(p)
		if !s.othersHave(p) {
			continue
		}
		p.suspect = true
		s.nsuspect++
		p.stats.Suspected++
		for _, i := range p.reqs {
			s.chunks[i].nreq--
			s.unrequest(p)
		}
		fresh = append(fresh, p)
	}
	// Only once all are marked, so that the order they became suspect in
	// does not matter.
	for _, p := range fresh {
		for _, i := range p.reqs {
			if s.cfg.OriginPolicy == OriginFallback && !s.escalated.Has(int(i)) && !s.trustedHolder(p, i) {
				s.escalate(i)
			}
			s.requeueIfIdle(i)
		}
	}
	clear(fresh)
	s.fresh = fresh[:0]
}

// trustedHolder reports whether a connected peer other than p, neither
// suspect nor a fallback origin, advertises chunk i.
func (s *Scheduler) trustedHolder(p *peer, i int32) bool {
	if s.nsuspect == 1 {
		return s.otherHolders(p, i) > 0 // p is the only suspect peer
	}
	return s.holderBut(p, i, func(q *peer) bool { return q.suspect })
}

// holderBut reports whether a connected peer other than p, not a fallback
// origin and not ruled out by bad, advertises chunk i. It walks the peers
// only if the counts leave it open.
func (s *Scheduler) holderBut(p *peer, i int32, bad func(*peer) bool) bool {
	if s.otherHolders(p, i) == 0 {
		return false
	}
	for _, q := range s.peers {
		if q != p && !q.gone && !q.fallback && q.have.Has(int(i)) && !bad(q) {
			return true
		}
	}
	return false
}

// escalate lets a fallback origin be asked for missing chunk i, as if it
// had failed OriginAfterFailures times.
func (s *Scheduler) escalate(i int32) {
	if s.cfg.OriginPolicy == OriginFallback && !s.escalated.Has(int(i)) {
		s.escalated.Set(int(i))
		s.urgent.Set(int(i))
		s.nescalated++
		s.wake(i)
	}
}

// otherHolders is how many connected peers other than p, fallback origins
// excluded, advertise chunk i.
func (s *Scheduler) otherHolders(p *peer, i int32) int32 {
	n := s.chunks[i].avail + s.base
	if !p.fallback && p.have.Has(int(i)) {
		n--
	}
	return n
}

// othersHave reports whether a connected peer other than p advertises one
// of the chunks outstanding at p (a fallback origin counts).
func (s *Scheduler) othersHave(p *peer) bool {
	for _, i := range p.reqs {
		if s.otherHolders(p, i) > 0 || s.chunks[i].origins > 0 {
			return true
		}
	}
	return false
}

func (s *Scheduler) tick() {
	for l := range uint8(stallLevels) {
		for p := s.stallHead[l]; p != nil && p.since+s.timeout(l) <= s.now; p = s.stallHead[l] {
			s.stalled(p)
		}
	}
	if d, ok := s.suspectAfter(); ok && s.watchHead != nil && s.watchHead.since+d <= s.now {
		s.suspectPeers(d)
	}
	k := 0
	for j, p := range s.paused {
		if until := s.pausedUntil[j]; until > s.now {
			s.paused[k], s.pausedUntil[k] = p, until
			k++
			continue
		}
		p.paused = false
		s.setPausedSlot(p.slot, false)
		s.markDirty(p)
	}
	clear(s.paused[k:])
	s.paused, s.pausedUntil = s.paused[:k], s.pausedUntil[:k]
	n := 0
	for _, d := range s.deferQ {
		if d.until > s.now {
			break
		}
		n++
		s.deferred.Clear(int(d.i))
		if s.pending.Has(int(d.i)) {
			for _, p := range s.peers {
				if p.fallback && p.have.Has(int(d.i)) && s.canAsk(p) {
					s.markDirty(p)
				}
			}
		}
	}
	if n > 0 {
		s.deferQ = append(s.deferQ[:0], s.deferQ[n:]...)
	}
}

// stalled times out every request outstanding at p, whose oldest request
// has made no progress for its timeout: p answers in order, so the others
// would wait behind it. Its window halves, and its next timeout doubles
// (its gap is raised to match). The oldest chunk counts a
// failure at p; the others were waiting their turn and say nothing about
// p or the chunk. All go elsewhere (or to p again: it is avoided only for
// the oldest).
func (s *Scheduler) stalled(p *peer) {
	p.gap = max(p.gap, 2*s.timeout(p.level)/gapSlack)
	s.unlinkStalled(p)
	s.unwatch(p)
	for _, i := range p.reqs {
		if !p.suspect {
			s.chunks[i].nreq--
			s.unrequest(p)
		}
		s.emit(Action{Kind: Cancel, Peer: p.id, Index: int(i), Tag: p.userTag})
	}
	p.stats.Timeouts += len(p.reqs)
	p.window = max(1, p.window/2)
	for k, i := range p.reqs {
		if k == 0 {
			s.penalize(i, p, true, true)
		}
		s.requeueIfIdle(i)
	}
	p.reqs, p.nreqs = p.reqs[:0], 0
	s.unsuspect(p)
	s.markDirty(p)
}

// unsuspect clears p's suspicion once it has no requests left.
func (s *Scheduler) unsuspect(p *peer) {
	if p.suspect {
		p.suspect = false
		s.nsuspect--
	}
}

func (s *Scheduler) stored(idx int) {
	if s.inRange(idx) {
		s.hold(int32(idx))
	}
}

// ---- state transitions ----

// request sends a request for chunk i to p.
func (s *Scheduler) request(p *peer, i int32) {
	c := &s.chunks[i]
	if c.nreq == 0 {
		s.bucketRemove(i)
		s.pending.Clear(int(i))
		s.npending--
		c.pos = int32(len(s.inflight))
		s.inflight = append(s.inflight, i)
	}
	c.nreq++
	s.nreqs++
	if p.fallback {
		s.nfallback++
	}
	if len(p.reqs) == 0 {
		s.touch(p)
	}
	p.reqs = append(p.reqs, i)
	p.nreqs++
	p.stats.Requests++
	s.emit(Action{Kind: Request, Peer: p.id, Index: int(i), Escalated: p.fallback && s.escalated.Has(int(i)) && s.urgent.Has(int(i)), Tag: p.userTag})
}

// dropReq forgets p's outstanding request for chunk i, if any. The chunk
// stays in the requested state; see requeueIfIdle.
func (s *Scheduler) dropReq(p *peer, i int32) bool {
	k := slices.Index(p.reqs, i)
	if k < 0 {
		return false
	}
	if !p.suspect {
		s.chunks[i].nreq--
		s.unrequest(p)
	}
	p.reqs = slices.Delete(p.reqs, k, k+1)
	p.nreqs--
	switch {
	case k > 0:
	case len(p.reqs) > 0:
		s.touch(p) // the next request is the oldest now: its clock starts
	default:
		s.unlinkStalled(p)
		s.unwatch(p)
		s.unsuspect(p)
	}
	return true
}

// touch restarts p's stall clock: p.since is now, and p moves to the end
// of the stall list of its timeout level (which stays sorted, as time
// never runs backwards).
func (s *Scheduler) touch(p *peer) {
	p.since = s.now
	if !p.suspect && !p.fallback {
		s.watch(p)
	}
	l := s.level(p)
	if s.stallTail[l] == p {
		return
	}
	s.unlinkStalled(p)
	p.level = l
	p.prev = s.stallTail[l]
	if p.prev != nil {
		p.prev.next = p
	} else {
		s.stallHead[l] = p
	}
	s.stallTail[l] = p
}

// watch moves p to the end of the watch list (Scheduler.watchHead), which
// stays sorted by since as touch sets it to now.
func (s *Scheduler) watch(p *peer) {
	if s.watchTail == p {
		return
	}
	s.unwatch(p)
	p.wprev = s.watchTail
	if p.wprev != nil {
		p.wprev.wnext = p
	} else {
		s.watchHead = p
	}
	s.watchTail = p
}

// unwatch takes p off the watch list, if it is on it.
func (s *Scheduler) unwatch(p *peer) {
	if p.wprev == nil && s.watchHead != p {
		return
	}
	if p.wprev != nil {
		p.wprev.wnext = p.wnext
	} else {
		s.watchHead = p.wnext
	}
	if p.wnext != nil {
		p.wnext.wprev = p.wprev
	} else {
		s.watchTail = p.wprev
	}
	p.wprev, p.wnext = nil, nil
}

// unlinkStalled takes p off its stall list, if it is on it.
func (s *Scheduler) unlinkStalled(p *peer) {
	l := p.level
	if p.prev == nil && s.stallHead[l] != p {
		return
	}
	if p.prev != nil {
		p.prev.next = p.next
	} else {
		s.stallHead[l] = p.next
	}
	if p.next != nil {
		p.next.prev = p.prev
	} else {
		s.stallTail[l] = p.prev
	}
	p.prev, p.next = nil, nil
}

// requeueIfIdle makes chunk i pending again if it is missing and no request
// for it is outstanding.
func (s *Scheduler) requeueIfIdle(i int32) {
	if s.chunks[i].nreq > 0 || s.held.Has(int(i)) || s.pending.Has(int(i)) {
		return
	}
	s.inflightRemove(i)
	s.pending.Set(int(i))
	s.npending++
	s.bucketAdd(i)
	s.wake(i)
}

// hold marks chunk i held, cancelling its outstanding requests.
func (s *Scheduler) hold(i int32) {
	c := &s.chunks[i]
	switch {
	case s.held.Has(int(i)):
		return
	case s.pending.Has(int(i)):
		s.bucketRemove(i)
		s.pending.Clear(int(i))
		s.npending--
		s.cancelAll(i) // at suspect peers (released requests)
	default:
		s.cancelAll(i)
		s.inflightRemove(i)
	}
	c.pos = -1
	s.held.Set(int(i))
	s.nheld++
	if c.fails > 0 {
		delete(s.excl, i)
	}
	if s.escalated.Has(int(i)) {
		s.escalated.Clear(int(i))
		s.nescalated--
	}
	delete(s.firstDeferred, i)
	s.emit(Action{Kind: Have, Index: int(i)})
}

// cancelAll cancels every outstanding request for chunk i, which is held
// now: those counted in its nreq and the released ones at suspect peers.
func (s *Scheduler) cancelAll(i int32) {
	c := &s.chunks[i]
	for _, q := range s.peers {
		if c.nreq == 0 && s.nsuspect == 0 {
			break
		}
		if s.dropReq(q, i) {
			s.emit(Action{Kind: Cancel, Peer: q.id, Index: int(i), Tag: q.userTag})
			s.markDirty(q)
		}
	}
}

// penalize records a failed attempt at chunk i (by p, if known), avoiding p
// for it from now on if exclude is set. Attempts that failed at a fallback
// origin do not count: failures make a chunk eligible for (and under
// OriginFallback reserved for) origins, so counting an origin's own busy
// answers and timeouts would send more of the swarm to the origin exactly
// when it is overloaded. An earnest failure (a timeout, an error, corrupt
// data; not busy answers) also marks the chunk urgent (Scheduler.urgent).
func (s *Scheduler) penalize(i int32, p *peer, exclude, earnest bool) {
	if p != nil && p.fallback {
		return
	}
	if earnest {
		s.urgent.Set(int(i))
	}
	c := &s.chunks[i]
	if c.fails < math.MaxUint16 {
		c.fails++
	}
	if exclude && p != nil && !p.fallback {
		ex := s.excl[i]
		if !slices.Contains(ex, p) {
			if len(ex) == maxExcluded {
				ex = append(ex[:0], ex[1:]...)
			}
			s.excl[i] = append(ex, p)
		}
	}
	if s.cfg.OriginPolicy == OriginFallback && int(c.fails) >= s.cfg.OriginAfterFailures && !s.escalated.Has(int(i)) {
		s.escalated.Set(int(i))
		s.nescalated++
	}
	// If the chunk is pending, an origin may now qualify for it, and so may
	// peers that failed it before, once every holder has.
	s.wake(i)
}

func (s *Scheduler) ban(id string, p *peer, reason string) {
	s.banned[id] = reason
	delete(s.offences, id)
	if p != nil {
		s.removePeer(p)
	}
	s.emit(Action{Kind: Ban, Peer: id, Reason: reason})
}

// removePeer forgets a disconnected or banned peer: its requests are
// requeued and its availability withdrawn.
func (s *Scheduler) removePeer(p *peer) {
	p.gone = true
	s.wakeAll = true
	if !p.fallback {
		s.npeers--
		s.setDepth()
	}
	s.unlinkStalled(p)
	s.unwatch(p)
	reqs := p.reqs
	p.reqs, p.nreqs = nil, 0
	if !p.suspect {
		for _, i := range reqs {
			s.chunks[i].nreq--
			s.unrequest(p)
		}
	}
	s.unsuspect(p)
	for _, i := range reqs {
		s.requeueIfIdle(i)
	}
	switch {
	case p.fallback:
		for i := range p.have.All() {
			s.chunks[i].origins--
		}
	case p.full:
		s.base--
	default:
		for i := range p.have.All() {
			s.decAvail(int32(i))
		}
	}
	p.have = Bitset{}
	if k := slices.Index(s.peers, p); k >= 0 {
		s.peers = slices.Delete(s.peers, k, k+1)
		s.peerSlot = slices.Delete(s.peerSlot, k, k+1)
	}
	if p.paused {
		k := slices.Index(s.paused, p)
		s.paused = slices.Delete(s.paused, k, k+1)
		s.pausedUntil = slices.Delete(s.pausedUntil, k, k+1)
		s.setPausedSlot(p.slot, false)
	}
	delete(s.byID, p.id)
	s.slots[p.slot] = nil
	s.free = append(s.free, p.slot)
}

// clearHave withdraws p's advertisement of chunk i.
func (s *Scheduler) clearHave(p *peer, i int32) {
	if !p.have.Has(int(i)) {
		return
	}
	p.have.Clear(int(i))
	p.count--
	switch {
	case p.fallback:
		s.chunks[i].origins--
	case p.full:
		p.full = false
		s.base--
		for j := range p.have.All() {
			s.incAvail(int32(j))
		}
		s.holderLost(i)
	default:
		s.decAvail(i)
	}
}

func (s *Scheduler) incAvail(i int32) {
	if s.pending.Has(int(i)) {
		s.bucketRemove(i)
		s.chunks[i].avail++
		s.bucketAdd(i)
	} else {
		s.chunks[i].avail++
	}
}

func (s *Scheduler) decAvail(i int32) {
	if s.pending.Has(int(i)) {
		s.bucketRemove(i)
		s.chunks[i].avail--
		s.bucketAdd(i)
		s.holderLost(i)
	} else {
		s.chunks[i].avail--
	}
}

// holderLost reconsiders pending chunk i after a peer stopped advertising
// it: origins may take it once no peer has it, and a peer that failed it may
// be retried once it is the last one that has it.
func (s *Scheduler) holderLost(i int32) {
	c := &s.chunks[i]
	if c.avail+s.base == 0 || c.fails > 0 {
		s.wake(i)
	}
}

// ---- availability buckets ----

func (s *Scheduler) bucketAdd(i int32) {
	c := &s.chunks[i]
	a := int(c.avail)
	for a >= len(s.buckets) {
		s.buckets = append(s.buckets, nil)
	}
	b := append(s.buckets[a], i)
	s.buckets[a] = b
	c.pos = int32(len(b) - 1)
	if len(b) == 1 {
		for a>>6 >= len(s.nonEmpty) {
			s.nonEmpty = append(s.nonEmpty, 0)
		}
		s.nonEmpty[a>>6] |= 1 << (uint(a) & 63)
	}
}

func (s *Scheduler) bucketRemove(i int32) {
	c := &s.chunks[i]
	a := int(c.avail)
	b := s.buckets[a]
	last := int32(len(b) - 1)
	if c.pos != last {
		m := b[last]
		b[c.pos] = m
		s.chunks[m].pos = c.pos
	}
	b = b[:last]
	if c := cap(b); c > 64 && int(last) < c/4 {
		// Chunks drift between buckets as peers come and go; without
		// this every bucket would keep its peak size.
		b = append(make([]int32, 0, c/2), b...)
	}
	s.buckets[a] = b
	if last == 0 {
		s.nonEmpty[a>>6] &^= 1 << (uint(a) & 63)
	}
}

// nextBucket returns the lowest availability >= from with pending chunks,
// or -1.
func (s *Scheduler) nextBucket(from int) int {
	k := from >> 6
	if k >= len(s.nonEmpty) {
		return -1
	}
	w := s.nonEmpty[k] &^ (1<<(uint(from)&63) - 1)
	for {
		if w != 0 {
			return k<<6 + bits.TrailingZeros64(w)
		}
		k++
		if k >= len(s.nonEmpty) {
			return -1
		}
		w = s.nonEmpty[k]
	}
}

func (s *Scheduler) inflightRemove(i int32) {
	c := &s.chunks[i]
	last := int32(len(s.inflight) - 1)
	if c.pos != last {
		m := s.inflight[last]
		s.inflight[c.pos] = m
		s.chunks[m].pos = c.pos
	}
	s.inflight = s.inflight[:last]
}

// ---- choosing requests ----

func (s *Scheduler) markDirty(p *peer) {
	if !p.dirty {
		p.dirty = true
		s.dirty = append(s.dirty, p)
	}
}

// wake queues every peer that could take pending chunk i.
func (s *Scheduler) wake(i int32) {
	if s.wakeAll || !s.pending.Has(int(i)) {
		return
	}
	for k, slot := range s.peerSlot {
		if s.pausedSlots[slot>>6]&(1<<(slot&63)) != 0 {
			continue // canAsk would say no
		}
		if p := s.peers[k]; p.have.Has(int(i)) && s.canAsk(p) {
			s.markDirty(p)
		}
	}
}

// setPausedSlot records whether the peer in slot is paused.
func (s *Scheduler) setPausedSlot(slot int32, paused bool) {
	w := int(slot >> 6)
	for len(s.pausedSlots) <= w {
		s.pausedSlots = append(s.pausedSlots, 0)
	}
	if paused {
		s.pausedSlots[w] |= 1 << (slot & 63)
	} else {
		s.pausedSlots[w] &^= 1 << (slot & 63)
	}
}

// schedule fills the free slots of every peer whose options may have
// changed in this event. Afterwards every peer with a free slot has no
// chunk it could be asked for (Scheduler.starved checks this in tests).
func (s *Scheduler) schedule() {
	from := s.haveFrom
	s.haveFrom = nil
	freed := s.capped && !s.full()
	if freed {
		s.capped = false
		s.wakeAll = true
	}
	if s.endgame() {
		switch {
		case from != nil && s.npending == 0 && !s.wakeAll:
			// A Have can only give its sender something to do: other
			// peers' options (pending chunks, duplicates) shrink if
			// anything, as availability grows. With nothing pending,
			// filling them would not even draw from rng.
			if s.canAsk(from) {
				s.markDirty(from)
			}
		default:
			// Few chunks are missing; each answer changes which
			// duplicates are allowed, and there are few candidates to
			// look at.
			s.wakeAll = true
		}
	}
	if s.wakeAll {
		s.wakeAll = false
		for _, p := range s.peers {
			if s.canAsk(p) {
				s.markDirty(p)
			}
		}
	}
	if freed {
		s.shuffleDirty()
	}
	s.delivered = nil
	for k := 0; k < len(s.dirty); k++ {
		p := s.dirty[k]
		p.dirty = false
		if !p.gone {
			s.fill(p)
		}
	}
	clear(s.dirty)
	s.dirty = s.dirty[:0]
}

// shuffleDirty rotates the dirty peers, a peer that has just delivered a
// chunk aside, to start from a random one. A place under MaxInflight has
// freed, and the peers filled first take it; a peer that delivered keeps
// first call, as its next request is the one a pipeline would have sent
// anyway. The others are listed in the order they connected (wake and
// wakeAll walk s.peers), and always from the front, a download's first
// connections (in a flash crowd the peers that joined first, which every
// later peer is handed too) got nearly all its requests and refused most
// of them busy. In a simulated 1,000-peer fan-out p99 went from 1.87 to
// 1.53 times the bound (docs/benchmarks.md, "Session 14").
func (s *Scheduler) shuffleDirty() {
	d := s.dirty
	if len(d) > 0 && d[0] == s.delivered {
		d = d[1:]
	}
	if len(d) < 2 {
		return
	}
	k := s.rng.IntN(len(d))
	slices.Reverse(d[:k])
	slices.Reverse(d[k:])
	slices.Reverse(d)
}

func (s *Scheduler) endgame() bool {
	missing := s.n - s.nheld
	return missing > 0 && missing <= s.endgameAt
}

func (s *Scheduler) fill(p *peer) {
	for s.canAsk(p) {
		i := s.pick(p)
		if i < 0 && s.endgame() {
			i = s.pickEndgame(p)
		}
		if i < 0 {
			return
		}
		s.request(p, i)
	}
}

// eligible reports whether pending (or, in endgame, requested) chunk i may
// be requested from p, given that p advertises it.
func (s *Scheduler) eligible(p *peer, i int32) bool {
	if p.fallback {
		return s.originMay(i)
	}
	return s.peerMay(p, i)
}

// originMay reports whether a fallback origin may be asked for chunk i: no
// peer advertises it, or it has failed on peers often enough; and no
// origin deferred it lately.
func (s *Scheduler) originMay(i int32) bool {
	return (s.chunks[i].avail+s.base == 0 || s.escalated.Has(int(i))) && !s.deferred.Has(int(i))
}

// peerMay reports whether non-origin peer p may be asked for chunk i. A
// peer that failed it is avoided while another peer that has it did not,
// or while an origin may be asked for it. A chunk that failed often enough
// for an origin to qualify is not reserved for the origin: a peer that has
// it and has not failed it may serve it first.
func (s *Scheduler) peerMay(p *peer, i int32) bool {
	c := &s.chunks[i]
	if c.fails == 0 {
		return true
	}
	if ex := s.excl[i]; len(ex) > 0 && slices.Contains(ex, p) {
		if c.origins > 0 && s.escalated.Has(int(i)) {
			return false
		}
		// Only if every peer that has it failed it.
		n := int32(0)
		for _, q := range ex {
			if !q.gone && !q.fallback && q.have.Has(int(i)) {
				n++
			}
		}
		return n >= c.avail+s.base
	}
	return true
}

// pick returns the rarest pending chunk that p may be asked for, ties broken
// at random, or -1.
func (s *Scheduler) pick(p *peer) int32 {
	if s.npending == 0 || p.count == 0 {
		return -1
	}
	r := s.rng.Uint32()
	if p.fallback {
		return s.pickOrigin(p, r)
	}
	if s.cfg.InOrder {
		return s.pickFront(p)
	}
	// Walk the buckets from the rarest, each from a random offset. A peer
	// that advertises a chunk counts towards its availability, so buckets
	// below 1 hold nothing p has, unless p is counted in base.
	from := 1
	if p.full {
		from = 0
	}
	if p.skips > 0 {
		p.skips--
		return s.pickSparse(p, r)
	}
	budget := scanBudget
	for a := s.nextBucket(from); a >= 0; a = s.nextBucket(a + 1) {
		b := s.buckets[a]
		j := int(uint64(r) * uint64(len(b)) >> 32)
		for range b {
			if i := b[j]; p.have.Has(int(i)) && s.peerMay(p, i) {
				return i
			}
			if budget--; budget == 0 {
				p.skips = sparseSkips
				return s.pickSparse(p, r)
			}
			if j++; j == len(b) {
				j = 0
			}
		}
	}
	return -1
}

// pickFront is pick under Config.InOrder: the rarest of the first
// InOrderWindow pending chunks p has and may be asked for, the lowest
// index among equals.
func (s *Scheduler) pickFront(p *peer) int32 {
	best, bestAvail, seen := int32(-1), int32(math.MaxInt32), 0
	for k, w := range s.pending.w {
		for w &= p.have.w[k]; w != 0; w &= w - 1 {
			i := int32(k<<6 + bits.TrailingZeros64(w))
			if !s.peerMay(p, i) {
				continue
			}
			if a := s.chunks[i].avail; a < bestAvail {
				best, bestAvail = i, a
			}
			if seen++; seen == InOrderWindow {
				return best
			}
		}
	}
	return best
}

// pickSparse is pick for a peer that advertises few of the pending chunks:
// it intersects the bitsets, starting at a random word, and keeps the
// rarest.
func (s *Scheduler) pickSparse(p *peer, r uint32) int32 {
	nw := len(s.pending.w)
	k := int(uint64(r) * uint64(nw) >> 32)
	floor := int32(1)
	if p.full {
		floor = 0
	}
	best, bestAvail := int32(-1), int32(math.MaxInt32)
	for range nw {
		for w := s.pending.w[k] & p.have.w[k]; w != 0; w &= w - 1 {
			i := int32(k<<6 + bits.TrailingZeros64(w))
			if a := s.chunks[i].avail; a < bestAvail && s.peerMay(p, i) {
				best, bestAvail = i, a
				if a <= floor {
					return best
				}
			}
		}
		if k++; k == nw {
			k = 0
		}
	}
	return best
}

// pickOrigin picks for a fallback origin: first chunks that failed on
// peers, then chunks no peer advertises.
func (s *Scheduler) pickOrigin(p *peer, r uint32) int32 {
	if s.nescalated > 0 {
		nw := len(s.pending.w)
		k := int(uint64(r) * uint64(nw) >> 32)
		for range nw {
			if w := s.escalated.w[k] & s.pending.w[k] & p.have.w[k] &^ s.deferred.w[k]; w != 0 {
				return int32(k<<6 + bits.TrailingZeros64(w))
			}
			if k++; k == nw {
				k = 0
			}
		}
	}
	if s.base > 0 {
		return -1
	}
	b := s.buckets[0]
	j := int(uint64(r) * uint64(len(b)) >> 32)
	for range b {
		if i := b[j]; p.have.Has(int(i)) && !s.deferred.Has(int(i)) {
			return i
		}
		if j++; j == len(b) {
			j = 0
		}
	}
	return -1
}

// pickEndgame returns a requested chunk that p may be asked for as well:
// one with the fewest outstanding requests, ties broken at random, or -1.
func (s *Scheduler) pickEndgame(p *peer) int32 {
	best, bestN, ties := int32(-1), uint16(math.MaxUint16), 0
	for _, i := range s.inflight {
		c := &s.chunks[i]
		if int(c.nreq) >= s.cfg.MaxDuplicates || c.nreq > bestN || !p.have.Has(int(i)) || p.requesting(i) || !s.eligible(p, i) {
			continue
		}
		if c.nreq < bestN {
			best, bestN, ties = i, c.nreq, 1
			continue
		}
		ties++
		if s.rng.IntN(ties) == 0 {
			best = i
		}
	}
	return best
}

// NextTick returns the earliest time at which a Tick would have an effect:
// when a peer stalls (see Config.RequestTimeout) or a busy peer's pause
// ends. ok is false if nothing is waiting on time. An event loop can arm a
// timer with it, and a discrete-event simulator can schedule exactly one
// Tick instead of polling. Events change the answer, so ask again after
// each one.
func (s *Scheduler) NextTick() (t time.Time, ok bool) {
	var at time.Duration
	for l, p := range s.stallHead {
		if p != nil && (!ok || p.since+s.timeout(uint8(l)) < at) {
			at, ok = p.since+s.timeout(uint8(l)), true
		}
	}
	if d, sampled := s.suspectAfter(); sampled && s.watchHead != nil && (!ok || s.watchHead.since+d < at) {
		at, ok = s.watchHead.since+d, true
	}
	for _, until := range s.pausedUntil {
		if !ok || until < at {
			at, ok = until, true
		}
	}
	if len(s.deferQ) > 0 && (!ok || s.deferQ[0].until < at) {
		at, ok = s.deferQ[0].until, true
	}
	if !ok {
		return time.Time{}, false
	}
	return s.epoch.Add(at), true
}

// ---- observability ----

// Progress summarizes a Scheduler's state.
type Progress struct {
	Chunks   int  // in the manifest
	Held     int  // held locally
	Missing  int  // Chunks - Held
	Pending  int  // missing and not requested
	Inflight int  // missing and requested
	Requests int  // outstanding requests (endgame duplicates count each; a suspect peer's do not)
	Peers    int  // connected, not banned
	Endgame  bool // duplicates may be requested
	Done     bool // every chunk is held
}

// Progress returns the current counts.
func (s *Scheduler) Progress() Progress {
	return Progress{
		Chunks:   s.n,
		Held:     s.nheld,
		Missing:  s.n - s.nheld,
		Pending:  s.npending,
		Inflight: len(s.inflight),
		Requests: s.nreqs,
		Peers:    len(s.peers),
		Endgame:  s.endgame(),
		Done:     s.nheld == s.n,
	}
}

// PeerStats describes one connected peer. The counters cover the current
// connection, except Offences.
type PeerStats struct {
	Origin    bool // connected as an origin
	Have      int  // chunks it advertises
	Inflight  int  // outstanding requests
	Window    int  // current pipelining depth
	Requests  int  // requests sent
	Received  int  // verified chunks received
	Bad       int  // chunks that failed verification
	Timeouts  int  // requests that timed out
	Suspected int  // times it was suspected of stalling (see Config.RequestTimeout)
	Failures  int  // requests it rejected
	Offences  int  // chunks that failed verification, across connections
}

// PeerStats returns the statistics of a connected peer; ok is false for a
// peer that is not connected (or banned).
func (s *Scheduler) PeerStats(id string) (st PeerStats, ok bool) {
	p := s.byID[id]
	if p == nil {
		return PeerStats{}, false
	}
	st = p.stats
	st.Origin, st.Have, st.Inflight, st.Window = p.origin, int(p.count), len(p.reqs), int(p.window)
	st.Offences = s.offences[id]
	return st, true
}

// Banned reports whether the peer ID is banned, and why.
func (s *Scheduler) Banned(id string) (reason string, ok bool) {
	reason, ok = s.banned[id]
	return reason, ok
}

// Availability returns how many connected peers advertise chunk i. Under
// OriginFallback, origins are not counted: this is the number that
// rarest-first ranks chunks by.
func (s *Scheduler) Availability(i int) int {
	if !s.inRange(i) {
		return 0
	}
	return int(s.chunks[i].avail + s.base)
}

// Held returns a copy of the set of chunks held locally, e.g. to send as a
// bitfield.
func (s *Scheduler) Held() Bitset { return s.held.Clone() }

// Config returns the configuration in effect, defaults filled in.
func (s *Scheduler) Config() Config { return s.cfg }
