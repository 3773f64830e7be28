package peer

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	lpeer "github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/clock"
	"github.com/p2pd/p2pd/internal/wire/peerwire"
	"github.com/p2pd/p2pd/peer/sched"
	"github.com/p2pd/p2pd/peer/store"
	"github.com/p2pd/p2pd/tracker/trackerclient"
)

// PullOptions tune one Pull.
type PullOptions struct {
	// Progress, if set, is called on Pull's goroutine as chunks arrive
	// (calls may be coalesced) and once more at the end.
	Progress func(Progress)
	// InOrder, if this Pull starts the blob's download, fetches its
	// chunks near the front of the blob first (sched.Config.InOrder), for
	// a caller that streams the blob out as it arrives. Pulls that join a
	// download in progress keep its order.
	InOrder bool
}

// Progress is a snapshot of a download.
type Progress struct {
	Blob chunker.Digest `json:"blob"`
	// Have and Total count chunks; Total is 0 until the manifest is known.
	Have  int `json:"have"`
	Total int `json:"total"`
	// Bytes is the size of the chunks held, Size the blob's.
	Bytes int64 `json:"bytes"`
	Size  int64 `json:"size"`
	// BytesFromPeers and BytesFromOrigins count the verified chunk bytes
	// this download fetched; chunks held before it started (from an
	// earlier run, or shared with another blob) count in neither.
	BytesFromPeers   int64 `json:"bytes_from_peers"`
	BytesFromOrigins int64 `json:"bytes_from_origins"`
	// Peers is the number of peers the download fetches from.
	Peers int `json:"peers"`
}

// Timings of the manifest lookup.
const (
	manifestPoll  = 250 * time.Millisecond // wait between rounds
	manifestReask = time.Second            // before asking the same peer again
	// manifestAsks is how many sources are asked for a manifest at once:
	// at a flash crowd's start the origin has hundreds of manifest
	// requests queued on its link, while peers that got it already
	// answer at once.
	manifestAsks     = 3
	swarmRetryMin    = 100 * time.Millisecond // between tracker swarm lookups, doubling
	swarmRetryMax    = time.Second
	eventQueueLength = 256
)

// errDone ends a download's context once it has finished.
var errDone = errors.New("download finished")

// download fetches one blob. Its run goroutine owns the scheduler: it
// finds the manifest, then turns the events the sessions and the put
// workers post into scheduler events and the scheduler's actions into
// frames, then verifies the blob and pins it. Concurrent Pulls of the blob
// wait on the same download.
type download struct {
	e       *Engine
	b       *blob
	ctx     context.Context
	cancel  context.CancelCauseFunc
	events  chan any
	done    chan struct{}
	started time.Time
	inOrder bool // PullOptions.InOrder of the Pull that started it
	// vouched is the manifest ID the tracker reported for the swarm
	// (from its origins), zero if none; set by findManifest.
	vouched chunker.Digest

	// holders receives, while the manifest is looked up, the sessions
	// whose peer has just got it: a peer that answered NotFound to our
	// GetManifest sends its bitfield when it gets the manifest (the ask
	// counts as interest), and is asked again at once rather than after
	// manifestReask.
	holders chan *session

	// fetching is set once the manifest is known and the loop consumes
	// events; n is the chunk count, set before.
	fetching atomic.Bool
	n        int

	// Set before done is closed.
	m   *chunker.Manifest
	err error

	waiters int // Pulls waiting; guarded by Engine.mu

	mu   sync.Mutex
	subs map[chan struct{}]struct{}
	prog Progress

	// Owned by the run goroutine.
	sched *sched.Scheduler
	held  sched.Bitset // what the scheduler holds
	peers map[string]*session
	acts  []sched.Action
}

// Events posted to a download.
type (
	evPeerDown struct{ s *session }
	evBitfield struct {
		s    *session
		have sched.Bitset
	}
	evHave struct {
		s   *session
		idx int
	}
	// evProgress: part of the requested chunk idx arrived from s.
	evProgress struct {
		s   *session
		idx int
	}
	// evChunk: a requested chunk arrived and was verified and stored
	// (neither bad nor err), failed verification (bad), or could not be
	// stored (err).
	evChunk struct {
		s      *session
		idx    int
		size   int
		origin bool
		bad    bool
		err    error
	}
	evFailed struct {
		s      *session
		idx    int
		reason sched.FailReason
	}
	// evStored: another download stored a chunk this one needs.
	evStored struct{ digest chunker.Digest }
)

