package store

import (
	"cmp"
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/fsutil"
)

// Names inside the store directory.
const (
	chunksDir    = "chunks"
	manifestsDir = "manifests"
	pinsDir      = "pins"
	tmpDir       = "tmp"
	lockName     = "LOCK"
)

// Store is a content-addressed chunk store in one directory. Create it with
// Open and release it with Close. It is safe for concurrent use.
type Store struct {
	cfg   Config
	dir   string // absolute
	log   *slog.Logger
	opts  options
	lock  *os.File // holds the flock on <dir>/LOCK
	seq   atomic.Uint64
	pinMu sync.Mutex // serializes changes to manifests/ and pins/

	wg sync.WaitGroup // operations in progress; Close waits for them

	mu        sync.Mutex
	closed    bool
	index     map[chunker.Digest]*entry
	lru       *list.List // of *entry, most recently used first; unpinned chunks only
	usage     int64      // sum of the sizes of indexed chunks
	evictable int64      // sum of the sizes of the chunks in lru
	reserved  int64      // bytes of Puts in progress, counted against Capacity
	inflight  map[chunker.Digest]*flight

	// shardReady[i] is set once chunks/<i in hex> is known to exist.
	shardReady [256]atomic.Bool
	pinRefs    map[chunker.Digest]int // number of pinned manifests referencing a digest
	manifests  map[chunker.Digest]*manifestState
}

// entry is one chunk in the index. digest and size never change.
type entry struct {
	digest  chunker.Digest
	size    int64
	elem    *list.Element // position in Store.lru, nil while pinned
	touched time.Time     // last mtime known to be on disk
	// checked is set once the file's data is known to hash to digest in
	// this run: this store wrote it, or a verifying read checked it.
	checked atomic.Bool
}

// flight is a Put in progress; later Puts of the same chunk wait for it.
type flight struct {
	done chan struct{}
	err  error // set before done is closed
}

// hooks let tests intercept file operations.
type hooks struct {
	// openTemp creates the temp file at path. Whatever it returns, the
	// store removes path when a write fails.
	openTemp func(path string) (*os.File, error)
	// beforeRename runs after the temp file is written and synced, just
	// before it is renamed to final.
	beforeRename func(tmp, final string)
	// waitFlight runs when a Put is about to wait for another Put of the
	// same chunk.
	waitFlight func(d chunker.Digest)
}

// Open opens the store in cfg.Dir, creating the directory if needed. It
// takes an exclusive lock on the directory (ErrLocked if another Store holds
// it), removes temp files left by a crash and rebuilds the index from the
// directory listing without reading chunk data. If the stored chunks exceed
// cfg.Capacity, Open evicts down to it.
func Open(cfg Config, opts ...Option) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := options{touchInterval: defaultTouchInterval}
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if o.hooks.openTemp == nil {
		o.hooks.openTemp = fsutil.OpenExclusive
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", cfg.Dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	s := &Store{
		cfg:       cfg,
		dir:       dir,
		log:       o.log.With("store", dir),
		opts:      o,
		lock:      lock,
		index:     make(map[chunker.Digest]*entry),
		lru:       list.New(),
		inflight:  make(map[chunker.Digest]*flight),
		pinRefs:   make(map[chunker.Digest]int),
		manifests: make(map[chunker.Digest]*manifestState),
	}
	start := time.Now()
	if err := s.load(); err != nil {
		lock.Close()
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	s.log.Info("store opened", "chunks", len(s.index), "bytes", s.usage,
		"manifests", len(s.manifests), "capacity", cfg.Capacity, "took", time.Since(start))
	return s, nil
}

// lockDir takes a non-blocking exclusive flock on <dir>/LOCK. The kernel
// releases it when the file is closed or the process dies.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is locked by another store", ErrLocked, dir)
		}
		return nil, fmt.Errorf("store: lock %s: %w", path, err)
	}
	return f, nil
}

// load creates the layout, empties tmp/ and builds the in-memory state.
func (s *Store) load() error {
	created := false
	for _, d := range []string{chunksDir, manifestsDir, pinsDir, tmpDir} {
		ok, err := mkdirIfMissing(filepath.Join(s.dir, d))
		if err != nil {
			return err
		}
		created = created || ok
	}
	if created {
		if err := fsutil.SyncDir(s.dir); err != nil {
			return err
		}
	}
	if err := s.cleanTmp(); err != nil {
		return err
	}
	// Pins first, so that pinned chunks stay out of the LRU list.
	if err := s.loadManifests(); err != nil {
		return err
	}
	if err := s.loadChunks(); err != nil {
		return err
	}
	if c := s.cfg.Capacity; c > 0 && s.usage > c {
		over := min(s.usage-c, s.evictable)
		s.log.Warn("stored chunks exceed capacity, evicting", "bytes", s.usage, "capacity", c, "evicting", over)
		s.evictLocked(over)
	}
	return nil
}

