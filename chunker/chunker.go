// Package chunker splits byte streams into content-defined chunks and
// describes them with a Manifest.
//
// Boundaries follow FastCDC with normalized chunking: a 64-byte gear rolling
// hash is tested at every position between a chunk's minimum and maximum
// size, with a stricter test before the average size and a looser one after
// it. Boundaries depend only on the bytes around them, so an edit moves the
// boundaries next to it and no others, and a changed backup shares most of
// its chunks with the previous one.
//
// Every chunk is identified by its SHA-256 and the whole blob by the SHA-256
// of all its bytes, in OCI form ("sha256:<hex>"). Hashing uses the standard
// library's crypto/sha256, which uses the SHA-NI instructions where the CPU
// has them. Split streams: memory stays at a few times the maximum chunk
// size whatever the input size.
//
// The package imports nothing else from this module.
package chunker

import (
	"context"
	"fmt"
	"io"
)

// Chunker cuts streams with one Config. It is safe for concurrent use.
type Chunker struct {
	cfg                Config
	thrSmall, thrLarge uint64
}

// New returns a Chunker for cfg (zero fields take their defaults).
func New(cfg Config) (*Chunker, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Chunker{cfg: cfg}
	c.thrSmall, c.thrLarge = cfg.thresholds()
	return c, nil
}

// Config returns the configuration in use, with defaults filled in.
func (c *Chunker) Config() Config { return c.cfg }

// Split reads r to its end and returns the blob's manifest. If fn is not
// nil, Split calls it for each chunk in order, from the calling goroutine,
// with the chunk's bytes; the slice is only valid during the call. An error
// from fn stops Split and is returned as is. Split checks ctx between chunks.
func (c *Chunker) Split(ctx context.Context, r io.Reader, fn func(Chunk, []byte) error) (*Manifest, error) {
	m := &Manifest{
		Version: ManifestVersion,
		MinSize: c.cfg.MinSize,
		AvgSize: c.cfg.AvgSize,
		MaxSize: c.cfg.MaxSize,
	}
	digest, size, err := newPipeline(c.cfg.MaxSize).run(ctx, r, c.split, func(ch Chunk, b []byte) error {
		if len(m.Chunks) == MaxManifestChunks {
			return fmt.Errorf("%w: input needs more than %d chunks", ErrManifestTooLarge, MaxManifestChunks)
		}
		m.Chunks = append(m.Chunks, ch)
		if fn != nil {
			return fn(ch, b)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	m.Digest, m.Size = digest, size
	return m, nil
}
