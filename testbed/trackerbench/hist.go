package trackerbench

import (
	"math"
	"math/bits"
	"time"
)

// hist is a latency histogram of microseconds: exact below 256µs, then
// 128 buckets per power of two (under 0.8% wide). Its size is fixed, so a
// run of any length records every sample in bounded memory.
type hist struct {
	counts [histBuckets]uint64
	n      uint64
	max    time.Duration
}

const (
	histSubBits = 7
	histExact   = 1 << (histSubBits + 1) // values below are their own bucket
	histMaxExp  = 34                     // up to 2^(histMaxExp+histSubBits) µs, days
	histBuckets = histExact + histMaxExp<<histSubBits
)

func histBucket(us int64) int {
	if us < histExact {
		return int(max(us, 0))
	}
	e := bits.Len64(uint64(us)) - (histSubBits + 1)
	if e > histMaxExp {
		return histBuckets - 1
	}
	return histExact + (e-1)<<histSubBits + int(us>>e) - 1<<histSubBits
}

// histUpper returns the largest value of bucket i, in microseconds.
func histUpper(i int) int64 {
	if i < histExact {
		return int64(i)
	}
	i -= histExact
	e := i>>histSubBits + 1
	m := int64(i&(1<<histSubBits-1)) + 1<<histSubBits
	return (m+1)<<e - 1
}

func (h *hist) add(d time.Duration) {
	h.counts[histBucket(d.Microseconds())]++
	h.n++
	h.max = max(h.max, d)
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the q-quantile (nearest rank), as the upper edge of its
// bucket but never above the largest sample; 0 if empty.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		if seen += c; seen >= rank {
			return min(time.Duration(histUpper(i))*time.Microsecond, h.max)
		}
	}
	return h.max
}
