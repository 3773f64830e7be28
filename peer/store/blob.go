package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/p2pd/p2pd/chunker"
)

// BlobReader reads a blob from its chunks in the store, in the order its
// manifest lists them. It implements io.Reader, io.ReaderAt, io.Seeker,
// io.WriterTo and io.Closer, and holds at most one chunk in memory. Every
// chunk is read through the store, so Config.VerifyOnRead applies.
//
// A missing chunk makes reads fail with an error wrapping ErrNotFound that
// names the chunk's index, digest and offset. A BlobReader is safe for
// concurrent use; concurrent calls are serialized.
type BlobReader struct {
	s   *Store
	ctx context.Context
	m   *chunker.Manifest
	off []int64 // off[i] is where chunk i starts; off[len(chunks)] is the size

	mu     sync.Mutex
	pos    int64  // for Read, Seek and WriteTo
	cur    int    // index of the chunk held in buf, or -1
	buf    []byte // chunk cur's data, and reused storage
	closed bool
}

// OpenBlob returns a reader for the blob m describes. ctx governs all reads
// made through the reader. OpenBlob checks that m is valid but not that its
// chunks are stored: a missing chunk is reported when it is read.
func (s *Store) OpenBlob(ctx context.Context, m *chunker.Manifest) (*BlobReader, error) {
	if m == nil {
		return nil, fmt.Errorf("store: open blob: %w: nil manifest", chunker.ErrManifestInconsistent)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("store: open blob %s: %w", m.Digest, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: open blob %s: %w", m.Digest, err)
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("store: open blob %s: %w", m.Digest, ErrClosed)
	}
	return &BlobReader{s: s, ctx: ctx, m: m, off: m.Offsets(), cur: -1}, nil
}

// Size returns the blob's size in bytes.
func (r *BlobReader) Size() int64 { return r.m.Size }

// find returns the index of the chunk holding byte pos, 0 <= pos < Size.
func (r *BlobReader) find(pos int64) int {
	return sort.Search(len(r.m.Chunks), func(i int) bool { return r.off[i+1] > pos })
}

// chunkLocked returns chunk i's data, reading it unless it is the one held.
func (r *BlobReader) chunkLocked(i int) ([]byte, error) {
	if r.cur == i {
		return r.buf, nil
	}
	c := r.m.Chunks[i]
	r.cur = -1 // buf is about to be overwritten
	b, err := r.s.ReadChunk(r.ctx, c.Digest, r.buf)
	if err != nil {
		return nil, fmt.Errorf("store: blob %s: chunk %d (%s) at offset %d: %w", r.m.Digest, i, c.Digest, r.off[i], err)
	}
	if len(b) != int(c.Size) {
		return nil, fmt.Errorf("store: blob %s: chunk %d (%s) at offset %d: %d bytes, manifest says %d: %w",
			r.m.Digest, i, c.Digest, r.off[i], len(b), c.Size, chunker.ErrSizeMismatch)
	}
	r.buf, r.cur = b, i
	return b, nil
}

// readAtLocked fills p from offset off, crossing chunk boundaries as needed.
// Like ReadAt, it returns an error whenever n < len(p).
func (r *BlobReader) readAtLocked(p []byte, off int64) (n int, err error) {
	if r.closed {
		return 0, fmt.Errorf("store: blob %s: reader: %w", r.m.Digest, ErrClosed)
	}
	if off < 0 {
		return 0, fmt.Errorf("store: blob %s: negative offset %d", r.m.Digest, off)
	}
	for n < len(p) && off < r.m.Size {
		i := r.find(off)
		b, err := r.chunkLocked(i)
		if err != nil {
			return n, err
		}
		k := copy(p[n:], b[off-r.off[i]:])
		n += k
		off += int64(k)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Read implements io.Reader.
func (r *BlobReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, fmt.Errorf("store: blob %s: reader: %w", r.m.Digest, ErrClosed)
	}
	if r.pos >= r.m.Size {
		return 0, io.EOF
	}
	n, err := r.readAtLocked(p, r.pos)
	r.pos += int64(n)
	if n > 0 && errors.Is(err, io.EOF) {
		err = nil // report EOF on the next call
	}
	return n, err
}

// ReadAt implements io.ReaderAt. It does not move the Read offset.
func (r *BlobReader) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.readAtLocked(p, off)
}

// Seek implements io.Seeker. Seeking past the end is allowed; reads there
// return io.EOF.
func (r *BlobReader) Seek(offset int64, whence int) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, fmt.Errorf("store: blob %s: reader: %w", r.m.Digest, ErrClosed)
	}
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = r.pos + offset
	case io.SeekEnd:
		abs = r.m.Size + offset
	default:
		return 0, fmt.Errorf("store: blob %s: seek: invalid whence %d", r.m.Digest, whence)
	}
	if abs < 0 {
		return 0, fmt.Errorf("store: blob %s: seek to negative offset %d", r.m.Digest, abs)
	}
	r.pos = abs
	return abs, nil
}

// WriteTo implements io.WriterTo: it writes the rest of the blob to w
// straight from each chunk's buffer.
func (r *BlobReader) WriteTo(w io.Writer) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, fmt.Errorf("store: blob %s: reader: %w", r.m.Digest, ErrClosed)
	}
	var total int64
	for r.pos < r.m.Size {
		i := r.find(r.pos)
		b, err := r.chunkLocked(i)
		if err != nil {
			return total, err
		}
		rest := b[r.pos-r.off[i]:]
		k, err := w.Write(rest)
		total += int64(k)
		r.pos += int64(k)
		if err == nil && k < len(rest) {
			err = io.ErrShortWrite
		}
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// Close releases the chunk buffer. Later reads fail.
func (r *BlobReader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	r.buf, r.cur = nil, -1
	return nil
}