func newDownload(e *Engine, b *blob) *download {
	d := &download{
		e:       e,
		b:       b,
		events:  make(chan any, eventQueueLength),
		holders: make(chan *session, manifestAsks),
		done:    make(chan struct{}),
		started: e.clock.Now(),
		subs:    make(map[chan struct{}]struct{}),
		peers:   make(map[string]*session),
		prog:    Progress{Blob: b.digest},
	}
	d.ctx, d.cancel = context.WithCancelCause(context.Background())
	return d
}

// post hands an event to the run goroutine; it gives up if ctx or the
// download ends first.
func (d *download) post(ctx context.Context, ev any) {
	if !d.fetching.Load() {
		return
	}
	select {
	case d.events <- ev:
	case <-ctx.Done():
	case <-d.ctx.Done():
	}
}

// abort ends the download with err.
func (d *download) abort(err error) { d.cancel(err) }

func (d *download) isDone() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

func (d *download) progress() Progress {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.prog
}

func (d *download) updateProgress(f func(*Progress)) {
	d.mu.Lock()
	f(&d.prog)
	for c := range d.subs {
		notify(c)
	}
	d.mu.Unlock()
}

// Pull fetches blob from the swarm into the store and returns its
// manifest once the whole blob is held, verified and pinned; the engine
// then seeds it. It looks up the manifest (asking origins first), skips
// every chunk the store holds already (from an earlier run, or shared with
// another blob), fetches the rest from peers (origins as a fallback),
// verifying each chunk, and checks the assembled blob against its digest.
//
// A blob that is complete already returns at once. Concurrent Pulls of one
// blob share one download; it stops when the last of them returns early
// (its ctx ended). A blob nobody serves fails within
// Config.ManifestTimeout with an error wrapping ErrNotFound. Other errors
// wrap ErrClosed, ErrRemoved, ErrVerify, a store error, or ctx's error.
func (e *Engine) Pull(ctx context.Context, blob chunker.Digest, opts PullOptions) (*chunker.Manifest, error) {
	if blob.IsZero() {
		return nil, fmt.Errorf("%w: the zero digest", ErrNotFound)
	}
	e.mu.Lock()
	if err := e.runningLocked(); err != nil {
		e.mu.Unlock()
		return nil, err
	}
	b := e.blobs[blob]
	if b != nil {
		if m := b.completeManifest(); m != nil {
			e.mu.Unlock()
			if opts.Progress != nil {
				bi := b.info()
				opts.Progress(Progress{Blob: blob, Have: bi.Have, Total: bi.Chunks, Bytes: bi.HaveBytes, Size: bi.Size})
			}
			return m, nil
		}
	} else {
		b = newBlob(e, blob)
		e.blobs[blob] = b
	}
	d := b.dl
	if d == nil {
		d = newDownload(e, b)
		d.inOrder = opts.InOrder
		b.dl = d
		e.wg.Add(1)
		go d.run()
	}
	d.waiters++
	sub := make(chan struct{}, 1)
	d.mu.Lock()
	d.subs[sub] = struct{}{}
	d.mu.Unlock()
	e.mu.Unlock()
	defer e.leave(d, sub)

	for {
		select {
		case <-d.done:
			if opts.Progress != nil {
				opts.Progress(d.progress())
			}
			return d.m, d.err
		case <-sub:
			if opts.Progress != nil {
				opts.Progress(d.progress())
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("peer: pull %s: %w", blob, ctx.Err())
		}
	}
}

// leave ends one Pull's wait; the last one to leave an unfinished download
// stops it.
func (e *Engine) leave(d *download, sub chan struct{}) {
	d.mu.Lock()
	delete(d.subs, sub)
	d.mu.Unlock()
	e.mu.Lock()
	d.waiters--
	var ann *announcer
	stop := d.waiters == 0 && !d.isDone()
	if stop {
		b := d.b
		if b.dl == d {
			b.dl = nil
		}
		if e.blobs[b.digest] == b && !b.isComplete() {
			delete(e.blobs, b.digest)
			ann, b.ann = b.ann, nil
		}
	}
	e.mu.Unlock()
	if stop {
		d.abort(context.Canceled)
	}
	if ann != nil {
		ann.stop()
	}
}

// run is the download's goroutine.
func (d *download) run() {
	defer d.e.wg.Done()
	m, err := d.findManifest()
	if err == nil {
		err = d.fetch(m)
	}
	if err == nil {
		err = d.verify(m)
	}
	if err == nil {
		err = d.commit(m)
	}
	d.finish(m, err)
}

// finish publishes the result and detaches the download from its blob.
func (d *download) finish(m *chunker.Manifest, err error) {
	e, b := d.e, d.b
	d.fetching.Store(false)
	for _, s := range d.peers {
		s.dropDownload(d)
	}
	d.cancel(errDone)
	e.mu.Lock()
	if b.dl == d {
		b.dl = nil
	}
	var ann *announcer
	// A pull that ran out of disk keeps what it stored announced and
	// served (a later Pull, once space is freed, picks up from there);
	// any other failure forgets the partial blob.
	keep := errors.Is(err, store.ErrNoSpace)
	if err != nil && !keep && e.blobs[b.digest] == b && !b.isComplete() {
		delete(e.blobs, b.digest)
		ann, b.ann = b.ann, nil
	}
	e.mu.Unlock()
	if ann != nil {
		ann.stop()
	}
	prog := d.progress()
	if err == nil {
		d.m = m
		took := e.clock.Since(d.started)
		e.met.pullDuration.Observe(took.Seconds())
		e.log.Info("pull complete", "blob", b.digest, "size", m.Size, "chunks", len(m.Chunks),
			"from_peers", prog.BytesFromPeers, "from_origins", prog.BytesFromOrigins, "took", took)
	} else {
		d.err = err
		e.log.Info("pull ended", "blob", b.digest, "err", err, "have", prog.Have, "total", prog.Total)
	}
	close(d.done)
}

// ---- the manifest ----

// findManifest returns the manifest the store holds for the blob, or asks
// the connected peers for it, origins first, until Config.ManifestTimeout.
// It asks up to manifestAsks of them at once, so that a slow answer (an
// origin with a crowd's requests queued on its link) does not keep it
// from a peer that has the manifest. Meanwhile it learns the blob's chunk
// count from the tracker and starts announcing, so that the tracker hands
// out peers to ask.
func (d *download) findManifest() (*chunker.Manifest, error) {
	e, blob := d.e, d.b.digest
	if m := d.b.manifest(); m != nil {
		return m, nil
	}
	timeout := e.cfg.ManifestTimeout
	deadline := e.clock.Now().Add(timeout)
	asked := make(map[*session]time.Time)
	type answer struct {
		s    *session
		m    *chunker.Manifest
		code peerwire.RejectCode
		err  error
	}
	// The asks end with findManifest; each sends its answer into a
	// buffer that has room for all of them.
	actx, stop := context.WithCancel(d.ctx)
	answers := make(chan answer, manifestAsks)
	inflight := 0
	defer func() {
		stop()
		for ; inflight > 0; inflight-- {
			<-answers
		}
	}()
	var (
		nextSwarm  time.Time
		swarmWait  = swarmRetryMin
		swarmKnown bool
		noSwarm    bool
		swarmErr   error
		notFound   int
		lastErr    error
	)
	timer := e.clock.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if d.ctx.Err() != nil {
			return nil, context.Cause(d.ctx)
		}
		now := e.clock.Now()
		if !swarmKnown && !now.Before(nextSwarm) {
			st, err := e.tracker.Swarm(d.ctx, blob)
			switch {
			case err == nil && st.NumChunks > 0:
				swarmKnown, noSwarm = true, false
				d.vouched = st.Manifest
				d.b.setNumChunks(st.NumChunks)
				e.mu.Lock()
				aerr := e.startAnnouncerLocked(d.b)
				e.mu.Unlock()
				if aerr != nil {
					return nil, aerr
				}
			case errors.Is(err, trackerclient.ErrNotFound):
				noSwarm = true
				nextSwarm = now.Add(swarmWait)
				swarmWait = min(2*swarmWait, swarmRetryMax)
			case d.ctx.Err() != nil:
				continue
			default:
				swarmErr = err
				e.log.Warn("tracker swarm lookup failed", "blob", blob, "err", err)
				nextSwarm = now.Add(swarmWait)
				swarmWait = min(2*swarmWait, swarmRetryMax)
			}
		}
		sessions, up := e.sessionList()
		if inflight < manifestAsks {
			if s := pickManifestSource(sessions, asked, now); s != nil {
				asked[s] = now
				wait := min(e.cfg.RequestTimeout, max(deadline.Sub(now), time.Second))
				inflight++
				go func() {
					m, code, err := s.getManifest(actx, blob, wait)
					answers <- answer{s, m, code, err}
				}()
				continue
			}
		}
		if inflight == 0 && !now.Before(deadline) {
			why := fmt.Sprintf("%d peers answered NotFound", notFound)
			switch {
			case noSwarm:
				why = "the tracker knows no swarm for it"
			case len(asked) == 0 && swarmErr != nil && !swarmKnown:
				why = fmt.Sprintf("the tracker could not be asked: %v", swarmErr)
			case len(asked) == 0:
				why = "the tracker handed out no peers"
			case lastErr != nil:
				why += fmt.Sprintf("; last error: %v", lastErr)
			}
			return nil, fmt.Errorf("%w: %s: no peer or origin served its manifest within %v (%s)", ErrNotFound, blob, timeout, why)
		}
		wait := manifestPoll // past the deadline: for the asks still out
		if left := deadline.Sub(now); left > 0 {
			wait = min(wait, left)
		}
		if !swarmKnown {
			wait = min(wait, max(nextSwarm.Sub(now), time.Millisecond))
		}
		timer.Reset(wait)
		select {
		case a := <-answers:
			timer.Stop()
			inflight--
			switch {
			case a.err == nil:
				a.s.log.Debug("got the manifest", "blob", blob, "chunks", len(a.m.Chunks), "origin", a.s.origin.Load())
				return a.m, nil
			case errors.Is(a.err, errBadManifest):
				e.penalize(a.s.id, reasonManifest, a.err.Error())
				lastErr = a.err
			case a.code == peerwire.RejectNotFound:
				notFound++
			case d.ctx.Err() == nil:
				lastErr = a.err
			}
		case <-timer.C():
		case <-up:
			timer.Stop()
		case s := <-d.holders:
			timer.Stop()
			delete(asked, s) // it has the manifest now: ask it again at once
		case <-d.ctx.Done():
		}
	}
}

