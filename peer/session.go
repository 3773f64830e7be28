package peer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	lpeer "github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/wire/peerwire"
	"github.com/p2pd/p2pd/peer/resend"
	"github.com/p2pd/p2pd/peer/sched"
	"github.com/p2pd/p2pd/peer/store"
)

// Per-session bounds that keep a hostile or stuck peer from making the
// engine queue without limit.
const (
	// maxCtrlQueue bounds the control frames waiting to be sent to one
	// peer; a peer that lets more pile up is not reading and is dropped.
	maxCtrlQueue = 1 << 14
	// maxUploadsPerSession bounds the chunk requests one peer may have
	// accepted at once (each also holds an upload slot).
	maxUploadsPerSession = 64
	// maxManifestUploads bounds the manifests sent to one peer at once.
	maxManifestUploads = 2
	// maxRemoteInterest bounds the blobs one peer may say it is
	// interested in.
	maxRemoteInterest = 1024
	// writeTimeout bounds one write to a peer: a peer that stops reading
	// for that long is dropped, freeing its upload slots.
	writeTimeout = 30 * time.Second
	// streamReadBufSize is the size of the buffered reader. It only
	// gathers small frames: a Data payload is read straight into its
	// chunk's buffer (session.dataDst), and whatever the reader holds of
	// it when its header is read is copied once more, so it is small.
	streamReadBufSize = 8 << 10
	// progressEvery: a chunk arriving slowly is reported to its download
	// (evProgress) about this many times per request timeout.
	progressEvery = 4
	// liesPerPenalty: every this many chunk requests a peer answers
	// NotFound, for chunks it advertised, count one protocol violation
	// (reasonLiar). An honest peer does that only for chunks it evicted
	// since; a liar claims chunks it never had.
	liesPerPenalty = 16
	// floodPerPenalty: this many chunk requests refused Busy within one
	// second count one protocol violation (reasonFlood). An engine pauses
	// a peer that answers Busy (sched.Config.BusyBackoff, 50ms at least),
	// so it sends at most its pipeline depth (8 by default) per pause:
	// 160 a second.
	floodPerPenalty = 1024
)

// session is the protocol stream with one remote peer. Three goroutines
// serve it: the reader (decodes frames and dispatches them: requests to the
// upload side, answers to the downloads), the writer (sends control
// frames, then upload data piece by piece under the rate limit) and the
// uploader (reads requested chunks from the store one ahead of the
// writer). Downloads talk to it through requestChunk, cancelChunk and
// getManifest, which only queue frames and never block.
type session struct {
	e        *Engine
	id       lpeer.ID
	sid      string // id.String(), the scheduler's peer name
	stream   network.Stream
	outbound bool        // we opened the stream
	origin   atomic.Bool // the tracker says the remote is an origin
	// acks: the remote's Hello advertised peerwire.FeatureReceived, so it
	// acknowledges the chunks it receives, and an upload to it holds its
	// slot until then. Set by the handshake.
	acks bool
	// established is when the session was registered; set under Engine.mu.
	established time.Time
	log         *slog.Logger
	ctx         context.Context
	cancel      context.CancelFunc
	// notFound counts the chunk requests it answered NotFound, and
	// flooded those refused Busy since floodSince, within a second
	// (reader goroutine only).
	notFound, flooded int
	floodSince        time.Time

	br      *bufio.Reader
	bw      *muxWriter // used by the writer goroutine after the handshake
	dec     *peerwire.Decoder
	upLim   *rate.Limiter // nil: unlimited
	downLim *rate.Limiter

	wg        sync.WaitGroup // writer and uploader
	closeOnce sync.Once
	wake      chan struct{} // writer: control frames queued
	upWake    chan struct{} // uploader: uploads queued
	ready     chan *upload  // uploader to writer: uploads with their data

	mu     sync.Mutex
	closed bool
	ctrl   []peerwire.Message
	queue  []*upload          // accepted uploads not yet read
	active map[uint32]*upload // accepted uploads by request ID
	// held are the uploads written in full that wait for the remote's
	// Received (see session.acks), oldest first; each still holds its
	// slot, for at most writeTimeout after its last byte was written.
	held           []*upload
	manifestJobs   int
	remoteInterest map[chunker.Digest]struct{}
	nextReq        uint32
	reqs           map[uint32]*chunkReq
	reqByIdx       map[chunkKey]uint32
	mreqs          map[uint32]*manifestReq
}

