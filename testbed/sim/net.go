package sim

import (
	"math"
	"time"

	"github.com/p2pd/p2pd/peer"
	"github.com/p2pd/p2pd/peer/resend"
	"github.com/p2pd/p2pd/peer/sched"
	"github.com/p2pd/p2pd/testbed/scenario"
)

// conn is a connection between two hosts; host[0] dialed host[1]. Each
// side uploads through its pipe: pipes[k] carries chunks from host[k] to
// host[1-k]. A conn holds no pointers, so that the garbage collector need
// not scan the millions of them a large run has.
type conn struct {
	host  [2]int32
	gen   uint32 // bumped when the connection closes: stales its events
	live  bool
	pipes [2]pipe
	// ctlAt[k] is when the last message host[k] sent arrives: a
	// connection delivers in order, jitter or not.
	ctlAt [2]int64
	// slot[k] is the connection's index in host[k]'s conns, nbrs and
	// refs.
	slot [2]int32
}

// side returns the side of host h in c.
func (c *conn) side(h int32) int {
	if c.host[0] == h {
		return 0
	}
	return 1
}

// pipe is one direction of a connection. The source accepts requests into
// queue and sends them one at a time, in order, like the engine's session
// writer; the head of a non-empty queue is always flowing. want is the
// destination's side: its requests not yet answered.
type pipe struct {
	queue  reqList
	want   reqList
	nextID uint32
	rem    float64 // bytes of the head left to send, as of since
	rate   float64 // bytes/s; -1 before the first rating
	since  int64
	// The engine tells the downloader's scheduler that a slow chunk is
	// arriving (ChunkProgress), at most every RequestTimeout/progressEvery
	// and only when a Data frame arrived: toldAt is when it last did (or
	// the head started), toldPieces how many pieces of the head had
	// arrived then, checking whether an evProgress is queued.
	toldAt     int64
	toldPieces int32
	checking   bool
	// Positions in the source's upFlows, the destination's downFlows and
	// the event queue (of its evFlowDone); -1 when not flowing.
	upPos, downPos, heapPos int32
}

func (sm *sim) cfgOf(h *host) *peer.Config {
	if h.origin {
		return &sm.ocfg
	}
	return &sm.pcfg
}

func (sm *sim) newConn(a, b int32) int32 {
	var ci int32
	if k := len(sm.freeConns); k > 0 {
		ci = sm.freeConns[k-1]
		sm.freeConns = sm.freeConns[:k-1]
	} else {
		ci = int32(len(sm.conns))
		sm.conns = append(sm.conns, conn{})
	}
	c := &sm.conns[ci]
	gen := c.gen
	*c = conn{host: [2]int32{a, b}, gen: gen, live: true}
	for k := range c.pipes {
		p := &c.pipes[k]
		p.queue, p.want = noList, noList
		p.upPos, p.downPos, p.heapPos = -1, -1, -1
	}
	ha, hb := &sm.hosts[a], &sm.hosts[b]
	ha.conns, ha.nbrs, ha.refs = append(ha.conns, ci), append(ha.nbrs, b), append(ha.refs, sched.PeerRef{})
	hb.conns, hb.nbrs, hb.refs = append(hb.conns, ci), append(hb.nbrs, a), append(hb.refs, sched.PeerRef{})
	hb.inbound++
	c.slot = [2]int32{int32(len(ha.conns) - 1), int32(len(hb.conns) - 1)}
	return ci
}

// lossCap is the throughput of one TCP connection from u to d when their
// links lose packets: MSS/RTT · sqrt(3/(2p)) (Mathis et al., 1997).
func lossCap(u, d *host) float64 {
	p := 1 - (1-u.loss)*(1-d.loss)
	rtt := seconds(u.lat + d.lat)
	if p <= 0 || rtt <= 0 {
		return math.Inf(1)
	}
	return mss / rtt * math.Sqrt(1.5/p)
}

