package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/fsutil"
)

// manifestState is what the store keeps in memory about a stored manifest.
type manifestState struct {
	pinned bool
	chunks []chunker.Digest // distinct chunk digests; only while pinned
}

// ManifestInfo describes a stored manifest.
type ManifestInfo struct {
	ID     chunker.Digest // the manifest's own digest, Manifest.ID
	Pinned bool
}

// encodeManifest returns m's ID and canonical encoding.
func encodeManifest(m *chunker.Manifest) (chunker.Digest, []byte, error) {
	if m == nil {
		return chunker.Digest{}, nil, fmt.Errorf("%w: nil manifest", chunker.ErrManifestInconsistent)
	}
	b, err := m.MarshalBinary()
	if err != nil {
		return chunker.Digest{}, nil, err
	}
	return chunker.Sum(b), b, nil
}

// distinctChunks returns the distinct chunk digests of m.
func distinctChunks(m *chunker.Manifest) []chunker.Digest {
	seen := make(map[chunker.Digest]struct{}, len(m.Chunks))
	out := make([]chunker.Digest, 0, len(m.Chunks))
	for _, c := range m.Chunks {
		if _, ok := seen[c.Digest]; !ok {
			seen[c.Digest] = struct{}{}
			out = append(out, c.Digest)
		}
	}
	return out
}

func (s *Store) manifestPath(id chunker.Digest) string {
	return filepath.Join(s.dir, manifestsDir, id.Hex())
}

func (s *Store) pinPath(id chunker.Digest) string {
	return filepath.Join(s.dir, pinsDir, id.Hex())
}

// loadManifests lists manifests/ and loads the manifests pins/ names, adding
// their chunks to pinRefs. A pin whose manifest is missing or corrupt cannot
// protect anything: it is logged and removed.
func (s *Store) loadManifests() error {
	ents, err := os.ReadDir(filepath.Join(s.dir, manifestsDir))
	if err != nil {
		return err
	}
	for _, de := range ents {
		id, ok := parseHexName(de.Name())
		if !ok || !de.Type().IsRegular() {
			s.log.Warn("ignoring foreign file in manifest directory", "name", de.Name())
			continue
		}
		s.manifests[id] = &manifestState{}
	}
	pins, err := os.ReadDir(filepath.Join(s.dir, pinsDir))
	if err != nil {
		return err
	}
	for _, de := range pins {
		id, ok := parseHexName(de.Name())
		if !ok {
			s.log.Warn("ignoring foreign file in pin directory", "name", de.Name())
			continue
		}
		var m *chunker.Manifest
		ms := s.manifests[id]
		if ms == nil {
			err = fmt.Errorf("manifest %s: %w", id, ErrNotFound)
		} else {
			m, err = s.readManifest(id)
		}
		if err != nil {
			s.log.Error("removing pin of unusable manifest", "manifest", id, "err", err)
			if err := os.Remove(s.pinPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			continue
		}
		ms.pinned = true
		ms.chunks = distinctChunks(m)
		for _, d := range ms.chunks {
			s.pinRefs[d]++
		}
	}
	return nil
}

// readManifest reads, checks and decodes manifest id from disk. A file
// that does not hash to id or does not decode is reported with
// chunker.ErrDigestMismatch.
func (s *Store) readManifest(id chunker.Digest) (*chunker.Manifest, error) {
	path := s.manifestPath(id)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, chunker.MaxManifestBytes+1))
	if err != nil {
		return nil, err
	}
	if got := chunker.Sum(b); got != id {
		return nil, fmt.Errorf("%s hashes to %s: %w", path, got, chunker.ErrDigestMismatch)
	}
	m, err := chunker.DecodeManifest(b)
	if err != nil {
		// Cannot happen for a file that hashes to its name unless the
		// decoder changed; treat it as an integrity failure too.
		return nil, fmt.Errorf("%s: %w: %w", path, chunker.ErrDigestMismatch, err)
	}
	return m, nil
}

