package origin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/httpx"
	"github.com/p2pd/p2pd/internal/wire/originwire"
	"github.com/p2pd/p2pd/peer/store"
)

// stored is the outcome of storing a blob, whoever sent it: the answer a
// push gets (status, and the blob or the error code and message) and the
// result label it is counted under.
type stored struct {
	status    int
	result    string
	info      originwire.BlobInfo // if ok
	code, msg string              // if not
}

func (o stored) ok() bool { return o.status == http.StatusOK || o.status == http.StatusCreated }

func failed(status int, result, code, msg string) stored {
	return stored{status: status, result: result, code: code, msg: msg}
}

// write answers a push with o.
func (o stored) write(w http.ResponseWriter) {
	if o.ok() {
		writeJSON(w, o.status, &o.info)
		return
	}
	writeError(w, o.status, o.code, o.msg)
}

// Error makes a failed outcome an error, for the image routes.
func (o stored) Error() string { return o.code + ": " + o.msg }

func (s *Server) handlePush(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	defer func() { s.metrics.duration.Observe(time.Since(start).Seconds()) }()
	if !s.auth.Allow(w, r, pushRule) {
		s.metrics.pushes.WithLabelValues(resultUnauthorized).Inc()
		return
	}
	expected, err := expectedDigest(r)
	if err != nil {
		s.metrics.pushes.WithLabelValues(resultBadRequest).Inc()
		writeError(w, http.StatusBadRequest, originwire.CodeBadDigest, err.Error())
		return
	}
	limit := s.cfg.MaxBlobSize
	if limit > 0 && r.ContentLength > limit {
		s.metrics.pushes.WithLabelValues(resultTooLarge).Inc()
		writeError(w, http.StatusRequestEntityTooLarge, originwire.CodeTooLarge,
			fmt.Sprintf("blob is %d bytes, the limit is %d", r.ContentLength, limit))
		return
	}
	var body io.Reader = r.Body
	if limit > 0 {
		// Given the server's own writer, MaxBytesReader also makes it
		// close the connection rather than drain the rest of the body.
		body = http.MaxBytesReader(httpx.Underlying(w), r.Body, limit)
	}
	rc := http.NewResponseController(w)
	br := &bodyReader{r: body, rc: rc, stall: s.cfg.StallTimeout, bytes: s.metrics.pushBytes}
	bodyDone := func() {
		if s.cfg.StallTimeout > 0 {
			// The connection's reader may wait for the next request from
			// now on; it must not time out while the push commits and
			// seeds.
			_ = rc.SetReadDeadline(time.Time{})
		}
	}
	s.storeBlob(r.Context(), br, expected, r.RemoteAddr, bodyDone).write(w)
}

// storeBlob chunks and stores the blob body streams, checks it against
// expected (if not nil), pins its manifest and seeds it: the work of a
// push, which the image routes share to ingest blobs from upstream
// registries. It does no authorization: its callers do. It counts the
// outcome. bodyDone, if not nil, is called once the body is read. A blob
// that fails leaves nothing behind (see upload).
func (s *Server) storeBlob(ctx context.Context, body io.Reader, expected *chunker.Digest, remote string, bodyDone func()) stored {
	s.ops.add()
	defer s.ops.done()
	cr := &countReader{r: body}
	up := s.newUpload()
	m, err := s.chunker.Split(ctx, cr, func(c chunker.Chunk, b []byte) error { return up.put(ctx, c, b) })
	if bodyDone != nil {
		bodyDone()
	}
	// From here on the blob is committed, or rolled back, even if the
	// client goes away.
	bg := context.WithoutCancel(ctx)
	var out stored
	switch {
	case err != nil:
		deleted := up.rollback(bg)
		out = s.storeFailed(ctx, remote, err, cr.n, deleted)
	case expected != nil && *expected != m.Digest:
		deleted := up.rollback(bg)
		s.log.WarnContext(ctx, "push refused: digest mismatch", "remote", remote, "blob", m.Digest,
			"expected", *expected, "size", m.Size, "rolled_back_chunks", deleted)
		out = failed(http.StatusBadRequest, resultDigestMismatch, originwire.CodeDigestMismatch,
			fmt.Sprintf("the pushed %d bytes hash to %s, expected %s; nothing was kept", m.Size, m.Digest, *expected))
	default:
		out = s.commit(ctx, up, m)
	}
	s.metrics.pushes.WithLabelValues(out.result).Inc()
	return out
}