// closeConn drops connection ci: its uploads stop and release their
// slots, and both ends' schedulers see PeerDisconnected.
func (sm *sim) closeConn(ci int32) {
	c := &sm.conns[ci]
	c.live = false
	c.gen++
	for k := range c.pipes {
		p := &c.pipes[k]
		if n := p.queue.n; n > 0 {
			if p.upPos >= 0 {
				sm.served(c.host[k], sm.stopFlow(ci, k))
			}
			sm.hosts[c.host[k]].slots -= int(n)
		}
		sm.lists.clear(&p.queue)
		sm.lists.clear(&p.want)
	}
	for k, hi := range c.host {
		h := &sm.hosts[hi]
		j := c.slot[k]
		last := int32(len(h.conns) - 1)
		h.conns[j], h.nbrs[j], h.refs[j] = h.conns[last], h.nbrs[last], h.refs[last]
		h.conns, h.nbrs, h.refs = h.conns[:last], h.nbrs[:last], h.refs[:last]
		if j != last {
			m := &sm.conns[h.conns[j]]
			m.slot[m.side(hi)] = j
		}
		if k == 0 {
			h.outbound--
		} else {
			h.inbound--
		}
	}
	sm.freeConns = append(sm.freeConns, ci)
	a, b := c.host[0], c.host[1]
	sm.evDisc = sched.PeerDisconnected{Peer: sm.hosts[b].id}
	sm.handle(a, &sm.evDisc)
	sm.evDisc = sched.PeerDisconnected{Peer: sm.hosts[a].id}
	sm.handle(b, &sm.evDisc)
}

// connOfAction returns the connection a Request or Cancel action of h's
// scheduler is for, by its tag (the connection's index + 1), and the
// uploader's side of it, or -1.
func (sm *sim) connOfAction(h int32, a *sched.Action) (int32, int) {
	if ci := int32(a.Tag) - 1; ci >= 0 {
		if c := &sm.conns[ci]; c.live {
			if k := 1 - c.side(h); c.host[1-k] == h {
				return ci, k
			}
		}
	}
	return sm.connBetween(h, hostIndex(a.Peer))
}

// connBetween returns the connection of h with q and q's side of it, or
// -1.
func (sm *sim) connBetween(h, q int32) (int32, int) {
	hh := &sm.hosts[h]
	for j, o := range hh.nbrs {
		if o == q {
			ci := hh.conns[j]
			return ci, sm.conns[ci].side(q)
		}
	}
	return -1, 0
}

// connOf returns the connection a message event travels on and the
// uploader's side of it, or nil if the connection closed since.
func (sm *sim) connOf(e event) (*conn, int) {
	c := &sm.conns[e.h]
	if !c.live || c.gen != e.gen {
		return nil, 0
	}
	return c, int(e.k)
}

// delay is how long a message h sends takes to arrive: its latency, its
// jitter, a retransmission timeout if its link loses the message, and the
// wait behind the data h's link is already committed to while uploads
// flow out of h: one piece (a TLS record, tlsRecord, or the paced piece,
// peer.PieceFor, or a chunk, whichever is smallest). In the engine a
// message goes out between the Data frames of its connection, and the
// writers of all the host's connections draw their pieces from one
// bucket at the link's rate (peer/pace.go), so the link holds about one
// piece ahead of the message however many uploads share it. Without this
// wait, simulated Haves and requests crossed a busy 5 Mbit/s link in its
// latency alone, and a 30-peer crowd finished 12% sooner than emulated.
// Before the engine paced its uploads (session 8) the wait was one TLS
// record per flowing upload, and before uploaders held their slots until
// the requester's Received (protocol 1.1), nearer a whole piece per
// upload: the writers handed their streams more than the link carried.
func (sm *sim) delay(h *host) int64 {
	d := h.lat
	if h.jitter > 0 {
		d += sm.rng.Int64N(h.jitter)
	}
	if h.loss > 0 && sm.rng.Float64() < h.loss {
		d += lossRTO
	}
	if len(h.upFlows) > 0 {
		d += int64(h.ctlNs)
	}
	return d
}

// send queues e, a message from side `from` of connection ci, for when it
// arrives: after the sender's delay, and not before the messages it sent
// earlier on the connection. e.k is set to the uploader's side.
func (sm *sim) send(ci int32, from int, e event) {
	c := &sm.conns[ci]
	at := max(sm.now+sm.delay(&sm.hosts[c.host[from]]), c.ctlAt[from])
	c.ctlAt[from] = at
	e.at, e.h, e.gen = at, ci, c.gen
	if e.kind == evRequest || e.kind == evCancel {
		e.k = uint8(1 - from) // addressed to the uploader
	} else {
		e.k = uint8(from) // sent by the uploader
	}
	sm.q.push(e)
}

