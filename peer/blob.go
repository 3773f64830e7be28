package peer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/wire/peerwire"
	"github.com/p2pd/p2pd/internal/wire/trackerwire"
	"github.com/p2pd/p2pd/peer/resend"
	"github.com/p2pd/p2pd/peer/sched"
	"github.com/p2pd/p2pd/peer/store"
	"github.com/p2pd/p2pd/tracker/trackerclient"
)

// BlobInfo describes a blob the engine seeds or fetches.
type BlobInfo struct {
	Blob chunker.Digest `json:"blob"`
	// ManifestID is the manifest's own digest; zero until the manifest
	// is known.
	ManifestID chunker.Digest `json:"manifest_id"`
	// Size and Chunks are zero until the manifest is known.
	Size   int64 `json:"size"`
	Chunks int   `json:"chunks"`
	// Have and HaveBytes count the chunks held.
	Have      int   `json:"have"`
	HaveBytes int64 `json:"have_bytes"`
	// Complete: every chunk is held and the blob verified.
	Complete bool `json:"complete"`
	// Seeding: announced to the tracker as complete and served.
	Seeding bool `json:"seeding"`
	// Downloading: a Pull is running.
	Downloading bool `json:"downloading"`
	// Peers is the number of peers the download is fetching from.
	Peers int `json:"peers"`
	// Uploaded, Downloaded and DownloadedFromOrigins count payload bytes
	// of this blob since the engine started, as announced.
	Uploaded              uint64 `json:"uploaded"`
	Downloaded            uint64 `json:"downloaded"`
	DownloadedFromOrigins uint64 `json:"downloaded_from_origins"`
}

// blob is the engine's state for one blob digest. The fields under mu
// change as chunks arrive; dl and ann are guarded by Engine.mu.
type blob struct {
	e      *Engine
	digest chunker.Digest

	uploaded, downloaded, fromOrigins atomic.Uint64

	mu         sync.Mutex
	m          *chunker.Manifest // nil until known
	id         chunker.Digest
	enc        []byte // canonical encoding, served to GetManifest
	numChunks  uint32 // from the manifest, or the tracker's swarm before it
	have       *peerwire.Bitset
	haveCount  int
	haveBytes  int64
	complete   bool
	seeding    bool
	index      map[chunker.Digest]int32   // first index of each chunk
	dups       map[chunker.Digest][]int32 // every index of chunks listed more than once
	interested map[*session]struct{}      // peers that sent Interested for it
	// round is the first round of its chunks' uploads (resend.Round),
	// made on the first claim; the pointer is guarded by mu, the round by
	// Engine.sentMu.
	round *resend.Round

	// Guarded by Engine.mu.
	dl  *download
	ann *announcer
}

func newBlob(e *Engine, d chunker.Digest) *blob {
	return &blob{e: e, digest: d, interested: make(map[*session]struct{})}
}

// setManifest records m and which of its chunks the store holds, sends
// the bitfield to the peers interested in the blob, and returns the held
// chunks as a scheduler bitset. sessions are the engine's sessions, to
// pick up peers that said Interested before the manifest was known.
func (b *blob) setManifest(m *chunker.Manifest, complete bool, sessions []*session) (sched.Bitset, error) {
	enc, err := m.MarshalBinary()
	if err != nil {
		return sched.Bitset{}, err
	}
	n := len(m.Chunks)
	have := peerwire.NewBitset(n)
	sb := sched.NewBitset(n)
	var bytes int64
	count := 0
	for i, c := range m.Chunks {
		if complete || b.e.store.Has(c.Digest) {
			have.Set(i)
			sb.Set(i)
			bytes += int64(c.Size)
			count++
		}
	}
	index := make(map[chunker.Digest]int32, n)
	var dups map[chunker.Digest][]int32
	for i, c := range m.Chunks {
		if first, ok := index[c.Digest]; ok {
			if dups == nil {
				dups = make(map[chunker.Digest][]int32)
			}
			if len(dups[c.Digest]) == 0 {
				dups[c.Digest] = []int32{first}
			}
			dups[c.Digest] = append(dups[c.Digest], int32(i))
			continue
		}
		index[c.Digest] = int32(i)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.m, b.id, b.enc = m, chunker.Sum(enc), enc
	b.numChunks = uint32(n)
	b.have, b.haveCount, b.haveBytes = have, count, bytes
	b.complete = count == n && complete
	b.index, b.dups = index, dups
	for _, s := range sessions {
		if s.hasRemoteInterest(b.digest) {
			b.interested[s] = struct{}{}
		}
	}
	bf := have.Bitfield(b.digest)
	for s := range b.interested {
		s.send(bf)
	}
	return sb, nil
}

// addRemoteInterest records that the remote wants blob d (it said so, or
// asked for its manifest), up to maxRemoteInterest blobs.
func (s *session) addRemoteInterest(d chunker.Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, known := s.remoteInterest[d]; !known && len(s.remoteInterest) < maxRemoteInterest {
		s.remoteInterest[d] = struct{}{}
	}
}

func (s *session) hasRemoteInterest(d chunker.Digest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.remoteInterest[d]
	return ok
}

// addInterested records that s wants the blob and sends it the bitfield
// if the manifest is known.
func (b *blob) addInterested(s *session) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.interested[s] = struct{}{}
	if b.have != nil {
		s.send(b.have.Bitfield(b.digest))
	}
}

