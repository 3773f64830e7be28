// Package fleet drives a scenario's fleet of p2pd peers, however they
// run: the emu mode runs each peer as a node in this process, the netns
// mode as a p2pd process in a network namespace, and both hand the rest
// to a Fleet through the Hosts they implement.
//
// A Fleet starts every peer at its join time and pulls the blob through
// the peer's control API, as `p2pctl pull` does, counting the bytes from
// peers and from origins as they come; it applies the scenario's events
// (leave, kill, join); it samples the fleet every s.Sample (bytes served,
// peers complete and live, the tracker's replication of the blob, the
// host's CPU) until the fleet has settled or the run's timeout; and it
// gathers the result.Result.
//
// The package also holds what every run shares, the baselines' too:
// where its files go (DefaultDir, TempDir) and its sampling loop
// (Sample).
package fleet

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/wire/ctlwire"
	"github.com/p2pd/p2pd/internal/wire/trackerwire"
	"github.com/p2pd/p2pd/peer/control/controlclient"
	"github.com/p2pd/p2pd/testbed/result"
	"github.com/p2pd/p2pd/testbed/scenario"
)

// Hosts runs the peers of a fleet; each mode implements it.
type Hosts interface {
	// StartPeer starts peer p and returns once its control API answers.
	// It also starts p again, on the same data directory, when p joins
	// after a leave or a kill. ctx is the run's: it ends at the timeout.
	// It is called from several goroutines at once, for different peers.
	StartPeer(ctx context.Context, p scenario.Peer) (Node, error)
}

// Services are the tracker and the origins of a run, for the events
// that stop and start them (scenario.TrackerDown and the like). The emu
// mode implements them on its Hosts.
type Services interface {
	// StopTracker stops the tracker; its state is lost.
	StopTracker(ctx context.Context) error
	// StartTracker starts a new, empty tracker on the stopped one's
	// address.
	StartTracker(ctx context.Context) error
	// RestartOrigins stops every origin and starts it again on its data
	// directory.
	RestartOrigins(ctx context.Context) error
}

// Node is one start of a peer, as Hosts.StartPeer returns it.
type Node struct {
	// Control is the address of its control API, as controlclient.New
	// takes it.
	Control string
	// Stop stops the peer and returns once it has stopped. kill asks for
	// a crash, with no goodbye to the tracker, where the mode can do one;
	// otherwise the peer stops as on SIGTERM. The fleet calls it at most
	// once per Node.
	Stop func(ctx context.Context, kill bool) error
}

// Tracker is what a Fleet asks the tracker at every sample;
// *trackerclient.Client is one.
type Tracker interface {
	SwarmReplication(ctx context.Context, blob chunker.Digest) (*trackerwire.SwarmStatus, error)
}

// Config is one run of a fleet.
type Config struct {
	// Scenario is the run's, with its defaults; its Expand() is the fleet.
	Scenario scenario.Scenario
	// Mode is the mode that runs, as the result names it.
	Mode scenario.Mode
	// Blob is the digest of the blob the origins hold and the peers pull.
	Blob chunker.Digest
	// Tracker is asked for the blob's replication at every sample.
	Tracker Tracker
	// Hosts starts the peers.
	Hosts Hosts
	// CPU reports the CPU time the run costs the machine (nil: this
	// process's; see result.NewHostMeter).
	CPU func() time.Duration
	// Verify reads every completed peer's copy back through its control
	// API after the run, if the peer still runs, and checks its length
	// and SHA-256; a copy that does not match marks the peer failed. It
	// costs a read of every copy.
	Verify bool
	// Delta, for a delta run (scenario blob.base), is what version 2
	// changed: the result carries it and its bound is for
	// Delta.ChangedChunkBytes.
	Delta *result.Delta
	// Logger receives a line per event (default: discarded).
	Logger *slog.Logger
	// Progress receives each sample as the run goes.
	Progress result.Progress
}