// manifestHolder tells the manifest lookup (onBitfield calls it until
// the download is fetching) that s's peer has the blob now; it never
// blocks (the hint is dropped if the lookup has enough of them waiting).
func (d *download) manifestHolder(s *session) {
	select {
	case d.holders <- s:
	default:
	}
}

// pickManifestSource returns the session to ask for the manifest next:
// origins before peers, peers never asked before those asked a while ago.
func pickManifestSource(sessions []*session, asked map[*session]time.Time, now time.Time) *session {
	var best *session
	var bestAt time.Time
	for _, s := range sessions {
		at, ok := asked[s]
		if ok && now.Sub(at) < manifestReask {
			continue
		}
		if best == nil {
			best, bestAt = s, at
			continue
		}
		if o, bo := s.origin.Load(), best.origin.Load(); o != bo {
			if o {
				best, bestAt = s, at
			}
			continue
		}
		if at.Before(bestAt) || at.Equal(bestAt) && s.sid < best.sid {
			best, bestAt = s, at
		}
	}
	return best
}

// ---- fetching chunks ----

// fetch drives the scheduler until every chunk is held.
func (d *download) fetch(m *chunker.Manifest) error {
	e, b := d.e, d.b
	if err := d.checkHeld(m); err != nil {
		return fmt.Errorf("peer: pull %s: %w", b.digest, err)
	}
	sessions, _ := e.sessionList()
	have, err := b.setManifest(m, false, sessions)
	if err != nil {
		return fmt.Errorf("peer: pull %s: %w", b.digest, err)
	}
	scfg := e.cfg.Sched
	scfg.InOrder = d.inOrder
	sc, err := sched.New(scfg, len(m.Chunks), have, nil)
	if err != nil {
		return fmt.Errorf("peer: pull %s: %w", b.digest, err)
	}
	d.sched = sc
	d.held = have.Clone()
	d.n = len(m.Chunks)
	bi := b.info()
	d.updateProgress(func(p *Progress) {
		p.Have, p.Total, p.Bytes, p.Size = bi.Have, bi.Chunks, bi.HaveBytes, bi.Size
	})
	e.mu.Lock()
	d.fetching.Store(true)
	err = e.startAnnouncerLocked(b)
	e.mu.Unlock()
	if err != nil {
		return err
	}
	sessions, _ = e.sessionList()
	g := graceFor(sessions, e.dialingPeers(), e.cfg.OriginGrace, e.clock)
	defer g.stop()
	for _, s := range sessions {
		s.send(peerwire.Interested{Blob: b.digest})
	}
	if held := have.Count(); held > 0 {
		e.log.Info("pull starts with chunks held", "blob", b.digest, "held", held, "chunks", len(m.Chunks))
	}

	// From here on the sessions and workers post events; once fetch
	// returns nobody must wait for the loop any more.
	defer d.fetching.Store(false)
	timer := e.clock.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	done, err := d.handle(m, sched.Tick{})
	for !done && err == nil {
		armed := false
		if at, ok := d.sched.NextTick(); ok {
			timer.Reset(max(at.Sub(e.clock.Now()), time.Millisecond))
			armed = true
		}
		select {
		case ev := <-d.events:
			if g.hold(ev) {
				continue
			}
			done, err = d.event(m, ev)
			if err == nil && !done && g.answered(ev) {
				done, err = d.release(m, g)
			}
		case <-g.expired():
			done, err = d.release(m, g)
		case <-timer.C():
			armed = false
			done, err = d.handle(m, sched.Tick{})
		case <-d.ctx.Done():
			err = context.Cause(d.ctx)
		}
		if armed {
			timer.Stop()
		}
	}
	return err
}

