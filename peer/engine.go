package peer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	lpeer "github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/clock"
	"github.com/p2pd/p2pd/internal/shape"
	"github.com/p2pd/p2pd/internal/wire/peerwire"
	"github.com/p2pd/p2pd/internal/wire/trackerwire"
	"github.com/p2pd/p2pd/peer/resend"
)

// Engine states.
const (
	stateNew = iota
	stateStarted
	stateClosing
	stateClosed
)

// Engine is a p2pd peer: a libp2p host that serves the chunks in its store
// to other peers and fetches blobs from them. Create it with New, start it
// with Start and stop it with Close. It is safe for concurrent use.
type Engine struct {
	cfg     Config
	store   Store
	tracker countingTracker
	clock   clock.Clock
	log     *slog.Logger
	met     *metrics
	bufs    bufPool
	link    *shape.Link // shapes the host's TCP connections, or nil

	slots chan struct{} // upload slots; a send takes one
	// mslots are the manifest upload slots (manifestSlots): apart from
	// the chunks' so that peers flooding chunk requests cannot keep a
	// manifest from an honest peer.
	mslots chan struct{}
	putq   chan *putJob // received chunks to verify and store

	// sentMu guards claims and every blob's round: see claimUpload.
	sentMu sync.Mutex
	claims *resend.Claims[chunker.Digest, lpeer.ID]
	epoch  time.Time // claims' times count from here

	// Set by Start, constant afterwards.
	host   host.Host
	selfID string
	// pace, if not nil, paces the chunk data the sessions hand their
	// streams to the host's upload rate, and piece is the Data payload
	// then (see newPacer).
	pace   *rate.Limiter
	piece  int
	ctx    context.Context // ends when Close starts tearing down
	cancel context.CancelFunc

	wg sync.WaitGroup // every goroutine the engine starts

	startDone chan struct{} // closed when Start returns

	mu         sync.Mutex
	state      int
	closeDone  chan struct{}
	closeErr   error
	sessions   map[lpeer.ID]*session
	dialing    map[lpeer.ID]bool
	outbound   int // outbound sessions and dials in progress
	inbound    int
	roles      map[lpeer.ID]trackerwire.Role // as the tracker handed them out
	bans       map[lpeer.ID]time.Time        // banned until
	penalties  map[lpeer.ID]int
	blobs      map[chunker.Digest]*blob
	sessionsUp chan struct{} // closed and replaced whenever a session is added
}

// New returns an Engine for cfg and deps. It starts nothing: no goroutine
// runs and no socket is open until Start.
func New(cfg Config, deps Deps) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if deps.Store == nil || deps.Tracker == nil {
		return nil, fmt.Errorf("%w: Deps.Store and Deps.Tracker are required", ErrBadConfig)
	}
	if cfg.IdentityFile == "" {
		cfg.IdentityFile = filepath.Join(deps.Store.Dir(), DefaultIdentityFileName)
	}
	if deps.Clock == nil {
		deps.Clock = clock.Real()
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Registry == nil {
		deps.Registry = prometheus.NewRegistry()
	}
	met, err := newMetrics(deps.Registry)
	if err != nil {
		return nil, err
	}
	return &Engine{
		cfg:        cfg,
		store:      deps.Store,
		tracker:    countingTracker{Tracker: deps.Tracker, m: met},
		link:       deps.Link,
		clock:      deps.Clock,
		log:        deps.Logger.With("component", "peer"),
		met:        met,
		slots:      make(chan struct{}, cfg.UploadSlots),
		mslots:     make(chan struct{}, manifestSlots),
		putq:       make(chan *putJob, 2*cfg.PutWorkers),
		claims:     resend.New[chunker.Digest, lpeer.ID](cfg.ResendWindow),
		epoch:      deps.Clock.Now(),
		startDone:  make(chan struct{}),
		closeDone:  make(chan struct{}),
		sessions:   make(map[lpeer.ID]*session),
		dialing:    make(map[lpeer.ID]bool),
		roles:      make(map[lpeer.ID]trackerwire.Role),
		bans:       make(map[lpeer.ID]time.Time),
		penalties:  make(map[lpeer.ID]int),
		blobs:      make(map[chunker.Digest]*blob),
		sessionsUp: make(chan struct{}),
	}, nil
}

// Config returns the configuration in use, defaults applied.
func (e *Engine) Config() Config { return e.cfg }