// countReader counts the bytes read.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// storeFailed is the outcome of a blob whose body could not be chunked
// and stored. The upload is rolled back already.
func (s *Server) storeFailed(ctx context.Context, remote string, err error, read int64, deleted int) stored {
	log := s.log.With("remote", remote, "read", read, "rolled_back_chunks", deleted, "err", err)
	var tooLarge *http.MaxBytesError
	var pe *putError
	switch {
	case errors.As(err, &tooLarge):
		log.InfoContext(ctx, "push refused: over the size limit")
		return failed(http.StatusRequestEntityTooLarge, resultTooLarge, originwire.CodeTooLarge,
			fmt.Sprintf("blob is over the limit of %d bytes; nothing was kept", tooLarge.Limit))
	case errors.Is(err, chunker.ErrManifestTooLarge):
		log.InfoContext(ctx, "push refused: too many chunks")
		return failed(http.StatusRequestEntityTooLarge, resultTooLarge, originwire.CodeTooLarge, err.Error()+"; nothing was kept")
	case ctx.Err() != nil:
		log.InfoContext(ctx, "push aborted: client gone")
		return failed(http.StatusBadRequest, resultAborted, originwire.CodeBadRequest, "push aborted; nothing was kept")
	case errors.As(err, &pe):
		switch {
		case errors.Is(err, store.ErrCapacity), errors.Is(err, store.ErrNoSpace):
			log.WarnContext(ctx, "push failed: store full")
			return failed(http.StatusInsufficientStorage, resultNoSpace, originwire.CodeInsufficientStorage, err.Error()+"; nothing was kept")
		case errors.Is(err, store.ErrClosed):
			return failed(http.StatusServiceUnavailable, resultError, originwire.CodeUnavailable, "the store is closed; nothing was kept")
		}
		log.ErrorContext(ctx, "push failed: storing a chunk")
		return failed(http.StatusInternalServerError, resultError, originwire.CodeInternal, "storing a chunk failed; nothing was kept")
	}
	// Anything else is the body failing: it ended early, the connection
	// broke, or it stalled.
	log.InfoContext(ctx, "push aborted: reading the body failed")
	return failed(http.StatusBadRequest, resultAborted, originwire.CodeBadRequest,
		fmt.Sprintf("reading the body failed after %d bytes: %v; nothing was kept", read, err))
}

// commit stores and pins the manifest of a complete, verified upload, then
// seeds the blob. Seeding stops if ctx ends; the rest goes on.
func (s *Server) commit(ctx context.Context, up *upload, m *chunker.Manifest) stored {
	seedCtx := ctx
	ctx = context.WithoutCancel(ctx)
	unlock := s.locks.lock(m.Digest)
	defer unlock()
	id, err := m.ID()
	if err != nil { // cannot happen: Split makes valid manifests
		up.rollback(ctx)
		s.log.ErrorContext(ctx, "push: invalid manifest", "blob", m.Digest, "err", err)
		return failed(http.StatusInternalServerError, resultError, originwire.CodeInternal, "the manifest is invalid")
	}
	s.mu.Lock()
	old, exists := s.blobs[m.Digest]
	s.mu.Unlock()

	code, result := http.StatusCreated, resultCreated
	info := blobInfo(m, id)
	switch {
	case exists && old.ManifestDigest != id:
		// Stored before under other chunk sizes: that copy stays the one
		// served, and this one goes.
		deleted := up.rollback(ctx)
		sm, err := s.store.Manifest(ctx, old.ManifestDigest)
		if err != nil {
			return s.storeFailure(ctx, "reading the stored manifest", err)
		}
		s.log.InfoContext(ctx, "push of a stored blob under other chunk sizes: keeping the stored copy",
			"blob", m.Digest, "manifest", old.ManifestDigest, "rolled_back_chunks", deleted)
		m, info, code, result = sm, old, http.StatusOK, resultExists
	default:
		had, pinned := s.manifestState(id)
		if exists {
			code, result = http.StatusOK, resultExists
		}
		if err := s.pin(ctx, m, id); err != nil {
			// Undo only what this push did.
			if !pinned {
				if uerr := s.store.Unpin(ctx, id); uerr != nil && !errors.Is(uerr, store.ErrNotFound) {
					s.log.WarnContext(ctx, "push: cannot undo pin", "manifest", id, "err", uerr)
				}
			}
			if !had {
				if derr := s.store.DeleteManifest(ctx, id); derr != nil && !errors.Is(derr, store.ErrNotFound) {
					s.log.WarnContext(ctx, "push: cannot undo manifest", "manifest", id, "err", derr)
				}
			}
			if exists {
				up.commit() // its chunks belong to the stored blob
			} else {
				up.rollback(ctx)
			}
			out := s.storeFailure(ctx, "storing the manifest", err)
			out.result = resultNoSpaceOr(err)
			return out
		}
		up.commit()
		s.mu.Lock()
		s.blobs[m.Digest] = info
		s.mu.Unlock()
		if !exists {
			s.log.InfoContext(ctx, "blob stored", "blob", m.Digest, "manifest", id, "size", m.Size, "chunks", len(m.Chunks))
		}
	}

	if s.seeder != nil {
		if err := s.seeder.Seed(seedCtx, m); err != nil {
			s.log.ErrorContext(ctx, "seeding failed", "blob", m.Digest, "manifest", info.ManifestDigest, "err", err)
			return failed(http.StatusInternalServerError, resultSeedFailed, originwire.CodeSeedFailed,
				fmt.Sprintf("blob %s is stored, but seeding it failed (push again to retry): %v", m.Digest, err))
		}
	}
	return stored{status: code, result: result, info: info}
}