// cleanTmp removes everything in tmp/: files being written when the last
// process died.
func (s *Store) cleanTmp() error {
	dir := filepath.Join(s.dir, tmpDir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	if len(ents) > 0 {
		s.log.Info("removed temp files left by a previous run", "count", len(ents))
		return fsutil.SyncDir(dir)
	}
	return nil
}

// parseHexName parses a file name that should be a digest's 64 hex
// characters.
func parseHexName(name string) (chunker.Digest, bool) {
	if len(name) != 2*len(chunker.Digest{}) {
		return chunker.Digest{}, false
	}
	d, err := chunker.ParseDigest(chunker.DigestPrefix + name)
	return d, err == nil
}

// loadChunks indexes chunks/ from the listing and stat alone.
func (s *Store) loadChunks() error {
	type found struct {
		d     chunker.Digest
		size  int64
		mtime time.Time
	}
	var all []found
	emptyDigest := chunker.Sum(nil)
	shards, err := os.ReadDir(filepath.Join(s.dir, chunksDir))
	if err != nil {
		return err
	}
	for _, sd := range shards {
		shard := sd.Name()
		i, ok := shardIndex(shard)
		if !ok || !sd.IsDir() {
			s.log.Warn("ignoring foreign file in chunk directory", "name", shard)
			continue
		}
		s.shardReady[i].Store(true)
		dir := filepath.Join(s.dir, chunksDir, shard)
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, de := range ents {
			name := de.Name()
			path := filepath.Join(dir, name)
			if strings.HasSuffix(name, fsutil.TempSuffix) {
				s.log.Warn("removing temp file from chunk directory", "path", path)
				if err := os.Remove(path); err != nil {
					return err
				}
				continue
			}
			d, ok := parseHexName(name)
			if !ok || name[:2] != shard || !de.Type().IsRegular() {
				s.log.Warn("ignoring foreign file in chunk directory", "path", path)
				continue
			}
			fi, err := de.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			size := fi.Size()
			if size > chunker.MaxChunkSizeLimit || size == 0 && d != emptyDigest {
				// Impossible sizes: no need to read the data to know it is corrupt.
				s.log.Warn("removing chunk file of impossible size", "digest", d, "size", size)
				if err := os.Remove(path); err != nil {
					return err
				}
				continue
			}
			all = append(all, found{d, size, fi.ModTime()})
		}
	}
	// Oldest first, so that pushing each to the front leaves the most
	// recently used at the front.
	slices.SortFunc(all, func(a, b found) int {
		if c := a.mtime.Compare(b.mtime); c != 0 {
			return c
		}
		return cmp.Compare(a.d.Hex(), b.d.Hex())
	})
	for _, f := range all {
		s.addLocked(f.d, f.size, f.mtime, false)
	}
	return nil
}

// begin registers an operation, failing once the store is closed. Every
// successful begin must be paired with end.
func (s *Store) begin() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.wg.Add(1)
	return nil
}

func (s *Store) end() { s.wg.Done() }

// Close waits for operations in progress, then releases the directory.
// After Close, other methods fail with ErrClosed; closing twice is not an
// error.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.wg.Wait()
	if err := s.lock.Close(); err != nil {
		return fmt.Errorf("store: close %s: %w", s.dir, err)
	}
	s.log.Info("store closed")
	return nil
}

// Dir returns the store's absolute directory.
func (s *Store) Dir() string { return s.dir }

// shardIndex parses a shard directory name, two lowercase hex digits.
func shardIndex(name string) (int, bool) {
	if len(name) != 2 {
		return 0, false
	}
	d, ok := parseHexName(name + strings.Repeat("0", 62))
	return int(d[0]), ok
}

// ensureShard creates the shard directory for d the first time it is
// needed, and makes its entry durable.
func (s *Store) ensureShard(d chunker.Digest) error {
	if s.shardReady[d[0]].Load() {
		return nil
	}
	created, err := mkdirIfMissing(filepath.Dir(s.chunkPath(d)))
	if err == nil && created {
		err = fsutil.SyncDir(filepath.Join(s.dir, chunksDir))
	}
	if err != nil {
		return err
	}
	s.shardReady[d[0]].Store(true)
	return nil
}