// Start loads (or creates) the identity key, starts the libp2p host and
// the protocol handler, and re-seeds every manifest pinned in the store:
// complete ones are announced and served again, incomplete ones are listed
// by Blobs until a Pull completes them. ctx bounds the start only.
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	if e.state != stateNew {
		st := e.state
		e.mu.Unlock()
		if st == stateStarted {
			return errors.New("peer: engine already started")
		}
		return ErrClosed
	}
	e.state = stateStarted // claims Start; Close now waits for it to be torn down
	e.mu.Unlock()

	err := e.start(ctx)
	close(e.startDone)
	if err != nil {
		e.log.Error("engine failed to start", "err", err)
		_ = e.Close(context.Background())
	}
	return err
}

func (e *Engine) start(ctx context.Context) error {
	key, err := loadIdentity(e.cfg.IdentityFile)
	if err != nil {
		return err
	}
	link := e.link
	if link == nil {
		link = shape.New(shape.Config{Up: e.cfg.HostUploadRate, Down: e.cfg.HostDownloadRate})
	}
	h, err := NewHost(e.cfg, key, link)
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.pace, e.piece = newPacer(link.UpRate(), e.cfg.PieceSize)
	e.host = h
	e.selfID = h.ID().String()
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.log = e.log.With("self", e.selfID)
	e.mu.Unlock()
	for range e.cfg.PutWorkers {
		e.wg.Add(1)
		go e.putWorker()
	}
	h.SetStreamHandler(protocol.ID(peerwire.ProtocolID), e.handleStream)
	e.log.Info("engine started", "addrs", e.Addrs(), "role", e.cfg.Role)
	return e.reseed(ctx)
}

// ID returns the engine's libp2p peer ID ("12D3KooW..."), empty before
// Start.
func (e *Engine) ID() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.selfID
}

// Addrs returns the multiaddrs the engine listens on, each ending in
// /p2p/<ID>, so any of them can be dialled as is. Empty before Start.
func (e *Engine) Addrs() []string {
	e.mu.Lock()
	h := e.host
	e.mu.Unlock()
	if h == nil {
		return nil
	}
	suffix, err := ma.NewMultiaddr("/p2p/" + h.ID().String())
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range h.Addrs() {
		out = append(out, a.Encapsulate(suffix).String())
	}
	return out
}

