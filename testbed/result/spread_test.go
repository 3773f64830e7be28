package result

import (
	"testing"

	"github.com/p2pd/p2pd/testbed/scenario"
)

// TestSpreadMeter: three chunks over 10 honest peers, sampled four times.
// Chunk 0 spreads at once, chunk 1 reaches half but never 99%, chunk 2
// never leaves the origin; the summary takes the medians over the chunks
// that got there.
func TestSpreadMeter(t *testing.T) {
	m := NewSpreadMeter(3, 10, nil)
	counts := [][]int{
		{0, 0, 0},
		{1, 1, 0},
		{5, 4, 0},
		{10, 5, 0},
	}
	for k, c := range counts {
		m.Observe(float64(k), len(c), func(i int) int { return c[i] })
	}
	m.Observe(9, 2, func(int) int { return 10 }) // another blob's counts: ignored
	// A delta run's chunk that the fleet holds from the start: held, and
	// out of the medians.
	held := NewSpreadMeter(2, 10, []bool{true})
	held.Observe(0.25, 2, func(i int) int { return []int{10, 4}[i] })
	held.Observe(1, 2, func(int) int { return 10 })
	if hs := held.Spread(); !hs[0].Held || hs[1].Held {
		t.Fatalf("held %+v", hs)
	}
	if s := (&Result{Scenario: scenario.Default(), Spread: held.Spread()}).Summarize(); s.SpreadHalfS != 0.75 || s.SpreadP99S != 0.75 {
		t.Fatalf("medians with a held chunk %v / %v, want 0.75 / 0.75", s.SpreadHalfS, s.SpreadP99S)
	}
	sp := m.Spread()
	want := []ChunkSpread{
		{Index: 0, FirstS: 1, HalfS: 2, P99S: 3},
		{Index: 1, FirstS: 1, HalfS: 3, P99S: -1},
		{Index: 2, FirstS: -1, HalfS: -1, P99S: -1},
	}
	for i := range want {
		if sp[i] != want[i] {
			t.Errorf("chunk %d: %+v, want %+v", i, sp[i], want[i])
		}
	}
	if err := CheckSpread(sp, 3); err != nil {
		t.Fatal(err)
	}
	r := &Result{Scenario: scenario.Default(), Spread: sp}
	s := r.Summarize()
	// Half: chunk 0 took 1 s, chunk 1 2 s (nearest-rank median: 1 s);
	// 99%: chunk 0 alone, 2 s.
	if s.SpreadHalfS != 1 || s.SpreadP99S != 2 {
		t.Fatalf("medians %v / %v, want 1 / 2", s.SpreadHalfS, s.SpreadP99S)
	}
	var nilMeter *SpreadMeter
	nilMeter.Observe(0, 0, nil)
	if nilMeter.Spread() != nil {
		t.Fatal("a nil meter reported a spread")
	}
}

func TestCheckSpread(t *testing.T) {
	for _, tc := range []struct {
		name string
		sp   []ChunkSpread
	}{
		{"too few", []ChunkSpread{{Index: 0, FirstS: -1, HalfS: -1, P99S: -1}}},
		{"wrong index", []ChunkSpread{{Index: 1, FirstS: -1, HalfS: -1, P99S: -1}, {Index: 0, FirstS: -1, HalfS: -1, P99S: -1}}},
		{"half before first", []ChunkSpread{{Index: 0, FirstS: 2, HalfS: 1, P99S: -1}, {Index: 1, FirstS: -1, HalfS: -1, P99S: -1}}},
		{"half without first", []ChunkSpread{{Index: 0, FirstS: -1, HalfS: 1, P99S: 1}, {Index: 1, FirstS: -1, HalfS: -1, P99S: -1}}},
	} {
		if CheckSpread(tc.sp, 2) == nil {
			t.Errorf("%s: accepted %+v", tc.name, tc.sp)
		}
	}
}