// sendRequest carries out Request action a of d's scheduler. Like the
// engine, it drops a request for a peer it has no connection with (the
// scheduler times it out).
func (sm *sim) sendRequest(d int32, a sched.Action) {
	i := a.Index
	ci, k := sm.connOfAction(d, &a)
	if ci < 0 {
		sm.st.lostRequests++
		return
	}
	p := &sm.conns[ci].pipes[k]
	id := p.nextID + 1
	if !sm.lists.add(&p.want, reqID{id, int32(i)}) {
		sm.st.lostRequests++ // more than MaxInflightPerPeer: cannot happen
		return
	}
	p.nextID = id
	sm.st.requests++
	sm.send(ci, 1-k, event{kind: evRequest, id: id, idx: int32(i), reason: boolByte(a.Escalated)})
}

// sendCancel carries out Cancel action a of d's scheduler: d forgets the
// request at once (a late answer is discarded) and tells the uploader.
func (sm *sim) sendCancel(d int32, a sched.Action) {
	i := a.Index
	ci, k := sm.connOfAction(d, &a)
	if ci < 0 {
		return
	}
	p := &sm.conns[ci].pipes[k]
	if r, ok := sm.lists.removeIdx(&p.want, int32(i)); ok {
		sm.st.cancelled++
		sm.send(ci, 1-k, event{kind: evCancel, id: r.id})
	}
}

// onRequest: a request reaches the uploader, which answers as the
// engine's session does (onRequest): NotFound if it does not hold the
// chunk; Busy with no upload slot free; Deferred from a hoarder while
// other uploads run, or within the resend window of sending it to another
// peer (the engine claims the chunk only once a slot is the requester's,
// so a request refused for want of a slot does not block the chunk); else
// the upload is queued on the connection. A
// stalled uploader (scenario.Stall) queues it and holds the slot, but
// never sends: only a cancel or the connection's end frees it.
func (sm *sim) onRequest(e event) {
	c, k := sm.connOf(e)
	if c == nil {
		return
	}
	ui, di := c.host[k], c.host[1-k]
	u := &sm.hosts[ui]
	p := &c.pipes[k]
	var reason sched.FailReason
	switch {
	case !u.have.Has(int(e.idx)):
		reason = sched.FailNotFound
		sm.st.notFound++
	case int(p.queue.n) >= maxUploadsPerSession || u.slots >= sm.cfgOf(u).UploadSlots ||
		int(p.queue.n) >= sm.lists.blk:
		reason = sched.FailBusy
		sm.st.busy++
	case u.slots > 0 && sm.hoarder(u, di), !sm.claim(u, di, e.idx, resend.RequestKind(e.reason != 0)):
		reason = sched.FailDeferred
		sm.st.deferred++
	default:
		sm.lists.add(&p.queue, reqID{e.id, e.idx})
		u.slots++
		if p.queue.n == 1 && u.behavior != scenario.Stall {
			sm.startFlow(e.h, k)
		}
		return
	}
	sm.send(e.h, k, event{kind: evReject, id: e.id, idx: e.idx, reason: uint8(reason)})
}

// claim is the engine's claimUpload (package resend): whether u may send
// chunk i to peer to now. Like the engine, the uploader claims the chunk
// when it accepts the request (kind Request or Escalated) and again when
// it has sent it (Sent), so that the window counts from the end of the
// send.
func (sm *sim) claim(u *host, to int32, i int32, kind resend.Kind) bool {
	if u.claims == nil {
		return true
	}
	ok, _ := u.claims.Claim(i, int(i), u.round, to, time.Duration(sm.now), kind)
	return ok
}

// hoarder is the engine's deferHoarder, less its test for other uploads:
// whether u found d hoarding within resend.HoardWindows resend windows.
func (sm *sim) hoarder(u *host, d int32) bool {
	return u.claims != nil && u.claims.Hoarder(d, time.Duration(sm.now))
}

