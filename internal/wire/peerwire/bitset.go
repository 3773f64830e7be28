package peerwire

import (
	"fmt"
	"math/bits"

	"github.com/p2pd/p2pd/chunker"
)

// Bitset is a fixed-length set of chunk indexes [0, Len()), such as the
// chunks of a blob a peer holds. It converts to and from a Bitfield.
// Indexes out of range panic, as do operations on two sets of different
// lengths: both are bugs, since sets for one blob share its chunk count
// (check a peer's Bitfield.NumChunks against the manifest before
// converting it). The zero value is an empty set of length 0.
type Bitset struct {
	n int
	// w holds bit i at bit 63-i%64 of w[i/64], so that w in big-endian
	// order is the Bitfield encoding. Bits at n and beyond are zero.
	w []uint64
}

// NewBitset returns an empty set of length n.
func NewBitset(n int) *Bitset {
	if n < 0 {
		panic(fmt.Sprintf("peerwire: NewBitset(%d)", n))
	}
	return &Bitset{n: n, w: make([]uint64, (n+63)/64)}
}

// BitsetFromBitfield returns the set f describes, or an error wrapping
// ErrMalformed if f is not canonical. It copies f.Bits.
func BitsetFromBitfield(f Bitfield) (*Bitset, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	s := NewBitset(int(f.NumChunks))
	for j, b := range f.Bits {
		s.w[j/8] |= uint64(b) << (56 - 8*(j%8))
	}
	return s, nil
}

// Bitfield returns the Bitfield message announcing s for blob. Its Bits are
// a fresh slice. Encoding it fails if Len() is over chunker.MaxManifestChunks.
func (s *Bitset) Bitfield(blob chunker.Digest) Bitfield {
	return Bitfield{Blob: blob, NumChunks: uint32(s.n), Bits: s.Bytes()}
}

// Bytes returns the Bitfield encoding of s: (Len()+7)/8 bytes, index 0 in
// the most significant bit of the first byte, spare bits zero; nil for
// Len() 0, as a decoded Bitfield has.
func (s *Bitset) Bytes() []byte {
	if s.n == 0 {
		return nil
	}
	out := make([]byte, (s.n+7)/8)
	for j := range out {
		out[j] = byte(s.w[j/8] >> (56 - 8*(j%8)))
	}
	return out
}

// Len returns the number of indexes the set covers.
func (s *Bitset) Len() int { return s.n }

func (s *Bitset) check(i int) {
	if i < 0 || i >= s.n {
		panic(fmt.Sprintf("peerwire: Bitset index %d out of range [0, %d)", i, s.n))
	}
}

func mask(i int) uint64 { return 1 << (63 - uint(i%64)) }

// Set adds i.
func (s *Bitset) Set(i int) { s.check(i); s.w[i/64] |= mask(i) }

// Clear removes i.
func (s *Bitset) Clear(i int) { s.check(i); s.w[i/64] &^= mask(i) }

// Has reports whether i is in the set.
func (s *Bitset) Has(i int) bool { s.check(i); return s.w[i/64]&mask(i) != 0 }

// Count returns the number of indexes in the set.
func (s *Bitset) Count() int {
	c := 0
	for _, w := range s.w {
		c += bits.OnesCount64(w)
	}
	return c
}

// Full reports whether every index is in the set.
func (s *Bitset) Full() bool { return s.Count() == s.n }

// Fill adds every index.
func (s *Bitset) Fill() {
	for i := range s.w {
		s.w[i] = ^uint64(0)
	}
	if r := s.n % 64; r != 0 {
		s.w[len(s.w)-1] = ^uint64(0) << (64 - r)
	}
}

// Next returns the smallest index ≥ i in the set, or -1 if there is none.
// Iterate with: for i := s.Next(0); i >= 0; i = s.Next(i + 1).
func (s *Bitset) Next(i int) int {
	if i < 0 {
		i = 0
	}
	if i >= s.n {
		return -1
	}
	k := i / 64
	w := s.w[k] & (^uint64(0) >> uint(i%64))
	for {
		if w != 0 {
			return k*64 + bits.LeadingZeros64(w)
		}
		if k++; k == len(s.w) {
			return -1
		}
		w = s.w[k]
	}
}

// Clone returns a copy of s.
func (s *Bitset) Clone() *Bitset {
	return &Bitset{n: s.n, w: append([]uint64(nil), s.w...)}
}

// Equal reports whether s and o have the same length and indexes.
func (s *Bitset) Equal(o *Bitset) bool {
	if s.n != o.n {
		return false
	}
	for i, w := range s.w {
		if w != o.w[i] {
			return false
		}
	}
	return true
}

func (s *Bitset) same(o *Bitset) {
	if s.n != o.n {
		panic(fmt.Sprintf("peerwire: Bitset lengths differ: %d and %d", s.n, o.n))
	}
}

// AndNot returns a new set of the indexes in s that are not in o.
func (s *Bitset) AndNot(o *Bitset) *Bitset {
	s.same(o)
	r := &Bitset{n: s.n, w: make([]uint64, len(s.w))}
	for i, w := range s.w {
		r.w[i] = w &^ o.w[i]
	}
	return r
}

// MissingFrom returns a new set of the indexes o has and s lacks: with s
// the local chunks and o a peer's, what that peer could give us.
func (s *Bitset) MissingFrom(o *Bitset) *Bitset { return o.AndNot(s) }

// CountMissingFrom returns MissingFrom(o).Count() without allocating; it
// is non-zero exactly when o has something s lacks.
func (s *Bitset) CountMissingFrom(o *Bitset) int {
	s.same(o)
	c := 0
	for i, w := range o.w {
		c += bits.OnesCount64(w &^ s.w[i])
	}
	return c
}

// String returns "Bitset(count/len)".
func (s *Bitset) String() string { return fmt.Sprintf("Bitset(%d/%d)", s.Count(), s.n) }
