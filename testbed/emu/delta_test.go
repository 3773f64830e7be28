package emu

import (
	"testing"

	"github.com/p2pd/p2pd/testbed/scenario"
)

// TestDelta: peers that start holding version 1 of a blob (their stores
// pre-loaded) fetch only the chunks of version 2 that are new, and end
// with version 2, verified.
func TestDelta(t *testing.T) {
	s := small(10)
	s.Blob.Base = &scenario.Base{Changed: 0.05, Regions: 4}
	r, sum := runWith(t, s, Options{Verify: true})
	if sum.Completed != 10 || sum.Failed != 0 {
		for _, p := range r.Peers {
			t.Logf("%+v", p)
		}
		t.Fatalf("completed %d, failed %d of 10", sum.Completed, sum.Failed)
	}
	d := r.Delta
	if d == nil || d.ChangedBytes <= 0 || d.ChangedChunkBytes < d.ChangedBytes || d.ChangedChunkBytes >= int64(s.Blob.Size)/2 {
		t.Fatalf("delta %+v of a %d-byte blob", d, s.Blob.Size)
	}
	need := 10 * d.ChangedChunkBytes
	if sum.BytesMoved < need || float64(sum.BytesMoved) > 1.3*float64(need) {
		t.Errorf("moved %d bytes, want %d (10 peers × %d changed-chunk bytes) to 1.3× that", sum.BytesMoved, need, d.ChangedChunkBytes)
	}
	if want := s.BoundFor(d.ChangedChunkBytes); r.Bound != want {
		t.Errorf("bound %+v, want %+v (for the changed chunks)", r.Bound, want)
	}
	// The spread marks what version 1 had as held, as the delta says.
	if len(r.Spread) != len(d.Held) {
		t.Fatalf("spread of %d chunks, delta of %d", len(r.Spread), len(d.Held))
	}
	for i, c := range r.Spread {
		if c.Held != d.Held[i] {
			t.Fatalf("chunk %d: spread %+v, held by version 1: %v", i, c, d.Held[i])
		}
	}
}

// TestFDsNeeded: the estimate grows with the fleet and its connections,
// and 1,000 peers dialing 5 each fit this machine's hard limit of 20,000.
func TestFDsNeeded(t *testing.T) {
	s := small(1000)
	all := FDsNeeded(s)
	s.Conns.Max = 5
	few := FDsNeeded(s)
	if few >= all || few > 20_000 || few < 1000*(2*5) {
		t.Errorf("1,000 peers need %d file descriptors with 5 connections each, %d with the default", few, all)
	}
}
