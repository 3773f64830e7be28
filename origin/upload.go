package origin

import (
	"context"
	"errors"
	"fmt"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/peer/store"
)

// chunkRef counts the pushes in progress that reference a chunk.
type chunkRef struct {
	n int
	// fresh is set if the chunk was not in the store when the first of
	// those pushes referenced it: one of them wrote it, and if none of
	// them succeeds it must go again.
	fresh bool
}

// upload is one push's claim on the chunks it stores. While a push runs,
// the chunks it references are counted in Server.refs, so that a push
// that fails (digest mismatch, client gone, ...) deletes exactly the
// chunks that pushes in progress wrote and nothing else needs: not a chunk
// that was stored before, not one that a concurrent push also needs, not
// one that a pinned manifest references. Every upload must end with commit
// or rollback.
type upload struct {
	s      *Server
	chunks []chunker.Digest // distinct, in order of first reference
	seen   map[chunker.Digest]struct{}
	done   bool
}

func (s *Server) newUpload() *upload {
	return &upload{s: s, seen: make(map[chunker.Digest]struct{})}
}

// putError marks an error of the store, as opposed to one of the body.
type putError struct{ err error }

func (e *putError) Error() string { return e.err.Error() }
func (e *putError) Unwrap() error { return e.err }

// put references chunk c and stores it unless the store has it. It is the
// Split callback.
func (u *upload) put(ctx context.Context, c chunker.Chunk, b []byte) error {
	s := u.s
	if _, ok := u.seen[c.Digest]; !ok {
		u.seen[c.Digest] = struct{}{}
		u.chunks = append(u.chunks, c.Digest)
		s.mu.Lock()
		r := s.refs[c.Digest]
		if r == nil {
			r = &chunkRef{fresh: !s.store.Has(c.Digest)}
			s.refs[c.Digest] = r
		}
		r.n++
		s.mu.Unlock()
	}
	// A stored chunk needs no second write (nor a second hash); one evicted
	// before the push pins it is caught by commit.
	if s.store.Has(c.Digest) {
		return nil
	}
	if err := s.store.Put(ctx, c.Digest, b); err != nil {
		return &putError{err}
	}
	return nil
}

// commit drops the upload's references once its manifest is pinned: the
// pin protects its chunks from then on.
func (u *upload) commit() {
	if u.done {
		return
	}
	u.done = true
	s := u.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range u.chunks {
		s.unrefLocked(d)
	}
}

// rollback drops the upload's references and deletes the chunks that
// pushes in progress wrote, once no push in progress references them,
// unless a stored manifest (pinned or not) references them. It returns the
// number of chunks deleted.
func (u *upload) rollback(ctx context.Context) int {
	if u.done {
		return 0
	}
	u.done = true
	s := u.s
	// Chunks this upload may have to delete, and the chunks of unpinned
	// manifests, which the store does not protect. Pinned ones it does:
	// Delete refuses their chunks.
	s.mu.Lock()
	maybe := false
	for _, d := range u.chunks {
		if s.refs[d].fresh {
			maybe = true
			break
		}
	}
	s.mu.Unlock()
	var keep map[chunker.Digest]struct{}
	if maybe {
		keep = s.unpinnedChunks(ctx)
	}

	deleted := 0
	for _, d := range u.chunks {
		if s.releaseChunk(ctx, d, keep) {
			deleted++
		}
	}
	return deleted
}

// releaseChunk drops a failed upload's reference to d, and deletes d if
// that was the last reference, a push in progress wrote d, and keep does
// not hold it. It reports whether it deleted d.
func (s *Server) releaseChunk(ctx context.Context, d chunker.Digest, keep map[chunker.Digest]struct{}) bool {
	// Under s.mu, so that no push references d between the decision and
	// the deletion (it would take d for stored).
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.refs[d]
	if !s.unrefLocked(d) || !r.fresh {
		return false
	}
	if _, ok := keep[d]; ok {
		return false
	}
	err := s.store.Delete(ctx, d)
	switch {
	case err == nil:
		return true
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrPinned):
	default:
		s.log.WarnContext(ctx, "push rollback: cannot delete chunk", "chunk", d, "err", err)
	}
	return false
}

// unrefLocked drops one reference to d and reports whether it was the last.
func (s *Server) unrefLocked(d chunker.Digest) bool {
	r := s.refs[d]
	r.n--
	if r.n > 0 {
		return false
	}
	delete(s.refs, d)
	return true
}

// unpinnedChunks returns the chunks that stored, unpinned manifests
// reference. Manifests that cannot be read are skipped.
func (s *Server) unpinnedChunks(ctx context.Context) map[chunker.Digest]struct{} {
	keep := make(map[chunker.Digest]struct{})
	for _, mi := range s.store.Manifests() {
		if mi.Pinned {
			continue
		}
		m, err := s.store.Manifest(ctx, mi.ID)
		if err != nil {
			s.log.DebugContext(ctx, "push rollback: skipping unreadable manifest", "manifest", mi.ID, "err", err)
			continue
		}
		for _, c := range m.Chunks {
			keep[c.Digest] = struct{}{}
		}
	}
	return keep
}

// manifestState reports whether manifest id is stored and pinned.
func (s *Server) manifestState(id chunker.Digest) (stored, pinned bool) {
	for _, mi := range s.store.Manifests() {
		if mi.ID == id {
			return true, mi.Pinned
		}
	}
	return false, false
}

// missingChunk returns the index of the first chunk of m that the store
// lacks, or -1.
func (s *Server) missingChunk(m *chunker.Manifest) int {
	for i, c := range m.Chunks {
		if !s.store.Has(c.Digest) {
			return i
		}
	}
	return -1
}

// errMissingChunk: a chunk of a manifest being pinned is not in the store
// (evicted under capacity pressure during the push).
var errMissingChunk = errors.New("chunk missing from the store")

func missingChunkError(m *chunker.Manifest, i int) error {
	return fmt.Errorf("%w: chunk %d (%s) of blob %s was evicted before the push completed: %w",
		errMissingChunk, i, m.Chunks[i].Digest, m.Digest, store.ErrCapacity)
}
