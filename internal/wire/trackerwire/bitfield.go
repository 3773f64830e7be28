package trackerwire

import (
	"fmt"
	"math/bits"
)

// Bitfield is a bitmap of chunk indexes, most significant bit first: chunk
// i is bit 7-i%8 of byte i/8. A Bitfield for n chunks has BitfieldLen(n)
// bytes and its padding bits are zero. It encodes as base64 in JSON.
type Bitfield []byte

// BitfieldLen returns the length in bytes of a Bitfield of n chunks.
func BitfieldLen(n uint32) int { return int((uint64(n) + 7) / 8) }

// NewBitfield returns an empty Bitfield for n chunks.
func NewBitfield(n uint32) Bitfield { return make(Bitfield, BitfieldLen(n)) }

// FullBitfield returns a Bitfield for n chunks with every bit set.
func FullBitfield(n uint32) Bitfield {
	b := NewBitfield(n)
	for i := range b {
		b[i] = 0xff
	}
	if r := n % 8; r != 0 {
		b[len(b)-1] = 0xff << (8 - r)
	}
	return b
}

// Has reports whether bit i is set. Indexes beyond the bitfield are unset.
func (b Bitfield) Has(i uint32) bool {
	j := i / 8
	return uint64(j) < uint64(len(b)) && b[j]&(0x80>>(i%8)) != 0
}

// Set sets bit i, which must be within the bitfield.
func (b Bitfield) Set(i uint32) { b[i/8] |= 0x80 >> (i % 8) }

// Count returns the number of bits set.
func (b Bitfield) Count() int {
	n := 0
	for _, x := range b {
		n += bits.OnesCount8(x)
	}
	return n
}

// Clone returns a copy of b (nil for nil).
func (b Bitfield) Clone() Bitfield {
	if b == nil {
		return nil
	}
	return append(Bitfield(nil), b...)
}

// Check reports why b is not a valid Bitfield for n chunks: a wrong length
// or a padding bit set. The error wraps ErrInvalid.
func (b Bitfield) Check(n uint32) error {
	if want := BitfieldLen(n); len(b) != want {
		return fmt.Errorf("%w: bitfield is %d bytes, want %d for %d chunks", ErrInvalid, len(b), want, n)
	}
	if r := n % 8; r != 0 && b[len(b)-1]&(0xff>>r) != 0 {
		return fmt.Errorf("%w: bitfield has padding bits set after chunk %d", ErrInvalid, n)
	}
	return nil
}