func (b *blob) removeInterested(s *session) {
	b.mu.Lock()
	delete(b.interested, s)
	b.mu.Unlock()
}

// markHave records chunk i as held and tells the interested peers.
func (b *blob) markHave(i int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.have == nil || i >= b.have.Len() || b.have.Has(i) {
		return
	}
	b.have.Set(i)
	b.haveCount++
	b.haveBytes += int64(b.m.Chunks[i].Size)
	msg := peerwire.Have{Blob: b.digest, Index: uint32(i)}
	for s := range b.interested {
		s.send(msg)
	}
}

func (b *blob) setComplete() {
	b.mu.Lock()
	b.complete, b.seeding = true, true
	b.mu.Unlock()
}

func (b *blob) setNumChunks(n uint32) {
	b.mu.Lock()
	if b.m == nil {
		b.numChunks = n
	}
	b.mu.Unlock()
}

// manifest returns the manifest, or nil while it is unknown.
func (b *blob) manifest() *chunker.Manifest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.m
}

// completeManifest returns the manifest if the blob is complete.
func (b *blob) completeManifest() *chunker.Manifest {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.complete {
		return nil
	}
	return b.m
}

// completeManifestID returns the manifest's ID if the blob is complete.
func (b *blob) completeManifestID() chunker.Digest {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.complete {
		return chunker.Digest{}
	}
	return b.id
}

func (b *blob) isComplete() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.complete
}

// hasChunk reports whether chunk d is part of the blob.
func (b *blob) hasChunk(d chunker.Digest) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.index[d]
	return ok
}

// sendRound returns chunk d's index in the blob (-1 if the manifest is not
// known or lacks it) and the blob's upload round, which it makes if need
// be (nil without a manifest): see Engine.claimUpload.
func (b *blob) sendRound(d chunker.Digest) (int, *resend.Round) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		return -1, nil
	}
	if b.round == nil {
		b.round = resend.NewRound(len(b.m.Chunks))
		for _, idx := range b.dups {
			for _, i := range idx[1:] {
				b.round.Skip(int(i))
			}
		}
	}
	i, ok := b.index[d]
	if !ok {
		return -1, b.round
	}
	return int(i), b.round
}

// indexes returns every index of chunk d in the blob.
func (b *blob) indexes(d chunker.Digest) []int32 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if dup := b.dups[d]; dup != nil {
		return dup
	}
	if i, ok := b.index[d]; ok {
		return []int32{i}
	}
	return nil
}

// chunkSize returns the size of chunk d, or def if it is not in the blob.
func (b *blob) chunkSize(d chunker.Digest, def int) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if i, ok := b.index[d]; ok {
		return int(b.m.Chunks[i].Size)
	}
	return def
}

func (b *blob) addDownloaded(n int, origin bool) {
	b.downloaded.Add(uint64(n))
	if origin {
		b.fromOrigins.Add(uint64(n))
	}
}