// stopWithin bounds the stop of a peer that an event stops.
const stopWithin = 30 * time.Second

// Fleet runs the peers of a scenario through their Hosts. Run it once,
// then Close it.
type Fleet struct {
	cfg     Config
	log     *slog.Logger
	members []*member
	start   time.Time
	wg      sync.WaitGroup // the joins, the events and the pulls

	evMu   sync.Mutex
	events []result.Event // as carried out

	spread *result.SpreadMeter // made by the first sample with replication
}

// member is one peer of the fleet.
type member struct {
	spec scenario.Peer

	mu          sync.Mutex
	node        *Node     // nil unless running
	joined      time.Time // first start
	done        time.Time
	completed   bool
	left        bool // stopped by an event and not restarted
	failed      bool // it would not start, or its pull failed
	err         string
	fromPeers   int64
	fromOrigins int64
	pulling     chan struct{} // closed when the current pull returns
}

// New lays out the fleet of cfg.Scenario. It starts nothing.
func New(cfg Config) *Fleet {
	f := &Fleet{cfg: cfg, log: cfg.Logger}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	for _, p := range cfg.Scenario.Expand() {
		f.members = append(f.members, &member{spec: p})
	}
	return f
}

// Run starts the peers at their join times, fires the events, samples
// until every honest peer has completed or left (and the last event has
// fired) or the timeout, and gathers the result. When it returns, every
// goroutine it started has returned; peers that still run are left
// running for Close.
func (f *Fleet) Run(ctx context.Context) *result.Result {
	s := f.cfg.Scenario
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	// The fleet is up before the push, as p2pd daemons already run on a
	// fleet when a blob is sent to it: the peers that join at 0 start
	// first, off the clock, and the clock starts when their pulls do.
	// (Until session 15 the clock started first, so the nodes' start,
	// 1.6–2.5 s for 1,000 emulated peers on 2 cores, counted in the run:
	// a cost a fleet of separate hosts does not pay at a push.)
	up := time.Now()
	nodes := f.boot(ctx)
	f.start = time.Now()
	meter := result.NewHostMeter(f.start, f.cfg.CPU)
	for _, m := range f.members {
		if n, ok := nodes[m]; ok {
			f.pullFrom(ctx, m, n)
			continue
		}
		f.wg.Go(func() {
			if m.spec.JoinAt > 0 && scenario.SleepUntil(ctx, f.start.Add(m.spec.JoinAt)) {
				f.startPeer(ctx, m)
			}
		})
	}
	lastEvent := time.Duration(0)
	for _, ev := range s.Events {
		lastEvent = max(lastEvent, ev.At)
		f.wg.Go(func() {
			if scenario.SleepUntil(ctx, f.start.Add(ev.At)) {
				f.apply(ctx, ev)
			}
		})
	}
	res := &result.Result{
		Scenario:    s,
		Mode:        string(f.cfg.Mode),
		Bound:       s.Bound(),
		BlobBytes:   int64(s.Blob.Size),
		Delta:       f.cfg.Delta,
		FleetStartS: f.start.Sub(up).Seconds(),
	}
	if d := f.cfg.Delta; d != nil {
		res.Bound = s.BoundFor(d.ChangedChunkBytes)
	}
	res.Series = Sample(ctx, s.Sample, meter, f.cfg.Progress, func(now time.Time) (result.Sample, bool) {
		// Settled first: a pull that completes between the two would
		// otherwise end the run on a sample that misses it.
		last := f.settled() && now.Sub(f.start) >= lastEvent
		return f.sample(ctx, now), last
	})
	res.Spread = f.spread.Spread()
	res.Host = meter.Host(time.Now())
	cancel()
	f.wg.Wait()
	if f.cfg.Verify && parent.Err() == nil {
		f.verify(parent)
	}
	res.Peers, res.OriginEgressBytes = f.gather()
	f.evMu.Lock()
	res.Events = slices.Clone(f.events)
	f.evMu.Unlock()
	slices.SortStableFunc(res.Events, func(a, b result.Event) int { return cmp.Compare(a.StartS, b.StartS) })
	return res
}