// announceAddrs are the addresses sent to the tracker: the listen
// addresses without the /p2p suffix, as many as the tracker accepts.
func (e *Engine) announceAddrs() []string {
	var out []string
	for _, a := range e.host.Addrs() {
		s := a.String()
		if len(s) <= trackerwire.MaxAddrLen && !slices.Contains(out, s) {
			out = append(out, s)
		}
		if len(out) == trackerwire.MaxAddrs {
			break
		}
	}
	return out
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats { return e.met.stats() }

// Close stops the engine, in this order: it stops accepting streams,
// cancels the downloads in progress (their Pulls fail with ErrClosed;
// chunk writes already under way finish or are discarded by the store,
// which never shows a partial chunk), stops the announcers (each sends a
// "stopped" announce, bounded by Config.Announce.StopTimeout), closes every
// peer stream and the libp2p host, and waits for its goroutines. If ctx
// ends first, Close still tears everything down but returns ctx's error
// without waiting for the rest. Calling Close again waits for the first
// call and returns its result. The store is not closed.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	switch e.state {
	case stateNew:
		e.state = stateClosed
		close(e.closeDone)
		e.mu.Unlock()
		return nil
	case stateClosing, stateClosed:
		e.mu.Unlock()
		select {
		case <-e.closeDone:
			return e.closeErr
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	e.state = stateClosing
	e.mu.Unlock()
	<-e.startDone // a Start in progress finishes first
	e.mu.Lock()
	h := e.host
	var dls []*download
	var anns []*announcer
	for _, b := range e.blobs {
		if b.dl != nil {
			dls = append(dls, b.dl)
		}
		if b.ann != nil {
			anns = append(anns, b.ann)
			b.ann = nil
		}
	}
	e.mu.Unlock()

	if h != nil {
		h.RemoveStreamHandler(protocol.ID(peerwire.ProtocolID))
	}
	for _, dl := range dls {
		dl.abort(ErrClosed)
	}
	var err error
	for _, dl := range dls {
		select {
		case <-dl.done:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	for _, a := range anns {
		a.stop()
	}
	for _, a := range anns {
		if werr := a.wait(ctx); werr != nil {
			err = werr
		}
	}
	if e.cancel != nil {
		e.cancel()
	}
	e.mu.Lock()
	sessions := make([]*session, 0, len(e.sessions))
	for _, s := range e.sessions {
		sessions = append(sessions, s)
	}
	e.mu.Unlock()
	for _, s := range sessions {
		s.close()
	}
	if h != nil {
		if cerr := h.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("peer: close host: %w", cerr)
		}
	}
	waited := make(chan struct{})
	go func() {
		e.wg.Wait()
		close(waited)
	}()
	select {
	case <-waited:
	case <-ctx.Done():
		err = ctx.Err()
	}
	e.mu.Lock()
	e.state = stateClosed
	e.closeErr = err
	close(e.closeDone)
	e.mu.Unlock()
	e.log.Info("engine closed", "err", err)
	return err
}

// running returns an error unless the engine is started and not closing.
func (e *Engine) runningLocked() error {
	switch e.state {
	case stateNew:
		return ErrNotStarted
	case stateStarted:
		if e.host == nil {
			return ErrNotStarted
		}
		return nil
	}
	return ErrClosed
}

// ---- upload slots ----

func (e *Engine) acquireSlot() bool { return tryTake(e.slots) }

func (e *Engine) releaseSlot() { <-e.slots }

// manifestSlots bounds the manifests an engine sends at once. An origin
// that sent a thousand manifests at once, each at a thousandth of its
// link, would finish none before their requesters gave up; with a few at
// a time, the peers that got one serve the rest.
const manifestSlots = 4

func (e *Engine) acquireManifestSlot() bool { return tryTake(e.mslots) }

func (e *Engine) releaseManifestSlot() { <-e.mslots }

// tryTake takes a slot of the semaphore slots if one is free.
func tryTake(slots chan struct{}) bool {
	select {
	case slots <- struct{}{}:
		return true
	default:
		return false
	}
}

// claimUpload decides whether chunk d of blob b (nil if unknown) may be
// sent to peer to, by the rules of package resend under
// Config.ResendWindow: within the window of sending d to another peer it
// may not, nor, during b's first round, once it has been sent to another
// peer at all. That peer will announce it to the swarm, and fetching it
// from there spares this engine (an origin, typically) a second copy.
//
// An escalated request (kind resend.Escalated: the requester could not get
// the chunk from the peers that advertise it, or an origin kept deferring
// it: see sched.Scheduler) is never refused, and neither is the claim made
// when a send ends (resend.Sent); both still record the send. An escalated
// request within the window also finds the peer the chunk went to
// hoarding: for resend.HoardWindows windows, that peer is deferred while
// other uploads run (deferHoarder).
func (e *Engine) claimUpload(b *blob, d chunker.Digest, to lpeer.ID, kind resend.Kind) bool {
	if !e.claims.On() {
		return true
	}
	i, r := -1, (*resend.Round)(nil)
	if b != nil {
		i, r = b.sendRound(d)
	}
	e.sentMu.Lock()
	defer e.sentMu.Unlock()
	ok, forced := e.claims.Claim(d, i, r, to, e.clock.Now().Sub(e.epoch), kind)
	if forced {
		e.met.uploadEscalated()
	}
	return ok
}

// deferHoarder reports whether a request from peer id, which holds one of
// the upload slots, is to be deferred because id was found hoarding in
// the last resend.HoardWindows resend windows, and other uploads hold
// slots. An origin's first copies are then spent on peers that pass
// chunks on; a peer that hoards (a stalled or a slowloris peer, which
// downloads honestly and serves nothing) gets its chunks from the swarm,
// and from this engine only when it is otherwise idle.
func (e *Engine) deferHoarder(id lpeer.ID) bool {
	if !e.claims.On() || len(e.slots) <= 1 {
		return false
	}
	e.sentMu.Lock()
	defer e.sentMu.Unlock()
	return e.claims.Hoarder(id, e.clock.Now().Sub(e.epoch))
}

// ---- bans and penalties ----

func (e *Engine) isBanned(id lpeer.ID) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.bannedLocked(id)
}

func (e *Engine) bannedLocked(id lpeer.ID) bool {
	until, ok := e.bans[id]
	if !ok {
		return false
	}
	if e.clock.Now().Before(until) {
		return true
	}
	delete(e.bans, id)
	return false
}

// penalize records a protocol violation by id; PenaltyThreshold of them get
// it banned.
func (e *Engine) penalize(id lpeer.ID, reason, detail string) {
	e.met.penalty(reason)
	e.mu.Lock()
	e.penalties[id]++
	n := e.penalties[id]
	e.mu.Unlock()
	e.log.Warn("peer broke the protocol", "peer", id.String(), "reason", reason, "detail", detail, "penalties", n)
	if n >= e.cfg.PenaltyThreshold {
		e.ban(id, reason, fmt.Sprintf("%d protocol violations, the last: %s", n, detail))
	}
}

// ban refuses id for Config.BanDuration and drops its connection.
func (e *Engine) ban(id lpeer.ID, label, reason string) {
	e.mu.Lock()
	already := e.bannedLocked(id)
	e.bans[id] = e.clock.Now().Add(e.cfg.BanDuration)
	delete(e.penalties, id)
	s := e.sessions[id]
	h := e.host
	e.mu.Unlock()
	if !already {
		e.met.ban(label)
		// kind is the reason label of p2pd_peer_bans_total.
		e.log.Warn("banned peer", "peer", id.String(), "kind", label, "reason", reason, "for", e.cfg.BanDuration)
	}
	if s != nil {
		s.close()
	}
	if h != nil {
		_ = h.Network().ClosePeer(id)
	}
}

// Banned reports whether peer id (a peer ID string) is banned now, and if
// so until when.
func (e *Engine) Banned(id string) (time.Time, bool) {
	pid, err := lpeer.Decode(id)
	if err != nil {
		return time.Time{}, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.bannedLocked(pid) {
		return time.Time{}, false
	}
	return e.bans[pid], true
}

// ---- sessions ----

// handleStream serves a stream a peer opened.
func (e *Engine) handleStream(st network.Stream) {
	id := st.Conn().RemotePeer()
	e.mu.Lock()
	switch {
	case e.state != stateStarted:
		e.mu.Unlock()
		_ = st.Reset()
		return
	case e.bannedLocked(id):
		e.mu.Unlock()
		newSession(e, st, false).sendSessionReject(peerwire.RejectBanned, "banned")
		return
	case e.inbound >= e.cfg.MaxInbound:
		e.mu.Unlock()
		e.log.Debug("refusing a stream: too many inbound peers", "peer", id.String(), "max", e.cfg.MaxInbound)
		_ = st.Reset()
		return
	}
	e.inbound++
	e.wg.Add(1)
	e.mu.Unlock()
	defer e.wg.Done()
	defer func() {
		e.mu.Lock()
		e.inbound--
		e.mu.Unlock()
	}()
	e.serve(newSession(e, st, false))
}

// serve runs a session from handshake to cleanup.
func (e *Engine) serve(s *session) {
	if err := s.handshake(); err != nil {
		s.log.Debug("handshake failed", "err", err)
		s.close()
		return
	}
	if err := e.addSession(s); err != nil {
		s.log.Debug("session refused", "err", err)
		s.closeGracefully() // the peer reads our Hello, then the end
		return
	}
	s.log.Debug("session up", "outbound", s.outbound, "origin", s.origin.Load())
	s.run()
	e.removeSession(s)
	s.log.Debug("session down")
}

// duplicateWindow: a second session with a peer within this time of the
// first is a simultaneous dial; later, it is a reconnection.
const duplicateWindow = 5 * time.Second

// addSession registers s. Of two sessions with the same peer opened
// within duplicateWindow of each other, the one opened by the peer with
// the smaller ID wins, so when two peers dial each other at once both keep
// the same stream. Otherwise the new session replaces the old one: the
// peer reconnected, and the old one may be dead without our knowing.
func (e *Engine) addSession(s *session) error {
	e.mu.Lock()
	switch {
	case e.state != stateStarted:
		e.mu.Unlock()
		return ErrClosed
	case e.bannedLocked(s.id):
		e.mu.Unlock()
		return errBanned
	}
	old := e.sessions[s.id]
	s.established = e.clock.Now()
	if old != nil {
		newInit, oldInit := s.initiator(), old.initiator()
		young := s.established.Sub(old.established) < duplicateWindow
		if newInit != oldInit && oldInit < newInit && young {
			e.mu.Unlock()
			return errDuplicate
		}
	}
	e.sessions[s.id] = s
	if e.roles[s.id] == trackerwire.RoleOrigin {
		s.origin.Store(true)
	}
	close(e.sessionsUp)
	e.sessionsUp = make(chan struct{})
	var interested []chunker.Digest
	for d, b := range e.blobs {
		if b.dl != nil && b.dl.fetching.Load() {
			interested = append(interested, d)
		}
	}
	e.mu.Unlock()
	if old != nil {
		// Gracefully: the peer may still be reading our Hello on it.
		old.closeGracefully()
	} else {
		e.met.connDelta(1)
	}
	for _, d := range interested {
		s.send(peerwire.Interested{Blob: d})
	}
	return nil
}

var (
	errBanned    = errors.New("peer is banned")
	errDuplicate = errors.New("a session with the peer exists")
)

// initiator returns the ID of the peer that opened the session's stream.
func (s *session) initiator() string {
	if s.outbound {
		return s.e.selfID
	}
	return s.sid
}

// removeSession forgets s once its goroutines are gone, and tells the
// downloads it served.
func (e *Engine) removeSession(s *session) {
	e.mu.Lock()
	current := e.sessions[s.id] == s
	if current {
		delete(e.sessions, s.id)
	}
	var dls []*download
	var blobs []*blob
	for _, b := range e.blobs {
		blobs = append(blobs, b)
		if b.dl != nil {
			dls = append(dls, b.dl)
		}
	}
	e.mu.Unlock()
	if current {
		e.met.connDelta(-1)
	}
	for _, b := range blobs {
		b.removeInterested(s)
	}
	for _, dl := range dls {
		dl.post(e.ctx, evPeerDown{s: s})
	}
}

// sessionList returns the current sessions and a channel that is closed
// when one is added.
func (e *Engine) sessionList() ([]*session, <-chan struct{}) {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]*session, 0, len(e.sessions))
	for _, s := range e.sessions {
		out = append(out, s)
	}
	return out, e.sessionsUp
}

