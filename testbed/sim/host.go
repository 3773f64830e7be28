package sim

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/p2pd/p2pd/internal/wire/trackerwire"
	"github.com/p2pd/p2pd/peer/sched"
	"github.com/p2pd/p2pd/testbed/scenario"
	"github.com/p2pd/p2pd/tracker/handout"
)

// joinHost starts host hi, or starts it again after it stopped, keeping
// the chunks it held: a scheduler if it still misses chunks, and an
// announce now.
func (sm *sim) joinHost(hi int32) {
	h := &sm.hosts[hi]
	if h.state == running {
		return
	}
	rejoin := h.state == stopped
	h.state = running
	h.epoch++
	h.started = false
	h.announcedComplete = false
	if !h.joined {
		h.joined, h.joinAt = true, sm.now
	}
	if !h.origin {
		sm.live++
		if h.behavior == scenario.Honest {
			for i := range h.have.All() {
				sm.repl[i]++
			}
			if rejoin && !h.complete {
				sm.honestOpen++
			}
		}
	}
	if !h.complete {
		h.incarnation++
		rng := rand.New(rand.NewPCG(sm.s.Seed, uint64(hi)<<16|h.incarnation))
		sc, err := sched.New(sm.pcfg.Sched, sm.n, h.have, rng)
		if err != nil {
			sm.err = fmt.Errorf("sim: scheduler: %w", err)
			return
		}
		sm.scheds[hi] = sc
	}
	sm.triggerAnnounce(hi)
}

// stopHost stops host hi: its connections drop (the other ends' schedulers
// see PeerDisconnected), its scheduler goes, and its chunks stay for a
// later join. A graceful stop (leave) tells the tracker; a kill does not,
// so the tracker hands the peer out until its record expires.
func (sm *sim) stopHost(hi int32, graceful bool) {
	h := &sm.hosts[hi]
	if h.state != running {
		return
	}
	sm.scheds[hi] = nil
	h.tickAt = -1
	for len(h.conns) > 0 {
		sm.closeConn(h.conns[len(h.conns)-1])
	}
	h.state = stopped
	h.epoch++
	h.annGen++
	h.outbound = 0 // dials in progress: their completions are stale now
	h.dialing = h.dialing[:0]
	sm.live--
	if h.behavior == scenario.Honest {
		for i := range h.have.All() {
			sm.repl[i]--
		}
		if !h.complete {
			sm.honestOpen--
		}
	}
	if graceful {
		req := &sm.annReq
		*req = trackerwire.AnnounceRequest{
			Blob: sm.blob, PeerID: h.id, Role: trackerwire.RolePeer, NumChunks: uint32(sm.n),
			Event: trackerwire.EventStopped,
		}
		if _, err := sm.store.Announce(context.Background(), req); err != nil {
			sm.err = fmt.Errorf("sim: tracker: %w", err)
		}
	}
}

// triggerAnnounce makes h announce now and then every interval from now,
// as trackerclient.Announcer.Trigger does.
func (sm *sim) triggerAnnounce(hi int32) {
	h := &sm.hosts[hi]
	h.annGen++
	sm.q.push(event{at: sm.now, kind: evAnnounce, h: hi, gen: h.annGen})
}

// announce sends h's announce to the tracker (the real peer store) and,
// for a peer still downloading, dials what the real hand-out policy picks
// from the tracker's bounded sample of the swarm.
func (sm *sim) announce(hi int32) {
	h := &sm.hosts[hi]
	req := &sm.annReq
	*req = trackerwire.AnnounceRequest{
		Blob: sm.blob, PeerID: h.id, Addrs: sm.addrs, Role: trackerwire.RolePeer, NumChunks: uint32(sm.n),
		Zone: h.zone, Rack: h.rack, Uploaded: uint64(h.uploaded), Downloaded: uint64(h.downloaded),
		DownloadedFromOrigins: uint64(h.fromOrigins),
	}
	if h.origin {
		req.Role = trackerwire.RoleOrigin
	}
	switch {
	case !h.started:
		req.Event = trackerwire.EventStarted
		h.started = true
	case h.complete && !h.announcedComplete:
		req.Event = trackerwire.EventCompleted
	}
	if h.complete {
		req.Complete = true
		h.announcedComplete = true
	} else {
		bf := trackerwire.NewBitfield(uint32(sm.n))
		for i := range h.have.All() {
			bf.Set(uint32(i))
		}
		req.Bitfield = bf
	}
	res, err := sm.store.Announce(context.Background(), req)
	if err != nil {
		sm.err = fmt.Errorf("sim: tracker: announce of %s: %w", h.id, err)
		return
	}
	next := sm.interval
	if sm.annJitter > 0 {
		next = int64(float64(next) * (1 + sm.annJitter*(2*sm.rng.Float64()-1)))
	}
	sm.q.push(event{at: sm.now + next, kind: evAnnounce, h: hi, gen: h.annGen})
	if h.origin || h.complete || res.Record == nil {
		return
	}
	q := sm.candQry
	q.Exclude = h.id
	cands, err := sm.store.Candidates(context.Background(), sm.blob, q)
	if err != nil {
		sm.err = fmt.Errorf("sim: tracker: candidates: %w", err)
		return
	}
	for _, r := range sm.budget.Select(handout.ForRecord(res.Record, simClock{sm}.Now()), cands, sm.policy, sm.trng) {
		sm.dial(hi, hostIndex(r.PeerID))
	}
}