// Sample is a run's sampling loop: every period, it ticks meter, takes
// a sample with take, keeps it and passes it to progress (if set), until
// take says that sample was the last or ctx ends; when ctx ends it takes
// a last sample at once. It returns the samples.
func Sample(ctx context.Context, period time.Duration, meter *result.HostMeter, progress result.Progress, take func(now time.Time) (sm result.Sample, last bool)) []result.Sample {
	var series []result.Sample
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		var now time.Time
		select {
		case now = <-tick.C:
		case <-ctx.Done():
			now = time.Now()
		}
		meter.Tick(now)
		sm, last := take(now)
		series = append(series, sm)
		if progress != nil {
			progress(sm)
		}
		if last || ctx.Err() != nil {
			return series
		}
	}
}

// Close stops every peer still running, all at once (Stop without kill),
// and returns their errors.
func (f *Fleet) Close(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(f.members))
	for i, m := range f.members {
		m.mu.Lock()
		n := m.node
		m.node = nil
		m.mu.Unlock()
		if n != nil {
			wg.Go(func() { errs[i] = n.Stop(ctx, false) })
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// settled reports whether every honest peer has completed or left, and
// no pull is running.
func (f *Fleet) settled() bool {
	for _, m := range f.members {
		m.mu.Lock()
		busy := m.pulling != nil || (m.spec.Behavior == scenario.Honest && !m.completed && !m.left && !m.failed)
		m.mu.Unlock()
		if busy {
			return false
		}
	}
	return true
}

// boot starts every peer that joins at 0, all at once, and returns
// those that started; a peer that did not is marked failed.
func (f *Fleet) boot(ctx context.Context) map[*member]Node {
	var mu sync.Mutex
	nodes := make(map[*member]Node)
	var wg sync.WaitGroup
	for _, m := range f.members {
		if m.spec.JoinAt > 0 {
			continue
		}
		wg.Go(func() {
			if n, ok := f.startNode(ctx, m); ok {
				mu.Lock()
				nodes[m] = n
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return nodes
}

// startNode starts m's node; a start that fails marks m failed.
func (f *Fleet) startNode(ctx context.Context, m *member) (Node, bool) {
	n, err := f.cfg.Hosts.StartPeer(ctx, m.spec)
	if err != nil {
		m.mu.Lock()
		if ctx.Err() == nil {
			m.err, m.failed = fmt.Sprintf("start: %v", err), true
		}
		m.mu.Unlock()
		return Node{}, false
	}
	return n, true
}

// startPeer starts m (again, after a leave) and pulls the blob through
// its control API.
func (f *Fleet) startPeer(ctx context.Context, m *member) {
	if n, ok := f.startNode(ctx, m); ok {
		f.pullFrom(ctx, m, n)
	}
}

// pullFrom makes n m's running node and pulls the blob through its
// control API, in a goroutine of the fleet; m joins now, if it had not
// before.
func (f *Fleet) pullFrom(ctx context.Context, m *member, n Node) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.node, m.left = &n, false
	if m.joined.IsZero() {
		m.joined = time.Now()
	}
	done := make(chan struct{})
	m.pulling = done
	f.wg.Go(func() {
		defer close(done)
		f.pull(ctx, m, n.Control, done)
	})
}

func (f *Fleet) pull(ctx context.Context, m *member, addr string, done chan struct{}) {
	cc, err := controlclient.New(addr)
	if err != nil {
		m.mu.Lock()
		m.err, m.failed, m.pulling = err.Error(), true, nil
		m.mu.Unlock()
		return
	}
	defer cc.Close()
	// Counts from an earlier run of this peer (before a leave) carry on.
	m.mu.Lock()
	basePeers, baseOrigins := m.fromPeers, m.fromOrigins
	m.mu.Unlock()
	b, err := cc.Pull(ctx, f.cfg.Blob, func(p ctlwire.Progress) {
		m.mu.Lock()
		m.fromPeers, m.fromOrigins = basePeers+p.BytesFromPeers, baseOrigins+p.BytesFromOrigins
		m.mu.Unlock()
	})
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pulling == done {
		m.pulling = nil
	}
	if err != nil {
		if !m.left && ctx.Err() == nil {
			m.err, m.failed = err.Error(), true
		}
		return
	}
	m.fromPeers, m.fromOrigins = basePeers+b.BytesFromPeers, baseOrigins+b.BytesFromOrigins
	m.completed, m.done, m.err = true, time.Now(), ""
}

// apply carries out an event and records it.
func (f *Fleet) apply(ctx context.Context, ev scenario.Event) {
	rec := result.Event{Action: ev.Action, StartS: time.Since(f.start).Seconds()}
	var err error
	switch ev.Action {
	case scenario.TrackerDown, scenario.TrackerUp, scenario.OriginRestart:
		err = f.applyServices(ctx, ev.Action)
	default:
		rec.Peers = f.applyPeers(ctx, ev)
	}
	rec.EndS = time.Since(f.start).Seconds()
	if err != nil {
		rec.Err = err.Error()
		f.log.Warn("event failed", "at", ev.At, "action", ev.Action, "err", err)
	} else {
		f.log.Info("event", "at", ev.At, "action", ev.Action, "peers", rec.Peers)
	}
	f.evMu.Lock()
	f.events = append(f.events, rec)
	f.evMu.Unlock()
}

// applyServices stops or starts the tracker or restarts the origins.
func (f *Fleet) applyServices(ctx context.Context, action string) error {
	sv, ok := f.cfg.Hosts.(Services)
	if !ok {
		return fmt.Errorf("fleet: mode %s cannot %s", f.cfg.Mode, action)
	}
	switch action {
	case scenario.TrackerDown:
		return sv.StopTracker(ctx)
	case scenario.TrackerUp:
		return sv.StartTracker(ctx)
	default:
		return sv.RestartOrigins(ctx)
	}
}

// applyPeers carries out a leave, kill or join and returns how many
// peers it stopped or started.
func (f *Fleet) applyPeers(ctx context.Context, ev scenario.Event) int {
	var pick []*member
	for _, m := range f.members {
		if ev.Class != "" && m.spec.Class != ev.Class || ev.Class == "" && m.spec.Behavior != scenario.Honest {
			continue
		}
		m.mu.Lock()
		running := m.node != nil
		ok := running && (!ev.Incomplete || !m.completed) // leave, kill
		if ev.Action == scenario.Join {
			ok = !running && m.left
		}
		m.mu.Unlock()
		if ok {
			pick = append(pick, m)
		}
	}
	n := ev.Count
	if ev.Fraction > 0 {
		n = int(math.Round(ev.Fraction * float64(len(pick))))
	}
	n = min(n, len(pick))
	// Spread the choice over the fleet, deterministically.
	for i := range n {
		m := pick[i*len(pick)/n]
		switch ev.Action {
		case scenario.Join:
			f.startPeer(ctx, m)
		default:
			f.stopPeer(m, ev.Action == scenario.Kill)
		}
	}
	return n
}

// stopPeer stops m for an event; its pull ends, and m counts as having
// left unless it completed.
func (f *Fleet) stopPeer(m *member, kill bool) {
	m.mu.Lock()
	n := m.node
	m.node, m.left = nil, true
	m.mu.Unlock()
	if n == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopWithin)
	defer cancel()
	if err := n.Stop(ctx, kill); err != nil {
		f.log.Warn("stop peer", "peer", m.spec.Name, "err", err)
	}
}

// sample takes one point of the time series.
func (f *Fleet) sample(ctx context.Context, now time.Time) result.Sample {
	sm := result.Sample{T: now.Sub(f.start).Seconds()}
	for _, m := range f.members {
		m.mu.Lock()
		sm.OriginBytes += m.fromOrigins
		sm.PeerBytes += m.fromPeers
		if m.completed && m.spec.Behavior == scenario.Honest {
			sm.Complete++
		}
		if m.node != nil {
			sm.Live++
		}
		m.mu.Unlock()
	}
	qctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, err := f.cfg.Tracker.SwarmReplication(qctx, f.cfg.Blob)
	sm.TrackerPeers = -1
	if err == nil {
		sm.TrackerPeers = len(st.Peers) - st.Origins
	}
	if err == nil && len(st.Replication) > 0 {
		sm.ReplMin, sm.ReplMax = math.MaxInt, 0
		var sum int
		for _, r := range st.Replication {
			sm.ReplMin, sm.ReplMax = min(sm.ReplMin, int(r)), max(sm.ReplMax, int(r))
			sum += int(r)
		}
		sm.ReplMean = float64(sum) / float64(len(st.Replication))
		if f.spread == nil {
			f.spread = result.NewSpreadMeter(len(st.Replication), f.cfg.Scenario.NumHonest(), f.cfg.Delta.HeldChunks())
		}
		f.spread.Observe(sm.T, len(st.Replication), func(i int) int { return int(st.Replication[i]) })
	}
	return sm
}

// verify reads back the copy of every completed peer still running and
// marks the peer failed if it does not hash to the blob's digest.
func (f *Fleet) verify(ctx context.Context) {
	var g errgroup.Group
	g.SetLimit(2)
	for _, m := range f.members {
		m.mu.Lock()
		n := m.node
		ok := m.completed && n != nil
		m.mu.Unlock()
		if !ok {
			continue
		}
		g.Go(func() error {
			if err := f.checkCopy(ctx, n.Control); err != nil {
				m.mu.Lock()
				m.completed, m.failed, m.err = false, true, fmt.Sprintf("copy does not verify: %v", err)
				m.mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
}

// checkCopy reads the copy of the blob held by the peer whose control
// API is at addr, and checks its length and SHA-256.
func (f *Fleet) checkCopy(ctx context.Context, addr string) error {
	cc, err := controlclient.New(addr)
	if err != nil {
		return err
	}
	defer cc.Close()
	rc, _, err := cc.Open(ctx, f.cfg.Blob)
	if err != nil {
		return err
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		return err
	}
	size := f.cfg.Scenario.Blob.Size
	if got := chunker.Digest(h.Sum(nil)); got != f.cfg.Blob || n != int64(size) {
		return fmt.Errorf("%d bytes hashing to %s, want %d bytes of %s", n, got, size, f.cfg.Blob)
	}
	return nil
}

// gather returns each peer's outcome, and what the origins served them.
// An honest peer that neither completed nor left failed; a byzantine one
// that did not complete did not fail (nothing measures it).
func (f *Fleet) gather() (peers []result.Peer, fromOrigins int64) {
	for _, m := range f.members {
		m.mu.Lock()
		p := result.Peer{
			Name: m.spec.Name, Class: m.spec.Class, Zone: m.spec.Zone, Behavior: m.spec.Behavior,
			JoinS: m.spec.JoinAt.Seconds(), Completed: m.completed, Left: m.left && !m.completed,
			Err: m.err, FromPeers: m.fromPeers, FromOrigins: m.fromOrigins,
		}
		if m.completed {
			p.DoneS = m.done.Sub(m.joined).Seconds()
		} else if !p.Left && m.spec.Behavior == scenario.Honest {
			p.Failed = true
			if p.Err == "" {
				p.Err = "did not finish within the timeout"
			}
		}
		fromOrigins += m.fromOrigins
		m.mu.Unlock()
		peers = append(peers, p)
	}
	return peers, fromOrigins
}