// checkHeld reads every chunk of m the store holds before the pull counts
// it as held. The store hashes a chunk on its first read since it was
// opened (store.VerifyFirstRead), so a chunk this process stored costs a
// read only, and one left by an earlier run (which a crash or a power cut
// may have torn) is hashed; one that does not match is dropped by the
// store and fetched again.
func (d *download) checkHeld(m *chunker.Manifest) error {
	e := d.e
	dropped := 0
	for _, c := range m.Chunks {
		if !e.store.Has(c.Digest) {
			continue
		}
		buf := e.bufs.get(int(c.Size))
		data, err := e.store.ReadChunk(d.ctx, c.Digest, buf[:0])
		if cap(data) == cap(buf) {
			e.bufs.put(buf)
		}
		switch {
		case err == nil:
		case errors.Is(err, chunker.ErrDigestMismatch), errors.Is(err, store.ErrNotFound):
			dropped++
		default:
			return err
		}
	}
	if dropped > 0 {
		e.log.Warn("held chunks failed verification and will be fetched again", "blob", d.b.digest, "chunks", dropped)
	}
	return nil
}

// originGrace holds back origins' bitfields at the start of a fetch until
// the other peers connected then have sent theirs, or, if peers were
// still being dialed then, until one peer has (Config.OriginGrace).
type originGrace struct {
	pending map[*session]bool // peers whose bitfield is awaited
	anyPeer bool              // awaiting the first peer's bitfield
	held    []any             // origins' bitfields
	timer   clock.Timer
}