// upload is a request the remote made: a chunk (or a range of it) or a
// manifest, sent as Data or ManifestData frames.
type upload struct {
	req      uint32
	manifest bool
	digest   chunker.Digest // chunk uploads
	start    uint32         // requested range; end 0 means to the end
	end      uint32
	b        *blob  // blob the chunk is attributed to, for its counters; may be nil
	buf      []byte // pooled storage, returned when finished
	data     []byte // what is sent: the chunk (or manifest) in full
	off      int    // next byte of data to send
	slot     bool   // holds an upload slot (a manifest slot for a manifest)
	// heldUntil is when a held upload (session.held) frees its slot
	// without a Received.
	heldUntil time.Time
	canceled  atomic.Bool
	finished  atomic.Bool
	// stopRead, while the chunk is read from the store, abandons the
	// read (guarded by session.mu): a Cancel from the requester frees the
	// upload's slot even if the store never answers.
	stopRead context.CancelFunc
}

// chunkReq is a chunk this engine requested from the remote.
type chunkReq struct {
	dl     *download
	idx    int
	digest chunker.Digest
	size   int
	buf    []byte
	got    int
	// told is when the download last heard that the request is being
	// answered (evProgress), or when it was made; reader goroutine only
	// once the request is registered.
	told time.Time
}

type chunkKey struct {
	dl  *download
	idx int
}

// manifestReq is a manifest this engine requested from the remote.
type manifestReq struct {
	blob chunker.Digest
	buf  []byte
	got  int
	done chan manifestResult // buffered; receives exactly one result
}

type manifestResult struct {
	m    *chunker.Manifest
	code peerwire.RejectCode // set when the remote rejected the request
	err  error
}

func newSession(e *Engine, s network.Stream, outbound bool) *session {
	id := s.Conn().RemotePeer()
	ss := &session{
		e:              e,
		id:             id,
		sid:            id.String(),
		stream:         s,
		outbound:       outbound,
		log:            e.log.With("peer", id.String()),
		br:             bufio.NewReaderSize(s, streamReadBufSize),
		bw:             newMuxWriter(s, muxFrameSize),
		wake:           make(chan struct{}, 1),
		upWake:         make(chan struct{}, 1),
		ready:          make(chan *upload, 1),
		active:         make(map[uint32]*upload),
		remoteInterest: make(map[chunker.Digest]struct{}),
		reqs:           make(map[uint32]*chunkReq),
		reqByIdx:       make(map[chunkKey]uint32),
		mreqs:          make(map[uint32]*manifestReq),
	}
	ss.ctx, ss.cancel = context.WithCancel(e.ctx)
	ss.dec = peerwire.NewDecoder(ss.br, peerwire.MaxFrameSize)
	ss.dec.SetDataDst(ss.dataDst)
	if r := e.cfg.UploadRate; r > 0 {
		ss.upLim = rate.NewLimiter(rate.Limit(r), e.cfg.PieceSize)
	}
	if r := e.cfg.DownloadRate; r > 0 {
		ss.downLim = rate.NewLimiter(rate.Limit(r), peerwire.MaxDataPayload)
	}
	return ss
}

func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// ---- handshake ----

var errHandshake = errors.New("handshake failed")

// handshake exchanges Hello frames within the dial timeout.
func (s *session) handshake() error {
	_ = s.stream.SetDeadline(time.Now().Add(s.e.cfg.DialTimeout))
	defer s.stream.SetDeadline(time.Time{})
	if err := peerwire.Encode(s.bw, peerwire.Hello{Version: peerwire.Version, PeerID: s.e.selfID, Features: peerwire.FeatureReceived}); err != nil {
		return err
	}
	if err := s.bw.Flush(); err != nil {
		return err
	}
	msg, err := s.dec.Next()
	if err != nil {
		if isViolation(err) {
			s.e.penalize(s.id, reasonProtocol, err.Error())
		}
		return err
	}
	h, ok := msg.(peerwire.Hello)
	if !ok {
		s.e.penalize(s.id, reasonProtocol, fmt.Sprintf("first frame is %s, not Hello", msg.Type()))
		return fmt.Errorf("%w: first frame is %s", errHandshake, msg.Type())
	}
	if !peerwire.Compatible(h.Version) {
		s.sendSessionReject(peerwire.RejectVersion, fmt.Sprintf("version %d.%d, this peer speaks %d.x",
			peerwire.VersionMajor(h.Version), peerwire.VersionMinor(h.Version), peerwire.VersionMajor(peerwire.Version)))
		return fmt.Errorf("%w: incompatible version %#04x", errHandshake, h.Version)
	}
	if h.PeerID != s.sid {
		s.sendSessionReject(peerwire.RejectBadRequest, "Hello peer ID does not match the connection")
		return fmt.Errorf("%w: Hello names peer %q", errHandshake, h.PeerID)
	}
	s.acks = h.Features&peerwire.FeatureReceived != 0
	return nil
}