// Connect dials the peer at addr, a multiaddr ending in /p2p/<ID>, and
// opens a protocol stream to it, as if the tracker had handed it out. It
// returns once the handshake is done.
func (e *Engine) Connect(ctx context.Context, addr string) error {
	a, err := ma.NewMultiaddr(addr)
	if err != nil {
		return fmt.Errorf("peer: connect %q: %w", addr, err)
	}
	info, err := lpeer.AddrInfoFromP2pAddr(a)
	if err != nil {
		return fmt.Errorf("peer: connect %q: %w", addr, err)
	}
	e.mu.Lock()
	if err := e.runningLocked(); err != nil {
		e.mu.Unlock()
		return err
	}
	if e.sessions[info.ID] != nil {
		e.mu.Unlock()
		return nil
	}
	if e.bannedLocked(info.ID) {
		e.mu.Unlock()
		return fmt.Errorf("peer: connect %s: %w", info.ID, errBanned)
	}
	e.outbound++
	e.wg.Add(1)
	e.mu.Unlock()
	errc := make(chan error, 1)
	go e.dial(ctx, *info, errc)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// freeOutbound returns how many more peers connectPeers would dial now:
// the number of peers worth asking the tracker for.
func (e *Engine) freeOutbound() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return max(e.cfg.MaxConns-e.outbound, 0)
}