func (s *Store) chunkPath(d chunker.Digest) string {
	h := d.Hex()
	return filepath.Join(s.dir, chunksDir, h[:2], h)
}

// Has reports whether chunk d is in the store. It does not count as a use
// for eviction order and reads nothing from disk.
func (s *Store) Has(d chunker.Digest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closed && s.index[d] != nil
}

// Usage returns the total size of the stored chunks in bytes. Other files
// in the directory (manifests, temp files, foreign files) do not count.
func (s *Store) Usage() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.usage
}

// Len returns the number of stored chunks.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.index)
}

// Put stores data as chunk d. It first checks that data is no larger than
// chunker.MaxChunkSizeLimit (else an error wrapping chunker.ErrChunkTooLarge)
// and hashes to d (else chunker.ErrDigestMismatch); nothing is written unless
// both hold. If the chunk is already stored, or being stored by another
// goroutine, Put writes nothing and returns once it is stored.
//
// Otherwise Put makes room under Config.Capacity (evicting least recently
// used unpinned chunks, or failing with ErrCapacity), writes the data to a
// temp file, fsyncs it, renames it into place and fsyncs the directory. If
// the filesystem is full it returns ErrNoSpace and leaves nothing behind.
func (s *Store) Put(ctx context.Context, d chunker.Digest, data []byte) error {
	if len(data) > chunker.MaxChunkSizeLimit {
		return fmt.Errorf("store: put %s: %d bytes, limit %d: %w", d, len(data), chunker.MaxChunkSizeLimit, chunker.ErrChunkTooLarge)
	}
	if got := chunker.Sum(data); got != d {
		return fmt.Errorf("store: put %s: data hashes to %s: %w", d, got, chunker.ErrDigestMismatch)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: put %s: %w", d, err)
	}
	if err := s.begin(); err != nil {
		return fmt.Errorf("store: put %s: %w", d, err)
	}
	defer s.end()
	size := int64(len(data))
	for {
		s.mu.Lock()
		if e := s.index[d]; e != nil {
			touch := s.touchLocked(e)
			s.mu.Unlock()
			s.touchFile(e, touch)
			return nil
		}
		if f := s.inflight[d]; f != nil {
			s.mu.Unlock()
			if h := s.opts.hooks.waitFlight; h != nil {
				h(d)
			}
			select {
			case <-f.done:
				if f.err == nil {
					return nil
				}
				continue // that write failed; try ours
			case <-ctx.Done():
				return fmt.Errorf("store: put %s: %w", d, ctx.Err())
			}
		}
		if err := s.reserveLocked(d, size); err != nil {
			s.mu.Unlock()
			return err
		}
		f := &flight{done: make(chan struct{})}
		s.inflight[d] = f
		s.mu.Unlock()

		err := s.ensureShard(d)
		if err == nil {
			err = s.writeAtomic(s.chunkPath(d), data)
		}
		if err != nil {
			err = s.ioErr("put chunk "+d.String(), err)
		}

		s.mu.Lock()
		s.reserved -= size
		if err == nil {
			s.addLocked(d, size, time.Now(), true)
		}
		delete(s.inflight, d)
		f.err = err
		close(f.done)
		s.mu.Unlock()
		if err != nil {
			s.log.Warn("put failed", "digest", d, "size", size, "err", err)
		}
		return err
	}
}

