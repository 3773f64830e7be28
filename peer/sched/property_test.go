package sched

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// The property tests drive a Scheduler with random event sequences produced
// by a simulated network, and check every action against a model that
// knows only the rules, not the algorithm:
//
//   - a held chunk is never requested;
//   - a request goes to a connected, unbanned, unpaused peer that
//     advertises the chunk, with fewer than MaxInflightPerPeer requests
//     outstanding there (MaxInflightPerOrigin at a fallback origin while
//     another peer is connected; at other peers, with MinInflightPerPeer
//     set, MaxInflightPerPeer shared out among the connected ones but no
//     less than MinInflightPerPeer), and, with MaxInflight set, only
//     while fewer than MaxInflight requests are outstanding at peers that
//     are neither fallback origins nor suspect;
//   - a busy answer pauses a peer that is not paused for BusyBackoff,
//     doubled for each pause since the peer last delivered a chunk, at
//     most MaxBusyBackoff;
//   - a chunk has a second outstanding request only in endgame, and never
//     more than MaxDuplicates;
//   - under OriginFallback an origin is asked only for chunks no peer
//     advertises or that have failed (timeouts, errors, corrupt data; not
//     busy or not-found answers) OriginAfterFailures times on peers;
//   - rarest first: a fresh request to a peer is for a chunk at most as
//     widely advertised as any pending chunk that peer has that never failed;
//   - a Cancel withdraws an outstanding request; on a Tick only at a peer
//     that stalled: its oldest request has waited its timeout since it
//     became the oldest or since part of it last arrived (ChunkProgress),
//     and then every request outstanding there is cancelled on that Tick.
//     The timeout is the least RequestTimeout<<l (l < stallLevels) that is
//     at least gapSlack times the peer's estimated longest wait for data,
//     which a stall raises to the timeout that expired; only the oldest of
//     the cancelled requests counts as a failure of its chunk;
//   - a peer (not a fallback origin) whose oldest request has waited
//     gapSlack times the longest recent wait over all peers (at least
//     RequestTimeout/suspectFloor, and only once some data has arrived)
//     is suspect on the next Tick if another peer or a fallback origin
//     advertises one of its chunks: its requests stay outstanding but no
//     longer count, so their chunks may be requested elsewhere as if
//     unrequested, and it gets no request until it has none left; under
//     OriginFallback an origin may be asked for those of the chunks that
//     no peer but suspect ones advertises. Otherwise it is not looked at
//     again until its clock restarts;
//   - Ban comes exactly at BanThreshold corrupt chunks, Have exactly once
//     per chunk for a verified chunk or a locally stored one, Done exactly
//     once, when everything is held;
//   - the download completes once the network calms down, as long as one
//     honest peer that has every chunk stays connected.
//
// After every event the scheduler's own bookkeeping is recomputed from
// scratch (checkInvariants).

type simPeer struct {
	id     string
	origin bool
	seeder bool // honest, has every chunk, never disconnects
	// Probabilities of each answer to a request, in the chaos phase.
	drop, busy, notFound, fail, corrupt float64
	have                                Bitset // advertised, which is also what it really has
	connected                           bool
}

type reqKey struct {
	peer string
	idx  int
}

type model struct {
	t     testing.TB
	r     *rand.Rand
	cfg   Config
	n     int
	s     *Scheduler
	now   time.Duration
	check int // run checkInvariants every check events (1: every event)

	peers []*simPeer
	byID  map[string]*simPeer

	held       []bool
	nheld      int
	out        map[reqKey]time.Duration // outstanding request -> sent at
	outList    []reqKey                 // the keys of out, for deterministic random choice
	order      map[string][]int         // outstanding requests per peer, in request order
	since      map[string]time.Duration // when the oldest of them became the oldest or progressed
	level      map[string]uint8         // the peer's timeout level (RequestTimeout<<level) as of since
	gap        map[string]time.Duration // the peer's estimated longest wait for data, raised when it stalls
	allGap     time.Duration            // the estimate over all peers: a new peer's
	sampled    bool                     // allGap has a sample
	suspect    map[string]bool          // peers whose requests were released; perChunk does not count them
	dismissed  map[string]bool          // peers found not worth suspecting since their clock last started
	suspEsc    map[int]bool             // chunks an origin may serve because only suspect peers had them
	streak     map[string]int           // busy pauses since the peer last delivered a chunk
	busySince  map[string]time.Duration // first busy pause since the peer last delivered a chunk
	recv       map[string]int           // verified chunks from the peer on this connection
	stalled    map[reqKey]bool          // requests this Tick must cancel
	stallFirst map[reqKey]bool          // those of them that were their peer's oldest: they count a failure
	perPeer    map[string]int
	perChunk   []int
	fails      []int
	offences   map[string]int
	banned     map[string]bool
	busyUntil  map[string]time.Duration
	pausedTil  map[string]time.Duration // busy pauses the scheduler has not yet ended on a Tick
	dropped    map[reqKey]bool          // the network will never answer these
	late       []reqKey                 // cancelled or timed out: the network may still answer
	done       int
	events     int
	availCache []int

	// Expectations of the event being handled.
	ev        Event
	wantHave  int // chunk whose Have this event must emit, or -1
	sawHave   bool
	wantBan   string
	sawBan    bool
	lastTrace []string
}

