package sched

import (
	"iter"
	"math/bits"
	"strconv"
	"strings"
)

// Bitset is a fixed-length set of chunk indices, one bit per chunk of a
// manifest. The zero value is an empty set of length 0, which the Scheduler
// accepts wherever a bitset of the manifest's length is expected and reads
// as "no chunks".
//
// A Bitset shares its storage when copied; use Clone for an independent copy.
// The Scheduler copies every Bitset it is given, so callers may reuse theirs.
type Bitset struct {
	n int
	w []uint64
}

// NewBitset returns an empty set of length n.
func NewBitset(n int) Bitset {
	if n < 0 {
		panic("sched: negative bitset length")
	}
	return Bitset{n: n, w: make([]uint64, words(n))}
}

// BitsetIn returns an empty set of length n stored in w, which must hold
// at least (n+63)/64 words: a caller can keep a small set inside a struct
// of its own rather than in a separate allocation. The set shares w.
func BitsetIn(w []uint64, n int) Bitset {
	if n < 0 || len(w) < words(n) {
		panic("sched: bitset storage too short")
	}
	w = w[:words(n)]
	clear(w)
	return Bitset{n: n, w: w}
}

// FullBitset returns a set of length n holding every index.
func FullBitset(n int) Bitset {
	b := NewBitset(n)
	b.SetRange(0, n)
	return b
}

// BitsetOf returns a set of length n holding the given indices. It panics if
// one is out of range.
func BitsetOf(n int, idx ...int) Bitset {
	b := NewBitset(n)
	for _, i := range idx {
		b.Set(i)
	}
	return b
}

// BitsetFromBools returns a set of length len(v) holding every i with v[i].
func BitsetFromBools(v []bool) Bitset {
	b := NewBitset(len(v))
	for i, x := range v {
		if x {
			b.Set(i)
		}
	}
	return b
}

func words(n int) int { return (n + 63) >> 6 }

// Len returns the length of the set (not the number of members; see Count).
func (b Bitset) Len() int { return b.n }

// Has reports whether i is in the set. Indices outside [0, Len) are not.
func (b Bitset) Has(i int) bool {
	return uint(i) < uint(b.n) && b.w[i>>6]&(1<<(uint(i)&63)) != 0
}

// Set adds i to the set. It panics if i is outside [0, Len).
func (b *Bitset) Set(i int) {
	if uint(i) >= uint(b.n) {
		panic("sched: bitset index " + strconv.Itoa(i) + " out of range [0," + strconv.Itoa(b.n) + ")")
	}
	b.w[i>>6] |= 1 << (uint(i) & 63)
}

// Clear removes i from the set. Indices outside [0, Len) are ignored.
func (b *Bitset) Clear(i int) {
	if uint(i) < uint(b.n) {
		b.w[i>>6] &^= 1 << (uint(i) & 63)
	}
}

// SetRange adds every index in [lo, hi). It panics if the range is not
// within [0, Len).
func (b *Bitset) SetRange(lo, hi int) {
	if lo < 0 || hi > b.n || lo > hi {
		panic("sched: bitset range out of bounds")
	}
	for lo < hi && lo&63 != 0 {
		b.Set(lo)
		lo++
	}
	for ; lo+64 <= hi; lo += 64 {
		b.w[lo>>6] = ^uint64(0)
	}
	for ; lo < hi; lo++ {
		b.Set(lo)
	}
}

// Count returns the number of members.
func (b Bitset) Count() int {
	c := 0
	for _, w := range b.w {
		c += bits.OnesCount64(w)
	}
	return c
}

// Clone returns an independent copy.
func (b Bitset) Clone() Bitset {
	return Bitset{n: b.n, w: append([]uint64(nil), b.w...)}
}

// Equal reports whether b and o have the same length and members.
func (b Bitset) Equal(o Bitset) bool {
	if b.n != o.n {
		return false
	}
	for i := range b.w {
		if b.w[i] != o.w[i] {
			return false
		}
	}
	return true
}

// All iterates over the members in increasing order.
func (b Bitset) All() iter.Seq[int] {
	return func(yield func(int) bool) {
		for wi, w := range b.w {
			for w != 0 {
				if !yield(wi<<6 + bits.TrailingZeros64(w)) {
					return
				}
				w &= w - 1
			}
		}
	}
}

// String lists the members as ranges, e.g. "0-3,7"; the empty set is "-".
func (b Bitset) String() string {
	var sb strings.Builder
	start, prev := -2, -2
	flush := func() {
		if start < 0 {
			return
		}
		if sb.Len() > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(strconv.Itoa(start))
		if prev > start {
			sb.WriteByte('-')
			sb.WriteString(strconv.Itoa(prev))
		}
	}
	for i := range b.All() {
		if i != prev+1 {
			flush()
			start = i
		}
		prev = i
	}
	flush()
	if sb.Len() == 0 {
		return "-"
	}
	return sb.String()
}

// copyInto overwrites dst (of the scheduler's length n) with the members of
// b below n; members of b at or beyond n are dropped, and a shorter b leaves
// the remaining indices empty. It returns the member count.
func (b Bitset) copyInto(dst Bitset) int {
	clear(dst.w)
	copy(dst.w, b.w)
	if tail := dst.n & 63; tail != 0 && len(dst.w) > 0 {
		dst.w[len(dst.w)-1] &= 1<<uint(tail) - 1
	}
	return dst.Count()
}
