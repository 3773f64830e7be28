package result

import (
	"runtime"
	"time"

	"github.com/p2pd/p2pd/internal/procstat"
)

// HostMeter measures the testbed process's own CPU use while a run goes,
// to tell whether the machine or the emulated links set the pace. Call
// Tick once per sampling period and Host at the end. It is not safe for
// concurrent use.
type HostMeter struct {
	start, last time.Time
	cpu0, cpu   time.Duration
	procs       int
	periods     int
	busy        int
	cpuOf       func() time.Duration
}

// NewHostMeter starts measuring now. cpu reports the CPU time to count;
// nil means this process's (procstat.CPUTime). netns mode passes the sum
// over its child processes.
func NewHostMeter(now time.Time, cpu func() time.Duration) *HostMeter {
	if cpu == nil {
		cpu = procstat.CPUTime
	}
	c := cpu()
	return &HostMeter{start: now, last: now, cpu0: c, cpu: c, procs: runtime.GOMAXPROCS(0), cpuOf: cpu}
}

// Tick closes a sampling period at now and reports its CPU utilisation
// (0..1 of all CPUs).
func (m *HostMeter) Tick(now time.Time) float64 {
	c := m.cpuOf()
	wall := now.Sub(m.last)
	used := c - m.cpu
	m.last, m.cpu = now, c
	if wall <= 0 {
		return 0
	}
	u := used.Seconds() / (wall.Seconds() * float64(m.procs))
	m.periods++
	if u >= HostBoundBusy {
		m.busy++
	}
	return u
}

// Host returns the totals up to now.
func (m *HostMeter) Host(now time.Time) Host {
	h := Host{
		CPUSeconds:  (m.cpuOf() - m.cpu0).Seconds(),
		WallSeconds: now.Sub(m.start).Seconds(),
		Procs:       m.procs,
	}
	if h.WallSeconds > 0 {
		h.Busy = h.CPUSeconds / (h.WallSeconds * float64(h.Procs))
	}
	if m.periods > 0 {
		h.BusySamples = float64(m.busy) / float64(m.periods)
	}
	return h
}