// announceState is the announcers' view of the blob.
func (b *blob) announceState(context.Context) (trackerclient.State, error) {
	addrs := b.e.announceAddrs()
	want := b.e.freeOutbound() // before b.mu: the engine's lock comes first
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.numChunks == 0 {
		return trackerclient.State{}, errors.New("chunk count not known yet")
	}
	// Read fromOrigins first: both only grow, so Downloaded stays ≥ it.
	fromOrigins := b.fromOrigins.Load()
	st := trackerclient.State{
		Addrs:                 addrs,
		NumChunks:             b.numChunks,
		Complete:              b.complete,
		Uploaded:              b.uploaded.Load(),
		Downloaded:            b.downloaded.Load(),
		DownloadedFromOrigins: fromOrigins,
		// The engine dials no more than its free outbound slots, and a
		// complete blob's announcer none (see startAnnouncerLocked).
		NumWant: trackerwire.WantPeers(want),
	}
	if b.complete {
		*st.NumWant = 0
	}
	switch {
	case b.complete:
	case b.have != nil:
		st.Bitfield = trackerwire.Bitfield(b.have.Bytes())
	default:
		st.Bitfield = trackerwire.NewBitfield(b.numChunks)
	}
	return st, nil
}

func (b *blob) info() BlobInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	bi := BlobInfo{
		Blob:                  b.digest,
		ManifestID:            b.id,
		Have:                  b.haveCount,
		HaveBytes:             b.haveBytes,
		Complete:              b.complete,
		Seeding:               b.seeding,
		Uploaded:              b.uploaded.Load(),
		Downloaded:            b.downloaded.Load(),
		DownloadedFromOrigins: b.fromOrigins.Load(),
	}
	if b.m != nil {
		bi.Size, bi.Chunks = b.m.Size, len(b.m.Chunks)
	}
	return bi
}

// ---- announcers ----

// announcer runs a trackerclient.Announcer for one blob.
type announcer struct {
	a      *trackerclient.Announcer
	cancel context.CancelFunc
	done   chan struct{}
}

// stop ends the announcer, which then sends its "stopped" announce.
func (a *announcer) stop() { a.cancel() }

