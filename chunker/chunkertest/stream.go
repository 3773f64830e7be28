// Package chunkertest generates deterministic pseudo-random blobs for tests,
// benchmarks and demos. The same seed gives the same bytes on every machine
// and Go version: the generator is splitmix64, written out here.
package chunkertest

import (
	"encoding/binary"
	"io"
)

// poolWords is the size of the random pool the stream is built from: 1 MiB.
const poolWords = 1 << 17

// Stream is an io.Reader of Size pseudo-random bytes. Each 1 MiB period is a
// fixed random pool XORed with a per-period key, so generation costs little
// more than a memory copy (it does not dominate a hashing benchmark) while no
// two periods are alike. It also implements io.ReaderAt.
type Stream struct {
	pool [poolWords]uint64
	seed uint64
	size int64
	off  int64
}

// NewStream returns a Stream of size bytes for seed.
func NewStream(seed uint64, size int64) *Stream {
	s := &Stream{seed: seed, size: size}
	x := seed
	for i := range s.pool {
		x, s.pool[i] = splitmix(x)
	}
	return s
}

// Bytes returns the size bytes of seed's stream in memory.
func Bytes(seed uint64, size int) []byte {
	b := make([]byte, size)
	NewStream(seed, int64(size)).ReadAt(b, 0)
	return b
}

func splitmix(x uint64) (uint64, uint64) {
	x += 0x9e3779b97f4a7c15
	z := x
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return x, z ^ (z >> 31)
}

// Size returns the stream's length.
func (s *Stream) Size() int64 { return s.size }

// Read implements io.Reader.
func (s *Stream) Read(p []byte) (int, error) {
	n, err := s.ReadAt(p, s.off)
	s.off += int64(n)
	return n, err
}

// ReadAt implements io.ReaderAt.
func (s *Stream) ReadAt(p []byte, off int64) (int, error) {
	if off >= s.size {
		return 0, io.EOF
	}
	if rest := s.size - off; int64(len(p)) > rest {
		p = p[:rest]
	}
	n := len(p)
	for len(p) > 0 {
		w := off / 8
		period := uint64(w / poolWords)
		_, key := splitmix(s.seed ^ period*0x2545f4914f6cdd1d)
		var word [8]byte
		if r := int(off % 8); r != 0 || len(p) < 8 { // unaligned head or short tail
			binary.LittleEndian.PutUint64(word[:], s.pool[w%poolWords]^key)
			k := copy(p, word[r:])
			p, off = p[k:], off+int64(k)
			continue
		}
		i := int(w % poolWords)
		end := min(poolWords, i+len(p)/8)
		for _, v := range s.pool[i:end] {
			binary.LittleEndian.PutUint64(p, v^key)
			p = p[8:]
		}
		off += int64(end-i) * 8
	}
	if off >= s.size {
		return n, io.EOF
	}
	return n, nil
}
