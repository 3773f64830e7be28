// Package result is what a testbed run measured, in every mode: each
// peer's completion time, time series of the bytes served by origins and
// by peers, of peers complete and of chunk replication, the host's own
// CPU use, and the summary that compares completion times with the fluid
// bound. The modes (emu, netns, sim) and the baselines fill a Result; the
// report package draws it.
package result

import (
	"cmp"
	"math"
	"slices"

	"github.com/p2pd/p2pd/testbed/scenario"
)

// Peer is one peer's outcome.
type Peer struct {
	Name     string            `json:"name"`
	Class    string            `json:"class"`
	Zone     string            `json:"zone,omitempty"`
	Behavior scenario.Behavior `json:"behavior"`
	// JoinS is when the peer started, in seconds since the run began;
	// DoneS how long after joining it held the whole verified blob.
	JoinS     float64 `json:"join_s"`
	DoneS     float64 `json:"done_s"`
	Completed bool    `json:"completed"`
	// Failed is set for an honest peer that did not complete (it errored,
	// or the run timed out); Err says why. Peers that an event stopped
	// for good are neither completed nor failed (Left).
	Failed bool   `json:"failed"`
	Left   bool   `json:"left,omitempty"`
	Err    string `json:"err,omitempty"`
	// Bytes received from other peers and from origins.
	FromPeers   int64 `json:"from_peers"`
	FromOrigins int64 `json:"from_origins"`
}

// Event is one scenario event as it was carried out.
type Event struct {
	Action string `json:"action"`
	// StartS and EndS are when it began and when it was done, in seconds
	// since the run began.
	StartS float64 `json:"start_s"`
	EndS   float64 `json:"end_s"`
	// Peers counts the peers it stopped or started.
	Peers int    `json:"peers,omitempty"`
	Err   string `json:"err,omitempty"`
}

// Sample is one point of the time series.
type Sample struct {
	// T is seconds since the run began.
	T float64 `json:"t"`
	// Bytes served so far by origins and by peers (cumulative).
	OriginBytes int64 `json:"origin_bytes"`
	PeerBytes   int64 `json:"peer_bytes"`
	// Complete counts honest peers holding the whole blob; Live the peers
	// running.
	Complete int `json:"complete"`
	Live     int `json:"live"`
	// Replication describes how many honest peers hold each chunk: the
	// minimum, mean and maximum over the blob's chunks.
	ReplMin  int     `json:"repl_min"`
	ReplMean float64 `json:"repl_mean"`
	ReplMax  int     `json:"repl_max"`
	// TrackerPeers counts the peers (not origins) the tracker has records
	// of; -1 when the tracker did not answer.
	TrackerPeers int `json:"tracker_peers"`
}

// Host is what the machine running the testbed spent.
type Host struct {
	CPUSeconds  float64 `json:"cpu_seconds"`
	WallSeconds float64 `json:"wall_seconds"`
	Procs       int     `json:"procs"`
	// Busy is CPUSeconds / (WallSeconds·Procs) over the run.
	Busy float64 `json:"busy"`
	// Wait is how long the process's threads waited for a CPU, runnable
	// while other processes held the CPUs, over WallSeconds·Procs: on a
	// shared machine a run can be starved while Busy stays low. Not
	// measured (0) in netns mode.
	Wait float64 `json:"wait"`
	// BusySamples is the fraction of sampling periods in which the host's
	// CPUs were at least HostBoundBusy busy, or the process waited
	// HostBoundWait for them.
	BusySamples float64 `json:"busy_samples"`
	// BusyStretchS is the longest stretch of consecutive busy periods, in
	// seconds, and BusyStretchAtS when it began (from the start of the
	// run). A run can stay under HostBoundShare overall and still have
	// been paced by the host for a while; this says for how long.
	BusyStretchS   float64 `json:"busy_stretch_s,omitempty"`
	BusyStretchAtS float64 `json:"busy_stretch_at_s,omitempty"`
}

// HostBoundBusy is the CPU utilisation above which a sampling period
// counts as the host, not the emulated links, setting the pace.
const HostBoundBusy = 0.9

// HostBoundWait is the run-queue wait (Host.Wait, over one sampling
// period) above which a period counts as the host setting the pace: the
// testbed's threads were ready to run but other processes held the CPUs.
const HostBoundWait = 0.5

// HostBoundShare is the share of busy periods that flags a run host-bound.
const HostBoundShare = 0.25

