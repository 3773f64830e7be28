package result

import (
	"runtime"
	"time"

	"github.com/p2pd/p2pd/internal/procstat"
)

// HostMeter measures the testbed process's own CPU use while a run goes,
// and how long its threads waited for a CPU that other processes held, to
// tell whether the machine or the emulated links set the pace. Call Tick
// once per sampling period and Host at the end. It is not safe for
// concurrent use.
type HostMeter struct {
	start, last time.Time
	cpu0, cpu   time.Duration
	wait0, wait time.Duration
	procs       int
	periods     int
	busy        int
	// When the current stretch of consecutive busy periods began (zero
	// outside one), and when the longest began and how long it lasted.
	runFrom, longFrom time.Time
	longest           time.Duration
	cpuOf             func() time.Duration
	waitOf            func() time.Duration // nil: not measured
}

// NewHostMeter starts measuring now. cpu reports the CPU time to count;
// nil means this process's (procstat.CPUTime). netns mode passes the sum
// over its child processes.
func NewHostMeter(now time.Time, cpu func() time.Duration) *HostMeter {
	m := &HostMeter{start: now, last: now, procs: runtime.GOMAXPROCS(0), cpuOf: cpu}
	if cpu == nil {
		m.cpuOf = procstat.CPUTime
		m.waitOf = func() time.Duration {
			w, _ := procstat.RunQueueWait()
			return w
		}
	}
	m.cpu0 = m.cpuOf()
	m.cpu = m.cpu0
	if m.waitOf != nil {
		m.wait0 = m.waitOf()
		m.wait = m.wait0
	}
	return m
}

// Tick closes a sampling period at now and reports its CPU utilisation
// (0..1 of all CPUs). The period counts as busy if the process used
// HostBoundBusy of the CPUs, or if its threads waited for a CPU
// HostBoundWait of the period per CPU (other processes held them).
func (m *HostMeter) Tick(now time.Time) float64 {
	c := m.cpuOf()
	wall := now.Sub(m.last)
	used := c - m.cpu
	m.last, m.cpu = now, c
	var waited time.Duration
	if m.waitOf != nil {
		w := m.waitOf()
		waited = w - m.wait
		m.wait = w
	}
	if wall <= 0 {
		return 0
	}
	cap := wall.Seconds() * float64(m.procs)
	u := used.Seconds() / cap
	m.periods++
	if u >= HostBoundBusy || waited.Seconds()/cap >= HostBoundWait {
		m.busy++
		if m.runFrom.IsZero() {
			m.runFrom = now.Add(-wall)
		}
		if d := now.Sub(m.runFrom); d > m.longest {
			m.longest, m.longFrom = d, m.runFrom
		}
	} else {
		m.runFrom = time.Time{}
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
		if m.waitOf != nil {
			h.Wait = (m.waitOf() - m.wait0).Seconds() / (h.WallSeconds * float64(h.Procs))
		}
	}
	if m.periods > 0 {
		h.BusySamples = float64(m.busy) / float64(m.periods)
	}
	if m.longest > 0 {
		h.BusyStretchS = m.longest.Seconds()
		h.BusyStretchAtS = m.longFrom.Sub(m.start).Seconds()
	}
	return h
}
