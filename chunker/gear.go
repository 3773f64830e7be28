package chunker

// The gear rolling hash.
//
// The hash at position p is defined over the 64-byte window ending at p:
//
//	h(p) = Σ_{k=0..63} gearTable[b[p-k]] << k   (mod 2^64)
//
// Because every contribution is shifted out after 64 steps, h(p) depends only
// on the window, never on where scanning started. That makes boundaries a pure
// function of the bytes around them (which is what lets them resynchronize
// after an edit) and lets a scan begin anywhere after 63 bytes of warm-up.
//
// A position is a candidate when the top bits of h(p) are zero, that is when
// h(p) < threshold. The top bits are used because bit k of h(p) depends on the
// last k+1 bytes only: the high bits see the whole window.

// gearWindow is the number of bytes a gear hash covers.
const gearWindow = 64

// gearTable maps each byte value to a pseudo-random 64-bit word. It is derived
// with splitmix64 from a fixed seed, so it is identical on every machine; the
// golden vectors in testdata pin it.
var gearTable = func() (t [256]uint64) {
	x := uint64(0x7032_7064_6364_6331) // "p2pdcdc1"
	for i := range t {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		t[i] = z ^ (z >> 31)
	}
	return t
}()

// scanGeneric returns the smallest index i >= gearWindow-1 such that the gear
// hash of b[i-63..i] is below thr, or -1 when there is none. It is the
// reference implementation; scanGear may use a faster equivalent.
func scanGeneric(b []byte, thr uint64) int {
	if len(b) < gearWindow {
		return -1
	}
	var h uint64
	for _, c := range b[:gearWindow-1] {
		h = h + h + gearTable[c]
	}
	i := gearWindow - 1
	// Unrolled by eight: the dependency chain is one LEA per byte, and the
	// eight threshold tests run off the chain.
	for ; i+8 <= len(b); i += 8 {
		p := b[i : i+8 : i+8]
		h0 := h + h + gearTable[p[0]]
		h1 := h0 + h0 + gearTable[p[1]]
		h2 := h1 + h1 + gearTable[p[2]]
		h3 := h2 + h2 + gearTable[p[3]]
		h4 := h3 + h3 + gearTable[p[4]]
		h5 := h4 + h4 + gearTable[p[5]]
		h6 := h5 + h5 + gearTable[p[6]]
		h7 := h6 + h6 + gearTable[p[7]]
		if h0 < thr || h1 < thr || h2 < thr || h3 < thr || h4 < thr || h5 < thr || h6 < thr || h7 < thr {
			for j, hj := range [8]uint64{h0, h1, h2, h3, h4, h5, h6, h7} {
				if hj < thr {
					return i + j
				}
			}
		}
		h = h7
	}
	for ; i < len(b); i++ {
		h = h + h + gearTable[b[i]]
		if h < thr {
			return i
		}
	}
	return -1
}