func (sm *sim) onReject(e event) {
	c, k := sm.connOf(e)
	if c == nil {
		return
	}
	if !sm.lists.removeID(&c.pipes[k].want, e.id) {
		return // cancelled meanwhile
	}
	u, di := &sm.hosts[c.host[k]], c.host[1-k]
	if sc, ref := sm.scheds[di], u.refs[c.slot[k]]; sc != nil && ref != (sched.PeerRef{}) {
		// By handle, as handle would by ID.
		sm.st.handles++
		sm.acts = sc.HandleFailed(sm.acts[:0], epoch.Add(time.Duration(sm.now)), ref, int(e.idx), sched.FailReason(e.reason))
		sm.apply(di, &sm.evFail, sm.acts)
		return
	}
	sm.evFail = sched.RequestFailed{Peer: u.id, Index: int(e.idx), Reason: sched.FailReason(e.reason)}
	sm.handle(di, &sm.evFail)
}

// onCancel: the uploader drops a cancelled request, mid-chunk if it is
// sending it. A stalled uploader sends nothing; it only frees the slot.
func (sm *sim) onCancel(e event) {
	c, k := sm.connOf(e)
	if c == nil {
		return
	}
	p := &c.pipes[k]
	if p.queue.n == 0 {
		return
	}
	ui := c.host[k]
	if p.upPos >= 0 && sm.lists.head(p.queue).id == e.id {
		sm.hosts[ui].slots--
		sm.served(ui, sm.stopFlow(e.h, k))
		sm.lists.removeID(&p.queue, e.id)
		if p.queue.n > 0 {
			sm.startFlow(e.h, k)
		}
		return
	}
	if sm.lists.removeID(&p.queue, e.id) {
		sm.hosts[ui].slots--
	}
}

// flowDone: the head upload of pipe k of ci has left the uploader. Its
// last byte reaches the downloader after the uploader's latency; the next
// upload starts.
func (sm *sim) flowDone(ci int32, k int) {
	c := &sm.conns[ci]
	p := &c.pipes[k]
	head := sm.lists.head(p.queue)
	sm.removeFlow(ci, k)
	ui := c.host[k]
	sm.hosts[ui].slots--
	sm.served(ui, sm.sizes[head.idx])
	sm.lists.removeID(&p.queue, head.id)
	u := &sm.hosts[ui]
	sm.claim(u, c.host[1-k], head.idx, resend.Sent) // the resend window counts from the end of the send, as in the engine's writer
	at := sm.now + u.lat
	if u.jitter > 0 {
		at += sm.rng.Int64N(u.jitter)
	}
	at = max(at, c.ctlAt[k])
	c.ctlAt[k] = at
	sm.q.push(event{at: at, kind: evData, h: ci, gen: c.gen, k: uint8(k), id: head.id, idx: head.idx})
	if p.queue.n > 0 {
		sm.startFlow(ci, k)
	}
}

// onData: a chunk reached the downloader. A corrupt uploader's chunk fails
// verification there.
func (sm *sim) onData(e event) {
	c, k := sm.connOf(e)
	if c == nil {
		return
	}
	if !sm.lists.removeID(&c.pipes[k].want, e.id) {
		return // cancelled: the engine discards it
	}
	ui, di := c.host[k], c.host[1-k]
	u, d := &sm.hosts[ui], &sm.hosts[di]
	size := sm.sizes[e.idx]
	d.downloaded += size
	ok := u.behavior != scenario.Corrupt
	switch {
	case !ok:
		sm.st.corrupt++
	case d.have.Has(int(e.idx)):
	case u.origin:
		d.fromOrigins += size
	default:
		d.fromPeers += size
	}
	if sc, ref := sm.scheds[di], u.refs[c.slot[k]]; sc != nil && ref != (sched.PeerRef{}) {
		sm.st.handles++
		sm.acts = sc.HandleReceived(sm.acts[:0], epoch.Add(time.Duration(sm.now)), ref, int(e.idx), ok)
		sm.apply(di, &sm.evRecv, sm.acts)
		return
	}
	sm.evRecv = sched.ChunkReceived{Peer: u.id, Index: int(e.idx), Verified: ok}
	sm.handle(di, &sm.evRecv)
}

