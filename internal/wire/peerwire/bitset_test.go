package peerwire

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestBitsetBasics(t *testing.T) {
	for _, n := range []int{0, 1, 7, 8, 9, 63, 64, 65, 130, 1000} {
		s := NewBitset(n)
		if s.Len() != n || s.Count() != 0 || s.Full() != (n == 0) || s.Next(0) != -1 {
			t.Fatalf("n=%d: new set %v, full %v, next %d", n, s, s.Full(), s.Next(0))
		}
		rng := rand.New(rand.NewPCG(uint64(n), 0))
		want := map[int]bool{}
		for range n / 2 {
			i := rng.IntN(n)
			s.Set(i)
			want[i] = true
		}
		if s.Count() != len(want) {
			t.Fatalf("n=%d: Count %d, want %d", n, s.Count(), len(want))
		}
		var got []int
		for i := s.Next(0); i >= 0; i = s.Next(i + 1) {
			got = append(got, i)
		}
		for i := range n {
			if s.Has(i) != want[i] {
				t.Fatalf("n=%d: Has(%d) = %v", n, i, s.Has(i))
			}
		}
		wantList := make([]int, 0, len(want))
		for i := range want {
			wantList = append(wantList, i)
		}
		slices.Sort(wantList)
		if !slices.Equal(got, wantList) {
			t.Fatalf("n=%d: Next iterates %v, want %v", n, got, wantList)
		}
		c := s.Clone()
		s.Fill()
		if !s.Full() || s.Count() != n {
			t.Fatalf("n=%d: after Fill, Count %d", n, s.Count())
		}
		if n > 0 {
			if c.Equal(s) != (len(want) == n) {
				t.Fatalf("n=%d: Clone shares storage or Equal is wrong", n)
			}
			s.Clear(n - 1)
			if s.Has(n-1) || s.Count() != n-1 {
				t.Fatalf("n=%d: Clear(%d) did not remove it", n, n-1)
			}
		}
		// Round trip through a Bitfield, which must be canonical.
		for _, set := range []*Bitset{s, c} {
			f := set.Bitfield(blobA)
			if _, err := AppendFrame(nil, f); err != nil {
				t.Fatalf("n=%d: Bitfield does not encode: %v", n, err)
			}
			back, err := BitsetFromBitfield(f)
			if err != nil || !back.Equal(set) {
				t.Fatalf("n=%d: round trip through Bitfield: %v", n, err)
			}
			if n == 0 {
				continue
			}
			f.Bits[0] ^= 0xff // the Bitset must not alias the bits
			if !back.Equal(set) {
				t.Fatalf("n=%d: Bitset aliases the Bitfield's bits", n)
			}
		}
	}
}

func TestBitsetWireOrder(t *testing.T) {
	s := NewBitset(10)
	s.Set(0)
	s.Set(7)
	s.Set(9)
	if got, want := s.Bytes(), []byte{0x81, 0x40}; !bytes.Equal(got, want) {
		t.Fatalf("Bytes() = %x, want %x", got, want)
	}
	s = NewBitset(70)
	s.Set(64)
	if got := s.Bytes(); got[8] != 0x80 || len(got) != 9 {
		t.Fatalf("index 64 encodes as %x", got)
	}
	f := Bitfield{NumChunks: 70, Bits: make([]byte, 9)}
	f.Bits[8] = 0x20 // index 66
	s, err := BitsetFromBitfield(f)
	if err != nil || s.Next(0) != 66 || s.Count() != 1 {
		t.Fatalf("BitsetFromBitfield: next %d, count %d, %v", s.Next(0), s.Count(), err)
	}
}

func TestBitsetFromBadBitfield(t *testing.T) {
	for _, f := range []Bitfield{
		{NumChunks: 3, Bits: []byte{0x10}},
		{NumChunks: 9, Bits: []byte{0}},
		{NumChunks: 0, Bits: []byte{0}},
		{NumChunks: 1 << 21, Bits: make([]byte, 1<<18)},
	} {
		if _, err := BitsetFromBitfield(f); !errors.Is(err, ErrMalformed) {
			t.Errorf("%d chunks, bits %x: error %v, want ErrMalformed", f.NumChunks, f.Bits[:1], err)
		}
	}
}

func TestBitsetAndNot(t *testing.T) {
	mine, theirs := NewBitset(100), NewBitset(100)
	for i := 0; i < 100; i += 2 {
		mine.Set(i)
	}
	for i := 0; i < 100; i += 3 {
		theirs.Set(i)
	}
	need := mine.MissingFrom(theirs) // multiples of 3 that are odd
	only := mine.AndNot(theirs)      // even, not multiples of 3
	for i := range 100 {
		if need.Has(i) != (i%3 == 0 && i%2 == 1) {
			t.Fatalf("MissingFrom: Has(%d) = %v", i, need.Has(i))
		}
		if only.Has(i) != (i%2 == 0 && i%3 != 0) {
			t.Fatalf("AndNot: Has(%d) = %v", i, only.Has(i))
		}
	}
	if c := mine.CountMissingFrom(theirs); c != need.Count() || c != 17 {
		t.Fatalf("CountMissingFrom = %d, MissingFrom has %d, want 17", c, need.Count())
	}
	if mine.Count() != 50 || theirs.Count() != 34 {
		t.Fatal("AndNot modified its operands")
	}
	full := NewBitset(100)
	full.Fill()
	if full.CountMissingFrom(theirs) != 0 || full.MissingFrom(theirs).Count() != 0 {
		t.Fatal("a full set is missing something")
	}
}

func TestBitsetPanics(t *testing.T) {
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s did not panic", name)
			}
		}()
		f()
	}
	s := NewBitset(10)
	mustPanic("Set(10)", func() { s.Set(10) })
	mustPanic("Has(-1)", func() { s.Has(-1) })
	mustPanic("Clear(64)", func() { s.Clear(64) })
	mustPanic("AndNot of other length", func() { s.AndNot(NewBitset(11)) })
	mustPanic("CountMissingFrom of other length", func() { s.CountMissingFrom(NewBitset(9)) })
	mustPanic("NewBitset(-1)", func() { NewBitset(-1) })
	var zero Bitset
	if zero.Len() != 0 || zero.Count() != 0 || zero.Next(0) != -1 || len(zero.Bytes()) != 0 {
		t.Error("zero Bitset is not an empty set")
	}
}