// dial connects h to q unless the engine would not (connectPeers): q is
// h itself, connected, being dialed or banned, or h dials MaxConns
// already. The dial completes after the tracker's answer reaches h and
// connectRTTs round trips.
func (sm *sim) dial(hi, q int32) {
	h := &sm.hosts[hi]
	if q == hi || h.outbound >= sm.pcfg.MaxConns || slices.Contains(h.nbrs, q) ||
		slices.Contains(h.dialing, q) || slices.Contains(h.banned, q) {
		return
	}
	h.outbound++
	h.dialing = append(h.dialing, q)
	sm.st.dials++
	at := sm.now + h.lat + connectRTTs*(h.lat+sm.hosts[q].lat)
	sm.q.push(event{at: at, kind: evDialDone, h: hi, gen: h.epoch, idx: q})
}

// dialDone opens the connection if the other end takes it: it is
// running, below MaxInbound, has not banned the dialer, and has no
// connection with it already (they dialed each other at once).
func (sm *sim) dialDone(e event) {
	hi, q := e.h, e.idx
	h := &sm.hosts[hi]
	if h.state != running || e.gen != h.epoch {
		return
	}
	if k := slices.Index(h.dialing, q); k >= 0 {
		h.dialing = slices.Delete(h.dialing, k, k+1)
	}
	o := &sm.hosts[q]
	if o.state != running || o.inbound >= sm.cfgOf(o).MaxInbound || slices.Contains(o.banned, hi) || slices.Contains(h.nbrs, q) {
		h.outbound--
		sm.st.dialsFailed++
		return
	}
	tag := uint32(sm.newConn(hi, q)) + 1 // 0: no tag
	if sm.scheds[hi] != nil {
		sm.evConn = sched.PeerConnected{Peer: o.id, Origin: o.origin, Have: sm.advertised(o), Tag: tag}
		sm.handle(hi, &sm.evConn)
	}
	if sc := sm.scheds[hi]; sc != nil {
		o.refs[len(o.refs)-1], _ = sc.Ref(o.id) // o's handle in h's scheduler
	}
	if sm.scheds[q] != nil {
		sm.evConn = sched.PeerConnected{Peer: h.id, Origin: h.origin, Have: sm.advertised(h), Tag: tag}
		sm.handle(q, &sm.evConn)
	}
	if sc := sm.scheds[q]; sc != nil {
		h.refs[len(h.refs)-1], _ = sc.Ref(h.id)
	}
}

// advertised is the bitfield h sends: every chunk for a liar.
func (sm *sim) advertised(h *host) sched.Bitset {
	if h.complete || h.behavior == scenario.Liar {
		return sm.full
	}
	return h.have
}

// gotChunk records that h stored chunk i, and tells its neighbours after
// h's latency (a liar claimed it all along).
func (sm *sim) gotChunk(hi int32, i int) {
	h := &sm.hosts[hi]
	if h.have.Has(i) {
		return
	}
	h.have.Set(i)
	h.nhave++
	if h.behavior == scenario.Honest {
		sm.repl[i]++
	}
	if h.behavior != scenario.Liar {
		sm.q.push(event{at: sm.now + sm.delay(h), kind: evHave, h: hi, gen: h.epoch, idx: int32(i)})
	}
}

