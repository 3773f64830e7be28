package result

import (
	"fmt"
	"math"
	"slices"
)

// ChunkSpread is how fast one chunk spread through the honest peers: when
// the first of them held it, when half of them did and when 99% did, in
// seconds since the run began, as the time series saw it (Sample's
// replication counts: so to within one sampling period, and in emulation
// as late as the peers' announces to the tracker, which counts every
// peer it has a record of). A share never reached is -1.
//
// The chunk pipeline term of the bound (Bound.Pipeline, log2(N) chunk
// times) is what a chunk takes to reach every peer when each copy is
// passed on at the full link rate as soon as it is whole. HalfS − FirstS
// set beside it shows how far the swarm is from that: a chunk that needs
// a minute to reach half the crowd puts that minute on every peer that
// waits for it.
type ChunkSpread struct {
	Index  int     `json:"index"`
	FirstS float64 `json:"first_s"`
	HalfS  float64 `json:"half_s"`
	P99S   float64 `json:"p99_s"`
	// Held: the fleet held the chunk from the start, so it had nothing to
	// spread (in a delta run, a chunk of version 2 that version 1 has
	// too). The medians leave it out.
	Held bool `json:"held,omitempty"`
}

// SpreadMeter builds each chunk's ChunkSpread from the replication
// counts a run samples. The zero value is not usable; see NewSpreadMeter.
type SpreadMeter struct {
	half, p99 int
	chunks    []ChunkSpread
}

// NewSpreadMeter returns a meter for a blob of chunks chunks, spread over
// peers honest peers, of which the fleet holds from the start those that
// held marks (by index; nil: none; Delta.Held for a delta run).
func NewSpreadMeter(chunks, peers int, held []bool) *SpreadMeter {
	m := &SpreadMeter{
		half:   max(1, int(math.Ceil(0.5*float64(peers)))),
		p99:    max(1, int(math.Ceil(0.99*float64(peers)))),
		chunks: make([]ChunkSpread, chunks),
	}
	for i := range m.chunks {
		m.chunks[i] = ChunkSpread{Index: i, FirstS: -1, HalfS: -1, P99S: -1, Held: i < len(held) && held[i]}
	}
	return m
}

// Observe records that at t seconds, chunk i was held by holders(i)
// honest peers, for every chunk of the blob. A count from a blob of
// another size is ignored (n differs from the meter's chunks).
func (m *SpreadMeter) Observe(t float64, n int, holders func(i int) int) {
	if m == nil || n != len(m.chunks) {
		return
	}
	for i := range m.chunks {
		c := &m.chunks[i]
		if c.P99S >= 0 {
			continue
		}
		h := holders(i)
		if h >= 1 && c.FirstS < 0 {
			c.FirstS = t
		}
		if h >= m.half && c.HalfS < 0 {
			c.HalfS = t
		}
		if h >= m.p99 {
			c.P99S = t
		}
	}
}

// Spread returns the chunks' spreads, by index; nil for a nil meter.
func (m *SpreadMeter) Spread() []ChunkSpread {
	if m == nil {
		return nil
	}
	return slices.Clone(m.chunks)
}

// spreadMedians returns the median over chunks of the time from a chunk's
// first holder to half the honest peers, and to 99% of them, over the
// chunks that got there and were not Held from the start (0 if none did).
func spreadMedians(sp []ChunkSpread) (half, p99 float64) {
	var hs, ps []float64
	for _, c := range sp {
		if c.FirstS < 0 || c.Held {
			continue
		}
		if c.HalfS >= 0 {
			hs = append(hs, c.HalfS-c.FirstS)
		}
		if c.P99S >= 0 {
			ps = append(ps, c.P99S-c.FirstS)
		}
	}
	slices.Sort(hs)
	slices.Sort(ps)
	return Quantile(hs, 0.5), Quantile(ps, 0.5)
}

// CheckSpread reports an error if sp is not a consistent spread of a blob
// of chunks chunks: one entry per chunk, by index, and for each chunk no
// share reached before a smaller one (a share never reached, -1, is
// followed by no reached one).
func CheckSpread(sp []ChunkSpread, chunks int) error {
	if len(sp) != chunks {
		return fmt.Errorf("spread of %d chunks, want %d", len(sp), chunks)
	}
	for i, c := range sp {
		if c.Index != i {
			return fmt.Errorf("spread entry %d is chunk %d", i, c.Index)
		}
		ts := []float64{c.FirstS, c.HalfS, c.P99S}
		for k := 1; k < len(ts); k++ {
			if ts[k] >= 0 && (ts[k-1] < 0 || ts[k] < ts[k-1]) {
				return fmt.Errorf("chunk %d: shares reached out of order: %+v", i, c)
			}
		}
	}
	return nil
}
