// Package emu runs a testbed scenario in emulation: a tracker, the
// origins and every peer in this process, built by internal/daemon exactly
// as p2pd builds them, talking over real loopback TCP sockets with the
// real data plane (libp2p, TLS 1.3, yamux, SHA-256 on every chunk, fsynced
// stores). Each origin and peer gets its emulated link (internal/shape) in
// its transport: upload and download token buckets shared by all its
// connections, and one-way latency with jitter. Pulls go through each
// peer's control API, as `p2pctl pull` does.
package emu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/chunker/chunkertest"
	"github.com/p2pd/p2pd/internal/daemon"
	"github.com/p2pd/p2pd/internal/shape"
	"github.com/p2pd/p2pd/internal/wire/ctlwire"
	"github.com/p2pd/p2pd/origin"
	"github.com/p2pd/p2pd/origin/originclient"
	"github.com/p2pd/p2pd/peer"
	"github.com/p2pd/p2pd/peer/byzantine"
	"github.com/p2pd/p2pd/peer/control/controlclient"
	"github.com/p2pd/p2pd/testbed/result"
	"github.com/p2pd/p2pd/testbed/scenario"
	"github.com/p2pd/p2pd/tracker"
	"github.com/p2pd/p2pd/tracker/trackerclient"
)

// Options tune a run beyond its scenario.
type Options struct {
	// Dir is where the nodes' data directories go (default DefaultDir()).
	// A temporary directory is made in it and removed at the end.
	Dir string
	// Logger receives every node's logs (default: discarded).
	Logger *slog.Logger
	// Progress receives each sample as the run goes.
	Progress result.Progress
	// Tune, if set, adjusts every node's peer engine configuration.
	Tune func(*peer.Config)
	// AnnounceInterval is the tracker's (default 1s: an emulated fleet is
	// small and its runs short).
	AnnounceInterval time.Duration
}

// DefaultDir is /dev/shm when it exists: the emulated links, not the
// host's disk, should set the pace. Otherwise the system temp directory.
func DefaultDir() string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		return "/dev/shm"
	}
	return os.TempDir()
}

// member is one peer of the fleet.
type member struct {
	spec scenario.Peer
	dir  string
	link *shape.Link

	mu          sync.Mutex
	node        *daemon.Node
	joined      time.Time // first start
	done        time.Time
	completed   bool
	left        bool // stopped by an event and not restarted
	failed      bool // its node would not start, or its pull failed
	err         string
	fromPeers   int64
	fromOrigins int64
	pulling     chan struct{} // closed when the current pull returns
}

type fleet struct {
	s       scenario.Scenario
	o       Options
	dir     string
	log     *slog.Logger
	tracker *daemon.Node
	tc      *trackerclient.Client
	origins []*daemon.Node
	blob    chunker.Digest
	start   time.Time
	members []*member
	wg      sync.WaitGroup
}

// Run runs s in emulation mode and returns what it measured.
func Run(ctx context.Context, s scenario.Scenario, o Options) (res *result.Result, err error) {
	s = s.WithDefaults()
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Dir == "" {
		o.Dir = DefaultDir()
	}
	if o.AnnounceInterval == 0 {
		o.AnnounceInterval = time.Second
	}
	tmp, err := os.MkdirTemp(o.Dir, "p2pd-testbed-")
	if err != nil {
		return nil, fmt.Errorf("emu: %w", err)
	}
	defer os.RemoveAll(tmp)
	f := &fleet{s: s, o: o, dir: tmp, log: o.Logger}
	defer func() { err = errors.Join(err, f.close()) }()
	if err := f.setup(ctx); err != nil {
		return nil, err
	}
	return f.run(ctx)
}

func (f *fleet) peerConfig() peer.Config {
	var cfg peer.Config
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	if f.o.Tune != nil {
		f.o.Tune(&cfg)
	}
	return cfg
}

