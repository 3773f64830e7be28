//go:build amd64 && !purego

package chunker

//go:generate sh -c "python3 asmgen/gear_amd64.py > gear_amd64.s"

import (
	"math"
	"math/bits"

	"golang.org/x/sys/cpu"
)

// The amd64 scan hashes many stretches of the input at once. It works in
// blocks; a block of m supersteps is split into 8 vector lanes of 64m
// positions followed by 2 scalar lanes of 128m positions, and every lane is
// hashed from the 64 (vector) or 128 (scalar) bytes before its first
// position, which gives it the same hashes as a scan from the start (the
// hash depends only on the window). The assembly hashes all lanes in
// lockstep: the vector lanes with AVX-512 VBMI, gearTable being looked up in
// registers with VPERMI2B on its 8 byte planes (VPGATHERQQ is too slow on
// Zen 4: about 10 cycles for 8 entries), and the scalar lanes with ordinary
// instructions interleaved with the vector ones, on the integer pipes the
// vector code leaves idle.
//
// The assembly only says which lanes may hold a candidate; the first of
// those is rescanned with scanGeneric, which gives the exact first index.
// A lane is only reported once all lanes before it in the block are hashed
// to their end, so the first candidate of the first reported lane that has
// one is the first of the block.

//go:noescape
func gearScanAVX512(p *byte, stride int, n int, thr uint64, planes *[8][256]byte, tab *[256]uint64, q *byte, qstride int, thrHi uint32) uint64

// useGearAccel reports whether scanGear uses the assembly.
var useGearAccel = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VBMI && cpu.X86.HasBMI2

// gearPlanes[p][v] is byte p of gearTable[v].
var gearPlanes = func() (t [8][256]byte) {
	for v, x := range gearTable {
		for p := range t {
			t[p][v] = byte(x >> (8 * p))
		}
	}
	return t
}()

const (
	gearVecLanes  = 8
	gearScaLanes  = 2
	gearVecStep   = 64  // positions of a vector lane per superstep
	gearScaStep   = 128 // positions of a scalar lane per superstep
	gearSuperstep = gearVecLanes*gearVecStep + gearScaLanes*gearScaStep

	// gearMaxSupersteps caps the block size, so that a block is at most
	// 96 KiB and the warm-up superstep costs under 1%.
	gearMaxSupersteps = 128
	// Below gearMinAccel bytes scanGeneric is faster; with candidates
	// closer than gearMinAccelDist bytes on average it is about as fast,
	// and faster on data that is not in cache.
	gearMinAccel     = 2 << 10
	gearMinAccelDist = 32 << 10
)

// scanGear finds the first gear candidate in b; see scanGeneric for the contract.
func scanGear(b []byte, thr uint64) int {
	if !useGearAccel || len(b) < gearMinAccel || thr > math.MaxUint64/gearMinAccelDist {
		return scanGeneric(b, thr)
	}
	return scanGearAccel(b, thr)
}

// gearSupersteps returns the block size for thr. Each block costs a warm-up
// superstep, and the block holding the first candidate is hashed to its end
// (on average half a block more than needed), so with candidates every d
// bytes on average the waste is about 1/m + m*gearSuperstep/(2d), which is
// lowest for m = sqrt(2d/gearSuperstep). Blocks twice that size waste a
// little more when the data is in cache, but much less time when it comes
// from memory, where short lanes get little help from the prefetchers.
func gearSupersteps(thr uint64) int {
	if thr == 0 {
		return gearMaxSupersteps
	}
	d := math.Exp2(64) / float64(thr)
	return int(min(max(2*math.Sqrt(2*d/gearSuperstep), 16), gearMaxSupersteps))
}

// scanGearAccel is scanGear with the assembly, whatever the size of b; the
// CPU must have the features useGearAccel checks.
func scanGearAccel(b []byte, thr uint64) int {
	if len(b) < gearWindow+gearSuperstep || thr > 1<<62 {
		return scanGeneric(b, thr)
	}
	// Position gearWindow-1 has no byte before its window to warm up on.
	if r := scanGeneric(b[:gearWindow], thr); r >= 0 {
		return r
	}
	// The vector lanes only compare the high halves of the hashes: h < thr
	// implies h>>32 < ceil(thr/2^32). A lane that passes is rescanned
	// exactly, so a false positive costs time only.
	thrHi := uint32(thr>>32) + uint32(min(thr&math.MaxUint32, 1))
	mMax := gearSupersteps(thr)
	pos := gearWindow
	for {
		m := min((len(b)-pos)/gearSuperstep, mMax)
		if m == 0 {
			break
		}
		vs, ss := m*gearVecStep, m*gearScaStep
		q := pos + gearVecLanes*vs // the first position of the scalar lanes
		mask := gearScanAVX512(&b[pos-gearVecStep], vs, m+1, thr, &gearPlanes, &gearTable, &b[q-gearScaStep], ss, thrHi)
		for ; mask != 0; mask &= mask - 1 {
			l := bits.TrailingZeros64(mask)
			start, n := pos+l*vs, vs
			if l >= gearVecLanes {
				start, n = q+(l-gearVecLanes)*ss, ss
			}
			if r := scanGeneric(b[start-(gearWindow-1):start+n], thr); r >= 0 {
				return start - (gearWindow - 1) + r
			}
		}
		pos += m * gearSuperstep
	}
	if r := scanGeneric(b[pos-(gearWindow-1):], thr); r >= 0 {
		return pos - (gearWindow - 1) + r
	}
	return -1
}

// gearEdges returns, for tests, the positions where scanGearAccel starts a
// lane or its generic tail on an input of n bytes.
func gearEdges(n int, thr uint64) []int {
	if n < gearWindow+gearSuperstep || thr > 1<<62 {
		return nil
	}
	var edges []int
	mMax := gearSupersteps(thr)
	pos := gearWindow
	for {
		m := min((n-pos)/gearSuperstep, mMax)
		if m == 0 {
			break
		}
		vs, ss := m*gearVecStep, m*gearScaStep
		for l := range gearVecLanes {
			edges = append(edges, pos+l*vs)
		}
		for l := range gearScaLanes {
			edges = append(edges, pos+gearVecLanes*vs+l*ss)
		}
		pos += m * gearSuperstep
	}
	return append(edges, pos)
}