func newModel(t testing.TB, seed uint64, n int, cfg Config, held Bitset) *model {
	m := &model{
		t:          t,
		r:          rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)),
		cfg:        cfg.withDefaults(),
		n:          n,
		check:      1,
		byID:       map[string]*simPeer{},
		held:       make([]bool, n),
		out:        map[reqKey]time.Duration{},
		perPeer:    map[string]int{},
		perChunk:   make([]int, n),
		fails:      make([]int, n),
		offences:   map[string]int{},
		banned:     map[string]bool{},
		busyUntil:  map[string]time.Duration{},
		pausedTil:  map[string]time.Duration{},
		order:      map[string][]int{},
		since:      map[string]time.Duration{},
		suspect:    map[string]bool{},
		dismissed:  map[string]bool{},
		suspEsc:    map[int]bool{},
		level:      map[string]uint8{},
		gap:        map[string]time.Duration{},
		stallFirst: map[reqKey]bool{},
		streak:     map[string]int{},
		busySince:  map[string]time.Duration{},
		recv:       map[string]int{},
		stalled:    map[reqKey]bool{},
		dropped:    map[reqKey]bool{},
	}
	var err error
	m.s, err = New(cfg, n, held, rand.New(rand.NewPCG(seed, 7)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if held.Has(i) {
			m.held[i] = true
			m.nheld++
		}
	}
	return m
}

func (m *model) fatalf(format string, a ...any) {
	m.t.Helper()
	m.t.Fatalf("event %d (t=%v) %T%+v: %s\nrecent events:\n%s", m.events, m.now, m.ev, m.ev,
		fmt.Sprintf(format, a...), strings.Join(m.lastTrace, "\n"))
}

// startClock: the oldest request at peer id became the oldest or made
// progress now. Its timeout is the least RequestTimeout<<l (l below
// stallLevels) that is at least gapSlack times the peer's longest wait.
func (m *model) startClock(id string) {
	m.since[id] = m.now
	m.level[id] = m.levelNow(id)
	delete(m.dismissed, id)
}

// suspectAfter is how long a peer's oldest request may wait without data
// before it is suspected, and whether any data has arrived yet.
func (m *model) suspectAfter() (time.Duration, bool) {
	return max(gapSlack*m.allGap, m.cfg.RequestTimeout/suspectFloor), m.sampled
}

// watched reports whether peer id may become suspect: it has requests
// outstanding, is not suspect, not a fallback origin, and was not found
// not worth suspecting since its clock last started.
func (m *model) watched(id string) bool {
	return len(m.order[id]) > 0 && !m.suspect[id] && !m.dismissed[id] && !m.fallback(m.byID[id])
}

// holder reports whether connected peer q other than id advertises chunk
// i; fallback origins count only if origins is set, suspect peers only if
// suspects is.
func (m *model) holder(id string, q *simPeer, i int, origins, suspects bool) bool {
	return q.id != id && q.connected && !m.banned[q.id] && q.have.Has(i) &&
		(origins || !m.fallback(q)) && (suspects || !m.suspect[q.id])
}

// trustedHolder: a peer other than id, neither suspect nor a fallback
// origin, advertises chunk i.
func (m *model) trustedHolder(id string, i int) bool {
	for _, q := range m.peers {
		if m.holder(id, q, i, false, false) {
			return true
		}
	}
	return false
}

// othersHave: another peer or a fallback origin advertises one of id's
// outstanding chunks.
func (m *model) othersHave(id string) bool {
	for _, i := range m.order[id] {
		for _, q := range m.peers {
			if m.holder(id, q, i, true, true) {
				return true
			}
		}
	}
	return false
}

// levelNow is peer id's timeout level for its current wait estimate.
func (m *model) levelNow(id string) uint8 {
	l := uint8(0)
	for l < stallLevels-1 && m.cfg.RequestTimeout<<l < gapSlack*m.gap[id] {
		l++
	}
	return l
}

// longBusy mirrors Scheduler.longBusy.
func (m *model) longBusy(id string) bool {
	start, ok := m.busySince[id]
	return ok && m.recv[id] == 0 && m.now-start >= 2*(m.cfg.RequestTimeout<<m.levelNow(id))
}

// otherHolder mirrors Scheduler.holderBut with longBusy: a peer other
// than id, not a fallback origin and not long busy, advertises chunk idx.
func (m *model) otherHolder(idx int, id string) bool {
	for _, q := range m.peers {
		if m.holder(id, q, idx, false, true) && !m.longBusy(q.id) {
			return true
		}
	}
	return false
}

func (m *model) timeout(id string) time.Duration { return m.cfg.RequestTimeout << m.level[id] }