// setup starts the tracker and the origins and pushes the blob to every
// origin.
func (f *fleet) setup(ctx context.Context) error {
	var err error
	f.tracker, err = daemon.RunTracker(ctx, daemon.TrackerConfig{
		Listen:  "127.0.0.1:0",
		Tracker: tracker.Config{AnnounceInterval: f.o.AnnounceInterval},
	}, f.log)
	if err != nil {
		return fmt.Errorf("emu: tracker: %w", err)
	}
	if f.tc, err = trackerclient.New(f.tracker.URL("http")); err != nil {
		return err
	}
	for i := range f.s.Origins.Count {
		n, err := daemon.RunOrigin(ctx, daemon.OriginConfig{
			NodeConfig: daemon.NodeConfig{
				DataDir: filepath.Join(f.dir, fmt.Sprintf("origin-%d", i)),
				Tracker: f.tracker.URL("http"),
				Peer:    f.peerConfig(),
				Hooks:   daemon.Hooks{Link: f.s.OriginLink(i)},
			},
			Listen: "127.0.0.1:0",
			Origin: origin.Config{Chunker: f.s.Blob.Chunker},
		}, f.log.With("node", fmt.Sprintf("origin-%d", i)))
		if err != nil {
			return fmt.Errorf("emu: origin %d: %w", i, err)
		}
		f.origins = append(f.origins, n)
		oc, err := originclient.New(n.URL("http"))
		if err != nil {
			return err
		}
		size := int64(f.s.Blob.Size)
		pr, err := oc.Push(ctx, chunkertest.NewStream(f.s.Seed, size), originclient.PushOptions{Size: size})
		oc.CloseIdleConnections()
		if err != nil {
			return fmt.Errorf("emu: push to origin %d: %w", i, err)
		}
		f.blob = pr.Digest
	}
	for _, p := range f.s.Expand() {
		f.members = append(f.members, &member{
			spec: p,
			dir:  filepath.Join(f.dir, p.Name),
			link: f.s.PeerLink(p),
		})
	}
	return nil
}

// run starts the peers at their join times, fires the events, samples
// until every peer is done or the timeout, and gathers the result.
func (f *fleet) run(ctx context.Context) (*result.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, f.s.Timeout)
	defer cancel()
	f.start = time.Now()
	meter := result.NewHostMeter(f.start, nil)
	for _, m := range f.members {
		f.wg.Go(func() {
			if !scenario.SleepUntil(ctx, f.start.Add(m.spec.JoinAt)) {
				return
			}
			f.startPeer(ctx, m)
		})
	}
	for _, ev := range f.s.Events {
		f.wg.Go(func() {
			if scenario.SleepUntil(ctx, f.start.Add(ev.At)) {
				f.apply(ctx, ev)
			}
		})
	}
	res := &result.Result{
		Scenario:  f.s,
		Mode:      string(scenario.ModeEmu),
		Bound:     f.s.Bound(),
		BlobBytes: int64(f.s.Blob.Size),
	}
	tick := time.NewTicker(f.s.Sample)
	defer tick.Stop()
	lastEvent := time.Duration(0)
	for _, ev := range f.s.Events {
		lastEvent = max(lastEvent, ev.At)
	}
	for {
		var now time.Time
		select {
		case now = <-tick.C:
		case <-ctx.Done():
			now = time.Now()
		}
		meter.Tick(now)
		sm := f.sample(ctx, now)
		res.Series = append(res.Series, sm)
		if f.o.Progress != nil {
			f.o.Progress(sm)
		}
		if ctx.Err() != nil || (f.settled() && now.Sub(f.start) >= lastEvent) {
			break
		}
	}
	res.Host = meter.Host(time.Now())
	cancel()
	f.wg.Wait()
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
		res.OriginEgressBytes += m.fromOrigins
		m.mu.Unlock()
		res.Peers = append(res.Peers, p)
	}
	return res, nil
}

