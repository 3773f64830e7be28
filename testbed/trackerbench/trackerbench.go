// Package trackerbench measures the tracker under a fleet's announce load:
// a real tracker (built by internal/daemon.RunTracker, as p2pd builds it)
// serves HTTP on loopback, and a load generator plays Peers peers each
// announcing Blobs blobs of Chunks chunks, the way trackerclient.Announcer
// does: the full bitfield first, then small deltas. It reports the
// announces per second the tracker answered, their latency, the tracker's
// memory per (peer, blob) record and the CPU that the tracker and the
// load generator each used. `p2pctl bench tracker` prints its Result.
//
// # Modes
//
// First every record is announced once with its full bitfield (about half
// the chunks set), as fast as Conns connections go: the load phase. Then
// for Duration:
//
//   - interval (the default): each record announces once every
//     Interval, the tracker's announce interval; the offered load is
//     records/Interval, open loop (announces are sent on schedule
//     whether or not earlier ones were answered), on Conns connections;
//   - rate: the same at Rate announces per second;
//   - closed: Workers workers announce back to back, as fast as the
//     tracker answers: its capacity on this machine, with the load
//     generator taking its share of the cores.
//
// In the open-loop modes, latency counts from the time an announce was
// due, so a tracker (or load generator) that falls behind shows it in
// the latency, not only in a lower rate.
//
// # What is measured
//
// Memory per record is the tracker's live heap (after GC, idle
// connections closed) after the load phase minus before it, divided by
// the records it then holds (its p2pd_tracker_peers gauge). With
// Options.Child the tracker runs in a process of its own, so neither the
// generator's state nor its garbage is counted, and the CPU split between
// tracker and generator is exact (each process's user+system time). In
// process, the generator's state is allocated before the first reading
// and only changes in place, so the heap difference is still the
// tracker's, but CPU is the process's total; a CPU profile
// (Options.CPUProfile) labels the samples of each side.
//
// The raw client (the default) scans the answers rather than decode them
// (need_full, and the peers handed out); ClientTracker decodes them in
// full with trackerclient, at several times the generator's CPU.
package trackerbench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/p2pd/p2pd/internal/daemon"
	"github.com/p2pd/p2pd/internal/procstat"
	"github.com/p2pd/p2pd/internal/wire/trackerwire"
	"github.com/p2pd/p2pd/tracker"
)

// Defaults of Options.
const (
	DefaultPeers    = 10000
	DefaultBlobs    = 10
	DefaultChunks   = 1000
	DefaultDuration = 20 * time.Second
	DefaultConns    = 64
	// DefaultMaxConns is peer.DefaultMaxConns.
	DefaultMaxConns = 30
	DefaultTimeout  = 10 * time.Second
	// MaxLoadTime bounds the load phase.
	MaxLoadTime = 10 * time.Minute
)

// Goals of issue 5, on a 2-core machine at the default sizes. An open
// loop meets the throughput goal when it offers at least
// GoalAnnouncesPerSec and the tracker answers at least GoalAnsweredFraction
// of what was offered in the run (an open loop cannot answer more than it
// offers, and the announces due in the last moments of the run are still
// unsent or unanswered when it ends); a closed loop when it answers at
// least GoalAnnouncesPerSec. See Result.GoalMet.
const (
	GoalAnnouncesPerSec  = 20000
	GoalAnsweredFraction = 0.995
	GoalP99              = 50 * time.Millisecond
	GoalBytesPerRecord   = 1024
)

// Modes.
const (
	ModeInterval = "interval"
	ModeRate     = "rate"
	ModeClosed   = "closed"
)

// ErrBadOptions wraps the errors of Options.Validate.
var ErrBadOptions = errors.New("trackerbench: invalid options")