// sendSessionReject sends Reject{0, code} and closes the stream
// gracefully, so that the Reject arrives.
func (s *session) sendSessionReject(code peerwire.RejectCode, reason string) {
	if len(reason) > peerwire.MaxReasonLen {
		reason = reason[:peerwire.MaxReasonLen]
	}
	_ = s.stream.SetWriteDeadline(time.Now().Add(time.Second))
	if peerwire.Encode(s.bw, peerwire.Reject{ReqID: 0, Code: code, Reason: reason}) == nil {
		_ = s.bw.Flush()
	}
	s.closeGracefully()
}

// closeGracefully ends a session that never ran: what was written is
// still delivered before the stream ends.
func (s *session) closeGracefully() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.cancel()
		_ = s.stream.Close()
	})
}

func isViolation(err error) bool {
	return errors.Is(err, peerwire.ErrFrameTooLarge) || errors.Is(err, peerwire.ErrUnknownType) || errors.Is(err, peerwire.ErrMalformed)
}

// ---- lifecycle ----

// run serves the session until the stream ends, then cleans up. It is
// called on the goroutine that handles the stream, after the handshake
// and registration.
func (s *session) run() {
	s.wg.Add(2)
	go s.writeLoop()
	go s.uploadLoop()
	s.readLoop()
	s.close()
	s.wg.Wait()
	s.cleanup()
}

// close ends the session: the goroutines stop, the stream is reset. It
// does not wait.
func (s *session) close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.cancel()
		_ = s.stream.Reset()
	})
}

// cleanup releases what the session still holds once its goroutines are
// gone: upload slots and buffers, and the requests of downloads and
// manifest lookups, which learn of the loss through the engine.
func (s *session) cleanup() {
	select {
	case u := <-s.ready:
		s.finishUpload(u)
	default:
	}
	s.mu.Lock()
	ups := make([]*upload, 0, len(s.active))
	for _, u := range s.active {
		ups = append(ups, u)
	}
	reqs := s.reqs
	mreqs := s.mreqs
	s.reqs, s.mreqs, s.reqByIdx, s.queue = map[uint32]*chunkReq{}, map[uint32]*manifestReq{}, map[chunkKey]uint32{}, nil
	s.mu.Unlock()
	for _, u := range ups {
		s.finishUpload(u)
	}
	for _, r := range reqs {
		if r.buf != nil {
			s.e.bufs.put(r.buf)
		}
	}
	for _, mr := range mreqs {
		mr.done <- manifestResult{err: fmt.Errorf("connection to %s closed", s.sid)}
	}
}

// ---- sending ----

// send queues a control frame. It reports false if the session is closed.
func (s *session) send(m peerwire.Message) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	if len(s.ctrl) >= maxCtrlQueue {
		s.mu.Unlock()
		s.log.Warn("peer does not read its frames: dropping it", "queued", maxCtrlQueue)
		s.close()
		return false
	}
	s.ctrl = append(s.ctrl, m)
	s.mu.Unlock()
	notify(s.wake)
	return true
}

// writeLoop sends queued control frames first, then the current upload one
// piece at a time, so that requests and Haves are never stuck behind a
// large chunk.
func (s *session) writeLoop() {
	defer s.wg.Done()
	defer s.close()
	var (
		spare   []peerwire.Message
		cur     *upload
		readyAt time.Time // when cur's next piece may go, under the rate limit
		timer   = s.e.clock.NewTimer(time.Hour)
		// heldTimer: the next held upload's time is up (expireHeld).
		heldTimer = s.e.clock.NewTimer(time.Hour)
	)
	timer.Stop()
	defer timer.Stop()
	heldTimer.Stop()
	defer heldTimer.Stop()
	defer func() {
		if cur != nil {
			s.finishUpload(cur)
		}
	}()
	piece := s.e.piece
	var expired []*upload
	for {
		s.mu.Lock()
		batch := s.ctrl
		s.ctrl = spare[:0]
		var heldNext time.Time
		var heldOK bool
		expired, heldNext, heldOK = s.expireHeldLocked(s.e.clock.Now(), expired[:0])
		s.mu.Unlock()
		for _, u := range expired {
			s.e.met.uploadUnacked()
			s.finishUpload(u)
		}
		clear(expired)
		if len(batch) > 0 {
			written := s.bw.written
			_ = s.stream.SetWriteDeadline(time.Now().Add(writeTimeout))
			for _, m := range batch {
				if err := peerwire.Encode(s.bw, m); err != nil {
					s.writeFailed(err)
					return
				}
			}
			charge(s.e.pace, s.e.clock.Now(), int(s.bw.written-written))
		}
		clear(batch)
		spare = batch
		if cur == nil {
			select {
			case cur = <-s.ready:
			default:
			}
		}
		if cur != nil {
			if cur.canceled.Load() {
				s.finishUpload(cur)
				cur = nil
				continue
			}
			n := min(piece, len(cur.data)-cur.off)
			if (s.upLim != nil || s.e.pace != nil) && !cur.manifest {
				now := s.e.clock.Now()
				if readyAt.IsZero() {
					var d time.Duration
					if s.upLim != nil {
						d = s.upLim.ReserveN(now, n).DelayFrom(now)
						s.e.met.rateDelayed(dirUpload, d)
					}
					if s.e.pace != nil {
						d = max(d, s.e.pace.ReserveN(now, n).DelayFrom(now))
					}
					readyAt = now.Add(d)
				}
				if now.Before(readyAt) {
					if err := s.bw.Flush(); err != nil {
						s.writeFailed(err)
						return
					}
					timer.Reset(readyAt.Sub(now))
					select {
					case <-timer.C():
					case <-s.wake:
						timer.Stop()
					case <-s.ctx.Done():
						return
					}
					continue
				}
			}
			readyAt = time.Time{}
			if err := s.writePiece(cur, n); err != nil {
				s.writeFailed(err)
				return
			}
			if cur.manifest {
				charge(s.e.pace, s.e.clock.Now(), n) // sent unpaced, but it takes the link all the same
			}
			if cur.off == len(cur.data) {
				if !cur.manifest {
					// The resend window counts from when the chunk
					// has been sent: on a slow link that is long
					// after the request was accepted, and until then
					// nobody can fetch it from this peer's requester.
					s.e.claimUpload(cur.b, cur.digest, s.id, resend.Sent)
				}
				if !cur.manifest && cur.slot && s.acks {
					s.hold(cur)
				} else {
					s.finishUpload(cur)
				}
				cur = nil
			}
			continue
		}
		if err := s.bw.Flush(); err != nil {
			s.writeFailed(err)
			return
		}
		var expire <-chan time.Time
		if heldOK {
			heldTimer.Reset(heldNext.Sub(s.e.clock.Now()))
			expire = heldTimer.C()
		}
		select {
		case <-s.wake:
		case cur = <-s.ready:
		case <-expire:
		case <-s.ctx.Done():
			return
		}
		heldTimer.Stop()
	}
}