// sample: data for the oldest request at peer id arrived now.
func (m *model) sample(id string) {
	avg := func(g, x time.Duration) time.Duration {
		if x >= g {
			return x // a longer wait counts at once
		}
		return g - (g-x)/8 // a shorter one an eighth
	}
	x := m.now - m.since[id]
	m.gap[id] = avg(m.gap[id], x)
	m.allGap = avg(m.allGap, x)
	m.sampled = true
}

func (m *model) addOut(k reqKey) {
	m.out[k] = m.now
	if len(m.order[k.peer]) == 0 {
		m.startClock(k.peer)
	}
	m.order[k.peer] = append(m.order[k.peer], k.idx)
	m.outList = append(m.outList, k)
	m.perPeer[k.peer]++
	m.perChunk[k.idx]++
}

func (m *model) delOut(k reqKey) (sent time.Duration, ok bool) {
	sent, ok = m.out[k]
	if !ok {
		return 0, false
	}
	delete(m.out, k)
	delete(m.dropped, k)
	o := m.order[k.peer]
	j := slices.Index(o, k.idx)
	m.order[k.peer] = slices.Delete(o, j, j+1)
	if j == 0 {
		m.startClock(k.peer) // the next one is the oldest now
	}
	for j, x := range m.outList {
		if x == k {
			m.outList[j] = m.outList[len(m.outList)-1]
			m.outList = m.outList[:len(m.outList)-1]
			break
		}
	}
	m.perPeer[k.peer]--
	if !m.suspect[k.peer] {
		m.perChunk[k.idx]--
	}
	if len(m.order[k.peer]) == 0 {
		delete(m.suspect, k.peer)
	}
	return sent, true
}

// forget drops p's outstanding requests without a Cancel (disconnect, ban).
func (m *model) forget(id string) {
	for _, k := range append([]reqKey(nil), m.outList...) {
		if k.peer == id {
			m.delOut(k)
		}
	}
}

// avail is the number the scheduler ranks chunk i by. It is recomputed
// once per event (and after a ban), when first needed.
func (m *model) avail(i int) int {
	if m.availCache == nil {
		m.availCache = make([]int, m.n)
		for _, p := range m.peers {
			if p.connected && !m.banned[p.id] && !m.fallback(p) {
				for j := range p.have.All() {
					m.availCache[j]++
				}
			}
		}
	}
	return m.availCache[i]
}

func (m *model) fallback(p *simPeer) bool {
	return p.origin && m.cfg.OriginPolicy == OriginFallback
}

// otherPeers reports whether a peer that is not a fallback origin is
// connected.
func (m *model) otherPeers() bool {
	for _, p := range m.peers {
		if p.connected && !m.banned[p.id] && !m.fallback(p) {
			return true
		}
	}
	return false
}

// depth is the most requests a peer that is not a fallback origin may
// have outstanding: MaxInflightPerPeer shared out among the connected
// ones, rounded up, but at least MinInflightPerPeer (when set).
func (m *model) depth() int {
	d, n := m.cfg.MaxInflightPerPeer, 0
	for _, p := range m.peers {
		if p.connected && !m.banned[p.id] && !m.fallback(p) {
			n++
		}
	}
	if m.cfg.MinInflightPerPeer > 0 && n > 1 {
		d = min(d, max(m.cfg.MinInflightPerPeer, (d+n-1)/n))
	}
	return d
}

// capped counts the requests that count against MaxInflight: those
// outstanding at peers that are neither suspect nor fallback origins.
func (m *model) capped() int {
	n := 0
	for k := range m.out {
		if p := m.byID[k.peer]; !m.suspect[k.peer] && !m.fallback(p) {
			n++
		}
	}
	return n
}

func (m *model) endgame() bool {
	missing := m.n - m.nheld
	return m.cfg.MaxDuplicates > 1 && missing > 0 && missing <= m.cfg.EndgameThreshold
}

// handle feeds ev to the scheduler and checks the actions it returns.
func (m *model) handle(ev Event) {
	m.t.Helper()
	m.events++
	m.availCache = nil
	m.ev, m.wantHave, m.sawHave, m.wantBan, m.sawBan = ev, -1, false, "", false
	m.before(ev)
	var acts []Action
	now := epoch.Add(m.now)
	byRef := m.events%2 == 0
	switch e := ev.(type) {
	// Every other Have, failure and delivery goes through the handle
	// API, which must behave the same (an unknown peer has the zero,
	// stale ref; a corrupt chunk through it would count against no ID).
	case PeerHave:
		if byRef {
			ref, _ := m.s.Ref(e.Peer)
			acts = m.s.HandleHave(nil, now, ref, e.Index)
			break
		}
		acts = m.s.Handle(now, ev)
	case RequestFailed:
		if byRef {
			ref, _ := m.s.Ref(e.Peer)
			acts = m.s.HandleFailed(nil, now, ref, e.Index, e.Reason)
			break
		}
		acts = m.s.Handle(now, ev)
	case ChunkReceived:
		if ref, ok := m.s.Ref(e.Peer); ok && byRef {
			acts = m.s.HandleReceived(nil, now, ref, e.Index, e.Verified)
			break
		}
		acts = m.s.Handle(now, ev)
	default:
		acts = m.s.Handle(now, ev)
	}
	var trace []string
	for _, a := range acts {
		trace = append(trace, a.String())
	}
	m.lastTrace = append(m.lastTrace, fmt.Sprintf("  %v %T%+v -> %s", m.now, ev, ev, strings.Join(trace, ", ")))
	if len(m.lastTrace) > 12 {
		m.lastTrace = m.lastTrace[1:]
	}
	for _, a := range acts {
		m.apply(a)
	}
	m.after()
	if m.events%m.check == 0 {
		if err := m.s.checkInvariants(); err != nil {
			m.fatalf("invariant broken: %v", err)
		}
	}
}

