// Package sim runs a testbed scenario in virtual time (mode "sim"): a
// discrete-event simulation with no sockets and no bytes, driving the
// real peer scheduler (peer/sched, one Scheduler per simulated peer) and
// the real tracker hand-out (tracker/peerstore.Memory and
// tracker/handout.Select) over a fluid model of the network.
//
//	res, err := sim.Run(ctx, s, func(smp result.Sample) { ... })
//
// Run is deterministic for a given Scenario (Seed included) and stops at
// s.Timeout of virtual time, or earlier once every honest peer has the
// blob. docs/testbed-sim.md describes the model and its assumptions; in
// short:
//
//   - The blob is the scenario's bytes, cut by the real chunker as the
//     emulation's origins cut them; a delta run (s.Blob.Base) uses version
//     2's chunks, and its peers start holding those version 1 has too.
//   - Every host has an upload and a download capacity. A chunk is sent as
//     one fluid transfer whose rate is the smaller of the sender's upload
//     shared equally among its transfers and the receiver's download
//     shared equally among its transfers, recomputed whenever a transfer
//     starts or ends (with a TCP throughput cap when the links lose
//     packets). One connection sends its accepted requests one at a time,
//     in order, as the engine's session writer does.
//   - Every message takes the sender's latency, plus jitter, plus a
//     retransmission timeout when the sender's link loses it.
//   - Peers and origins follow the engine's limits and defaults
//     (peer.Config): dials up to MaxConns, inbound up to MaxInbound,
//     UploadSlots, and the origins' ResendWindow; a refused request is a
//     RequestFailed{Busy} or {NotFound} for the requester's scheduler.
//   - Peers announce to the tracker every announce interval (with the
//     announcer's jitter), and dial what the hand-out policy returns from
//     a bounded random sample of the swarm, as the tracker does.
package sim

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/clock"
	"github.com/p2pd/p2pd/internal/units"
	"github.com/p2pd/p2pd/internal/wire/trackerwire"
	"github.com/p2pd/p2pd/peer"
	"github.com/p2pd/p2pd/peer/resend"
	"github.com/p2pd/p2pd/peer/sched"
	"github.com/p2pd/p2pd/testbed/result"
	"github.com/p2pd/p2pd/testbed/scenario"
	"github.com/p2pd/p2pd/tracker"
	"github.com/p2pd/p2pd/tracker/handout"
	"github.com/p2pd/p2pd/tracker/peerstore"
	"github.com/p2pd/p2pd/tracker/trackerclient"
)

// ErrTooManyChunks: the blob cuts into more chunks than a manifest holds.
var ErrTooManyChunks = errors.New("sim: too many chunks")

// Model constants (see docs/testbed-sim.md).
const (
	// connectRTTs is how many round trips between two peers a dial takes
	// until both schedulers know the other's chunks: TCP, TLS 1.3, the
	// Hello exchange, and Interested answered by a Bitfield.
	connectRTTs = 4
	// lossRTO is what a lost control message adds to its delay: the
	// minimum TCP retransmission timeout on Linux.
	lossRTO = int64(200 * time.Millisecond)
	// mss is the TCP payload per segment, for the loss throughput cap.
	mss = 1448
	// tlsRecord is the largest TLS 1.3 record: the unit in which the
	// engine's writes reach a link, so what a control message waits
	// behind per upload flowing on its link (see sim.delay).
	tlsRecord = 16 << 10
	// maxOriginCandidates is the tracker's bound on the origins scored
	// per announce (tracker/server.go).
	maxOriginCandidates = 64
	// maxUploadsPerSession is the engine's bound on the requests one
	// peer may have accepted at once (peer/session.go).
	maxUploadsPerSession = 64
	// progressEvery: while a chunk arrives, the engine tells its
	// scheduler (sched.ChunkProgress) at the first Data frame after every
	// RequestTimeout/progressEvery (peer/session.go).
	progressEvery = 4
)

// epoch is virtual time zero as the scheduler and the tracker see it.
var epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// Run simulates s and returns what it measured. progress, if not nil,
// receives every sample of the time series as the run goes. Run returns
// an error if s is invalid or ctx ends first.
func Run(ctx context.Context, s scenario.Scenario, progress result.Progress) (*result.Result, error) {
	sm, err := newSim(ctx, s)
	if err != nil {
		return nil, err
	}
	meter := result.NewHostMeter(time.Now(), nil)
	if err := sm.run(ctx, progress); err != nil {
		return nil, err
	}
	r := sm.result()
	r.Host = meter.Host(time.Now())
	return r, nil
}

type hostState uint8