// wait waits for the announcer to end.
func (a *announcer) wait(ctx context.Context) error {
	select {
	case <-a.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startAnnouncerLocked starts b's announcer unless it runs already; e.mu
// is held.
func (e *Engine) startAnnouncerLocked(b *blob) error {
	if b.ann != nil {
		b.ann.a.Trigger()
		return nil
	}
	if e.state != stateStarted {
		return ErrClosed
	}
	id := trackerclient.Identity{
		Blob: b.digest, PeerID: e.selfID, Role: e.cfg.Role, Zone: e.cfg.Zone, Rack: e.cfg.Rack,
	}
	if e.cfg.Role == trackerwire.RoleOrigin {
		// An origin made the manifest from the bytes it was pushed; the
		// tracker passes its ID on to pullers (download.verify).
		id.Manifest = b.completeManifestID()
	}
	a, err := trackerclient.NewAnnouncer(id, e.cfg.Announce, trackerclient.AnnouncerDeps{
		Client: e.tracker,
		State:  b.announceState,
		OnResponse: func(_ context.Context, resp *trackerwire.AnnounceResponse) {
			if !b.isComplete() {
				e.connectPeers(resp.Peers)
			}
		},
		Clock:  e.clock,
		Logger: e.log,
	})
	if err != nil {
		return fmt.Errorf("peer: announcer for %s: %w", b.digest, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	an := &announcer{a: a, cancel: cancel, done: make(chan struct{})}
	b.ann = an
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer close(an.done)
		_ = a.Run(ctx)
	}()
	return nil
}

// ---- peers' blob messages ----

func (e *Engine) lookupBlob(d chunker.Digest) (*blob, *download) {
	e.mu.Lock()
	defer e.mu.Unlock()
	b := e.blobs[d]
	if b == nil {
		return nil, nil
	}
	return b, b.dl
}

func (e *Engine) onInterested(s *session, d chunker.Digest) {
	if b, _ := e.lookupBlob(d); b != nil {
		b.addInterested(s)
	}
}

func (e *Engine) onBitfield(s *session, m peerwire.Bitfield) {
	_, dl := e.lookupBlob(m.Blob)
	if dl == nil {
		return
	}
	if !dl.fetching.Load() {
		dl.manifestHolder(s)
		return
	}
	if int(m.NumChunks) != dl.n {
		s.log.Debug("bitfield has the wrong chunk count", "blob", m.Blob, "chunks", m.NumChunks, "want", dl.n)
		return
	}
	bs, err := peerwire.BitsetFromBitfield(m)
	if err != nil {
		return // the decoder checked it already
	}
	sb := sched.NewBitset(dl.n)
	for i := bs.Next(0); i >= 0; i = bs.Next(i + 1) {
		sb.Set(i)
	}
	dl.post(s.ctx, evBitfield{s: s, have: sb})
}

func (e *Engine) onHave(s *session, m peerwire.Have) {
	_, dl := e.lookupBlob(m.Blob)
	if dl == nil || !dl.fetching.Load() || int(m.Index) >= dl.n {
		return
	}
	dl.post(s.ctx, evHave{s: s, idx: int(m.Index)})
}

// manifestEncoding returns the manifest of blob d to serve, or nil.
func (e *Engine) manifestEncoding(d chunker.Digest) []byte {
	b, _ := e.lookupBlob(d)
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.enc
}

// blobForChunk finds the blob, among those s said it wants, that chunk d
// belongs to, to count the upload against it.
func (e *Engine) blobForChunk(s *session, d chunker.Digest) *blob {
	s.mu.Lock()
	wants := make([]chunker.Digest, 0, len(s.remoteInterest))
	for w := range s.remoteInterest {
		wants = append(wants, w)
	}
	s.mu.Unlock()
	for _, w := range wants {
		if b, _ := e.lookupBlob(w); b != nil && b.hasChunk(d) {
			return b
		}
	}
	return nil
}

// ---- seeding, listing, removing ----

// Seed makes the engine serve the blob m describes and announce it to the
// tracker as complete, with Config.Role. The store must hold every chunk
// already (else ErrIncomplete); Seed pins m so that the chunks are not
// evicted, which also makes the engine seed it again after a restart.
// Seeding a blob that is seeded already is a no-op.
func (e *Engine) Seed(ctx context.Context, m *chunker.Manifest) error {
	if m == nil {
		return fmt.Errorf("%w: seed: nil manifest", ErrBadConfig)
	}
	if err := m.Validate(); err != nil {
		return fmt.Errorf("peer: seed %s: %w", m.Digest, err)
	}
	id, err := m.ID()
	if err != nil {
		return fmt.Errorf("peer: seed %s: %w", m.Digest, err)
	}
	e.mu.Lock()
	err = e.runningLocked()
	e.mu.Unlock()
	if err != nil {
		return err
	}
	missing := 0
	for _, c := range m.Chunks {
		if !e.store.Has(c.Digest) {
			missing++
		}
	}
	if missing > 0 {
		return fmt.Errorf("%w: %s: %d of %d chunks are not in the store", ErrIncomplete, m.Digest, missing, len(m.Chunks))
	}
	if err := e.store.Pin(ctx, m); err != nil {
		return fmt.Errorf("peer: seed %s: %w", m.Digest, err)
	}
	return e.seedPinned(m, id)
}

// seedPinned registers pinned, complete manifest m and starts announcing it.
func (e *Engine) seedPinned(m *chunker.Manifest, id chunker.Digest) error {
	e.mu.Lock()
	if err := e.runningLocked(); err != nil {
		e.mu.Unlock()
		return err
	}
	b := e.blobs[m.Digest]
	if b != nil {
		b.mu.Lock()
		cur, complete := b.id, b.complete
		b.mu.Unlock()
		switch {
		case complete && cur == id:
			e.mu.Unlock()
			return nil
		case complete:
			e.mu.Unlock()
			return fmt.Errorf("peer: seed %s: seeded already with manifest %s, not %s", m.Digest, cur, id)
		case b.dl != nil:
			e.mu.Unlock()
			return fmt.Errorf("peer: seed %s: a pull of it is running", m.Digest)
		}
	} else {
		b = newBlob(e, m.Digest)
		e.blobs[m.Digest] = b
	}
	e.mu.Unlock()
	sessions, _ := e.sessionList()
	if _, err := b.setManifest(m, true, sessions); err != nil {
		return fmt.Errorf("peer: seed %s: %w", m.Digest, err)
	}
	b.setComplete()
	e.mu.Lock()
	err := e.startAnnouncerLocked(b)
	e.mu.Unlock()
	if err != nil {
		return err
	}
	e.log.Info("seeding", "blob", m.Digest, "manifest", id, "size", m.Size, "chunks", len(m.Chunks), "role", e.cfg.Role)
	return nil
}

// reseed seeds every complete pinned manifest in the store, and lists the
// incomplete ones.
func (e *Engine) reseed(ctx context.Context) error {
	for _, mi := range e.store.Manifests() {
		if !mi.Pinned {
			continue
		}
		m, err := e.store.Manifest(ctx, mi.ID)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			e.log.Warn("cannot read a pinned manifest", "manifest", mi.ID, "err", err)
			continue
		}
		missing := 0
		for _, c := range m.Chunks {
			if !e.store.Has(c.Digest) {
				missing++
			}
		}
		if missing == 0 {
			if err := e.seedPinned(m, mi.ID); err != nil {
				e.log.Warn("cannot seed a pinned manifest", "manifest", mi.ID, "blob", m.Digest, "err", err)
			}
			continue
		}
		e.log.Warn("pinned blob is incomplete; Pull it to repair it", "blob", m.Digest, "manifest", mi.ID, "missing", missing, "chunks", len(m.Chunks))
		e.mu.Lock()
		if e.blobs[m.Digest] != nil {
			e.mu.Unlock()
			continue
		}
		b := newBlob(e, m.Digest)
		e.blobs[m.Digest] = b
		e.mu.Unlock()
		if _, err := b.setManifest(m, false, nil); err != nil {
			e.log.Warn("bad pinned manifest", "manifest", mi.ID, "err", err)
		}
	}
	return nil
}

// Blobs lists the blobs the engine seeds or fetches, ordered by digest.
func (e *Engine) Blobs() []BlobInfo {
	e.mu.Lock()
	blobs := make([]*blob, 0, len(e.blobs))
	peers := make(map[*blob]*download)
	for _, b := range e.blobs {
		blobs = append(blobs, b)
		if b.dl != nil {
			peers[b] = b.dl
		}
	}
	e.mu.Unlock()
	out := make([]BlobInfo, 0, len(blobs))
	for _, b := range blobs {
		bi := b.info()
		if dl := peers[b]; dl != nil {
			bi.Downloading = true
			bi.Peers = dl.progress().Peers
		}
		out = append(out, bi)
	}
	slices.SortFunc(out, func(a, b BlobInfo) int { return strings.Compare(a.Blob.Hex(), b.Blob.Hex()) })
	return out
}

// Manifest returns blob d's manifest as soon as the engine knows it
// (verified against the ID the origins vouched for), also while the blob
// downloads; nil while it is unknown. ErrNotFound if the engine holds no
// such blob. With the store's Has and ReadChunk it lets a caller read a
// blob's chunks in order as they arrive.
func (e *Engine) Manifest(d chunker.Digest) (*chunker.Manifest, error) {
	b, _ := e.lookupBlob(d)
	if b == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, d)
	}
	return b.manifest(), nil
}

