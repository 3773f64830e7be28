package trackerbench

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistBuckets(t *testing.T) {
	prev := -1
	for _, us := range []int64{0, 1, 255, 256, 257, 511, 512, 1000, 123456, 1 << 30, 1 << 40, 1 << 50} {
		i := histBucket(us)
		if i < prev || i >= histBuckets {
			t.Fatalf("bucket(%d) = %d after %d", us, i, prev)
		}
		prev = i
		if up := histUpper(i); up < us && i < histBuckets-1 || float64(up-us) > 0.01*float64(us)+1 {
			t.Errorf("bucket(%d) = %d, whose upper edge %d is not just above", us, i, up)
		}
	}
}

// TestHistQuantiles compares the histogram's quantiles with the exact
// ones of the same samples.
func TestHistQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h, h2 hist
	var all []time.Duration
	for i := range 100000 {
		d := time.Duration(rng.ExpFloat64() * float64(3*time.Millisecond))
		all = append(all, d)
		if i%2 == 0 {
			h.add(d)
		} else {
			h2.add(d)
		}
	}
	h.merge(&h2)
	slices.Sort(all)
	for _, q := range []float64{0, 0.5, 0.9, 0.99, 0.999, 1} {
		exact := all[max(0, int(q*float64(len(all))+0.999999)-1)]
		got := h.quantile(q)
		if got < exact.Truncate(time.Microsecond) || float64(got-exact) > 0.01*float64(exact)+float64(time.Microsecond) {
			t.Errorf("q%.3f = %v, exact %v", q, got, exact)
		}
	}
	if h.max != all[len(all)-1] || h.n != uint64(len(all)) {
		t.Errorf("max %v n %d, want %v %d", h.max, h.n, all[len(all)-1], len(all))
	}
	var empty hist
	if empty.quantile(0.99) != 0 {
		t.Error("empty histogram has a p99")
	}
}
