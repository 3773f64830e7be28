package sim

import (
	"testing"

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
}
