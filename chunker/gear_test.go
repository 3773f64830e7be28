package chunker

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// scanNaive is scanGeneric written from the definition of the hash.
func scanNaive(b []byte, thr uint64) int {
	for i := gearWindow - 1; i < len(b); i++ {
		if windowHash(b[i-(gearWindow-1):i+1]) < thr {
			return i
		}
	}
	return -1
}

// windowHash is the gear hash of a 64-byte window.
func windowHash(w []byte) uint64 {
	var h uint64
	for k := range gearWindow {
		h += gearTable[w[gearWindow-1-k]] << k
	}
	return h
}

// lowWindow returns a 64-byte window with a hash below about 2^42: 61 random
// bytes, then the 3 bytes that make the hash smallest. It lets tests plant a
// candidate at any position; with thr just above the hash, other candidates
// come once in about 2^22 positions of random data.
func lowWindow(r *rand.Rand) (w [gearWindow]byte, h uint64) {
	for i := range w {
		w[i] = byte(r.Uint32())
	}
	var h61 uint64
	for _, c := range w[:61] {
		h61 = 2*h61 + gearTable[c]
	}
	// For each x, y the best z makes base+gearTable[z] wrap just past zero.
	sorted := slices.Clone(gearTable[:])
	slices.Sort(sorted)
	h = math.MaxUint64
	for x := range 256 {
		for y := range 256 {
			base := 8*h61 + 4*gearTable[x] + 2*gearTable[y]
			i, _ := slices.BinarySearch(sorted, -base)
			if v := base + sorted[i%256]; v < h {
				h = v
				w[61], w[62] = byte(x), byte(y)
				w[63] = byte(slices.Index(gearTable[:], sorted[i%256]))
			}
		}
	}
	if got := windowHash(w[:]); got != h {
		panic(fmt.Sprintf("lowWindow: hash %#x, want %#x", got, h))
	}
	return w, h
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// plant puts w at b so that its window ends at position i.
func plant(b []byte, i int, w *[gearWindow]byte) { copy(b[i-(gearWindow-1):], w[:]) }

// checkScan compares scanGear, and scanGearAccel where the CPU has it, with
// scanGeneric, and returns scanGeneric's result.
func checkScan(t testing.TB, what string, b []byte, thr uint64) int {
	t.Helper()
	want := scanGeneric(b, thr)
	if got := scanGear(b, thr); got != want {
		t.Fatalf("%s: len %d thr %#x: scanGear = %d, scanGeneric = %d", what, len(b), thr, got, want)
	}
	if useGearAccel {
		if got := scanGearAccel(b, thr); got != want {
			t.Fatalf("%s: len %d thr %#x: scanGearAccel = %d, scanGeneric = %d", what, len(b), thr, got, want)
		}
	}
	return want
}

var testThresholds = func() []uint64 {
	thrs := []uint64{0, 1, 2, 1 << 32, 1<<32 + 1, 3 << 38, 1<<62 - 1, 1 << 62, 1<<62 + 1, 1 << 63, math.MaxUint64}
	for s := 40; s <= 60; s++ {
		thrs = append(thrs, 1<<s)
	}
	return thrs
}()

func TestScanNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for n := range 200 {
		b := randBytes(r, n)
		for _, thr := range testThresholds {
			if got, want := scanGeneric(b, thr), scanNaive(b, thr); got != want {
				t.Fatalf("len %d thr %#x: scanGeneric = %d, scanNaive = %d", n, thr, got, want)
			}
		}
	}
}

func TestScanGearShort(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	for n := range 1200 {
		b := randBytes(r, n)
		for _, thr := range testThresholds {
			checkScan(t, "random", b, thr)
		}
	}
}

func TestScanGearLengths(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	var lengths []int
	for _, k := range []int{1, 2, 3, 4, 5, 6, 7, 8, 27, 64, 85, 128, 129, 200} {
		for _, d := range []int{-65, -64, -63, -2, -1, 0, 1, 2, 63, 64, 65, 511, 767} {
			// k blocks of one superstep's worth of positions, after the
			// first window.
			lengths = append(lengths, gearWindow+k*768+d)
		}
	}
	lengths = append(lengths, 4095, 4096, 4097, 64<<10+63, 1<<20+12345, 3<<20+1)
	big := randBytes(r, slices.Max(lengths))
	for _, n := range lengths {
		for _, thr := range testThresholds {
			checkScan(t, "random", big[:n], thr)
		}
		// Thresholds around the hash of the window at the end, so that it
		// is just a candidate, or just not one.
		h := windowHash(big[n-gearWindow : n])
		for _, thr := range []uint64{h, h + 1, h &^ (1<<32 - 1), h&^(1<<32-1) + 1} {
			checkScan(t, "last window", big[:n], thr)
		}
	}
}