// served counts bytes host u sent.
func (sm *sim) served(ui int32, n int64) {
	u := &sm.hosts[ui]
	u.uploaded += n
	if u.origin {
		sm.originBytes += n
	} else {
		sm.peerBytes += n
	}
}

// ---- the fluid model ----

// startFlow starts sending the head of pipe k of connection ci.
func (sm *sim) startFlow(ci int32, k int) {
	c := &sm.conns[ci]
	p := &c.pipes[k]
	u, d := &sm.hosts[c.host[k]], &sm.hosts[c.host[1-k]]
	ref := ci<<1 | int32(k)
	p.rem = float64(sm.sizes[sm.lists.head(p.queue).idx])
	p.rate = -1
	p.since = sm.now
	p.toldAt, p.toldPieces, p.checking = sm.now, 0, false
	p.upPos = int32(len(u.upFlows))
	u.upFlows = append(u.upFlows, ref)
	p.downPos = int32(len(d.downFlows))
	d.downFlows = append(d.downFlows, ref)
	sm.markDirty(c.host[k], true)
	sm.markDirty(c.host[1-k], false)
}

// stopFlow stops the head of pipe k mid-way and returns the bytes it had
// sent.
func (sm *sim) stopFlow(ci int32, k int) int64 {
	p := &sm.conns[ci].pipes[k]
	sm.advance(p)
	sent := sm.sizes[sm.lists.head(p.queue).idx] - int64(math.Ceil(p.rem))
	sm.removeFlow(ci, k)
	return max(sent, 0)
}

// removeFlow takes pipe k of ci out of its hosts' flow lists and the
// event queue.
func (sm *sim) removeFlow(ci int32, k int) {
	c := &sm.conns[ci]
	p := &c.pipes[k]
	if p.heapPos >= 0 {
		sm.q.remove(int(p.heapPos))
	}
	u, d := &sm.hosts[c.host[k]], &sm.hosts[c.host[1-k]]
	if last := int32(len(u.upFlows) - 1); p.upPos != last {
		m := u.upFlows[last]
		u.upFlows[p.upPos] = m
		sm.conns[m>>1].pipes[m&1].upPos = p.upPos
	}
	u.upFlows = u.upFlows[:len(u.upFlows)-1]
	if last := int32(len(d.downFlows) - 1); p.downPos != last {
		m := d.downFlows[last]
		d.downFlows[p.downPos] = m
		sm.conns[m>>1].pipes[m&1].downPos = p.downPos
	}
	d.downFlows = d.downFlows[:len(d.downFlows)-1]
	p.upPos, p.downPos = -1, -1
	sm.markDirty(c.host[k], true)
	sm.markDirty(c.host[1-k], false)
}

// markDirty notes that host hi's uploads (up) or downloads changed in
// number, so their rates must be recomputed at the end of the event.
func (sm *sim) markDirty(hi int32, up bool) {
	h := &sm.hosts[hi]
	if !h.upDirty && !h.downDirty {
		sm.dirty = append(sm.dirty, hi)
	}
	if up {
		h.upDirty = true
	} else {
		h.downDirty = true
	}
}

// flush re-rates the flows of the hosts whose flow counts changed. Their
// shares are updated first, so that every flow sees both of its ends'.
func (sm *sim) flush() {
	for _, hi := range sm.dirty {
		h, sh := &sm.hosts[hi], &sm.shares[hi]
		if h.upDirty {
			sh.up = h.up / float64(len(h.upFlows))
		}
		if h.downDirty {
			sh.down = h.down / float64(len(h.downFlows))
		}
	}
	for _, hi := range sm.dirty {
		h := &sm.hosts[hi]
		if h.upDirty {
			for _, ref := range h.upFlows {
				sm.retime(ref)
			}
		}
		if h.downDirty {
			for _, ref := range h.downFlows {
				sm.retime(ref)
			}
		}
		h.upDirty, h.downDirty = false, false
	}
	sm.dirty = sm.dirty[:0]
}

// advance brings p.rem up to now at the current rate.
func (sm *sim) advance(p *pipe) {
	if dt := sm.now - p.since; dt > 0 && p.rate > 0 {
		p.rem = max(p.rem-p.rate*seconds(dt), 0)
	}
	p.since = sm.now
}