// before applies the event's own effects to the model.
func (m *model) before(ev Event) {
	switch e := ev.(type) {
	case PeerConnected:
		p := m.byID[e.Peer]
		if m.banned[e.Peer] {
			m.wantBan = e.Peer
			return
		}
		m.forget(e.Peer)
		m.gap[e.Peer] = m.allGap    // a new connection starts from the estimate
		delete(m.busyUntil, e.Peer) // a busy pause belongs to a connection
		delete(m.pausedTil, e.Peer)
		delete(m.streak, e.Peer)
		delete(m.busySince, e.Peer)
		delete(m.recv, e.Peer)
		p.connected = true
	case PeerDisconnected:
		m.forget(e.Peer)
		delete(m.busyUntil, e.Peer)
		delete(m.pausedTil, e.Peer)
		delete(m.streak, e.Peer)
		delete(m.busySince, e.Peer)
		delete(m.recv, e.Peer)
		m.byID[e.Peer].connected = false
	case ChunkReceived:
		k := reqKey{e.Peer, e.Index}
		if o := m.order[e.Peer]; len(o) > 0 && o[0] == e.Index {
			m.sample(e.Peer)
		}
		m.delOut(k)
		if e.Verified {
			if m.byID[e.Peer].connected && !m.banned[e.Peer] {
				delete(m.streak, e.Peer)
				delete(m.busySince, e.Peer)
				m.recv[e.Peer]++
			}
			if !m.held[e.Index] {
				m.wantHave = e.Index
			}
			return
		}
		if !m.held[e.Index] {
			m.fails[e.Index]++
		}
		if !m.banned[e.Peer] {
			m.offences[e.Peer]++
			if m.offences[e.Peer] >= m.cfg.BanThreshold {
				m.wantBan = e.Peer
			}
		}
	case RequestFailed:
		p := m.byID[e.Peer]
		if !p.connected {
			return
		}
		if e.Reason == FailNotFound {
			p.have.Clear(e.Index) // it says it does not have it; believe it
		}
		if _, ok := m.delOut(reqKey{e.Peer, e.Index}); ok {
			switch e.Reason {
			case FailError:
				m.fails[e.Index]++
			case FailBusy:
				// Busy for twice the peer's request timeout, never
				// having delivered on this connection, and no other
				// peer that has the chunk is not the same: a failure
				// of the chunk, as a timeout.
				if m.longBusy(e.Peer) && !m.otherHolder(e.Index, e.Peer) {
					m.fails[e.Index]++
				}
				if _, paused := m.pausedTil[e.Peer]; !paused {
					if _, ok := m.busySince[e.Peer]; !ok {
						m.busySince[e.Peer] = m.now
					}
					d, limit := m.cfg.BusyBackoff, m.cfg.MaxBusyBackoff
					if m.fallback(m.byID[e.Peer]) {
						d, limit = m.cfg.OriginBusyBackoff, m.cfg.MaxOriginBusyBackoff
					}
					for range m.streak[e.Peer] {
						d *= 2
					}
					if d >= limit {
						d = limit
					} else {
						m.streak[e.Peer]++
					}
					m.busyUntil[e.Peer] = m.now + d
					m.pausedTil[e.Peer] = m.busyUntil[e.Peer]
				}
			}
		}
	case ChunkProgress:
		if o := m.order[e.Peer]; len(o) > 0 && o[0] == e.Index {
			m.sample(e.Peer)
			m.startClock(e.Peer)
		}
	case ChunkStoredLocally:
		if !m.held[e.Index] {
			m.wantHave = e.Index
		}
	case Tick:
		for id, until := range m.pausedTil {
			if until <= m.now {
				delete(m.pausedTil, id)
			}
		}
		clear(m.stalled)
		clear(m.stallFirst)
		for id, o := range m.order {
			if len(o) > 0 && m.since[id]+m.timeout(id) <= m.now {
				for _, i := range o {
					m.stalled[reqKey{id, i}] = true
				}
				m.stallFirst[reqKey{id, o[0]}] = true
				m.gap[id] = max(m.gap[id], 2*m.timeout(id)/gapSlack) // its next timeout doubles
			}
		}
		if d, ok := m.suspectAfter(); ok {
			var fresh []string
			for id, o := range m.order {
				if !m.watched(id) || m.since[id]+m.timeout(id) <= m.now || m.since[id]+d > m.now {
					continue
				}
				if !m.othersHave(id) {
					m.dismissed[id] = true
					continue
				}
				m.suspect[id] = true
				fresh = append(fresh, id)
				for _, i := range o {
					m.perChunk[i]--
				}
			}
			for _, id := range fresh {
				for _, i := range m.order[id] {
					if !m.trustedHolder(id, i) && m.cfg.OriginPolicy == OriginFallback {
						m.suspEsc[i] = true
					}
				}
			}
		}
	}
}

