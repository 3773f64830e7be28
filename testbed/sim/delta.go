package sim

import (
	"context"
	"fmt"

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

// chunkLayout cuts s's blob. A plain run cuts it into chunks of the
// average size, the last one shorter. A delta run (s.Blob.Base) chunks
// both versions for real, as the emulation's origins do, and uses
// version 2's chunks, held where version 1 has them too.
func chunkLayout(s scenario.Scenario) (layout, error) {
	limit := min(int64(sched.MaxChunks), trackerwire.MaxNumChunks)
	size := int64(s.Blob.Size)
	if s.Blob.Base == nil {
		avg := int64(s.Blob.Chunker.AvgSize)
		n := (size + avg - 1) / avg
		if n > limit {
			return layout{}, fmt.Errorf("%w: %d bytes in chunks of %d make %d, limit %d", ErrTooManyChunks, size, avg, n, limit)
		}
		l := layout{sizes: make([]int64, n)}
		for i := range l.sizes {
			l.sizes[i] = avg
		}
		l.sizes[n-1] = size - (n-1)*avg
		return l, nil
	}
	d, err := s.Delta(context.Background())
	if err != nil {
		return layout{}, fmt.Errorf("sim: %w", err)
	}
	if n := int64(len(d.V2.Chunks)); n > limit {
		return layout{}, fmt.Errorf("%w: version 2 has %d chunks, limit %d", ErrTooManyChunks, n, limit)
	}
	l := layout{sizes: make([]int64, len(d.V2.Chunks)), held: d.Held,
		delta: &result.Delta{ChangedBytes: d.ChangedBytes, ChangedChunkBytes: d.ChangedChunkBytes}}
	for i, c := range d.V2.Chunks {
		l.sizes[i] = int64(c.Size)
	}
	return l, nil
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
