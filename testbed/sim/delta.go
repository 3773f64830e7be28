package sim

import (
	"context"
	"errors"
	"fmt"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/wire/trackerwire"
	"github.com/p2pd/p2pd/peer/sched"
	"github.com/p2pd/p2pd/testbed/result"
	"github.com/p2pd/p2pd/testbed/scenario"
)

// layout is how a run cuts its blob: the chunk sizes and, for a delta
// run, which of them every peer holds at the start.
type layout struct {
	sizes []int64
	held  []bool // nil unless a delta run
	delta *result.Delta
}

// chunkLayout cuts s's blob with s.Blob.Chunker, as the emulation's
// origins do, so both modes move the same chunks: a content-defined cut
// of the average size makes fewer, larger chunks than size/average (4 MiB
// at 32 KiB: 111, not 128). A delta run (s.Blob.Base) chunks both
// versions and uses version 2's chunks, held where version 1 has them
// too.
func chunkLayout(ctx context.Context, s scenario.Scenario) (layout, error) {
	limit := min(int64(sched.MaxChunks), trackerwire.MaxNumChunks)
	size, most := int64(s.Blob.Size), int64(s.Blob.Chunker.MaxSize)
	if least := (size + most - 1) / most; least > limit {
		return layout{}, fmt.Errorf("%w: %d bytes in chunks of at most %d make at least %d, limit %d", ErrTooManyChunks, size, most, least, limit)
	}
	var l layout
	var m *chunker.Manifest
	if s.Blob.Base == nil {
		var err error
		if m, err = s.Cut(ctx, 1, nil); err != nil {
			return layout{}, tooMany(fmt.Errorf("sim: %w", err))
		}
	} else {
		d, err := s.Delta(ctx)
		if err != nil {
			return layout{}, tooMany(fmt.Errorf("sim: %w", err))
		}
		m, l.held = d.V2, d.Held
		l.delta = &result.Delta{ChangedBytes: d.ChangedBytes, ChangedChunkBytes: d.ChangedChunkBytes, Held: d.Held}
	}
	if n := int64(len(m.Chunks)); n > limit {
		return layout{}, fmt.Errorf("%w: %d chunks, limit %d", ErrTooManyChunks, n, limit)
	}
	l.sizes = make([]int64, len(m.Chunks))
	for i, c := range m.Chunks {
		l.sizes[i] = int64(c.Size)
	}
	return l, nil
}

// tooMany marks err, if the chunker found the manifest too large, as
// ErrTooManyChunks too.
func tooMany(err error) error {
	if errors.Is(err, chunker.ErrManifestTooLarge) {
		return fmt.Errorf("%w: %w", ErrTooManyChunks, err)
	}
	return err
}

// preload gives peer h the chunks of a delta run's version 2 that
// version 1 has too.
func (sm *sim) preload(h *host, held []bool) {
	for i, ok := range held {
		if ok {
			h.have.Set(i)
			h.nhave++
		}
	}
}

// bound is the run's fluid bound: for a delta run, with F the bytes a
// peer holding version 1 must fetch.
func (sm *sim) bound() scenario.Bound {
	if sm.delta != nil {
		return sm.s.BoundFor(sm.delta.ChangedChunkBytes)
	}
	return sm.s.Bound()
}