// hold keeps upload u's slot, written in full, until the remote says it
// received it (a Received frame), cancels it, or for writeTimeout. An upload is
// on the link, not done, when its bytes are in the stream's window and the
// kernel's buffers: a slot freed then lets the uploader take on more
// uploads than its link carries, and what it sends to a slow receiver
// (requests, Haves) waits behind them.
func (s *session) hold(u *upload) {
	u.heldUntil = s.e.clock.Now().Add(writeTimeout)
	s.mu.Lock()
	s.held = append(s.held, u)
	s.mu.Unlock()
}

// unhold takes the held upload of request id, if any, off the list and
// frees it.
func (s *session) unhold(id uint32) {
	s.mu.Lock()
	k := slices.IndexFunc(s.held, func(u *upload) bool { return u.req == id })
	var u *upload
	if k >= 0 {
		u = s.held[k]
		s.held = slices.Delete(s.held, k, k+1)
	}
	s.mu.Unlock()
	if u != nil {
		s.finishUpload(u)
	}
}

// expireHeldLocked takes the held uploads whose time is up at now off the
// list, appending them to expired for the caller to free once it has let
// go of s.mu, and returns when the next one's time is up.
func (s *session) expireHeldLocked(now time.Time, expired []*upload) (_ []*upload, next time.Time, ok bool) {
	k := 0
	for k < len(s.held) && !s.held[k].heldUntil.After(now) {
		k++
	}
	expired = append(expired, s.held[:k]...)
	s.held = slices.Delete(s.held, 0, k)
	if len(s.held) > 0 {
		next, ok = s.held[0].heldUntil, true
	}
	return expired, next, ok
}

func (s *session) writeFailed(err error) {
	if s.ctx.Err() == nil {
		s.log.Debug("write failed", "err", err)
	}
}

// writePiece sends the next n bytes of u.
func (s *session) writePiece(u *upload, n int) error {
	_ = s.stream.SetWriteDeadline(time.Now().Add(writeTimeout))
	p := u.data[u.off : u.off+n]
	var m peerwire.Message
	if u.manifest {
		m = peerwire.ManifestData{ReqID: u.req, Offset: uint32(u.off), Total: uint32(len(u.data)), Data: p}
	} else {
		m = peerwire.Data{ReqID: u.req, Offset: uint32(u.off), Total: uint32(len(u.data)), Payload: p}
	}
	if err := peerwire.Encode(s.bw, m); err != nil {
		return err
	}
	u.off += n
	if !u.manifest {
		s.e.met.addUploaded(n)
		if u.b != nil {
			u.b.uploaded.Add(uint64(n))
		}
	}
	return nil
}