// settled reports whether every honest peer has completed or left, and
// no pull is running.
func (f *fleet) settled() bool {
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

// startPeer starts m's node (again, after a leave) and pulls the blob
// through its control API.
func (f *fleet) startPeer(ctx context.Context, m *member) {
	hooks := daemon.Hooks{Link: m.link}
	switch m.spec.Behavior {
	case scenario.Corrupt:
		hooks.WrapStore = byzantine.CorruptReads
	case scenario.Liar:
		hooks.WrapStore = byzantine.ClaimAll
	}
	cfg := f.peerConfig()
	cfg.Zone, cfg.Rack = m.spec.Zone, m.spec.Rack
	n, err := daemon.RunPeer(ctx, daemon.PeerConfig{
		NodeConfig: daemon.NodeConfig{DataDir: m.dir, Tracker: f.tracker.URL("http"), Peer: cfg, Hooks: hooks},
		Control:    "127.0.0.1:0",
	}, f.log.With("node", m.spec.Name))
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			m.err, m.failed = fmt.Sprintf("start: %v", err), true
		}
		return
	}
	m.node, m.left = n, false
	if m.joined.IsZero() {
		m.joined = time.Now()
	}
	done := make(chan struct{})
	m.pulling = done
	f.wg.Go(func() {
		defer close(done)
		f.pull(ctx, m, n.Addrs["control"], done)
	})
}

func (f *fleet) pull(ctx context.Context, m *member, addr string, done chan struct{}) {
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
	b, err := cc.Pull(ctx, f.blob, func(p ctlwire.Progress) {
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

// apply carries out an event.
func (f *fleet) apply(ctx context.Context, ev scenario.Event) {
	var pick []*member
	for _, m := range f.members {
		if ev.Class != "" && m.spec.Class != ev.Class || ev.Class == "" && m.spec.Behavior != scenario.Honest {
			continue
		}
		m.mu.Lock()
		running := m.node != nil
		ok := running && (!ev.Incomplete || !m.completed) // leave, kill
		if ev.Action == "join" {
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
		case "join":
			f.startPeer(ctx, m)
		default:
			f.stopPeer(m)
		}
	}
	f.log.Info("event", "at", ev.At, "action", ev.Action, "peers", n)
}

// stopPeer closes m's node; its pull ends, and m counts as having left
// unless it completed.
func (f *fleet) stopPeer(m *member) {
	m.mu.Lock()
	n := m.node
	m.node, m.left = nil, true
	m.mu.Unlock()
	if n == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		f.log.Warn("stop peer", "peer", m.spec.Name, "err", err)
	}
}

// sample takes one point of the time series.
func (f *fleet) sample(ctx context.Context, now time.Time) result.Sample {
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
	if st, err := f.tc.SwarmReplication(qctx, f.blob); err == nil && len(st.Replication) > 0 {
		sm.ReplMin, sm.ReplMax = math.MaxInt, 0
		var sum int
		for _, r := range st.Replication {
			sm.ReplMin, sm.ReplMax = min(sm.ReplMin, int(r)), max(sm.ReplMax, int(r))
			sum += int(r)
		}
		sm.ReplMean = float64(sum) / float64(len(st.Replication))
	}
	return sm
}

// close stops every node.
func (f *fleet) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(f.members)+len(f.origins)+1)
	for i, m := range f.members {
		m.mu.Lock()
		n := m.node
		m.node = nil
		m.mu.Unlock()
		if n != nil {
			wg.Go(func() { errs[i] = n.Close(ctx) })
		}
	}
	wg.Wait()
	for i, n := range f.origins {
		errs[len(f.members)+i] = n.Close(ctx)
	}
	if f.tc != nil {
		f.tc.CloseIdleConnections()
	}
	if f.tracker != nil {
		errs[len(errs)-1] = f.tracker.Close(ctx)
	}
	return errors.Join(errs...)
}