// connectPeers dials the peers a tracker handed out, up to MaxConns.
func (e *Engine) connectPeers(peers []trackerwire.PeerInfo) {
	for _, pi := range peers {
		id, err := lpeer.Decode(pi.PeerID)
		if err != nil {
			e.log.Debug("tracker handed out a bad peer ID", "peer", pi.PeerID, "err", err)
			continue
		}
		info := lpeer.AddrInfo{ID: id}
		for _, s := range pi.Addrs {
			a, err := ma.NewMultiaddr(s)
			if err != nil {
				continue
			}
			if t, _ := lpeer.SplitAddr(a); t != nil {
				info.Addrs = append(info.Addrs, t)
			}
		}
		e.mu.Lock()
		if e.state != stateStarted || id == e.host.ID() {
			e.mu.Unlock()
			continue
		}
		if pi.Role != "" {
			e.roles[id] = pi.Role
		}
		s := e.sessions[id]
		if s != nil && pi.Role == trackerwire.RoleOrigin {
			s.origin.Store(true)
		}
		if s != nil || e.dialing[id] || e.bannedLocked(id) || len(info.Addrs) == 0 || e.outbound >= e.cfg.MaxConns {
			e.mu.Unlock()
			continue
		}
		e.dialing[id] = true
		e.outbound++
		e.wg.Add(1)
		e.mu.Unlock()
		go e.dial(e.ctx, info, nil)
	}
}

// dialingPeers counts the peers other than origins being dialed.
func (e *Engine) dialingPeers() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for id := range e.dialing {
		if e.roles[id] != trackerwire.RoleOrigin {
			n++
		}
	}
	return n
}