// uploadLoop reads the accepted chunk requests from the store, in order,
// and hands them to the writer, one ahead of it.
func (s *session) uploadLoop() {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		var u *upload
		if len(s.queue) > 0 {
			u = s.queue[0]
			s.queue[0] = nil
			s.queue = s.queue[1:]
		}
		s.mu.Unlock()
		if u == nil {
			select {
			case <-s.upWake:
				continue
			case <-s.ctx.Done():
				return
			}
		}
		if u.canceled.Load() {
			s.finishUpload(u)
			continue
		}
		if !u.manifest && !s.readChunk(u) {
			continue
		}
		select {
		case s.ready <- u:
		case <-s.ctx.Done():
			s.finishUpload(u)
			return
		}
	}
}

// readChunk loads u's chunk and range; on failure it rejects the request.
func (s *session) readChunk(u *upload) bool {
	hint := s.e.cfg.PieceSize
	if u.b != nil {
		hint = u.b.chunkSize(u.digest, hint)
	}
	u.buf = s.e.bufs.get(hint)
	// The read ends with the session, or when the requester cancels: a
	// store that never answers (a hung disk, peer/byzantine.Stall) must
	// not hold the upload slot for good.
	ctx, stop := context.WithCancel(s.ctx)
	defer stop()
	s.mu.Lock()
	u.stopRead = stop
	s.mu.Unlock()
	if u.canceled.Load() {
		stop()
	}
	data, err := s.e.store.ReadChunk(ctx, u.digest, u.buf[:0])
	s.mu.Lock()
	u.stopRead = nil
	s.mu.Unlock()
	if err != nil && u.canceled.Load() && ctx.Err() != nil {
		s.finishUpload(u) // cancelled: nothing to answer
		return false
	}
	code := peerwire.RejectCode(0)
	switch {
	case err == nil && (u.start > uint32(len(data)) || u.end > uint32(len(data))):
		code = peerwire.RejectBadRequest
	case err == nil:
	case errors.Is(err, store.ErrNotFound), errors.Is(err, chunker.ErrDigestMismatch):
		code = peerwire.RejectNotFound
	default:
		if s.ctx.Err() == nil {
			s.log.Warn("reading a requested chunk failed", "chunk", u.digest, "err", err)
		}
		code = peerwire.RejectNotFound
	}
	if code != 0 {
		s.send(peerwire.Reject{ReqID: u.req, Code: code, Reason: "chunk " + code.String()})
		s.finishUpload(u)
		return false
	}
	if cap(data) != cap(u.buf) {
		s.e.bufs.put(u.buf) // the chunk did not fit; ReadChunk allocated
		u.buf = nil
	}
	end := uint32(len(data))
	if u.end != 0 {
		end = u.end
	}
	u.data = data[:end]
	u.off = int(u.start)
	return true
}

// finishUpload releases what u holds. It is safe to call more than once.
func (s *session) finishUpload(u *upload) {
	if !u.finished.CompareAndSwap(false, true) {
		return
	}
	switch {
	case u.slot && u.manifest:
		s.e.releaseManifestSlot()
	case u.slot:
		s.e.releaseSlot()
	}
	if u.buf != nil {
		s.e.bufs.put(u.buf)
		u.buf, u.data = nil, nil
	}
	s.mu.Lock()
	if s.active[u.req] == u {
		delete(s.active, u.req)
	}
	if u.manifest {
		s.manifestJobs--
	}
	s.mu.Unlock()
}

// ---- the download side ----

func (s *session) newReqIDLocked() uint32 {
	for {
		s.nextReq++
		id := s.nextReq
		if id == 0 {
			continue
		}
		if _, ok := s.reqs[id]; ok {
			continue
		}
		if _, ok := s.mreqs[id]; ok {
			continue
		}
		return id
	}
}

// requestChunk asks the remote for chunk idx of dl's blob. It reports false
// if the session is closed.
func (s *session) requestChunk(dl *download, idx int, c chunker.Chunk, flags peerwire.RequestFlags) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	key := chunkKey{dl, idx}
	if _, dup := s.reqByIdx[key]; dup {
		s.mu.Unlock()
		return true
	}
	id := s.newReqIDLocked()
	s.reqs[id] = &chunkReq{dl: dl, idx: idx, digest: c.Digest, size: int(c.Size), told: s.e.clock.Now()}
	s.reqByIdx[key] = id
	s.mu.Unlock()
	return s.send(peerwire.Request{ReqID: id, Chunk: c.Digest, Flags: flags})
}

// cancelChunk withdraws the request for chunk idx of dl's blob.
func (s *session) cancelChunk(dl *download, idx int) {
	s.mu.Lock()
	key := chunkKey{dl, idx}
	id, ok := s.reqByIdx[key]
	if ok {
		delete(s.reqByIdx, key)
		delete(s.reqs, id)
	}
	s.mu.Unlock()
	if ok {
		s.send(peerwire.Cancel{ReqID: id})
	}
}