// TestScanGearPlanted plants candidates around every lane and block edge of
// the accelerated scan, and at the first and last positions.
func TestScanGearPlanted(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	w, hw := lowWindow(r)
	w2, hw2 := lowWindow(r)
	if hw > hw2 {
		w, w2, hw, hw2 = w2, w, hw2, hw
	}
	// hw < hw2; thr between them makes only w2 a candidate.
	for _, n := range []int{gearWindow, 1000, 4096, 10000, 64<<10 + 63, 160000} {
		base := randBytes(r, n)
		b := slices.Clone(base)
		restore := func(i int) { copy(b[i-(gearWindow-1):i+1], base[i-(gearWindow-1):i+1]) }
		for _, thr := range []uint64{hw + 1, hw2 + 1, 1 << 46} {
			// The edges of the first and last blocks, and some between.
			edges := gearEdges(n, thr)
			if len(edges) > 40 {
				edges = slices.Concat(edges[:12], edges[len(edges)-12:], edges[12 : len(edges)-12][:4])
			}
			positions := []int{gearWindow - 1, gearWindow, n - 1, n - 2}
			for _, e := range edges {
				for _, d := range []int{-64, -63, -1, 0, 1, 63, 64, 128} {
					positions = append(positions, e+d)
				}
			}
			for _, i := range positions {
				if i < gearWindow-1 || i >= n {
					continue
				}
				plant(b, i, &w)
				if got := checkScan(t, fmt.Sprintf("planted at %d", i), b, thr); got > i || got < 0 {
					t.Fatalf("len %d thr %#x: planted at %d, found %d", n, thr, i, got)
				}
				// Two candidates: the first one wins, whichever lanes they
				// are in.
				if j := i + 777; j < n {
					plant(b, j, &w)
					checkScan(t, fmt.Sprintf("planted at %d and %d", i, j), b, thr)
					restore(j)
				}
				restore(i)
				// A window that is just not a candidate: with thr = its hash
				// the vector lanes' filter passes but the rescan finds nothing.
				plant(b, i, &w2)
				checkScan(t, fmt.Sprintf("planted non-candidate at %d", i), b, hw2)
				restore(i)
			}
		}
	}
}

// TestScanGearEveryLane plants a candidate at the last position of every lane
// of a block: the first lane's wins. Then it removes them one by one from the
// front.
func TestScanGearEveryLane(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	w, hw := lowWindow(r)
	for _, n := range []int{5000, 64<<10 + 63, 300000} {
		base := randBytes(r, n)
		edges := gearEdges(n, hw+1)
		if len(edges) == 0 && useGearAccel {
			t.Fatalf("len %d: no lanes", n)
		}
		b := slices.Clone(base)
		var planted []int
		for k := 1; k < len(edges); k++ {
			i := edges[k] - 1
			if i >= edges[0]+gearWindow {
				plant(b, i, &w)
				planted = append(planted, i)
			}
		}
		for len(planted) > 0 {
			if got := checkScan(t, "every lane", b, hw+1); got > planted[0] {
				t.Fatalf("len %d: found %d, planted first at %d", n, got, planted[0])
			}
			i := planted[0]
			copy(b[i-(gearWindow-1):i+1], base[i-(gearWindow-1):i+1])
			planted = planted[1:]
		}
	}
}

func TestScanGearPatterns(t *testing.T) {
	for _, c := range []byte{0, 1, 0x80, 0xff} {
		b := bytes.Repeat([]byte{c}, 100000)
		h := windowHash(b[:gearWindow])
		for _, thr := range append(slices.Clone(testThresholds), h, h+1) {
			checkScan(t, fmt.Sprintf("%#x bytes", c), b, thr)
		}
	}
}

func FuzzScanGear(f *testing.F) {
	r := rand.New(rand.NewPCG(6, 6))
	w, hw := lowWindow(r)
	f.Add([]byte{}, uint64(0))
	f.Add(make([]byte, 64), uint64(math.MaxUint64))
	f.Add(w[:], hw+1)
	f.Add(randBytes(r, 3000), uint64(1)<<52)
	f.Fuzz(func(t *testing.T, b []byte, thr uint64) {
		// Inputs are tried as given and tiled past the size of a few
		// blocks, with thr and lower thresholds.
		inputs := [][]byte{b}
		if len(b) > 0 {
			inputs = append(inputs, bytes.Repeat(b, 5000/len(b)+1))
		}
		for _, in := range inputs {
			for _, s := range []uint{0, 12, 20} {
				checkScan(t, "fuzz", in, thr>>s)
			}
		}
	})
}

func benchmarkScan(b *testing.B, scan func([]byte, uint64) int) {
	buf := make([]byte, 16<<20)
	rand.NewChaCha8([32]byte{}).Read(buf)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if scan(buf, 0) != -1 {
			b.Fatal("candidate with thr 0")
		}
	}
}

func BenchmarkScanGear(b *testing.B)    { benchmarkScan(b, scanGear) }
func BenchmarkScanGeneric(b *testing.B) { benchmarkScan(b, scanGeneric) }