// writeAtomic writes b to final through a synced temp file in tmp/ and a
// rename, then syncs final's directory. On failure nothing is left behind.
func (s *Store) writeAtomic(final string, b []byte) error {
	af := fsutil.AtomicFile{
		TempDir:      filepath.Join(s.dir, tmpDir),
		OpenTemp:     s.opts.hooks.openTemp,
		BeforeRename: s.opts.hooks.beforeRename,
	}
	return af.Write(final, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// ioErr wraps a filesystem error from op, as ErrNoSpace if the filesystem
// is full.
func (s *Store) ioErr(op string, err error) error {
	if fsutil.IsNoSpace(err) {
		return fmt.Errorf("%w in %s: %s: %w", ErrNoSpace, s.dir, op, err)
	}
	return fmt.Errorf("store: %s in %s: %w", op, s.dir, err)
}

// reserveLocked counts size bytes for a Put of d against the capacity,
// evicting unpinned chunks if needed. It evicts nothing if that cannot make
// enough room.
func (s *Store) reserveLocked(d chunker.Digest, size int64) error {
	if c := s.cfg.Capacity; c > 0 {
		if size > c {
			return fmt.Errorf("%w: put %s: chunk is %d bytes, capacity is %d", ErrCapacity, d, size, c)
		}
		if over := s.usage + s.reserved + size - c; over > 0 {
			if over > s.evictable {
				return fmt.Errorf("%w: put %s: need %d bytes, %d of %d used (%d more reserved by writes in progress), only %d evictable, the rest pinned",
					ErrCapacity, d, size, s.usage, c, s.reserved, s.evictable)
			}
			s.evictLocked(over)
		}
	}
	s.reserved += size
	return nil
}

// evictLocked removes least recently used unpinned chunks until at least
// need bytes are freed or none is left.
func (s *Store) evictLocked(need int64) {
	var freed int64
	for freed < need {
		back := s.lru.Back()
		if back == nil {
			return
		}
		e := back.Value.(*entry)
		s.removeLocked(e)
		freed += e.size
		s.log.Debug("evicted chunk", "digest", e.digest, "size", e.size)
	}
}

// addLocked indexes a chunk that is now on disk; checked says its file is
// known to hold the right data (see entry.checked).
func (s *Store) addLocked(d chunker.Digest, size int64, mtime time.Time, checked bool) {
	e := &entry{digest: d, size: size, touched: mtime}
	e.checked.Store(checked)
	s.index[d] = e
	s.usage += size
	if s.pinRefs[d] == 0 {
		s.pushLRULocked(e)
	}
}

func (s *Store) pushLRULocked(e *entry) {
	e.elem = s.lru.PushFront(e)
	s.evictable += e.size
}

func (s *Store) unlinkLRULocked(e *entry) {
	if e.elem != nil {
		s.lru.Remove(e.elem)
		e.elem = nil
		s.evictable -= e.size
	}
}

// removeLocked drops a chunk from the index and deletes its file. Holding
// s.mu while deleting keeps a concurrent Put of the same chunk from writing
// a file this would then delete.
func (s *Store) removeLocked(e *entry) {
	delete(s.index, e.digest)
	s.unlinkLRULocked(e)
	s.usage -= e.size
	if err := os.Remove(s.chunkPath(e.digest)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Error("cannot remove chunk file", "digest", e.digest, "err", err)
	}
}

// dropIfCurrent removes e if it is still the indexed entry for its digest,
// reporting whether it did.
func (s *Store) dropIfCurrent(e *entry, reason string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.index[e.digest] != e {
		return false
	}
	s.removeLocked(e)
	s.log.Warn("dropped chunk", "digest", e.digest, "size", e.size, "reason", reason)
	return true
}

// touchLocked marks e as just used, and reports whether its file's mtime is
// stale enough to be refreshed with touchFile.
func (s *Store) touchLocked(e *entry) bool {
	if e.elem != nil {
		s.lru.MoveToFront(e.elem)
	}
	now := time.Now()
	if now.Sub(e.touched) < s.opts.touchInterval {
		return false
	}
	e.touched = now
	return true
}

// touchFile sets the mtime of e's file to now if touch is set, so that the
// LRU order survives a restart. Failures only cost eviction precision.
func (s *Store) touchFile(e *entry, touch bool) {
	if !touch {
		return
	}
	if err := os.Chtimes(s.chunkPath(e.digest), time.Time{}, time.Now()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Debug("cannot update chunk mtime", "digest", e.digest, "err", err)
	}
}

// Get returns the data of chunk d, or an error wrapping ErrNotFound. When
// Config.VerifyOnRead calls for it (by default on a chunk's first read
// since Open) it re-hashes the data first; a chunk that no longer
// matches its digest is deleted and reported with chunker.ErrDigestMismatch.
// A chunk file whose size changed is treated the same way even without
// VerifyOnRead. Get counts as a use for eviction order.
func (s *Store) Get(ctx context.Context, d chunker.Digest) ([]byte, error) {
	return s.ReadChunk(ctx, d, nil)
}

// ReadChunk is Get reading into dst's storage when it is large enough. It
// returns the slice holding the chunk, which aliases dst if it fit.
func (s *Store) ReadChunk(ctx context.Context, d chunker.Digest, dst []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: read chunk %s: %w", d, err)
	}
	if err := s.begin(); err != nil {
		return nil, fmt.Errorf("store: read chunk %s: %w", d, err)
	}
	defer s.end()
	s.mu.Lock()
	e := s.index[d]
	if e == nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("store: read chunk %s: %w", d, ErrNotFound)
	}
	touch := s.touchLocked(e)
	s.mu.Unlock()

	b, err := readChunkFile(s.chunkPath(d), e.size, dst)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// Evicted or deleted since the lookup, or removed behind our back.
		s.dropIfCurrent(e, "file missing")
		return nil, fmt.Errorf("store: read chunk %s: %w", d, ErrNotFound)
	case errors.Is(err, errCorruptFile):
		s.dropIfCurrent(e, err.Error())
		return nil, fmt.Errorf("store: read chunk %s: dropped it: %w: %w", d, chunker.ErrDigestMismatch, err)
	case err != nil:
		return nil, s.ioErr("read chunk "+d.String(), err)
	}
	if s.mustVerify(e) {
		if got := chunker.Sum(b); got != d {
			s.dropIfCurrent(e, "digest mismatch on read")
			return nil, fmt.Errorf("store: read chunk %s: stored data hashes to %s, dropped it: %w", d, got, chunker.ErrDigestMismatch)
		}
		e.checked.Store(true)
	}
	s.touchFile(e, touch)
	return b, nil
}

