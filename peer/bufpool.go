package peer

import (
	"math/bits"
	"sync"
)

// bufPool recycles chunk-sized buffers in power-of-two size classes, from
// 64 KiB to 64 MiB (chunker.MaxChunkSizeLimit), so that moving chunks does
// not churn the heap.
type bufPool struct {
	classes [minClassShift + 11]sync.Pool
}

const (
	minClassShift = 16 // 64 KiB
	maxClassShift = 26 // 64 MiB
)

func class(n int) int {
	if n <= 1<<minClassShift {
		return minClassShift
	}
	return bits.Len(uint(n - 1))
}

// get returns a buffer of length n.
func (p *bufPool) get(n int) []byte {
	c := class(n)
	if c > maxClassShift {
		return make([]byte, n)
	}
	if b, ok := p.classes[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, 1<<c)
}

// put recycles b, which must not be used afterwards.
func (p *bufPool) put(b []byte) {
	c := cap(b)
	if c < 1<<minClassShift || c&(c-1) != 0 || c > 1<<maxClassShift {
		return
	}
	b = b[:0]
	p.classes[bits.Len(uint(c))-1].Put(&b)
}