const (
	idle    hostState = iota // not joined yet
	running                  //
	stopped                  // left or killed; may join again
)

// host is an origin or a peer. Origins come first in sim.hosts.
type host struct {
	// Its scheduler, while it downloads, is sim.scheds[index].
	have sched.Bitset // chunks held (an origin holds all), stored in sim.haveMem

	id       string // scheduler and tracker peer ID: "h<index>"
	origin   bool
	behavior scenario.Behavior
	up, down float64 // bytes/s, +Inf when unlimited
	lat      int64   // ns
	jitter   int64
	loss     float64
	zone     string
	rack     string

	state             hostState
	epoch             uint32 // bumped when the host stops or joins: stales its events
	annGen            uint32 // bumped when the next announce is rescheduled
	joined            bool
	started           bool // the tracker has had this incarnation's first announce
	complete          bool
	announcedComplete bool
	joinAt, doneAt    int64

	nhave  int
	tickAt int64 // the Tick queued for sc, -1 if none

	conns []int32 // live connections
	nbrs  []int32 // the host at the other end of each
	// refs[j] is this host's handle in the scheduler of nbrs[j], for
	// delivering its Haves (zero while nbrs[j] is not downloading).
	refs      []sched.PeerRef
	dialing   []int32
	outbound  int // connections dialed, dials in progress included
	inbound   int
	slots     int     // upload slots in use
	ctlNs     float64 // a control message's wait behind the data of flowing uploads, ns (see delay)
	upFlows   []int32 // flowing pipes out of the host, as conn<<1 | side
	downFlows []int32 // flowing pipes into the host
	upDirty   bool    // upFlows must be re-rated
	downDirty bool
	banned    []int32
	claims    *resend.Claims[int32, int32] // origins: ResendWindow bookkeeping (claim)
	round     *resend.Round                // its first round

	uploaded, downloaded   int64
	fromPeers, fromOrigins int64
	incarnation            uint64
}

// share is a host's capacity per flow, in bytes/s.
type share struct{ up, down float64 }

// stats are counters for tests and the huge-run log.
type stats struct {
	events, handles                        int64
	dials, dialsFailed                     int64
	requests, busy, deferred, notFound     int64
	corrupt, bans, lostRequests, cancelled int64
	timeouts, progress                     int64
	maxQueue                               int
}

type sim struct {
	s     scenario.Scenario
	peers []scenario.Peer
	hosts []host
	// The state a Have touches on each neighbour, kept dense so that
	// delivering one reads a few cache lines rather than one per
	// neighbour: every host's scheduler (nil unless it is downloading)
	// and chunks held (haveWords words each, the storage of host.have).
	scheds    []*sched.Scheduler
	haveMem   []uint64
	haveWords int
	// shares[i] is host i's upload and download capacity shared equally
	// among its flows, as of the last flush: re-rating a flow reads them
	// here rather than from the hosts at both ends.
	shares []share
	lossy  bool // some host's link loses packets
	norig  int
	n      int     // chunks
	sizes  []int64 // chunk sizes
	full   sched.Bitset

	conns     []conn
	freeConns []int32
	q         queue
	lists     lists
	now       int64
	end       int64 // when the run ended
	timeout   int64
	rng       *rand.Rand // network draws, scenario choices, announce jitter
	trng      *rand.Rand // the tracker's sampling and hand-out

	pcfg, ocfg peer.Config
	tcfg       tracker.Config
	policy     handout.Policy
	budget     *handout.OriginBudget
	interval   int64
	annJitter  float64
	store      *peerstore.Memory
	blob       chunker.Digest
	addrs      []string

	acts   []sched.Action
	dirty  []int32
	haveTo []int32 // onHave's neighbours to tell
	// Reused events: a pointer in an interface does not allocate.
	evConn  sched.PeerConnected
	evDisc  sched.PeerDisconnected
	evHave  sched.PeerHave // stands for the events HandleHave handles, for apply
	evRecv  sched.ChunkReceived
	evProg  sched.ChunkProgress
	evFail  sched.RequestFailed
	evTick  sched.Tick
	annReq  trackerwire.AnnounceRequest
	candQry peerstore.CandidateQuery

	repl         []int32 // running honest peers holding each chunk
	originBytes  int64
	peerBytes    int64
	live         int // running peers
	complete     int // honest peers that completed
	honestOpen   int // honest peers not joined yet, or running and incomplete
	pendingJoins int // scenario join events still to run
	series       []result.Sample
	spread       *result.SpreadMeter
	progress     result.Progress
	err          error
	st           stats

	// delta is a delta run's (scenario blob.base), or nil.
	delta *result.Delta
}