// pin stores and pins m, then checks that every chunk it needs is still in
// the store: under capacity pressure the store may have evicted a chunk of
// the push before the pin protected it.
func (s *Server) pin(ctx context.Context, m *chunker.Manifest, id chunker.Digest) error {
	if _, err := s.store.PutManifest(ctx, m); err != nil {
		return err
	}
	if err := s.store.Pin(ctx, m); err != nil {
		return err
	}
	if i := s.missingChunk(m); i >= 0 {
		return missingChunkError(m, i)
	}
	return nil
}

func resultNoSpaceOr(err error) string {
	if errors.Is(err, store.ErrCapacity) || errors.Is(err, store.ErrNoSpace) {
		return resultNoSpace
	}
	return resultError
}

// expectedDigest returns the digest a push names, in the query or the
// header, or nil.
func expectedDigest(r *http.Request) (*chunker.Digest, error) {
	q := r.URL.Query()[originwire.QueryDigest]
	h := r.Header.Values(originwire.HeaderExpectedDigest)
	if len(q) > 1 || len(h) > 1 {
		return nil, fmt.Errorf("%w: expected digest given more than once", chunker.ErrBadDigest)
	}
	var d *chunker.Digest
	for _, v := range append(q, h...) {
		p, err := chunker.ParseDigest(v)
		if err != nil {
			return nil, fmt.Errorf("expected digest: %w", err)
		}
		if d != nil && *d != p {
			return nil, fmt.Errorf("%w: the %s query parameter (%s) and the %s header (%s) disagree",
				chunker.ErrBadDigest, originwire.QueryDigest, *d, originwire.HeaderExpectedDigest, p)
		}
		d = &p
	}
	return d, nil
}

// bodyReader reads a push body, counting the bytes and pushing the
// connection's read deadline StallTimeout ahead of every read.
type bodyReader struct {
	r     io.Reader
	rc    *http.ResponseController
	stall time.Duration
	bytes prometheus.Counter
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.stall > 0 {
		_ = b.rc.SetReadDeadline(time.Now().Add(b.stall)) // not supported by every ResponseWriter
	}
	n, err := b.r.Read(p)
	if n > 0 {
		b.bytes.Add(float64(n))
	}
	return n, err
}

// stallWriter pushes the connection's write deadline StallTimeout ahead of
// every write.
type stallWriter struct {
	http.ResponseWriter
	rc    *http.ResponseController
	stall time.Duration
}

func newStallWriter(w http.ResponseWriter, stall time.Duration) *stallWriter {
	return &stallWriter{ResponseWriter: w, rc: http.NewResponseController(w), stall: stall}
}

func (w *stallWriter) Write(p []byte) (int, error) {
	if w.stall > 0 {
		_ = w.rc.SetWriteDeadline(time.Now().Add(w.stall))
	}
	return w.ResponseWriter.Write(p)
}

// reset clears the deadline, which would otherwise outlive the request
// on a kept-alive connection.
func (w *stallWriter) reset() {
	if w.stall > 0 {
		_ = w.rc.SetWriteDeadline(time.Time{})
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *stallWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// keyLocks is a set of mutexes keyed by blob digest.
type keyLocks struct {
	mu sync.Mutex
	m  map[chunker.Digest]*keyLock
}

type keyLock struct {
	ch chan struct{} // holds a token while locked
	n  int           // holders and waiters
}

// lock locks d and returns the unlock function.
func (k *keyLocks) lock(d chunker.Digest) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = make(map[chunker.Digest]*keyLock)
	}
	l := k.m[d]
	if l == nil {
		l = &keyLock{ch: make(chan struct{}, 1)}
		k.m[d] = l
	}
	l.n++
	k.mu.Unlock()
	l.ch <- struct{}{}
	return func() {
		<-l.ch
		k.mu.Lock()
		if l.n--; l.n == 0 {
			delete(k.m, d)
		}
		k.mu.Unlock()
	}
}

// opCount counts the pushes and deletes in progress.
type opCount struct {
	mu     sync.Mutex
	n      int
	idleCh chan struct{} // closed when n drops to 0
}

func (o *opCount) add() {
	o.mu.Lock()
	o.n++
	o.mu.Unlock()
}

func (o *opCount) done() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n--; o.n == 0 && o.idleCh != nil {
		close(o.idleCh)
		o.idleCh = nil
	}
}

// idle returns a channel that is closed once no operation is in progress.
func (o *opCount) idle() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == 0 {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	if o.idleCh == nil {
		o.idleCh = make(chan struct{})
	}
	return o.idleCh
}