func graceFor(sessions []*session, dialing int, grace time.Duration, clk clock.Clock) *originGrace {
	g := &originGrace{pending: map[*session]bool{}, anyPeer: dialing > 0}
	for _, s := range sessions {
		if !s.origin.Load() {
			g.pending[s] = true
		}
	}
	if g.active() && grace > 0 {
		g.timer = clk.NewTimer(grace)
	} else {
		g.pending, g.anyPeer = nil, false
	}
	return g
}

func (g *originGrace) active() bool { return len(g.pending) > 0 || g.anyPeer }

// hold keeps ev if it is an origin's bitfield during the grace.
func (g *originGrace) hold(ev any) bool {
	if bf, ok := ev.(evBitfield); ok && g.active() && bf.s.origin.Load() {
		g.held = append(g.held, ev)
		return true
	}
	return false
}

// answered notes a pending peer's bitfield or departure, and reports
// whether the grace has just ended with the last one.
func (g *originGrace) answered(ev any) bool {
	if !g.active() {
		return false
	}
	switch ev := ev.(type) {
	case evBitfield:
		delete(g.pending, ev.s)
		if !ev.s.origin.Load() && len(g.pending) == 0 {
			g.anyPeer = false
		}
	case evPeerDown:
		delete(g.pending, ev.s)
	default:
		return false
	}
	return !g.active()
}