// PutManifest stores m (unpinned) and returns its ID. Storing a manifest
// that is already stored is a no-op.
func (s *Store) PutManifest(ctx context.Context, m *chunker.Manifest) (chunker.Digest, error) {
	id, enc, err := encodeManifest(m)
	if err != nil {
		return id, fmt.Errorf("store: put manifest: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return id, fmt.Errorf("store: put manifest %s: %w", id, err)
	}
	if err := s.begin(); err != nil {
		return id, fmt.Errorf("store: put manifest %s: %w", id, err)
	}
	defer s.end()
	s.pinMu.Lock()
	defer s.pinMu.Unlock()
	_, err = s.storeManifestPinMuLocked(id, enc)
	return id, err
}

// storeManifestPinMuLocked writes a manifest unless it is stored already.
func (s *Store) storeManifestPinMuLocked(id chunker.Digest, enc []byte) (*manifestState, error) {
	s.mu.Lock()
	ms := s.manifests[id]
	s.mu.Unlock()
	if ms != nil {
		return ms, nil
	}
	if err := s.writeAtomic(s.manifestPath(id), enc); err != nil {
		return nil, s.ioErr("put manifest "+id.String(), err)
	}
	ms = &manifestState{}
	s.mu.Lock()
	s.manifests[id] = ms
	s.mu.Unlock()
	return ms, nil
}

// Pin stores m if needed and pins it: until Unpin, eviction skips every
// chunk m references, whether already stored or stored later. The pin is
// on disk before Pin returns, so it survives restarts. Pinning a pinned
// manifest is a no-op.
func (s *Store) Pin(ctx context.Context, m *chunker.Manifest) error {
	id, enc, err := encodeManifest(m)
	if err != nil {
		return fmt.Errorf("store: pin: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: pin %s: %w", id, err)
	}
	if err := s.begin(); err != nil {
		return fmt.Errorf("store: pin %s: %w", id, err)
	}
	defer s.end()
	s.pinMu.Lock()
	defer s.pinMu.Unlock()
	ms, err := s.storeManifestPinMuLocked(id, enc)
	if err != nil {
		return err
	}
	s.mu.Lock()
	pinned := ms.pinned
	s.mu.Unlock()
	if pinned {
		return nil
	}
	if err := s.writePinMarker(id); err != nil {
		return s.ioErr("pin "+id.String(), err)
	}
	chunks := distinctChunks(m)
	s.mu.Lock()
	defer s.mu.Unlock()
	ms.pinned = true
	ms.chunks = chunks
	for _, d := range chunks {
		s.pinRefs[d]++
		if s.pinRefs[d] == 1 {
			if e := s.index[d]; e != nil {
				s.unlinkLRULocked(e)
			}
		}
	}
	s.log.Info("pinned manifest", "manifest", id, "chunks", len(chunks))
	return nil
}

// writePinMarker durably creates the empty file pins/<hex>.
func (s *Store) writePinMarker(id chunker.Digest) error {
	f, err := os.OpenFile(s.pinPath(id), os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsutil.SyncDir(filepath.Join(s.dir, pinsDir))
	}
	return err
}

// Unpin removes the pin of manifest id. Its chunks become evictable (most
// recently used first) unless another pinned manifest references them. The
// manifest itself stays stored. It fails with ErrNotFound if id is not
// pinned.
func (s *Store) Unpin(ctx context.Context, id chunker.Digest) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: unpin %s: %w", id, err)
	}
	if err := s.begin(); err != nil {
		return fmt.Errorf("store: unpin %s: %w", id, err)
	}
	defer s.end()
	s.pinMu.Lock()
	defer s.pinMu.Unlock()
	s.mu.Lock()
	ms := s.manifests[id]
	s.mu.Unlock()
	if ms == nil || !ms.pinned {
		return fmt.Errorf("store: unpin %s: manifest is not pinned: %w", id, ErrNotFound)
	}
	if err := os.Remove(s.pinPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return s.ioErr("unpin "+id.String(), err)
	}
	if err := fsutil.SyncDir(filepath.Join(s.dir, pinsDir)); err != nil {
		return s.ioErr("unpin "+id.String(), err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range ms.chunks {
		s.pinRefs[d]--
		if s.pinRefs[d] == 0 {
			delete(s.pinRefs, d)
			if e := s.index[d]; e != nil {
				s.pushLRULocked(e)
			}
		}
	}
	ms.pinned = false
	ms.chunks = nil
	s.log.Info("unpinned manifest", "manifest", id)
	return nil
}

// Manifest returns stored manifest id, or an error wrapping ErrNotFound. A
// manifest file that no longer hashes to id or does not decode is reported
// with chunker.ErrDigestMismatch.
func (s *Store) Manifest(ctx context.Context, id chunker.Digest) (*chunker.Manifest, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: manifest %s: %w", id, err)
	}
	if err := s.begin(); err != nil {
		return nil, fmt.Errorf("store: manifest %s: %w", id, err)
	}
	defer s.end()
	s.mu.Lock()
	ms := s.manifests[id]
	s.mu.Unlock()
	if ms == nil {
		return nil, fmt.Errorf("store: manifest %s: %w", id, ErrNotFound)
	}
	m, err := s.readManifest(id)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("store: manifest %s: file missing: %w: %w", id, ErrNotFound, err)
	}
	if err != nil {
		return nil, fmt.Errorf("store: manifest %s: %w", id, err)
	}
	return m, nil
}

// Manifests lists the stored manifests, ordered by ID.
func (s *Store) Manifests() []ManifestInfo {
	s.mu.Lock()
	out := make([]ManifestInfo, 0, len(s.manifests))
	for id, ms := range s.manifests {
		out = append(out, ManifestInfo{ID: id, Pinned: ms.pinned})
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b ManifestInfo) int { return strings.Compare(a.ID.Hex(), b.ID.Hex()) })
	return out
}

// DeleteManifest removes stored manifest id. It fails with ErrNotFound if
// it is not stored and with ErrPinned if it is pinned.
func (s *Store) DeleteManifest(ctx context.Context, id chunker.Digest) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: delete manifest %s: %w", id, err)
	}
	if err := s.begin(); err != nil {
		return fmt.Errorf("store: delete manifest %s: %w", id, err)
	}
	defer s.end()
	s.pinMu.Lock()
	defer s.pinMu.Unlock()
	s.mu.Lock()
	ms := s.manifests[id]
	s.mu.Unlock()
	switch {
	case ms == nil:
		return fmt.Errorf("store: delete manifest %s: %w", id, ErrNotFound)
	case ms.pinned:
		return fmt.Errorf("store: delete manifest %s: %w", id, ErrPinned)
	}
	if err := os.Remove(s.manifestPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return s.ioErr("delete manifest "+id.String(), err)
	}
	if err := fsutil.SyncDir(filepath.Join(s.dir, manifestsDir)); err != nil {
		return s.ioErr("delete manifest "+id.String(), err)
	}
	s.mu.Lock()
	delete(s.manifests, id)
	s.mu.Unlock()
	return nil
}
