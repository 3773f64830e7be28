package procstat

import (
	"runtime"
	"testing"
	"time"
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

func TestRunQueueWait(t *testing.T) {
	w, err := RunQueueWait()
	if err != nil {
		t.Fatal(err)
	}
	// More busy goroutines than CPUs make threads wait for one.
	n := runtime.GOMAXPROCS(0) + 2
	done := make(chan struct{})
	stop := make(chan struct{})
	for range n {
		go func() {
			for {
				select {
				case <-stop:
					done <- struct{}{}
					return
				default:
				}
			}
		}()
	}
	// Every wake-up waits a little: the sum grows.
	deadline := time.Now().Add(10 * time.Second)
	for {
		w2, err := RunQueueWait()
		if err != nil {
			t.Fatal(err)
		}
		if w2 > w {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run-queue wait stayed at %v with %d goroutines spinning", w, n)
		}
	}
	close(stop)
	for range n {
		<-done
	}
}