// dropDownload forgets every request of dl (it ended).
func (s *session) dropDownload(dl *download) {
	var ids []uint32
	s.mu.Lock()
	for key, id := range s.reqByIdx {
		if key.dl == dl {
			delete(s.reqByIdx, key)
			delete(s.reqs, id)
			ids = append(ids, id)
		}
	}
	s.mu.Unlock()
	for _, id := range ids {
		s.send(peerwire.Cancel{ReqID: id})
	}
}

// getManifest asks the remote for blob's manifest and waits up to timeout
// for it. code is set if the remote rejected the request.
func (s *session) getManifest(ctx context.Context, blob chunker.Digest, timeout time.Duration) (*chunker.Manifest, peerwire.RejectCode, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, 0, fmt.Errorf("connection to %s closed", s.sid)
	}
	id := s.newReqIDLocked()
	mr := &manifestReq{blob: blob, done: make(chan manifestResult, 1)}
	s.mreqs[id] = mr
	s.mu.Unlock()
	s.send(peerwire.GetManifest{ReqID: id, Blob: blob})
	t := s.e.clock.NewTimer(timeout)
	defer t.Stop()
	forget := func() {
		s.mu.Lock()
		if s.mreqs[id] == mr {
			delete(s.mreqs, id)
		}
		s.mu.Unlock()
	}
	select {
	case r := <-mr.done:
		return r.m, r.code, r.err
	case <-t.C():
		forget()
		s.send(peerwire.Cancel{ReqID: id})
		return nil, 0, fmt.Errorf("no answer from %s within %v", s.sid, timeout)
	case <-ctx.Done():
		forget()
		return nil, 0, ctx.Err()
	}
}

// ---- receiving ----

// readLoop decodes frames until the stream ends or breaks the protocol.
func (s *session) readLoop() {
	for {
		msg, err := s.dec.Next()
		if err != nil {
			switch {
			case isViolation(err):
				s.e.penalize(s.id, reasonProtocol, err.Error())
				_ = s.stream.Reset()
			case err == io.EOF, s.ctx.Err() != nil:
			default:
				s.log.Debug("read failed", "err", err)
			}
			return
		}
		if err := s.dispatch(msg); err != nil {
			s.e.penalize(s.id, reasonProtocol, err.Error())
			_ = s.stream.Reset()
			return
		}
		if s.ctx.Err() != nil {
			return
		}
	}
}

// dispatch handles one frame. An error is a protocol violation that ends
// the session.
func (s *session) dispatch(msg peerwire.Message) error {
	switch m := msg.(type) {
	case peerwire.Request:
		s.onRequest(m)
	case peerwire.Cancel:
		s.mu.Lock()
		u := s.active[m.ReqID]
		var stop context.CancelFunc
		if u != nil {
			u.canceled.Store(true)
			stop = u.stopRead
		}
		s.mu.Unlock()
		if u != nil {
			if stop != nil {
				stop()
			}
			s.unhold(m.ReqID)
			notify(s.wake)
		}
	case peerwire.Received:
		s.unhold(m.ReqID)
	case peerwire.GetManifest:
		s.onGetManifest(m)
	case peerwire.Data:
		return s.onData(m)
	case peerwire.ManifestData:
		return s.onManifestData(m)
	case peerwire.Reject:
		return s.onReject(m)
	case peerwire.Interested:
		s.addRemoteInterest(m.Blob)
		s.e.onInterested(s, m.Blob)
	case peerwire.Bitfield:
		s.e.onBitfield(s, m)
	case peerwire.Have:
		s.e.onHave(s, m)
	case peerwire.Ping:
		s.send(peerwire.Pong{Nonce: m.Nonce})
	case peerwire.Pong:
	case peerwire.Hello:
		return errors.New("second Hello")
	}
	return nil
}

func (s *session) onRequest(m peerwire.Request) {
	reject := func(code peerwire.RejectCode, reason string) {
		s.send(peerwire.Reject{ReqID: m.ReqID, Code: code, Reason: reason})
	}
	if s.e.isBanned(s.id) {
		reject(peerwire.RejectBanned, "banned")
		return
	}
	if !s.e.store.Has(m.Chunk) {
		reject(peerwire.RejectNotFound, "chunk not held")
		return
	}
	var end uint32
	if m.Length != 0 {
		end = m.Offset + m.Length
	}
	b := s.e.blobForChunk(s, m.Chunk)
	s.mu.Lock()
	if _, dup := s.active[m.ReqID]; dup {
		s.mu.Unlock()
		reject(peerwire.RejectBadRequest, "request ID in use")
		return
	}
	if len(s.active) >= maxUploadsPerSession || !s.e.acquireSlot() {
		s.mu.Unlock()
		s.e.met.uploadBusy()
		reject(peerwire.RejectBusy, "no upload slot free")
		s.countFlood()
		return
	}
	if s.e.deferHoarder(s.id) {
		s.e.releaseSlot()
		s.mu.Unlock()
		s.e.met.uploadHoarder()
		reject(peerwire.RejectDeferred, "you pass on nothing: fetch it from the swarm")
		return
	}
	// Claim the chunk only once a slot is ours: a request refused for want
	// of a slot must not hold the chunk back from the next peer that asks.
	if !s.e.claimUpload(b, m.Chunk, s.id, resend.RequestKind(m.Flags&peerwire.RequestEscalated != 0)) {
		s.e.releaseSlot()
		s.mu.Unlock()
		s.e.met.uploadDeferred()
		reject(peerwire.RejectDeferred, "chunk just sent to another peer: fetch it from them")
		return
	}
	u := &upload{req: m.ReqID, digest: m.Chunk, start: m.Offset, end: end, b: b, slot: true}
	s.active[m.ReqID] = u
	s.queue = append(s.queue, u)
	s.mu.Unlock()
	notify(s.upWake)
}