func (m *model) apply(a Action) {
	m.t.Helper()
	switch a.Kind {
	case Request:
		i := a.Index
		k := reqKey{a.Peer, i}
		p := m.byID[a.Peer]
		switch {
		case i < 0 || i >= m.n:
			m.fatalf("%v: index out of range", a)
		case p == nil || !p.connected:
			m.fatalf("%v: peer not connected", a)
		case m.banned[a.Peer]:
			m.fatalf("%v: peer is banned", a)
		case m.held[i]:
			m.fatalf("%v: chunk already held", a)
		case !p.have.Has(i):
			m.fatalf("%v: peer does not advertise the chunk", a)
		case m.perPeer[a.Peer] >= m.cfg.MaxInflightPerPeer:
			m.fatalf("%v: %d requests already outstanding at the peer", a, m.perPeer[a.Peer])
		case m.fallback(p) && m.otherPeers() && m.perPeer[a.Peer] >= m.cfg.MaxInflightPerOrigin:
			m.fatalf("%v: %d requests already outstanding at the origin, and other peers are connected", a, m.perPeer[a.Peer])
		case !m.fallback(p) && m.cfg.MaxInflight > 0 && m.capped() >= m.cfg.MaxInflight:
			m.fatalf("%v: %d requests already outstanding at peers other than fallback origins, MaxInflight %d", a, m.capped(), m.cfg.MaxInflight)
		case !m.fallback(p) && m.perPeer[a.Peer] >= m.depth():
			m.fatalf("%v: %d requests already outstanding at the peer, its share of the depth is %d", a, m.perPeer[a.Peer], m.depth())
		case m.now < m.busyUntil[a.Peer]:
			m.fatalf("%v: peer is busy until %v", a, m.busyUntil[a.Peer])
		case m.suspect[a.Peer]:
			m.fatalf("%v: peer is suspect, with %d requests outstanding", a, len(m.order[a.Peer]))
		}
		if _, dup := m.out[k]; dup {
			m.fatalf("%v: already outstanding at this peer", a)
		}
		if m.perChunk[i] > 0 {
			if !m.endgame() {
				m.fatalf("%v: duplicate request outside endgame (%d missing)", a, m.n-m.nheld)
			}
			if m.perChunk[i] >= m.cfg.MaxDuplicates {
				m.fatalf("%v: %d requests outstanding, limit %d", a, m.perChunk[i], m.cfg.MaxDuplicates)
			}
		}
		if m.fallback(p) {
			if m.avail(i) > 0 && m.fails[i] < m.cfg.OriginAfterFailures && !m.suspEsc[i] {
				m.fatalf("%v: origin asked although %d peers have it and it failed %d times", a, m.avail(i), m.fails[i])
			}
		} else if m.perChunk[i] == 0 {
			ai := m.avail(i)
			for j := range m.n {
				if !m.held[j] && m.perChunk[j] == 0 && p.have.Has(j) && m.fails[j] == 0 && m.avail(j) < ai {
					m.fatalf("%v: not rarest first: chunk %d has availability %d, chunk %d only %d", a, i, ai, j, m.avail(j))
				}
			}
		}
		m.addOut(k)
	case Cancel:
		k := reqKey{a.Peer, a.Index}
		sent, ok := m.delOut(k)
		if !ok {
			m.fatalf("%v: no such outstanding request", a)
		}
		switch e := m.ev.(type) {
		case Tick:
			if !m.stalled[k] {
				m.fatalf("%v: timed out after %v although its peer has not stalled (timeout %v)", a, m.now-sent, m.timeout(a.Peer))
			}
			delete(m.stalled, k)
			if m.stallFirst[k] {
				m.fails[a.Index]++ // the others were waiting behind it
			}
		case ChunkReceived:
			if !e.Verified || e.Index != a.Index {
				m.fatalf("%v: cancel not caused by this event", a)
			}
		case ChunkStoredLocally:
			if e.Index != a.Index {
				m.fatalf("%v: cancel not caused by this event", a)
			}
		default:
			m.fatalf("%v: cancel not caused by this event", a)
		}
		m.late = append(m.late, k)
	case Ban:
		if a.Peer != m.wantBan || m.sawBan {
			m.fatalf("%v: unexpected ban (offences %d, threshold %d)", a, m.offences[a.Peer], m.cfg.BanThreshold)
		}
		m.sawBan = true
		m.banned[a.Peer] = true
		m.availCache = nil
		m.forget(a.Peer)
		delete(m.pausedTil, a.Peer)
		if p := m.byID[a.Peer]; p != nil {
			p.connected = false // the engine drops it
		}
	case Have:
		if a.Index != m.wantHave || m.sawHave {
			m.fatalf("%v: unexpected have", a)
		}
		if m.perChunk[a.Index] != 0 {
			m.fatalf("%v: %d requests for it still outstanding", a, m.perChunk[a.Index])
		}
		for _, k := range m.outList {
			if k.idx == a.Index {
				m.fatalf("%v: still outstanding at suspect peer %s", a, k.peer)
			}
		}
		m.sawHave = true
		delete(m.suspEsc, a.Index)
		m.held[a.Index] = true
		m.nheld++
	case Done:
		m.done++
		if m.done > 1 {
			m.fatalf("done emitted twice")
		}
		if m.nheld != m.n {
			m.fatalf("done with %d of %d chunks held", m.nheld, m.n)
		}
	default:
		m.fatalf("unknown action %v", a)
	}
}