func (g *originGrace) expired() <-chan time.Time {
	if g.timer == nil || !g.active() {
		return nil
	}
	return g.timer.C()
}

func (g *originGrace) stop() {
	if g.timer != nil {
		g.timer.Stop()
	}
}

// release ends the grace and hands the held origins to the scheduler.
func (d *download) release(m *chunker.Manifest, g *originGrace) (bool, error) {
	held := g.held
	g.pending, g.held, g.anyPeer = nil, nil, false
	g.stop()
	g.timer = nil
	for _, ev := range held {
		if done, err := d.event(m, ev); done || err != nil {
			return done, err
		}
	}
	return false, nil
}

// event turns one posted event into scheduler events.
func (d *download) event(m *chunker.Manifest, ev any) (bool, error) {
	switch ev := ev.(type) {
	case evBitfield:
		if d.peers[ev.s.sid] != ev.s {
			if ev.s.ctx.Err() != nil {
				return false, nil // it closed; its evPeerDown is on the way or gone
			}
			d.peers[ev.s.sid] = ev.s
			d.setPeers()
			return d.handle(m, sched.PeerConnected{Peer: ev.s.sid, Origin: ev.s.origin.Load(), Have: ev.have})
		}
		return d.handle(m, sched.PeerBitfield{Peer: ev.s.sid, Have: ev.have})
	case evHave:
		if d.peers[ev.s.sid] != ev.s {
			return false, nil
		}
		return d.handle(m, sched.PeerHave{Peer: ev.s.sid, Index: ev.idx})
	case evProgress:
		if d.peers[ev.s.sid] != ev.s {
			return false, nil
		}
		return d.handle(m, sched.ChunkProgress{Peer: ev.s.sid, Index: ev.idx})
	case evPeerDown:
		if d.peers[ev.s.sid] != ev.s {
			return false, nil
		}
		delete(d.peers, ev.s.sid)
		d.setPeers()
		return d.handle(m, sched.PeerDisconnected{Peer: ev.s.sid})
	case evFailed:
		return d.handle(m, sched.RequestFailed{Peer: ev.s.sid, Index: ev.idx, Reason: ev.reason})
	case evChunk:
		switch {
		case ev.err != nil:
			return false, fmt.Errorf("peer: pull %s: storing chunk %d: %w", d.b.digest, ev.idx, ev.err)
		case ev.bad:
			return d.handle(m, sched.ChunkReceived{Peer: ev.s.sid, Index: ev.idx, Verified: false})
		}
		if !d.held.Has(ev.idx) {
			d.updateProgress(func(p *Progress) {
				if ev.origin {
					p.BytesFromOrigins += int64(ev.size)
				} else {
					p.BytesFromPeers += int64(ev.size)
				}
			})
		}
		done, err := d.handle(m, sched.ChunkReceived{Peer: ev.s.sid, Index: ev.idx, Verified: true})
		if done || err != nil {
			return done, err
		}
		return d.stored(m, m.Chunks[ev.idx].Digest)
	case evStored:
		return d.stored(m, ev.digest)
	}
	return false, nil
}

// stored tells the scheduler about every index of chunk digest, which is
// now in the store.
func (d *download) stored(m *chunker.Manifest, digest chunker.Digest) (bool, error) {
	for _, i := range d.b.indexes(digest) {
		done, err := d.handle(m, sched.ChunkStoredLocally{Index: int(i)})
		if done || err != nil {
			return done, err
		}
	}
	return false, nil
}

func (d *download) setPeers() {
	n := len(d.peers)
	d.updateProgress(func(p *Progress) { p.Peers = n })
}