func newSim(ctx context.Context, s scenario.Scenario) (*sim, error) {
	s = s.WithDefaults()
	s.Mode = scenario.ModeSim
	if err := s.Validate(); err != nil {
		return nil, err
	}
	lay, err := chunkLayout(ctx, s)
	if err != nil {
		return nil, err
	}
	n := len(lay.sizes)
	sm := &sim{
		s:         s,
		peers:     s.Expand(),
		norig:     s.Origins.Count,
		n:         n,
		sizes:     lay.sizes,
		delta:     lay.delta,
		full:      sched.FullBitset(n),
		timeout:   int64(s.Timeout),
		rng:       rand.New(rand.NewPCG(s.Seed, 0x73696d)),
		trng:      rand.New(rand.NewPCG(s.Seed, 0x747261636b6572)),
		pcfg:      peer.Config{}.WithDefaults(),
		ocfg:      peer.Config{Role: trackerwire.RoleOrigin}.WithDefaults(),
		tcfg:      tracker.Config{}.WithDefaults(),
		annJitter: trackerclient.AnnouncerConfig{}.WithDefaults().Jitter,
		blob:      chunker.Sum([]byte("p2pd sim " + s.Name)),
		addrs:     []string{"/sim"},
		repl:      make([]int32, n),
	}
	sm.lists.blk = sm.pcfg.Sched.MaxInflightPerPeer
	sm.spread = result.NewSpreadMeter(n, s.NumHonest(), sm.delta.HeldChunks())
	var total int64
	for _, z := range sm.sizes {
		total += z
	}
	mean := float64(total) / float64(max(len(sm.sizes), 1))
	// What a control message waits behind at a sending link while uploads
	// flow (see delay): one piece, paced to the link (peer.PieceFor), or
	// less if a TLS record (tlsRecord) or the chunks are smaller.
	ctlPiece := func(cfg *peer.Config, up float64) float64 {
		return min(float64(peer.PieceFor(int64(up), cfg.PieceSize)), mean, tlsRecord)
	}
	sm.q.conns = &sm.conns
	sm.pcfg.MaxConns = cmp.Or(s.Conns.Max, sm.pcfg.MaxConns)
	sm.pcfg.MaxInbound = cmp.Or(s.Conns.Inbound, sm.pcfg.MaxInbound)
	// The tracker's hand-out policy and origin budget, as the tracker
	// builds them.
	sm.policy = sm.tcfg.Policy()
	sm.budget = sm.tcfg.OriginBudget()
	sm.interval = int64(sm.tcfg.AnnounceInterval)
	sm.store = peerstore.NewMemory(simClock{sm}, sm.tcfg.PeerTTL)
	sm.candQry = peerstore.CandidateQuery{MaxPeers: sm.tcfg.CandidateSample, MaxOrigins: maxOriginCandidates, Rand: sm.trng}

	nh := sm.norig + len(sm.peers)
	sm.hosts = make([]host, nh)
	sm.scheds = make([]*sched.Scheduler, nh)
	sm.haveWords = (n + 63) / 64
	sm.haveMem = make([]uint64, nh*sm.haveWords)
	sm.shares = make([]share, nh)
	for i := range sm.hosts {
		h := &sm.hosts[i]
		h.have = sched.BitsetIn(sm.haveMem[i*sm.haveWords:(i+1)*sm.haveWords], n)
		h.id = "h" + strconv.Itoa(i)
		h.tickAt = -1
		var l scenario.Link
		if i < sm.norig {
			l = s.Origins.Link
			h.origin, h.behavior = true, scenario.Honest
			h.have.SetRange(0, n)
			h.nhave, h.complete = n, true
			if sm.ocfg.ResendWindow > 0 {
				h.claims, h.round = resend.New[int32, int32](sm.ocfg.ResendWindow), resend.NewRound(n)
			}
		} else {
			p := &sm.peers[i-sm.norig]
			l = p.Link
			h.behavior, h.zone, h.rack = p.Behavior, p.Zone, p.Rack
			if sm.pcfg.ResendWindow > 0 {
				h.claims, h.round = resend.New[int32, int32](sm.pcfg.ResendWindow), resend.NewRound(n)
			}
			if p.Behavior == scenario.Honest {
				sm.honestOpen++
			}
			sm.preload(h, lay.held)
		}
		h.up, h.down = capacity(l.Up), capacity(l.Down)
		if !math.IsInf(h.up, 1) {
			h.ctlNs = ctlPiece(sm.cfgOf(h), h.up) / h.up * 1e9
		}
		h.lat, h.jitter, h.loss = int64(l.Latency), int64(l.Jitter), l.Loss
		sm.lossy = sm.lossy || h.loss > 0
	}
	return sm, nil
}