func (m *model) after() {
	m.t.Helper()
	if m.wantHave >= 0 && !m.sawHave {
		m.fatalf("no have for chunk %d", m.wantHave)
	}
	if m.wantBan != "" && !m.sawBan {
		m.fatalf("no ban for %s", m.wantBan)
	}
	if _, ok := m.ev.(Tick); ok {
		for k := range m.stalled {
			m.fatalf("request %v sent at %v to a peer stalled since %v not cancelled at %v", k, m.out[k], m.since[k.peer], m.now)
		}
	}
	if m.nheld == m.n && m.done != 1 {
		m.fatalf("every chunk held, done emitted %d times", m.done)
	}
	// NextTick: the earliest stall of a peer or end of a pause.
	var want time.Duration
	wantOK := false
	for id, o := range m.order {
		if d := m.since[id] + m.timeout(id); len(o) > 0 && (!wantOK || d < want) {
			want, wantOK = d, true
		}
	}
	if d, ok := m.suspectAfter(); ok {
		for id := range m.order {
			if at := m.since[id] + d; m.watched(id) && (!wantOK || at < want) {
				want, wantOK = at, true
			}
		}
	}
	for _, until := range m.pausedTil {
		if !wantOK || until < want {
			want, wantOK = until, true
		}
	}
	got, ok := m.s.NextTick()
	if ok != wantOK || ok && got.Sub(epoch) != want {
		m.fatalf("NextTick = %v, %v; want %v, %v", got.Sub(epoch), ok, want, wantOK)
	}
	live := 0
	for k := range m.out {
		if !m.suspect[k.peer] {
			live++
		}
	}
	pr := m.s.Progress()
	if pr.Held != m.nheld || pr.Requests != live {
		m.fatalf("progress %+v, model has %d held and %d requests not at suspect peers", pr, m.nheld, live)
	}
}

// ---- the simulated network ----

func (m *model) addPeer(p *simPeer) { m.peers = append(m.peers, p); m.byID[p.id] = p }

func (m *model) connect(p *simPeer) {
	m.handle(PeerConnected{Peer: p.id, Origin: p.origin, Have: p.have.Clone()})
}

func (m *model) randomBits(density float64) Bitset {
	b := NewBitset(m.n)
	for i := range m.n {
		if m.r.Float64() < density {
			b.Set(i)
		}
	}
	return b
}

// answerable lists outstanding requests the network will answer.
func (m *model) answerable() []reqKey {
	var ks []reqKey
	for _, k := range m.outList {
		if !m.dropped[k] {
			ks = append(ks, k)
		}
	}
	return ks
}

// answer makes the network reply to request k; calm means everyone behaves.
func (m *model) answer(k reqKey, calm bool) {
	p := m.byID[k.peer]
	if calm {
		m.handle(ChunkReceived{Peer: k.peer, Index: k.idx, Verified: true})
		return
	}
	x := m.r.Float64()
	switch {
	case x < p.drop:
		m.dropped[k] = true
	case x < p.drop+p.busy:
		m.handle(RequestFailed{Peer: k.peer, Index: k.idx, Reason: FailBusy})
	case x < p.drop+p.busy+p.notFound:
		p.have.Clear(k.idx) // it lost the chunk
		m.handle(RequestFailed{Peer: k.peer, Index: k.idx, Reason: FailNotFound})
	case x < p.drop+p.busy+p.notFound+p.fail:
		m.handle(RequestFailed{Peer: k.peer, Index: k.idx, Reason: FailError})
	case x < p.drop+p.busy+p.notFound+p.fail+p.corrupt:
		m.handle(ChunkReceived{Peer: k.peer, Index: k.idx})
	default:
		m.handle(ChunkReceived{Peer: k.peer, Index: k.idx, Verified: true})
	}
}