// Status returns what the engine knows of blob d, or ErrNotFound.
func (e *Engine) Status(d chunker.Digest) (BlobInfo, error) {
	b, dl := e.lookupBlob(d)
	if b == nil {
		return BlobInfo{}, fmt.Errorf("%w: %s", ErrNotFound, d)
	}
	bi := b.info()
	if dl != nil {
		bi.Downloading = true
		bi.Peers = dl.progress().Peers
	}
	return bi, nil
}

// Remove stops fetching and seeding blob d: a Pull of it fails with
// ErrRemoved, its announcer sends "stopped", and its manifest is unpinned
// and deleted from the store, so that its chunks become evictable (chunks
// other pinned manifests reference stay). ErrNotFound if the engine holds
// no such blob.
func (e *Engine) Remove(ctx context.Context, d chunker.Digest) error {
	e.mu.Lock()
	if err := e.runningLocked(); err != nil {
		e.mu.Unlock()
		return err
	}
	b := e.blobs[d]
	if b == nil {
		e.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNotFound, d)
	}
	delete(e.blobs, d)
	dl, ann := b.dl, b.ann
	b.ann = nil
	e.mu.Unlock()
	if dl != nil {
		dl.abort(ErrRemoved)
		select {
		case <-dl.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if ann != nil {
		ann.stop()
		if err := ann.wait(ctx); err != nil {
			return err
		}
	}
	b.mu.Lock()
	id := b.id
	b.seeding = false
	b.mu.Unlock()
	if !id.IsZero() {
		if err := e.store.Unpin(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("peer: remove %s: %w", d, err)
		}
		if err := e.store.DeleteManifest(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("peer: remove %s: %w", d, err)
		}
	}
	e.log.Info("removed blob", "blob", d, "manifest", id)
	return nil
}