// Options configure a run. The zero value is the benchmark.
type Options struct {
	// Peers, Blobs and Chunks size the fleet: Peers*Blobs records
	// (defaults 10,000, 10 and 1,000).
	Peers  int
	Blobs  int
	Chunks int
	// Origins is how many of the peers are origins of every blob
	// (complete; default 1; negative: none).
	Origins int
	// Tracker configures the tracker (default: tracker's defaults);
	// Interval and TTL override its AnnounceInterval and PeerTTL.
	Tracker tracker.Config
	// Interval is the tracker's announce interval, whole seconds
	// (default tracker.DefaultAnnounceInterval). Records expire after
	// three.
	Interval time.Duration
	// TTL is the tracker's record lifetime (default three intervals). A
	// load phase longer than that leaves the first records expired when
	// their next announce comes, which the tracker answers with
	// NeedFull: a longer TTL measures the steady state regardless.
	TTL time.Duration
	// Rate, if positive, offers this many announces per second instead
	// of records/Interval.
	Rate float64
	// Workers, if positive, runs closed loop with this many workers
	// instead of on a schedule; Rate must be 0.
	Workers int
	// MaxConns is each simulated peer's outbound connection cap, as
	// peer.Config.MaxConns (default DefaultMaxConns): like peer.Engine,
	// a peer asks the tracker for its free slots (num_want), and for none
	// for a blob it has complete. Negative: peers send no num_want and get
	// the tracker's full hand-out every time, as before num_want existed.
	MaxConns int
	// Conns is the number of connections of the load phase and of the
	// open-loop modes (default 64).
	Conns int
	// Duration of the measurement, after the load phase (default 20s).
	Duration time.Duration
	// Client is ClientRaw (default) or ClientTracker.
	Client string
	// Timeout bounds each announce (default 10s).
	Timeout time.Duration
	// Child, if set, is the command line of a process that runs
	// ServeChild on its stdin and stdout (for p2pctl: itself). The
	// tracker then runs there rather than in this process.
	Child []string
	// Seed selects the fleet's bitfields and the announce order.
	Seed uint64
	// Logger receives the in-process tracker's logs and the progress
	// of the run (default: discarded).
	Logger *slog.Logger
	// Stderr receives the child's stderr (default os.Stderr).
	Stderr io.Writer
	// CPUProfile, if set, receives a CPU profile of this process during
	// the measurement (not the load phase). Samples carry the label
	// role=tracker or role=loadgen (go tool pprof -tagfocus role=tracker).
	CPUProfile io.Writer
	// TrackerCPUProfile, with Child, names a file the child writes a CPU
	// profile of the tracker's process to, during the measurement.
	TrackerCPUProfile string
}

// WithDefaults returns o with zero fields replaced by their defaults.
func (o Options) WithDefaults() Options {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.Peers, DefaultPeers)
	def(&o.Blobs, DefaultBlobs)
	def(&o.Chunks, DefaultChunks)
	def(&o.Origins, 1)
	def(&o.Conns, DefaultConns)
	def(&o.MaxConns, DefaultMaxConns)
	o.Origins = max(o.Origins, 0)
	if o.Interval == 0 {
		o.Interval = tracker.DefaultAnnounceInterval
	}
	if o.Duration == 0 {
		o.Duration = DefaultDuration
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Client == "" {
		o.Client = ClientRaw
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	return o
}

// Validate reports why o (after defaults) cannot run.
func (o Options) Validate() error {
	o = o.WithDefaults()
	switch {
	case o.Peers < 1 || o.Blobs < 1 || o.Peers*o.Blobs > 1<<28:
		return fmt.Errorf("%w: %d peers × %d blobs: want at least one record and at most 2^28", ErrBadOptions, o.Peers, o.Blobs)
	case o.Chunks < 1 || o.Chunks > 1<<20:
		return fmt.Errorf("%w: %d chunks is outside 1..2^20", ErrBadOptions, o.Chunks)
	case o.MaxConns > trackerwire.MaxNumWant:
		return fmt.Errorf("%w: max conns %d is above %d", ErrBadOptions, o.MaxConns, trackerwire.MaxNumWant)
	case o.Origins > o.Peers:
		return fmt.Errorf("%w: %d origins among %d peers", ErrBadOptions, o.Origins, o.Peers)
	case o.Rate < 0 || o.Workers < 0 || o.Conns < 1:
		return fmt.Errorf("%w: rate, workers and conns must not be negative (conns at least 1)", ErrBadOptions)
	case o.Rate > 0 && o.Workers > 0:
		return fmt.Errorf("%w: rate (open loop) and workers (closed loop) exclude each other", ErrBadOptions)
	case o.Duration < 0 || o.Duration > time.Hour:
		return fmt.Errorf("%w: duration %v is outside 0..1h", ErrBadOptions, o.Duration)
	case o.TrackerCPUProfile != "" && len(o.Child) == 0:
		return fmt.Errorf("%w: a tracker CPU profile needs the tracker in a child process", ErrBadOptions)
	case o.TTL < 0:
		return fmt.Errorf("%w: ttl %v is negative", ErrBadOptions, o.TTL)
	case o.Timeout < 0:
		return fmt.Errorf("%w: timeout %v is negative", ErrBadOptions, o.Timeout)
	case o.Client != ClientRaw && o.Client != ClientTracker:
		return fmt.Errorf("%w: client %q: want %s or %s", ErrBadOptions, o.Client, ClientRaw, ClientTracker)
	}
	if err := o.trackerConfig().Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrBadOptions, err)
	}
	return nil
}