// handle feeds one event to the scheduler and carries out its actions. It
// reports whether the blob is complete.
func (d *download) handle(m *chunker.Manifest, ev sched.Event) (bool, error) {
	e := d.e
	d.acts = d.sched.HandleAppend(d.acts[:0], e.clock.Now(), ev)
	done := false
	for _, a := range d.acts {
		switch a.Kind {
		case sched.Request:
			if s := d.peers[a.Peer]; s != nil {
				var flags peerwire.RequestFlags
				if a.Escalated {
					flags = peerwire.RequestEscalated
				}
				s.requestChunk(d, a.Index, m.Chunks[a.Index], flags)
			}
		case sched.Cancel:
			if _, tick := ev.(sched.Tick); tick {
				e.met.requestTimeout() // only a stalled peer's requests are cancelled on a Tick
			}
			if s := d.peers[a.Peer]; s != nil {
				s.cancelChunk(d, a.Index)
			}
		case sched.Ban:
			if s := d.peers[a.Peer]; s != nil {
				s.dropDownload(d)
				delete(d.peers, a.Peer)
				d.setPeers()
			}
			if id, err := lpeer.Decode(a.Peer); err == nil {
				e.ban(id, reasonCorrupt, fmt.Sprintf("blob %s: %s", d.b.digest, a.Reason))
			}
		case sched.Have:
			d.held.Set(a.Index)
			d.b.markHave(a.Index)
			size := int64(m.Chunks[a.Index].Size)
			d.updateProgress(func(p *Progress) { p.Have++; p.Bytes += size })
		case sched.Done:
			done = true
		}
	}
	return done, nil
}

// ---- verification ----

// verify binds the manifest, which came from a peer, to the blob the
// caller asked for. Each chunk was checked against its own digest when it
// was stored, so when the manifest is the one the swarm's origins
// announced (its ID is what the tracker vouched for) nothing is left to
// check. Otherwise (or with Config.FullVerify) it reads the chunks back
// from the store in order and hashes them, which must give the blob's
// digest. Reading runs one chunk ahead of hashing, on its own goroutine.
func (d *download) verify(m *chunker.Manifest) error {
	e := d.e
	if id := d.b.info().ManifestID; !e.cfg.FullVerify && !d.vouched.IsZero() && id == d.vouched {
		e.met.pullVerified("manifest")
		return nil
	}
	ctx, cancel := context.WithCancel(d.ctx)
	defer cancel()
	type piece struct {
		b   []byte
		err error
	}
	ch := make(chan piece, 2)
	go func() {
		defer close(ch)
		for i, c := range m.Chunks {
			buf := e.bufs.get(int(c.Size))
			b, err := e.store.ReadChunk(ctx, c.Digest, buf[:0])
			if err != nil {
				e.bufs.put(buf)
				err = fmt.Errorf("chunk %d (%s): %w", i, c.Digest, err)
			}
			select {
			case ch <- piece{b, err}:
			case <-ctx.Done():
				if err == nil {
					e.bufs.put(b)
				}
				return
			}
			if err != nil {
				return
			}
		}
	}()
	h := sha256.New()
	var size int64
	var err error
	for p := range ch {
		if err != nil || p.err != nil {
			if p.err != nil && err == nil {
				err = p.err
			}
			if p.b != nil && p.err == nil {
				e.bufs.put(p.b)
			}
			cancel()
			continue
		}
		h.Write(p.b)
		size += int64(len(p.b))
		e.bufs.put(p.b)
	}
	if err != nil {
		if d.ctx.Err() != nil {
			return context.Cause(d.ctx)
		}
		return fmt.Errorf("peer: pull %s: verify: %w", d.b.digest, err)
	}
	var sum chunker.Digest
	h.Sum(sum[:0])
	if sum != m.Digest || size != m.Size {
		return fmt.Errorf("%w: %s: the chunks of manifest %s add up to %d bytes hashing to %s", ErrVerify, d.b.digest, d.b.info().ManifestID, size, sum)
	}
	e.met.pullVerified("blob")
	return nil
}

// commit pins the verified manifest and switches the blob to seeding.
func (d *download) commit(m *chunker.Manifest) error {
	if err := d.e.store.Pin(d.ctx, m); err != nil {
		if d.ctx.Err() != nil {
			return context.Cause(d.ctx)
		}
		return fmt.Errorf("peer: pull %s: pin: %w", d.b.digest, err)
	}
	d.b.setComplete()
	d.e.mu.Lock()
	if ann := d.b.ann; ann != nil {
		ann.a.Trigger() // announce completion now
	}
	d.e.mu.Unlock()
	return nil
}