// Result is one run.
type Result struct {
	Scenario scenario.Scenario `json:"scenario"`
	// Mode is the mode that ran, or the baseline's name.
	Mode      string         `json:"mode"`
	Bound     scenario.Bound `json:"bound"`
	Peers     []Peer         `json:"peers"`
	Series    []Sample       `json:"series"`
	BlobBytes int64          `json:"blob_bytes"`
	// OriginEgressBytes is what the origins uploaded during the run.
	OriginEgressBytes int64 `json:"origin_egress_bytes"`
	Host              Host  `json:"host"`
	// Events are the scenario's events as they were carried out.
	Events []Event `json:"events,omitempty"`
	// Delta is set for a delta run (scenario blob.base); Bound is then
	// for F = Delta.ChangedChunkBytes.
	Delta *Delta `json:"delta,omitempty"`
	// Spread is how fast each chunk reached the honest peers (modes that
	// sample chunk replication; empty for the baselines).
	Spread []ChunkSpread `json:"spread,omitempty"`
	// Baselines are the baselines' runs on the same links.
	Baselines []*Result `json:"baselines,omitempty"`
	// FleetStartS is how long the peers that join at 0 took to start,
	// before the clock started (modes that start processes or nodes; 0
	// in sim).
	FleetStartS float64 `json:"fleet_start_s,omitempty"`
}

// Delta is what a delta run's version 2 changed (scenario.Delta).
type Delta struct {
	// ChangedBytes counts the bytes of version 2 that differ from
	// version 1; ChangedChunkBytes the bytes of version 2's chunks that
	// are not chunks of version 1 (what a peer holding version 1 must
	// fetch).
	ChangedBytes      int64 `json:"changed_bytes"`
	ChangedChunkBytes int64 `json:"changed_chunk_bytes"`
	// Held says, by index, which of version 2's chunks version 1 has too
	// (scenario.Delta.Held): the fleet holds them from the start.
	Held []bool `json:"-"`
}

// HeldChunks returns d.Held, or nil for a nil d (a run that is not a
// delta run: nothing is held from the start).
func (d *Delta) HeldChunks() []bool {
	if d == nil {
		return nil
	}
	return d.Held
}

// Summary is the comparison the testbed prints (`--json`).
type Summary struct {
	Name              string  `json:"name"`
	Mode              string  `json:"mode"`
	Peers             int     `json:"peers"`
	Completed         int     `json:"completed"`
	Failed            int     `json:"failed"`
	BlobBytes         int64   `json:"blob_bytes"`
	BoundS            float64 `json:"bound_s"`
	PipelineS         float64 `json:"pipeline_s"`
	P50S              float64 `json:"p50_s"`
	P99S              float64 `json:"p99_s"`
	P999S             float64 `json:"p999_s"`
	MaxS              float64 `json:"max_s"`
	RatioP50          float64 `json:"ratio_p50"`
	RatioP99          float64 `json:"ratio_p99"`
	RatioMax          float64 `json:"ratio_max"`
	OriginEgressBytes int64   `json:"origin_egress_bytes"`
	// OriginEgressCopies is OriginEgressBytes / BlobBytes.
	OriginEgressCopies float64 `json:"origin_egress_copies"`
	// BytesMoved is every chunk byte the peers received, from peers and
	// origins, byzantine peers' included.
	BytesMoved int64 `json:"bytes_moved"`
	// A delta run's figures (Result.Delta): MovedPerPeerOverChanged is
	// BytesMoved / (Peers·ChangedBytes), issue 4's "bytes moved over
	// changed bytes", per peer.
	ChangedBytes            int64   `json:"changed_bytes,omitempty"`
	ChangedChunkBytes       int64   `json:"changed_chunk_bytes,omitempty"`
	MovedPerPeerOverChanged float64 `json:"moved_per_peer_over_changed,omitempty"`
	// SpreadHalfS and SpreadP99S are the median over the blob's chunks
	// of the time from a chunk's first honest holder to half, and to 99%,
	// of the honest peers (Result.Spread); compare them with PipelineS,
	// the time a chunk needs when every copy is passed on at once at the
	// full link rate. Zero when not measured.
	SpreadHalfS float64 `json:"spread_half_s,omitempty"`
	SpreadP99S  float64 `json:"spread_p99_s,omitempty"`
	HostBound   bool    `json:"host_bound"`
	HostBusy    float64 `json:"host_busy"`
	// HostWait is Host.Wait: the share of the CPUs' time the testbed
	// waited for them.
	HostWait float64 `json:"host_wait"`
	// HostBusyStretchS and HostBusyStretchAtS are Host.BusyStretchS and
	// Host.BusyStretchAtS: the longest time the host, not the links, set
	// the pace without a break, and when that began.
	HostBusyStretchS   float64 `json:"host_busy_stretch_s"`
	HostBusyStretchAtS float64 `json:"host_busy_stretch_at_s"`
	WallS              float64 `json:"wall_s"`
	// FleetStartS is Result.FleetStartS: how long the fleet took to start
	// before the clock (and the pulls) started.
	FleetStartS float64 `json:"fleet_start_s,omitempty"`
	// Baselines summarises each baseline run, by name.
	Baselines map[string]*Summary `json:"baselines,omitempty"`
}

