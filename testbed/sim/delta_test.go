package sim

import (
	"context"
	"errors"
	"testing"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/testbed/scenario"
)

// TestDelta: a fleet that holds version 1 of a blob fetches only the
// chunks of version 2 that are new, and the bound is for those bytes.
func TestDelta(t *testing.T) {
	s := scenario.Small(10)
	s.Mode = scenario.ModeSim
	s.Blob.Base = &scenario.Base{Changed: 0.05, Regions: 4}
	r, sm := run(t, s)
	sum := r.Summarize()
	if sum.Completed != 10 || sum.Failed != 0 {
		t.Fatalf("completed %d, failed %d of 10", sum.Completed, sum.Failed)
	}
	d := r.Delta
	if d == nil || d.ChangedBytes <= 0 || d.ChangedChunkBytes < d.ChangedBytes {
		t.Fatalf("delta %+v", d)
	}
	for i := range 10 {
		if h := &sm.hosts[sm.norig+i]; h.nhave != sm.n || !h.complete {
			t.Errorf("peer %d ends with %d of %d chunks", i, h.nhave, sm.n)
		}
	}
	need := int64(10) * d.ChangedChunkBytes
	if sum.BytesMoved < need || float64(sum.BytesMoved) > 1.3*float64(need) {
		t.Errorf("moved %d bytes, want %d (10 peers × %d changed-chunk bytes) to 1.3× that", sum.BytesMoved, need, d.ChangedChunkBytes)
	}
	if want := s.BoundFor(d.ChangedChunkBytes); r.Bound != want {
		t.Errorf("bound %+v, want %+v (for the changed chunks)", r.Bound, want)
	}
	if sum.ChangedBytes != d.ChangedBytes || sum.MovedPerPeerOverChanged <= 1 {
		t.Errorf("summary %+v", sum)
	}
	// The chunks version 1 has too are held from the start and out of
	// the spread's medians; the new ones spread.
	var moved int64
	for _, c := range r.Spread {
		if !c.Held {
			moved += sm.sizes[c.Index]
		}
	}
	if moved != d.ChangedChunkBytes || sum.SpreadHalfS <= 0 {
		t.Errorf("chunks that spread hold %d bytes, want the %d changed-chunk bytes; median spread %.2fs", moved, d.ChangedChunkBytes, sum.SpreadHalfS)
	}
}

// TestLayout: a plain run moves the chunks the emulation's origins cut,
// not size/average equal ones (Small's 4 MiB at 64 KiB: fewer than 64).
func TestLayout(t *testing.T) {
	s := scenario.Small(2).WithDefaults()
	c, err := chunker.New(s.Blob.Chunker)
	if err != nil {
		t.Fatal(err)
	}
	// The chunker itself, not Scenario.Cut, which chunkLayout calls.
	m, err := c.Split(context.Background(), s.BlobVersion(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := chunkLayout(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.sizes) != len(m.Chunks) {
		t.Fatalf("%d chunks, the chunker cuts %d", len(l.sizes), len(m.Chunks))
	}
	for i, ch := range m.Chunks {
		if l.sizes[i] != int64(ch.Size) {
			t.Fatalf("chunk %d: %d bytes, the chunker's is %d", i, l.sizes[i], ch.Size)
		}
	}
	if nominal := int(s.Blob.Size) / s.Blob.Chunker.AvgSize; len(m.Chunks) == nominal {
		t.Fatalf("the chunker cut %d chunks, as many as size/average: the test cannot tell the layouts apart", nominal)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := chunkLayout(ctx, s); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v, want context.Canceled", err)
	}
}