// dial connects to info and serves the session it opens. errc, if not
// nil, receives the outcome of the handshake.
func (e *Engine) dial(ctx context.Context, info lpeer.AddrInfo, errc chan<- error) {
	defer e.wg.Done()
	defer func() {
		e.mu.Lock()
		e.outbound--
		delete(e.dialing, info.ID)
		e.mu.Unlock()
	}()
	report := func(err error) {
		if errc != nil {
			errc <- err
			errc = nil
		}
	}
	dctx, cancel := context.WithTimeout(ctx, e.cfg.DialTimeout)
	stop := context.AfterFunc(e.ctx, cancel)
	defer stop()
	st, err := e.openStream(dctx, info)
	cancel()
	if err != nil {
		if e.ctx.Err() == nil {
			e.met.dialFailed(dialConnect)
			e.log.Debug("dial failed", "peer", info.ID.String(), "err", err)
		}
		report(fmt.Errorf("peer: connect %s: %w", info.ID, err))
		return
	}
	s := newSession(e, st, true)
	if err := s.handshake(); err != nil {
		if e.ctx.Err() == nil {
			e.met.dialFailed(dialHandshake)
		}
		s.close()
		report(fmt.Errorf("peer: handshake with %s: %w", info.ID, err))
		return
	}
	if err := e.addSession(s); err != nil {
		s.closeGracefully()
		if errors.Is(err, errDuplicate) {
			err = nil // the session the peer opened won
		}
		report(err)
		return
	}
	report(nil)
	s.log.Debug("session up", "outbound", true, "origin", s.origin.Load())
	s.run()
	e.removeSession(s)
	s.log.Debug("session down")
}

func (e *Engine) openStream(ctx context.Context, info lpeer.AddrInfo) (network.Stream, error) {
	if err := e.host.Connect(ctx, info); err != nil {
		return nil, err
	}
	return e.host.NewStream(ctx, info.ID, protocol.ID(peerwire.ProtocolID))
}

// ---- chunk verification workers ----

// putJob is a received chunk to verify and store.
type putJob struct {
	dl     *download
	s      *session
	idx    int
	digest chunker.Digest
	data   []byte // pooled
	origin bool
}

// queuePut hands a received chunk to the workers, waiting for room.
func (e *Engine) queuePut(ctx context.Context, j *putJob) {
	select {
	case e.putq <- j:
	case <-ctx.Done():
		e.bufs.put(j.data)
	case <-j.dl.ctx.Done():
		e.bufs.put(j.data)
	}
}

// putWorker verifies and stores received chunks: store.Put hashes the data
// and refuses it if it does not match the digest.
func (e *Engine) putWorker() {
	defer e.wg.Done()
	for {
		select {
		case j := <-e.putq:
			e.put(j)
		case <-e.ctx.Done():
			for {
				select {
				case j := <-e.putq:
					e.bufs.put(j.data)
				default:
					return
				}
			}
		}
	}
}

func (e *Engine) put(j *putJob) {
	defer e.bufs.put(j.data)
	if j.dl.ctx.Err() != nil {
		return
	}
	err := e.store.Put(j.dl.ctx, j.digest, j.data)
	ev := evChunk{s: j.s, idx: j.idx, size: len(j.data), origin: j.origin}
	switch {
	case err == nil:
		e.met.chunkVerified()
		// The blob holds it now, whatever becomes of the pull: one that
		// failed on another chunk (a full disk) has stopped reading ev,
		// and the chunk must still be announced and served.
		for _, i := range j.dl.b.indexes(j.digest) {
			j.dl.b.markHave(int(i))
		}
		e.chunkStored(j.digest, j.dl)
	case errors.Is(err, chunker.ErrDigestMismatch), errors.Is(err, chunker.ErrChunkTooLarge):
		e.met.chunkRejected()
		j.s.log.Warn("received chunk failed verification", "blob", j.dl.b.digest, "index", j.idx, "chunk", j.digest, "err", err)
		ev.bad = true
	default:
		ev.err = err
	}
	j.dl.post(e.ctx, ev)
}

// chunkStored tells the downloads other than from that need chunk d that
// it is now in the store.
func (e *Engine) chunkStored(d chunker.Digest, from *download) {
	e.mu.Lock()
	var dls []*download
	for _, b := range e.blobs {
		if dl := b.dl; dl != nil && dl != from && dl.fetching.Load() {
			dls = append(dls, dl)
		}
	}
	e.mu.Unlock()
	for _, dl := range dls {
		if dl.b.hasChunk(d) {
			dl.post(e.ctx, evStored{digest: d})
		}
	}
}