// Summarize computes r's summary. Percentiles are over the honest peers
// that were meant to finish (not those an event removed for good); a
// peer that failed counts as never finishing, so it pushes the upper
// percentiles to the run's length.
func (r *Result) Summarize() *Summary {
	s := &Summary{
		Name: r.Scenario.Name, Mode: r.Mode, BlobBytes: r.BlobBytes,
		BoundS: r.Bound.Seconds, PipelineS: r.Bound.Pipeline,
		OriginEgressBytes: r.OriginEgressBytes,
		HostBound:         r.HostBound(), HostBusy: r.Host.Busy, HostWait: r.Host.Wait, WallS: r.Host.WallSeconds,
		HostBusyStretchS: r.Host.BusyStretchS, HostBusyStretchAtS: r.Host.BusyStretchAtS,
		FleetStartS: r.FleetStartS,
	}
	s.SpreadHalfS, s.SpreadP99S = spreadMedians(r.Spread)
	if r.BlobBytes > 0 {
		s.OriginEgressCopies = float64(r.OriginEgressBytes) / float64(r.BlobBytes)
	}
	var times []float64
	for _, p := range r.Peers {
		s.BytesMoved += p.FromPeers + p.FromOrigins
		if p.Behavior != scenario.Honest || p.Left {
			continue
		}
		s.Peers++
		switch {
		case p.Completed:
			s.Completed++
			times = append(times, p.DoneS)
		default:
			s.Failed++
			times = append(times, math.Inf(1))
		}
	}
	if d := r.Delta; d != nil {
		s.ChangedBytes, s.ChangedChunkBytes = d.ChangedBytes, d.ChangedChunkBytes
		if n := len(r.Peers); n > 0 && d.ChangedBytes > 0 {
			s.MovedPerPeerOverChanged = float64(s.BytesMoved) / (float64(n) * float64(d.ChangedBytes))
		}
	}
	slices.Sort(times)
	// A peer that never finished counts as finishing when the run ended,
	// in the run's own time (virtual in a simulation).
	end := r.Host.WallSeconds
	if n := len(r.Series); n > 0 {
		end = r.Series[n-1].T
	}
	cap := func(v float64) float64 {
		if math.IsInf(v, 1) {
			return end
		}
		return v
	}
	s.P50S = cap(Quantile(times, 0.50))
	s.P99S = cap(Quantile(times, 0.99))
	s.P999S = cap(Quantile(times, 0.999))
	if len(times) > 0 {
		s.MaxS = cap(times[len(times)-1])
	}
	if s.BoundS > 0 {
		s.RatioP50, s.RatioP99, s.RatioMax = s.P50S/s.BoundS, s.P99S/s.BoundS, s.MaxS/s.BoundS
	}
	for _, b := range r.Baselines {
		if s.Baselines == nil {
			s.Baselines = make(map[string]*Summary)
		}
		s.Baselines[b.Mode] = b.Summarize()
	}
	return s
}

// HostBound reports whether the machine rather than the emulated links
// set the pace: in at least HostBoundShare of the sampling periods its
// CPUs were HostBoundBusy busy or more, or it waited HostBoundWait or more
// for them. Simulation runs never are.
func (r *Result) HostBound() bool {
	return r.Scenario.Mode != scenario.ModeSim && r.Host.BusySamples >= HostBoundShare
}

// Quantile returns the q-quantile of sorted values (nearest rank), or 0
// for none.
func Quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// SortPeers orders r.Peers by completion time, unfinished last.
func (r *Result) SortPeers() {
	slices.SortStableFunc(r.Peers, func(a, b Peer) int {
		if a.Completed != b.Completed {
			if a.Completed {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.DoneS, b.DoneS)
	})
}

// Progress receives each Sample while a run goes, for the live progress
// line. It is called from one goroutine at a time.
type Progress func(Sample)