func (m *model) pickPeer(ok func(*simPeer) bool) *simPeer {
	var c []*simPeer
	for _, p := range m.peers {
		if ok(p) {
			c = append(c, p)
		}
	}
	if len(c) == 0 {
		return nil
	}
	return c[m.r.IntN(len(c))]
}

// chaosStep produces one random event.
func (m *model) chaosStep() {
	r := m.r
	switch w := r.IntN(100); {
	case w < 40:
		if ks := m.answerable(); len(ks) > 0 {
			m.answer(ks[r.IntN(len(ks))], false)
			return
		}
		m.handle(Tick{})
	case w < 45:
		// Part of a chunk arrives, mostly for the oldest request at its
		// peer; time passes first, so that progress matters.
		ks := m.answerable()
		if len(ks) == 0 {
			m.handle(Tick{})
			return
		}
		k := ks[r.IntN(len(ks))]
		if o := m.order[k.peer]; r.IntN(4) != 0 {
			k.idx = o[0]
		}
		m.now += time.Duration(r.Int64N(int64(m.cfg.RequestTimeout)))
		m.handle(ChunkProgress{Peer: k.peer, Index: k.idx})
	case w < 52:
		// A late answer to a cancelled or timed-out request.
		if len(m.late) == 0 {
			m.handle(Tick{})
			return
		}
		j := r.IntN(len(m.late))
		k := m.late[j]
		m.late = append(m.late[:j], m.late[j+1:]...)
		p := m.byID[k.peer]
		switch {
		case p.corrupt > 0 && r.IntN(2) == 0:
			m.handle(ChunkReceived{Peer: k.peer, Index: k.idx})
		case r.IntN(4) == 0 && p.connected:
			why := FailReason(r.IntN(3))
			if why == FailNotFound && p.seeder {
				why = FailBusy // the seeder keeps every chunk
			}
			m.handle(RequestFailed{Peer: k.peer, Index: k.idx, Reason: why})
		case p.have.Has(k.idx):
			m.handle(ChunkReceived{Peer: k.peer, Index: k.idx, Verified: true})
		}
	case w < 62:
		m.now += time.Duration(r.Int64N(int64(m.cfg.RequestTimeout) * 3 / 2))
		m.handle(Tick{})
	case w < 70:
		p := m.pickPeer(func(p *simPeer) bool { return p.connected && !p.seeder })
		if p == nil {
			return
		}
		i := r.IntN(m.n)
		p.have.Set(i)
		m.handle(PeerHave{Peer: p.id, Index: i})
	case w < 73:
		p := m.pickPeer(func(p *simPeer) bool { return p.connected && !p.seeder })
		if p == nil {
			return
		}
		p.have = m.randomBits(r.Float64())
		m.handle(PeerBitfield{Peer: p.id, Have: p.have.Clone()})
	case w < 78:
		p := m.pickPeer(func(p *simPeer) bool { return p.connected && !p.seeder })
		if p == nil {
			return
		}
		p.connected = false
		m.handle(PeerDisconnected{Peer: p.id})
	case w < 85:
		// Mostly a disconnected peer; sometimes a connected one connects
		// again (the old connection is replaced).
		p := m.pickPeer(func(p *simPeer) bool { return !p.connected || (!p.seeder && r.IntN(4) == 0) })
		if p == nil {
			return
		}
		if r.IntN(3) == 0 {
			p.have = m.randomBits(r.Float64())
		}
		m.connect(p)
	case w < 88:
		m.handle(ChunkStoredLocally{Index: r.IntN(m.n)})
	case w < 91:
		p := m.pickPeer(func(p *simPeer) bool { return p.connected })
		if p == nil {
			return
		}
		i := r.IntN(m.n)
		switch {
		case p.corrupt > 0:
			m.handle(ChunkReceived{Peer: p.id, Index: i})
		case p.have.Has(i):
			m.handle(ChunkReceived{Peer: p.id, Index: i, Verified: true})
		}
	default:
		m.now += time.Duration(r.Int64N(int64(time.Second)))
		m.handle(Tick{})
	}
}

// finish lets the network calm down and requires the download to complete.
func (m *model) finish() {
	m.t.Helper()
	limit := 20*m.n + 1000
	for step := 0; m.nheld < m.n; step++ {
		if step > limit {
			m.fatalf("no completion after %d calm steps: %d of %d held, %d requests outstanding", limit, m.nheld, m.n, len(m.out))
		}
		if ks := m.answerable(); len(ks) > 0 {
			m.answer(ks[m.r.IntN(len(ks))], true)
			continue
		}
		// Let dropped requests time out and pauses end: tick when the
		// scheduler says something is due.
		next, ok := m.s.NextTick()
		if !ok {
			m.fatalf("stalled: %d of %d held, nothing requested, no tick pending", m.nheld, m.n)
		}
		if d := next.Sub(epoch); d > m.now {
			m.now = d
		}
		m.handle(Tick{})
	}
	if m.done != 1 {
		m.fatalf("done emitted %d times", m.done)
	}
}