// retime gives a flow its rate: the sender's upload shared equally among
// its flows, or the receiver's download shared equally among its flows,
// whichever is smaller (and the loss cap); and moves its completion in
// the event queue if that changed.
func (sm *sim) retime(ref int32) {
	ci, k := ref>>1, int(ref&1)
	c := &sm.conns[ci]
	p := &c.pipes[k]
	r := min(sm.shares[c.host[k]].up, sm.shares[c.host[1-k]].down)
	if sm.lossy {
		if u, d := &sm.hosts[c.host[k]], &sm.hosts[c.host[1-k]]; u.loss > 0 || d.loss > 0 {
			r = min(r, lossCap(u, d))
		}
	}
	sm.advance(p)
	if r == p.rate {
		return
	}
	p.rate = r
	var dt int64
	if !math.IsInf(r, 1) && p.rem > 0 {
		dt = int64(math.Ceil(p.rem / r * 1e9))
	}
	if p.heapPos >= 0 {
		sm.q.reschedule(int(p.heapPos), sm.now+dt)
	} else {
		sm.q.push(event{at: sm.now + dt, kind: evFlowDone, h: ci, k: uint8(k)})
	}
	sm.armProgress(ci, k, sm.now+dt)
}

// progressPeriod is how often at most the engine reports a slow chunk's
// progress.
func (sm *sim) progressPeriod() int64 {
	return int64(sm.pcfg.Sched.RequestTimeout) / progressEvery
}

// armProgress queues a progress check for the head of pipe k of ci, which
// ends at end, if it may last past the next report and none is queued.
// Fast transfers, which end first, cost no event.
func (sm *sim) armProgress(ci int32, k int, end int64) {
	c := &sm.conns[ci]
	p := &c.pipes[k]
	at := p.toldAt + sm.progressPeriod()
	if p.checking || end <= at {
		return
	}
	p.checking = true
	sm.q.push(event{at: max(at, sm.now), kind: evProgress, h: ci, gen: c.gen, k: uint8(k), id: sm.lists.head(p.queue).id})
}

// onProgress: a progress check of the head of a pipe is due. If a piece
// (Config.PieceSize) of it has been sent since the downloader last heard,
// its scheduler gets a ChunkProgress, as the engine's session posts one
// when a Data frame arrives. (The frame's latency is left out: the check
// counts as its arrival.)
func (sm *sim) onProgress(e event) {
	c, k := sm.connOf(e)
	if c == nil {
		return
	}
	p := &c.pipes[k]
	if p.upPos < 0 || p.queue.n == 0 || sm.lists.head(p.queue).id != e.id {
		return // that upload ended
	}
	p.checking = false
	sm.advance(p)
	ui := c.host[k]
	head := sm.lists.head(p.queue)
	piece := float64(sm.cfgOf(&sm.hosts[ui]).PieceSize)
	sent := float64(sm.sizes[head.idx]) - p.rem
	pieces := int32(sent / piece)
	next := int64(math.MaxInt64)
	if p.rate > 0 && !math.IsInf(p.rate, 1) {
		next = sm.now + int64(math.Ceil((float64(pieces+1)*piece-sent)/p.rate*1e9))
	}
	if pieces > p.toldPieces {
		p.toldAt, p.toldPieces = sm.now, pieces
		sm.st.progress++
		sm.evProg = sched.ChunkProgress{Peer: sm.hosts[ui].id, Index: int(head.idx)}
		sm.handle(c.host[1-k], &sm.evProg)
		next = max(next, sm.now+sm.progressPeriod())
	}
	end := int64(math.MaxInt64)
	if p.rate > 0 {
		end = sm.now + int64(math.Ceil(p.rem/p.rate*1e9))
	}
	if next < end {
		p.checking = true
		sm.q.push(event{at: next, kind: evProgress, h: e.h, gen: c.gen, k: e.k, id: e.id})
	}
}

func boolByte(b bool) uint8 { return uint8(boolIdx(b)) }

func boolIdx(b bool) int {
	if b {
		return 1
	}
	return 0
}