// capacity returns a link rate in bytes/s, +Inf for unlimited (0).
func capacity(r units.Rate) float64 {
	if r <= 0 {
		return math.Inf(1)
	}
	return float64(r)
}

func (sm *sim) run(ctx context.Context, progress result.Progress) error {
	sm.progress = progress
	for i := range sm.norig {
		sm.joinHost(int32(i))
	}
	for i, p := range sm.peers {
		if int64(p.JoinAt) <= sm.timeout {
			sm.q.push(event{at: int64(p.JoinAt), kind: evJoin, h: int32(sm.norig + i)})
		}
	}
	for i, e := range sm.s.Events {
		if int64(e.At) > sm.timeout {
			continue
		}
		if e.Action == "join" {
			sm.pendingJoins++
		}
		sm.q.push(event{at: int64(e.At), kind: evScenario, idx: int32(i)})
	}
	sm.q.push(event{at: int64(sm.s.Sample), kind: evSample})
	for sm.q.len() > 0 {
		if sm.q.ev[0].at > sm.timeout {
			break
		}
		e := sm.q.pop()
		sm.now = e.at
		sm.dispatch(e)
		sm.flush()
		if sm.err != nil {
			return sm.err
		}
		sm.st.events++
		if sm.st.events&0xfff == 0 {
			sm.st.maxQueue = max(sm.st.maxQueue, sm.q.len())
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("sim: stopped at %v of virtual time: %w", time.Duration(sm.now), err)
			}
		}
		if sm.honestOpen == 0 && sm.pendingJoins == 0 {
			break
		}
	}
	if sm.honestOpen > 0 || sm.pendingJoins > 0 {
		sm.now = sm.timeout // timed out
	}
	sm.end = sm.now
	if len(sm.series) == 0 || sm.series[len(sm.series)-1].T < seconds(sm.end) {
		sm.addSample()
	}
	return nil
}

func (sm *sim) dispatch(e event) {
	switch e.kind {
	case evJoin:
		sm.joinHost(e.h)
	case evAnnounce:
		if h := &sm.hosts[e.h]; h.state == running && e.gen == h.annGen {
			sm.announce(e.h)
		}
	case evDialDone:
		sm.dialDone(e)
	case evRequest:
		sm.onRequest(e)
	case evReject:
		sm.onReject(e)
	case evCancel:
		sm.onCancel(e)
	case evData:
		sm.onData(e)
	case evHave:
		sm.onHave(e)
	case evTick:
		if h := &sm.hosts[e.h]; sm.scheds[e.h] != nil && e.gen == h.epoch && e.at == h.tickAt {
			h.tickAt = -1
			sm.handle(e.h, &sm.evTick)
		}
	case evFlowDone:
		sm.flowDone(e.h, int(e.k))
	case evProgress:
		sm.onProgress(e)
	case evClose:
		if c := &sm.conns[e.h]; c.live && c.gen == e.gen {
			sm.closeConn(e.h)
		}
	case evScenario:
		sm.scenarioEvent(int(e.idx))
	case evSample:
		sm.addSample()
		sm.q.push(event{at: sm.now + int64(sm.s.Sample), kind: evSample})
	}
}

// handle feeds one event to h's scheduler and carries out its actions.
// It is never re-entered: actions that touch another scheduler do so
// through the event queue.
func (sm *sim) handle(hi int32, ev sched.Event) {
	sc := sm.scheds[hi]
	if sc == nil {
		return
	}
	sm.st.handles++
	sm.acts = sc.HandleAppend(sm.acts[:0], epoch.Add(time.Duration(sm.now)), ev)
	sm.apply(hi, ev, sm.acts)
}

// handleHave is handle for a Have from the peer that ref stands for in h's
// scheduler, which looks it up by handle rather than by ID.
func (sm *sim) handleHave(hi int32, ref sched.PeerRef, idx int) {
	sm.st.handles++
	sm.acts = sm.scheds[hi].HandleHave(sm.acts[:0], epoch.Add(time.Duration(sm.now)), ref, idx)
	sm.apply(hi, &sm.evHave, sm.acts)
}

