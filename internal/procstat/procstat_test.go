package procstat

import (
	"runtime"
	"testing"
)

func TestPeakRSS(t *testing.T) {
	before, err := PeakRSS()
	if err != nil || before <= 0 {
		t.Fatalf("PeakRSS = %d, %v", before, err)
	}
	b := make([]byte, 64<<20)
	for i := range b {
		b[i] = 1
	}
	after, _ := PeakRSS()
	if after < before+32<<20 {
		t.Fatalf("touching 64 MiB moved peak RSS from %d to %d", before, after)
	}
	if rss, err := RSS(); err != nil || rss < 32<<20 {
		t.Errorf("RSS = %d, %v, with 64 MiB touched", rss, err)
	}
	runtime.KeepAlive(b)
	if CPUTime() <= 0 {
		t.Fatal("no CPU time")
	}
}