// countFlood counts a request refused Busy; floodPerPenalty of them
// within a second count a violation.
func (s *session) countFlood() {
	now := s.e.clock.Now()
	if now.Sub(s.floodSince) > time.Second {
		s.floodSince, s.flooded = now, 0
	}
	if s.flooded++; s.flooded == floodPerPenalty {
		s.e.penalize(s.id, reasonFlood, fmt.Sprintf("%d chunk requests refused busy within a second", s.flooded))
	}
}

func (s *session) onGetManifest(m peerwire.GetManifest) {
	enc := s.e.manifestEncoding(m.Blob)
	if enc == nil {
		// The ask counts as interest: if this engine gets the manifest
		// later, its bitfield tells the asker at once (blob.setManifest).
		s.addRemoteInterest(m.Blob)
		s.send(peerwire.Reject{ReqID: m.ReqID, Code: peerwire.RejectNotFound, Reason: "manifest not held"})
		return
	}
	s.mu.Lock()
	if _, dup := s.active[m.ReqID]; dup || s.manifestJobs >= maxManifestUploads {
		s.mu.Unlock()
		s.send(peerwire.Reject{ReqID: m.ReqID, Code: peerwire.RejectBusy, Reason: "manifest upload in progress"})
		return
	}
	if !s.e.acquireManifestSlot() {
		s.mu.Unlock()
		s.send(peerwire.Reject{ReqID: m.ReqID, Code: peerwire.RejectBusy, Reason: "no manifest slot free"})
		return
	}
	u := &upload{req: m.ReqID, manifest: true, data: enc, slot: true}
	s.manifestJobs++
	s.active[m.ReqID] = u
	s.queue = append(s.queue, u)
	s.mu.Unlock()
	notify(s.upWake)
}

// onData adds a piece to the chunk request it answers. A piece that does
// not fit the request makes the chunk count as corrupt.
func (s *session) onData(m peerwire.Data) error {
	n := len(m.Payload)
	if s.downLim != nil && n > 0 {
		now := s.e.clock.Now()
		d := s.downLim.ReserveN(now, n).DelayFrom(now)
		if d > 0 {
			s.e.met.rateDelayed(dirDownload, d)
			t := s.e.clock.NewTimer(d)
			select {
			case <-t.C():
			case <-s.ctx.Done():
				t.Stop()
				return nil
			}
		}
	}
	s.mu.Lock()
	r := s.reqs[m.ReqID]
	s.mu.Unlock()
	if r == nil {
		return nil // cancelled: Data already in flight is discarded
	}
	origin := s.origin.Load()
	s.e.met.addDownloaded(n, origin)
	r.dl.b.addDownloaded(n, origin)
	if int(m.Total) != r.size || int(m.Offset) != r.got {
		s.mu.Lock()
		s.forgetReqLocked(m.ReqID, r)
		s.mu.Unlock()
		s.log.Warn("chunk data does not fit the request", "chunk", r.digest, "size", r.size, "total", m.Total, "offset", m.Offset, "have", r.got)
		if r.buf != nil {
			s.e.bufs.put(r.buf)
		}
		r.dl.post(s.ctx, evChunk{s: s, idx: r.idx, bad: true})
		return nil
	}
	if r.buf == nil {
		r.buf = s.e.bufs.get(r.size)
	}
	if n > 0 && &r.buf[r.got] != &m.Payload[0] { // not decoded in place (dataDst)
		copy(r.buf[r.got:], m.Payload)
	}
	r.got += n
	// Tell the scheduler the request is being answered, so that a chunk
	// that takes a while on a slow link does not time out. It counts time
	// from when a request became the oldest at this peer or last made
	// progress, so every quarter of the timeout is often enough; a fast
	// transfer posts nothing, nor does the frame that completes the chunk
	// (its ChunkReceived follows; the simulator does the same).
	if now := s.e.clock.Now(); r.got < r.size && now.Sub(r.told) >= s.e.cfg.Sched.RequestTimeout/progressEvery {
		r.told = now
		r.dl.post(s.ctx, evProgress{s: s, idx: r.idx})
	}
	if r.got < r.size {
		return nil
	}
	s.mu.Lock()
	current := s.reqs[m.ReqID] == r
	if current {
		s.forgetReqLocked(m.ReqID, r)
	}
	s.mu.Unlock()
	if !current {
		s.e.bufs.put(r.buf)
		return nil
	}
	if s.acks {
		s.send(peerwire.Received{ReqID: m.ReqID}) // the uploader's slot is free
	}
	s.e.queuePut(s.ctx, &putJob{dl: r.dl, s: s, idx: r.idx, digest: r.digest, data: r.buf, origin: origin})
	return nil
}