// apply carries out the actions acts of h's scheduler, which handled ev.
func (sm *sim) apply(hi int32, ev sched.Event, acts []sched.Action) {
	done := false
	// NextTick can only have moved earlier, or need arming, after a new
	// request, a busy answer (a pause), a Tick, or data (a shorter wait
	// for data than the longest recent one lowers the scheduler's
	// estimate, and so when a peer becomes suspect): skip it otherwise.
	rearm := false
	switch ev.(type) {
	case *sched.RequestFailed, *sched.Tick, *sched.ChunkReceived, *sched.ChunkProgress:
		rearm = true
	}
	for _, a := range acts {
		switch a.Kind {
		case sched.Request:
			rearm = true
			sm.sendRequest(hi, a)
		case sched.Cancel:
			if ev == &sm.evTick {
				sm.st.timeouts++
			}
			sm.sendCancel(hi, a)
		case sched.Ban:
			sm.ban(hi, hostIndex(a.Peer))
		case sched.Have:
			sm.gotChunk(hi, a.Index)
		case sched.Done:
			done = true
		}
	}
	if done {
		sm.completed(hi)
		return
	}
	if rearm {
		sm.armTick(hi)
	}
}

// armTick queues a Tick for when h's scheduler next needs one.
func (sm *sim) armTick(hi int32) {
	h := &sm.hosts[hi]
	t, ok := sm.scheds[hi].NextTick()
	if !ok {
		return
	}
	at := max(int64(t.Sub(epoch)), sm.now)
	if h.tickAt >= 0 && h.tickAt <= at {
		return
	}
	h.tickAt = at
	sm.q.push(event{at: at, kind: evTick, h: hi, gen: h.epoch})
}

// hostIndex parses a peer ID "h<index>".
func hostIndex(id string) int32 {
	var n int32
	for i := 1; i < len(id); i++ {
		n = n*10 + int32(id[i]-'0')
	}
	return n
}

func seconds(ns int64) float64 { return float64(ns) / 1e9 }

func (sm *sim) addSample() {
	smp := result.Sample{
		T:           seconds(sm.now),
		OriginBytes: sm.originBytes,
		PeerBytes:   sm.peerBytes,
		Complete:    sm.complete,
		Live:        sm.live,
	}
	if len(sm.repl) > 0 {
		lo, hi, sum := int32(math.MaxInt32), int32(0), int64(0)
		for _, r := range sm.repl {
			lo, hi, sum = min(lo, r), max(hi, r), sum+int64(r)
		}
		smp.ReplMin, smp.ReplMax, smp.ReplMean = int(lo), int(hi), float64(sum)/float64(len(sm.repl))
		sm.spread.Observe(smp.T, len(sm.repl), func(i int) int { return int(sm.repl[i]) })
	}
	sm.series = append(sm.series, smp)
	if sm.progress != nil {
		sm.progress(smp)
	}
}

func (sm *sim) result() *result.Result {
	r := &result.Result{
		Scenario:          sm.s,
		Mode:              string(scenario.ModeSim),
		Bound:             sm.bound(),
		Delta:             sm.delta,
		Series:            sm.series,
		Spread:            sm.spread.Spread(),
		BlobBytes:         int64(sm.s.Blob.Size),
		OriginEgressBytes: sm.originBytes,
		Peers:             make([]result.Peer, len(sm.peers)),
	}
	for i, p := range sm.peers {
		h := &sm.hosts[sm.norig+i]
		rp := result.Peer{
			Name: p.Name, Class: p.Class, Zone: p.Zone, Behavior: p.Behavior,
			JoinS: seconds(int64(p.JoinAt)), FromPeers: h.fromPeers, FromOrigins: h.fromOrigins,
		}
		if h.joined {
			rp.JoinS = seconds(h.joinAt)
		}
		switch {
		case h.complete:
			rp.Completed = true
			rp.DoneS = seconds(h.doneAt - h.joinAt)
		case h.state == stopped:
			rp.Left = true
		case p.Behavior != scenario.Honest:
		case !h.joined:
			rp.Failed = true
			rp.Err = fmt.Sprintf("did not join before the timeout (%v)", sm.s.Timeout)
		default:
			rp.Failed = true
			rp.Err = fmt.Sprintf("timed out after %v of virtual time with %d of %d chunks", time.Duration(sm.end), h.nhave, sm.n)
		}
		r.Peers[i] = rp
	}
	return r
}

// simClock is the peer store's clock: the simulation's virtual time. The
// store only reads it.
type simClock struct{ sm *sim }

func (c simClock) Now() time.Time                  { return epoch.Add(time.Duration(c.sm.now)) }
func (c simClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }
func (simClock) NewTimer(time.Duration) clock.Timer {
	panic("sim: the peer store asked for a timer")
}
func (simClock) NewTicker(time.Duration) clock.Ticker {
	panic("sim: the peer store asked for a ticker")
}