func (o Options) mode() string {
	switch {
	case o.Workers > 0:
		return ModeClosed
	case o.Rate > 0:
		return ModeRate
	}
	return ModeInterval
}

func (o Options) trackerConfig() daemon.TrackerConfig {
	cfg := daemon.TrackerConfig{Listen: "127.0.0.1:0", Tracker: o.Tracker, Log: daemon.LogConfig{Level: "warn"}}
	cfg.Tracker.AnnounceInterval, cfg.Tracker.PeerTTL = o.Interval, o.TTL
	return cfg
}

// Result is what a run measured. Latencies are in milliseconds.
type Result struct {
	Mode    string `json:"mode"`
	Client  string `json:"client"`
	Peers   int    `json:"peers"`
	Blobs   int    `json:"blobs"`
	Chunks  int    `json:"chunks"`
	Records int    `json:"records"`
	// IntervalS is the tracker's announce interval, TTLS its record
	// lifetime; HandoutLimit and CandidateSample the peers it hands out
	// per announce and scores to choose them.
	IntervalS       float64 `json:"interval_s"`
	TTLS            float64 `json:"ttl_s"`
	HandoutLimit    int     `json:"handout_limit"`
	CandidateSample int     `json:"candidate_sample"`
	// MaxConns is the simulated peers' connection cap, from which they
	// ask for peers (num_want); negative: they send no num_want.
	MaxConns int `json:"max_conns"`
	// OfferedPerS is the open-loop schedule's rate (0 in closed loop),
	// Offered the announces it scheduled in Duration, and
	// AnsweredFraction the share of them answered with 200 (Announces /
	// Offered; missed and failed ones are not).
	OfferedPerS      float64 `json:"offered_per_s"`
	Offered          int64   `json:"offered,omitempty"`
	AnsweredFraction float64 `json:"answered_fraction,omitempty"`
	Conns            int     `json:"conns"`
	DurationS        float64 `json:"duration_s"`

	// The measurement: announces answered (200, NeedFull included) per
	// second of the run until the last answer, and their latency.
	Announces     int64   `json:"announces"`
	AnnouncesPerS float64 `json:"announces_per_s"`
	P50Ms         float64 `json:"p50_ms"`
	P99Ms         float64 `json:"p99_ms"`
	MaxMs         float64 `json:"max_ms"`
	// ServiceP99Ms is the p99 from sending to answer, without the time
	// an announce waited for a free connection (equal to P99Ms in
	// closed loop).
	ServiceP99Ms float64 `json:"service_p99_ms"`
	// Errors counts announces that failed (transport error or a status
	// other than 200); FirstError is the first. NeedFull counts answers
	// asking for the full bitfield, which the generator then sends.
	Errors     int64  `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
	NeedFull   int64  `json:"need_full"`
	// Missed counts the announces of the open-loop schedule still unsent
	// when the run was over: the tracker fell that far behind.
	Missed int64 `json:"missed"`
	// HandoutAvg is the mean number of peers handed out per answer.
	HandoutAvg float64 `json:"handout_avg"`

	// The load phase: every record's first announce, full bitfield.
	LoadS      float64 `json:"load_s"`
	LoadPerS   float64 `json:"load_per_s"`
	LoadErrors int64   `json:"load_errors"`
	LoadP99Ms  float64 `json:"load_p99_ms"`
	// RecordsHeld is the records the tracker held after the load phase
	// (fewer than Records if some expired while it lasted), over which
	// its heap is divided into BytesPerRecord.
	RecordsHeld    int64   `json:"records_held"`
	TrackerHeap0   uint64  `json:"tracker_heap_before"`
	TrackerHeap1   uint64  `json:"tracker_heap_after"`
	TrackerRSS     int64   `json:"tracker_rss_bytes"`
	BytesPerRecord float64 `json:"bytes_per_record"`

	// CPU during the measurement, in seconds. TrackerProcess is "child"
	// when the tracker had a process of its own, and then TrackerCPUS
	// and LoadgenCPUS split TotalCPUS; "in-process" leaves them zero.
	TrackerProcess string  `json:"tracker_process"`
	TotalCPUS      float64 `json:"total_cpu_s"`
	TrackerCPUS    float64 `json:"tracker_cpu_s,omitempty"`
	LoadgenCPUS    float64 `json:"loadgen_cpu_s,omitempty"`
	// TrackerCPUUsPerAnnounce is the tracker's CPU per announce
	// (child only): 1e6/it is what one dedicated core would answer.
	TrackerCPUUsPerAnnounce float64 `json:"tracker_cpu_us_per_announce,omitempty"`
	Procs                   int     `json:"gomaxprocs"`
	CPUs                    int     `json:"cpus"`

	// GoalMet reports whether the goals were met: p99 under
	// GoalP99, under GoalBytesPerRecord, no errors (load phase included),
	// and the throughput goal: in open loop, at least GoalAnnouncesPerSec
	// offered and at least GoalAnsweredFraction of the offered announces
	// answered (so an exact 20,000/s schedule that is kept up with meets
	// it, and a faster one, --rate, shows the headroom); in closed loop, at
	// least GoalAnnouncesPerSec answered.
	GoalMet bool `json:"goal_met"`
}

// Run performs one measurement.
func Run(ctx context.Context, o Options) (res Result, err error) {
	if err := o.Validate(); err != nil {
		return Result{}, err
	}
	o = o.WithDefaults()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lg := o.Logger
	res = Result{
		Mode: o.mode(), Client: o.Client, Peers: o.Peers, Blobs: o.Blobs, Chunks: o.Chunks, Records: o.Peers * o.Blobs,
		IntervalS: o.Interval.Seconds(), MaxConns: o.MaxConns, Conns: o.Conns, DurationS: o.Duration.Seconds(),
		Procs: runtime.GOMAXPROCS(0), CPUs: runtime.NumCPU(), TrackerProcess: "in-process",
	}
	tc := o.trackerConfig().Tracker.WithDefaults()
	res.TTLS, res.HandoutLimit, res.CandidateSample = tc.PeerTTL.Seconds(), tc.HandoutLimit, tc.CandidateSample
	f := newFleet(o)
	var tp trackerProc
	if len(o.Child) > 0 {
		tp, err = startChild(ctx, o.Child, childConfig{Tracker: o.trackerConfig(), CPUProfile: o.TrackerCPUProfile}, o.Stderr)
		res.TrackerProcess = "child"
	} else {
		tp, err = startInProcess(ctx, o.trackerConfig(), lg)
	}
	if err != nil {
		return res, fmt.Errorf("trackerbench: tracker: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		err = errors.Join(err, tp.close(cctx))
	}()
	g := &gen{o: o, f: f, url: tp.url()}

	before, err := tp.stats(ctx, true)
	if err != nil {
		return res, err
	}
	lg.Info("load phase", "records", f.records(), "conns", o.Conns)
	load, err := g.load(ctx)
	if err != nil {
		return res, err
	}
	res.LoadS = load.elapsed.Seconds()
	res.LoadPerS = float64(load.done) / res.LoadS
	res.LoadErrors = load.errors
	res.LoadP99Ms = ms(load.lat.quantile(0.99))
	after, err := tp.stats(ctx, true)
	if err != nil {
		return res, err
	}
	if res.RecordsHeld, err = recordsHeld(ctx, tp.url()); err != nil {
		return res, err
	}
	res.TrackerHeap0, res.TrackerHeap1, res.TrackerRSS = before.HeapAlloc, after.HeapAlloc, after.RSS
	if res.RecordsHeld > 0 {
		res.BytesPerRecord = (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / float64(res.RecordsHeld)
	}

	lg.Info("measuring", "mode", res.Mode, "duration", o.Duration)
	cpu0, err := tp.stats(ctx, false)
	if err != nil {
		return res, err
	}
	stopProfile := func() {}
	if o.CPUProfile != nil {
		if err := pprof.StartCPUProfile(o.CPUProfile); err != nil {
			return res, fmt.Errorf("trackerbench: %w", err)
		}
		stopProfile = sync.OnceFunc(pprof.StopCPUProfile)
		defer stopProfile()
	}
	if err := tp.profile(ctx, false); err != nil {
		return res, err
	}
	self0 := procstat.CPUTime()
	var m tally
	switch res.Mode {
	case ModeClosed:
		res.Conns = o.Workers
		m, err = g.closed(ctx)
	default:
		res.OfferedPerS = o.Rate
		if res.OfferedPerS == 0 {
			res.OfferedPerS = float64(f.records()) / o.Interval.Seconds()
		}
		m, err = g.open(ctx, res.OfferedPerS)
	}
	if err != nil {
		return res, err
	}
	self := procstat.CPUTime() - self0
	stopProfile()
	if err := tp.profile(ctx, true); err != nil {
		return res, err
	}
	cpu1, err := tp.stats(ctx, false)
	if err != nil {
		return res, err
	}
	res.Announces = m.done
	res.AnnouncesPerS = float64(m.done) / m.elapsed.Seconds()
	res.P50Ms, res.P99Ms, res.MaxMs = ms(m.lat.quantile(0.5)), ms(m.lat.quantile(0.99)), ms(m.lat.max)
	res.ServiceP99Ms = ms(m.svc.quantile(0.99))
	res.Errors, res.FirstError, res.NeedFull, res.Missed = m.errors, m.firstError, m.needFull, m.missed
	if m.answered > 0 {
		res.HandoutAvg = float64(m.handedOut) / float64(m.answered)
	}
	if tp.separate() {
		tcpu := cpu1.CPU - cpu0.CPU
		res.TrackerCPUS, res.LoadgenCPUS = tcpu.Seconds(), self.Seconds()
		res.TotalCPUS = res.TrackerCPUS + res.LoadgenCPUS
		if m.done > 0 {
			res.TrackerCPUUsPerAnnounce = float64(tcpu.Microseconds()) / float64(m.done)
		}
	} else {
		res.TotalCPUS = self.Seconds()
	}
	if res.Mode != ModeClosed {
		res.Offered = int64(res.OfferedPerS * o.Duration.Seconds())
		if res.Offered > 0 {
			res.AnsweredFraction = float64(res.Announces) / float64(res.Offered)
		}
	}
	res.GoalMet = goalMet(res)
	return res, nil
}

// goalMet is Result.GoalMet's definition.
func goalMet(r Result) bool {
	throughput := r.AnnouncesPerS >= GoalAnnouncesPerSec
	if r.Mode != ModeClosed {
		throughput = r.OfferedPerS >= GoalAnnouncesPerSec && r.AnsweredFraction >= GoalAnsweredFraction
	}
	return throughput && r.P99Ms < ms(GoalP99) && r.Errors == 0 && r.LoadErrors == 0 &&
		r.BytesPerRecord < GoalBytesPerRecord
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// gen is the load generator.
type gen struct {
	o   Options
	f   *fleet
	url string
}

// tally is what a phase's workers counted.
type tally struct {
	elapsed    time.Duration
	done       int64 // answered with 200
	answered   int64 // answered with peers (not NeedFull)
	handedOut  int64
	needFull   int64
	errors     int64
	missed     int64
	firstError string
	lat, svc   hist
}

func (t *tally) merge(o *tally) {
	t.done += o.done
	t.answered += o.answered
	t.handedOut += o.handedOut
	t.needFull += o.needFull
	t.errors += o.errors
	if t.firstError == "" {
		t.firstError = o.firstError
	}
	t.lat.merge(&o.lat)
	t.svc.merge(&o.svc)
}

// worker announces on one sender.
type worker struct {
	g   *gen
	s   sender
	rng *rand.Rand
	a   announce
	t   tally
}

func (g *gen) newWorkers(n int) ([]*worker, error) {
	ws := make([]*worker, n)
	for i := range ws {
		var s sender
		switch g.o.Client {
		case ClientTracker:
			cs, err := newClientSender(g.url, g.o.Timeout)
			if err != nil {
				return nil, err
			}
			s = cs
		default:
			s = newRawSender(g.url[len("http://"):], g.o.Timeout)
		}
		ws[i] = &worker{g: g, s: s, rng: rand.New(rand.NewPCG(g.o.Seed, uint64(i)))}
	}
	return ws, nil
}

// run runs body on every worker, each on its own goroutine, and returns
// their merged tally, timed from the call until the last one returns.
func run(ws []*worker, body func(w *worker)) tally {
	start := time.Now()
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(func() {
			defer w.s.close()
			pprof.Do(context.Background(), pprof.Labels("role", "loadgen"), func(context.Context) { body(w) })
		})
	}
	wg.Wait()
	t := tally{elapsed: time.Since(start)}
	for _, w := range ws {
		t.merge(&w.t)
	}
	return t
}

// announce sends record j's next announce, and at once its full
// bitfield if the tracker asks for it, as the Announcer does; due is
// when the announce was due, from which latency counts.
func (w *worker) announce(ctx context.Context, j int, due time.Time) {
	f := w.g.f
	r := &f.recs[j]
	r.mu.Lock()
	defer r.mu.Unlock()
	for try := 0; try < 2; try++ {
		f.next(j, w.rng, &w.a)
		sent := time.Now()
		ans, err := w.s.send(ctx, f, &w.a)
		now := time.Now()
		f.answered(&w.a, err == nil, ans.needFull, ans.peers)
		if err != nil {
			if ctx.Err() != nil {
				return // the run was cut short: not the tracker's failure
			}
			w.t.errors++
			if w.t.firstError == "" {
				w.t.firstError = err.Error()
			}
			return
		}
		w.t.done++
		w.t.lat.add(now.Sub(due))
		w.t.svc.add(now.Sub(sent))
		if !ans.needFull {
			w.t.answered++
			w.t.handedOut += int64(ans.peers)
			return
		}
		w.t.needFull++
		due = now
	}
}

// load announces every record once, in f.order, on Conns connections,
// within MaxLoadTime.
func (g *gen) load(ctx context.Context) (tally, error) {
	ws, err := g.newWorkers(g.o.Conns)
	if err != nil {
		return tally{}, err
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, MaxLoadTime)
	defer cancel()
	var next atomic.Int64
	t := run(ws, func(w *worker) {
		for ctx.Err() == nil {
			k := next.Add(1) - 1
			if k >= int64(len(g.f.order)) {
				return
			}
			w.announce(ctx, int(g.f.order[k]), time.Now())
		}
	})
	if err := parent.Err(); err != nil {
		return t, err
	}
	if ctx.Err() != nil {
		return t, fmt.Errorf("trackerbench: the load phase did not end within %v (%d of %d records announced)", MaxLoadTime, t.done, len(g.f.order))
	}
	return t, nil
}

// closed has Workers workers announce back to back, in f.order, for
// Duration.
func (g *gen) closed(ctx context.Context) (tally, error) {
	ws, err := g.newWorkers(g.o.Workers)
	if err != nil {
		return tally{}, err
	}
	end := time.Now().Add(g.o.Duration)
	var next atomic.Int64
	t := run(ws, func(w *worker) {
		for ctx.Err() == nil && time.Now().Before(end) {
			k := next.Add(1) - 1
			w.announce(ctx, int(g.f.order[k%int64(len(g.f.order))]), time.Now())
		}
	})
	return t, ctx.Err()
}

// job is one scheduled announce.
type job struct {
	j   int32
	due time.Time
}

// open announces at rate per second, in f.order round and round, for
// Duration, on Conns connections. A dispatcher hands each announce to a
// free connection at its due time; when none is free, announces queue (up
// to four per connection, then the dispatcher waits) and their latency
// grows. Announces still unsent when Duration is over are counted as
// missed.
func (g *gen) open(ctx context.Context, rate float64) (tally, error) {
	ws, err := g.newWorkers(g.o.Conns)
	if err != nil {
		return tally{}, err
	}
	jobs := make(chan job, 4*g.o.Conns)
	start := time.Now()
	end := time.NewTimer(g.o.Duration)
	defer end.Stop()
	total := int64(rate * g.o.Duration.Seconds())
	var missed int64
	go func() {
		defer close(jobs)
		n := int64(len(g.f.order))
		wait := time.NewTimer(0)
		defer wait.Stop()
		for k := int64(0); k < total; k++ {
			due := start.Add(time.Duration(float64(k) / rate * float64(time.Second)))
			if d := time.Until(due); d > time.Millisecond {
				wait.Reset(d)
				select {
				case <-wait.C:
				case <-ctx.Done():
					return
				}
			}
			select {
			case jobs <- job{j: g.f.order[k%n], due: due}:
			case <-end.C:
				missed = total - k
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	t := run(ws, func(w *worker) {
		for jb := range jobs {
			w.announce(ctx, int(jb.j), jb.due)
		}
	})
	t.missed = missed // written before jobs was closed
	return t, ctx.Err()
}

// recordsHeld reads the records the tracker at url holds (expired ones
// not yet swept included) from its p2pd_tracker_peers gauge.
func recordsHeld(ctx context.Context, url string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+trackerwire.PathMetrics, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("trackerbench: metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "p2pd_tracker_peers "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("trackerbench: metrics: p2pd_tracker_peers %q: %w", v, err)
			}
			return int64(n), nil
		}
	}
	return 0, fmt.Errorf("trackerbench: metrics: no p2pd_tracker_peers (status %s): %w", resp.Status, errors.Join(sc.Err(), io.ErrUnexpectedEOF))
}