// dataDst is the Decoder's DataDst: the payload of a Data frame that
// continues a chunk request where onData expects it is read straight into
// the request's buffer, saving a copy of every byte received. A frame that
// does not fit goes to the Decoder's buffer, and onData deals with it.
func (s *session) dataDst(req, off, total uint32, n int) []byte {
	s.mu.Lock()
	r := s.reqs[req]
	s.mu.Unlock()
	if r == nil || int(total) != r.size || int(off) != r.got || n == 0 {
		return nil
	}
	if r.buf == nil {
		r.buf = s.e.bufs.get(r.size)
	}
	return r.buf[r.got : r.got+n]
}

func (s *session) forgetReqLocked(id uint32, r *chunkReq) {
	delete(s.reqs, id)
	key := chunkKey{r.dl, r.idx}
	if s.reqByIdx[key] == id {
		delete(s.reqByIdx, key)
	}
}

func (s *session) onManifestData(m peerwire.ManifestData) error {
	s.mu.Lock()
	mr := s.mreqs[m.ReqID]
	s.mu.Unlock()
	if mr == nil {
		return nil
	}
	if m.Total > chunker.MaxManifestBytes {
		return fmt.Errorf("manifest of %d bytes, limit %d", m.Total, chunker.MaxManifestBytes)
	}
	if mr.buf == nil {
		mr.buf = make([]byte, m.Total)
	}
	if int(m.Total) != len(mr.buf) || int(m.Offset) != mr.got {
		return fmt.Errorf("manifest piece at %d of %d does not follow %d of %d", m.Offset, m.Total, mr.got, len(mr.buf))
	}
	mr.got += copy(mr.buf[mr.got:], m.Data)
	if mr.got < len(mr.buf) {
		return nil
	}
	s.mu.Lock()
	current := s.mreqs[m.ReqID] == mr
	delete(s.mreqs, m.ReqID)
	s.mu.Unlock()
	if !current {
		return nil
	}
	man, err := chunker.DecodeManifest(mr.buf)
	if err == nil && man.Digest != mr.blob {
		err = fmt.Errorf("%w: manifest is for blob %s, not %s", chunker.ErrManifestInconsistent, man.Digest, mr.blob)
	}
	if err != nil {
		mr.done <- manifestResult{err: fmt.Errorf("%w: %w", errBadManifest, err)}
		return nil
	}
	mr.done <- manifestResult{m: man}
	return nil
}

var errBadManifest = errors.New("bad manifest")

func (s *session) onReject(m peerwire.Reject) error {
	if m.ReqID == 0 {
		s.log.Info("peer refused the session", "code", m.Code, "reason", m.Reason)
		s.close()
		return nil
	}
	s.mu.Lock()
	r := s.reqs[m.ReqID]
	if r != nil {
		s.forgetReqLocked(m.ReqID, r)
	}
	mr := s.mreqs[m.ReqID]
	if mr != nil {
		delete(s.mreqs, m.ReqID)
	}
	s.mu.Unlock()
	switch {
	case r != nil:
		reason := sched.FailError
		switch m.Code {
		case peerwire.RejectBusy:
			reason = sched.FailBusy
		case peerwire.RejectDeferred:
			reason = sched.FailDeferred
		case peerwire.RejectNotFound:
			reason = sched.FailNotFound
			// Requests go only to peers that advertise the chunk.
			if s.notFound++; s.notFound%liesPerPenalty == 0 {
				s.e.penalize(s.id, reasonLiar, fmt.Sprintf("%d chunks it advertised were not found", s.notFound))
			}
		}
		if r.buf != nil {
			s.e.bufs.put(r.buf)
		}
		r.dl.post(s.ctx, evFailed{s: s, idx: r.idx, reason: reason})
	case mr != nil:
		mr.done <- manifestResult{code: m.Code, err: fmt.Errorf("%s rejected the manifest request: %s", s.sid, m.Code)}
	}
	return nil
}
