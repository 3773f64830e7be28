package result

import (
	"math"
	"testing"
	"time"

	"github.com/p2pd/p2pd/testbed/scenario"
)

func TestSummarize(t *testing.T) {
	r := &Result{
		Scenario:  scenario.Default(),
		Mode:      "emu",
		Bound:     scenario.Bound{Seconds: 2},
		BlobBytes: 100,
		Host:      Host{WallSeconds: 30, BusySamples: 0.1},
		// Origins served 1.5 copies.
		OriginEgressBytes: 150,
	}
	for i := range 100 {
		r.Peers = append(r.Peers, Peer{Behavior: scenario.Honest, Completed: true, DoneS: float64(i + 1)})
	}
	r.Peers = append(r.Peers,
		Peer{Behavior: scenario.Corrupt},                        // not counted
		Peer{Behavior: scenario.Honest, Left: true},             // removed by an event
		Peer{Behavior: scenario.Honest, Failed: true, Err: "x"}, // never finished
	)
	r.Baselines = []*Result{{Mode: "origin-only", Bound: scenario.Bound{Seconds: 2}, Peers: []Peer{{Behavior: scenario.Honest, Completed: true, DoneS: 8}}}}
	s := r.Summarize()
	if s.Peers != 101 || s.Completed != 100 || s.Failed != 1 {
		t.Fatalf("counts %+v", s)
	}
	if s.P50S != 51 || s.P99S != 100 || s.MaxS != 30 || s.RatioP50 != 25.5 {
		t.Fatalf("percentiles %+v", s)
	}
	if s.OriginEgressCopies != 1.5 || s.HostBound {
		t.Fatalf("egress/host %+v", s)
	}
	if b := s.Baselines["origin-only"]; b == nil || b.RatioP50 != 4 {
		t.Fatalf("baseline %+v", b)
	}
	r.Host.BusySamples = 0.5
	if !r.HostBound() {
		t.Fatal("a busy host is not flagged")
	}
	r.Scenario.Mode = scenario.ModeSim
	if r.HostBound() {
		t.Fatal("a simulation is flagged host-bound")
	}
}

func TestQuantile(t *testing.T) {
	if Quantile(nil, 0.5) != 0 || Quantile([]float64{3}, 0.99) != 3 {
		t.Fatal("edge cases")
	}
	v := []float64{1, 2, 3, 4, math.Inf(1)}
	if Quantile(v, 0.5) != 3 || !math.IsInf(Quantile(v, 1), 1) {
		t.Fatal("nearest rank")
	}
}

func TestHostMeter(t *testing.T) {
	var cpu time.Duration
	t0 := time.Unix(0, 0)
	m := NewHostMeter(t0, func() time.Duration { return cpu })
	m.procs = 2
	cpu = 2 * time.Second // both CPUs busy for the first second
	if u := m.Tick(t0.Add(time.Second)); u != 1 {
		t.Fatalf("utilisation %v", u)
	}
	cpu += 200 * time.Millisecond
	m.Tick(t0.Add(2 * time.Second))
	h := m.Host(t0.Add(2 * time.Second))
	if h.BusySamples != 0.5 || h.CPUSeconds != 2.2 || h.Busy != 0.55 {
		t.Fatalf("host %+v", h)
	}
}

// The longest unbroken stretch of busy periods is reported with when it
// began, even when the run as a whole is not host-bound.
func TestHostMeterStretch(t *testing.T) {
	var cpu time.Duration
	t0 := time.Unix(0, 0)
	m := NewHostMeter(t0, func() time.Duration { return cpu })
	m.procs = 2
	// Seconds 1-2 busy, 3 idle, 4-6 busy, then 14 idle seconds.
	busy := map[int]bool{1: true, 2: true, 4: true, 5: true, 6: true}
	for k := 1; k <= 20; k++ {
		if busy[k] {
			cpu += 2 * time.Second
		} else {
			cpu += 100 * time.Millisecond
		}
		m.Tick(t0.Add(time.Duration(k) * time.Second))
	}
	h := m.Host(t0.Add(20 * time.Second))
	if h.BusyStretchS != 3 || h.BusyStretchAtS != 3 || h.BusySamples != 0.25 {
		t.Fatalf("host %+v, want a 3 s stretch from 3 s in, 25%% of the periods busy", h)
	}
	r := &Result{Host: h}
	if s := r.Summarize(); s.HostBusyStretchS != 3 || s.HostBusyStretchAtS != 3 {
		t.Fatalf("summary stretch %v s at %v s", s.HostBusyStretchS, s.HostBusyStretchAtS)
	}
	if h := NewHostMeter(t0, func() time.Duration { return 0 }).Host(t0.Add(time.Second)); h.BusyStretchS != 0 {
		t.Fatalf("an idle run has a busy stretch: %+v", h)
	}
}

// A process that other processes starve of CPU uses little of it but waits
// for it: those periods count as host-bound too.
func TestHostMeterWait(t *testing.T) {
	var cpu, wait time.Duration
	t0 := time.Unix(0, 0)
	m := NewHostMeter(t0, func() time.Duration { return cpu })
	m.procs = 2
	m.waitOf = func() time.Duration { return wait }
	for k := 1; k <= 4; k++ {
		cpu += 200 * time.Millisecond
		if k <= 2 {
			wait += 1500 * time.Millisecond // 0.75 of two CPUs' second
		}
		m.Tick(t0.Add(time.Duration(k) * time.Second))
	}
	h := m.Host(t0.Add(4 * time.Second))
	if h.BusySamples != 0.5 || h.Busy != 0.1 || h.Wait != 0.375 {
		t.Fatalf("host %+v", h)
	}
	r := &Result{Host: h}
	if !r.HostBound() {
		t.Error("a run starved in half its periods is not host-bound")
	}
}