// OpenChunk opens chunk d's file for a caller that passes its bytes on
// without looking at them (a sendfile to a socket), and returns it with
// the chunk's size. The file holds exactly the chunk while it is open,
// even if the chunk is deleted meanwhile; the caller closes it. When
// Config.VerifyOnRead wants this read hashed (by default, the first read
// since Open of a chunk this run neither wrote nor checked), it fails with
// ErrMustVerify and the caller reads the chunk with ReadChunk instead. A
// file of the wrong size is dropped, as ReadChunk does. OpenChunk counts
// as a use for eviction order.
func (s *Store) OpenChunk(ctx context.Context, d chunker.Digest) (*os.File, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, fmt.Errorf("store: open chunk %s: %w", d, err)
	}
	if err := s.begin(); err != nil {
		return nil, 0, fmt.Errorf("store: open chunk %s: %w", d, err)
	}
	defer s.end()
	s.mu.Lock()
	e := s.index[d]
	if e == nil {
		s.mu.Unlock()
		return nil, 0, fmt.Errorf("store: open chunk %s: %w", d, ErrNotFound)
	}
	if s.mustVerify(e) {
		s.mu.Unlock()
		return nil, 0, fmt.Errorf("store: open chunk %s: %w", d, ErrMustVerify)
	}
	touch := s.touchLocked(e)
	s.mu.Unlock()

	f, err := os.Open(s.chunkPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		s.dropIfCurrent(e, "file missing")
		return nil, 0, fmt.Errorf("store: open chunk %s: %w", d, ErrNotFound)
	}
	if err != nil {
		return nil, 0, s.ioErr("open chunk "+d.String(), err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, s.ioErr("open chunk "+d.String(), err)
	}
	if fi.Size() != e.size {
		f.Close()
		s.dropIfCurrent(e, fmt.Sprintf("file is %d bytes, expected %d", fi.Size(), e.size))
		return nil, 0, fmt.Errorf("store: open chunk %s: dropped it: %w: %w", d, chunker.ErrDigestMismatch, errCorruptFile)
	}
	s.touchFile(e, touch)
	return f, e.size, nil
}

// mustVerify says whether a read of e re-hashes it (Config.VerifyOnRead).
func (s *Store) mustVerify(e *entry) bool {
	switch s.cfg.VerifyOnRead {
	case VerifyAlways:
		return true
	case VerifyNever:
		return false
	default:
		return !e.checked.Load()
	}
}

// Delete removes chunk d. It fails with ErrNotFound if d is not stored and
// with ErrPinned if a pinned manifest references it.
func (s *Store) Delete(ctx context.Context, d chunker.Digest) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: delete chunk %s: %w", d, err)
	}
	if err := s.begin(); err != nil {
		return fmt.Errorf("store: delete chunk %s: %w", d, err)
	}
	defer s.end()
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.index[d]
	switch {
	case e == nil:
		return fmt.Errorf("store: delete chunk %s: %w", d, ErrNotFound)
	case s.pinRefs[d] > 0:
		return fmt.Errorf("store: delete chunk %s: referenced by %d pinned manifests: %w", d, s.pinRefs[d], ErrPinned)
	}
	s.removeLocked(e)
	return nil
}