// randomScenario builds a model with random config, held chunks and peers,
// including one honest seeder that never leaves.
func randomScenario(t testing.TB, seed uint64, maxChunks, maxPeers int) *model {
	r := rand.New(rand.NewPCG(seed, 1))
	n := 1 + r.IntN(maxChunks)
	cfg := Config{
		MaxInflightPerPeer:  1 + r.IntN(5),
		RequestTimeout:      time.Duration(1+r.IntN(10)) * time.Second,
		EndgameThreshold:    r.IntN(12),
		MaxDuplicates:       1 + r.IntN(3),
		OriginAfterFailures: 1 + r.IntN(3),
		BanThreshold:        1 + r.IntN(4),
		BusyBackoff:         time.Duration(r.IntN(3000)) * time.Millisecond,
	}
	if r.IntN(2) == 0 {
		cfg.MaxInflightPerOrigin = 1 + r.IntN(4)
	}
	if r.IntN(2) == 0 {
		cfg.MinInflightPerPeer = 1 + r.IntN(3)
	}
	if r.IntN(2) == 0 {
		cfg.MaxInflight = 1 + r.IntN(6)
	}
	if r.IntN(2) == 0 {
		cfg.MaxBusyBackoff = cfg.withDefaults().BusyBackoff * time.Duration(1+r.IntN(20))
	}
	if r.IntN(2) == 0 {
		cfg.OriginBusyBackoff = time.Duration(1+r.IntN(1000)) * time.Millisecond
	}
	if r.IntN(2) == 0 {
		cfg.MaxOriginBusyBackoff = cfg.withDefaults().OriginBusyBackoff * time.Duration(1+r.IntN(40))
	}
	if r.IntN(4) == 0 {
		cfg.OriginPolicy = OriginAsPeer
	}
	held := NewBitset(n)
	switch r.IntN(20) {
	case 0:
		held = FullBitset(n)
	case 1, 2, 3, 4, 5, 6:
	default:
		d := r.Float64() * 0.3
		for i := range n {
			if r.Float64() < d {
				held.Set(i)
			}
		}
	}
	m := newModel(t, seed, n, cfg, held)
	m.addPeer(&simPeer{id: "s0", seeder: true, origin: r.IntN(3) == 0, have: FullBitset(n)})
	if r.IntN(3) == 0 {
		m.addPeer(&simPeer{id: "o1", origin: true, have: FullBitset(n), drop: 0.05, notFound: 0.02})
	}
	for k := range 2 + r.IntN(maxPeers-1) {
		p := &simPeer{id: fmt.Sprintf("p%d", k), have: m.randomBits(r.Float64())}
		if r.IntN(2) == 0 {
			p.drop = r.Float64() * 0.2
		}
		if r.IntN(3) == 0 {
			p.busy = r.Float64() * 0.2
		}
		if r.IntN(4) == 0 {
			p.notFound = r.Float64() * 0.1
		}
		if r.IntN(4) == 0 {
			p.fail = r.Float64() * 0.1
		}
		if r.IntN(3) == 0 {
			p.corrupt = r.Float64() * 0.5
		}
		if r.IntN(5) == 0 {
			p.have = FullBitset(n)
		}
		m.addPeer(p)
	}
	// The seeder connects at some point early on; others at random.
	for _, p := range m.peers {
		if p.seeder || r.IntN(2) == 0 {
			m.connect(p)
		}
	}
	return m
}

var (
	soakSeeds = flag.Int("sched.seeds", 0, "run the random schedule tests with this many seeds (soak testing)")
	firstSeed = flag.Uint64("sched.seed", 0, "first seed of the random schedule tests")
)

func seedRange(def, short int) []uint64 {
	n := def
	switch {
	case *soakSeeds > 0:
		n = *soakSeeds
	case testing.Short():
		n = short
	}
	seeds := make([]uint64, n)
	for i := range seeds {
		seeds[i] = *firstSeed + uint64(i)
	}
	return seeds
}

func TestRandomSchedules(t *testing.T) {
	for _, seed := range seedRange(300, 60) {
		m := randomScenario(t, seed, 80, 9)
		for range 6*m.n + 100 {
			m.chaosStep()
		}
		m.finish()
	}
}

// TestRandomSchedulesLarge runs fewer, larger scenarios, where the sparse
// pick path (peers that have few of the pending chunks) and deep buckets
// matter. It checks the scheduler's bookkeeping every 61 events rather than
// after each.
func TestRandomSchedulesLarge(t *testing.T) {
	for _, seed := range seedRange(4, 2) {
		m := randomScenario(t, 1000000+seed, 3000, 100)
		m.check = 61
		for range 2*m.n + 100 {
			m.chaosStep()
		}
		m.finish()
	}
}