// onHave delivers h's Have to the neighbours that are downloading. One
// event stands for the Have frames on all of h's connections. A neighbour
// that holds the chunk already is skipped: the Have would change nothing
// its scheduler decides (it never requests a chunk it holds), and these
// are half of all the scheduler calls of a large run. Neither test
// touches the neighbour's host: its chunks are in sm.haveMem and its
// scheduler in sm.scheds, both dense.
//
// The schedulers are prefetched first, and then handle the Have in turn:
// each is a few cache misses away, and misses taken together overlap.
// Handling a Have cannot change whom the others are (no neighbour gets a
// chunk or stops downloading), so the order of events is as if each
// were handled as it was found.
func (sm *sim) onHave(e event) {
	h := &sm.hosts[e.h]
	if h.state != running || e.gen != h.epoch {
		return
	}
	idx := int(e.idx)
	to := sm.haveTo[:0]
	for j, o := range h.nbrs {
		if !sm.holds(o, idx) && sm.scheds[o] != nil {
			to = append(to, int32(j))
			sm.scheds[o].Prefetch(h.refs[j], idx)
		}
	}
	for _, j := range to {
		sm.handleHave(h.nbrs[j], h.refs[j], idx)
	}
	sm.haveTo = to
}

// holds reports whether host hi holds chunk i, as hosts[hi].have.Has(i)
// does, from sm.haveMem without touching the host.
func (sm *sim) holds(hi int32, i int) bool {
	return sm.haveMem[int(hi)*sm.haveWords+i>>6]&(1<<(uint(i)&63)) != 0
}

// completed: h holds every chunk. The download ends as in the engine: its
// remaining requests are cancelled, the tracker is told at once, and h
// seeds from now on.
func (sm *sim) completed(hi int32) {
	h := &sm.hosts[hi]
	h.complete = true
	h.doneAt = sm.now
	sm.scheds[hi] = nil
	h.tickAt = -1
	if h.behavior == scenario.Honest {
		sm.complete++
		sm.honestOpen--
	}
	for j, ci := range h.conns {
		c := &sm.conns[ci]
		k := c.side(h.nbrs[j])
		p := &c.pipes[k]
		for _, w := range sm.lists.items(p.want) {
			sm.send(ci, 1-k, event{kind: evCancel, id: w.id})
		}
		sm.lists.clear(&p.want)
	}
	sm.triggerAnnounce(hi)
}

// ban: h's scheduler banned q. The engine refuses q from now on and drops
// its connection.
func (sm *sim) ban(hi, q int32) {
	h := &sm.hosts[hi]
	sm.st.bans++
	if !slices.Contains(h.banned, q) {
		h.banned = append(h.banned, q)
	}
	if ci, _ := sm.connBetween(hi, q); ci >= 0 {
		sm.q.push(event{at: sm.now, kind: evClose, h: ci, gen: sm.conns[ci].gen})
	}
}

// scenarioEvent runs scenario event i: leave, kill or join of Count peers
// (or Fraction of those eligible) drawn at random among the eligible.
func (sm *sim) scenarioEvent(i int) {
	e := sm.s.Events[i]
	var cands []int32
	for j, p := range sm.peers {
		hi := int32(sm.norig + j)
		h := &sm.hosts[hi]
		if e.Class != "" && p.Class != e.Class || e.Class == "" && p.Behavior != scenario.Honest {
			continue
		}
		switch e.Action {
		case "join":
			if h.state == stopped {
				cands = append(cands, hi)
			}
		default:
			if h.state == running && !(e.Incomplete && h.complete) {
				cands = append(cands, hi)
			}
		}
	}
	k := e.Count
	if e.Fraction > 0 {
		k = int(math.Round(e.Fraction * float64(len(cands))))
		if k == 0 && len(cands) > 0 {
			k = 1
		}
	}
	k = min(k, len(cands))
	for j := range k {
		r := j + sm.rng.IntN(len(cands)-j)
		cands[j], cands[r] = cands[r], cands[j]
	}
	for _, hi := range cands[:k] {
		switch e.Action {
		case "join":
			sm.joinHost(hi)
		case "leave":
			sm.stopHost(hi, true)
		case "kill":
			sm.stopHost(hi, false)
		}
	}
	if e.Action == "join" {
		sm.pendingJoins--
	}
}
