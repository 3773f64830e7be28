// Package netns runs a testbed scenario on real p2pd processes, each in
// a network namespace of its own: `p2pd tracker`, `p2pd origin` and
// `p2pd peer`, as an operator would run them, each with its own YAML
// config and data directory. The namespaces hang off one bridge in a hub
// namespace by veth pairs, and each host's link is shaped with tc tbf:
// its upload on its own veth end, its download on the bridge's (see
// topo.go for the names, addresses and qdisc parameters). netem is not
// available, so links have capacity but no latency, jitter or loss:
// Warnings says so for a scenario that sets them.
//
// The testbed reaches the tracker's and the origins' HTTP APIs by
// entering their namespaces, and each peer's control API over a unix
// socket in the run's directory: nothing is added to the root namespace.
// Every process is stopped and every namespace deleted when Run returns,
// on error, panic and cancellation too; Cleanup (and
// scripts/netns-clean.sh) removes what a killed testbed left.
//
// Run mirrors the emu package: the same scenario, the same events and the
// same Result, measured the same way, so that the two modes can be
// compared on the same scenario. Differences: a kill is SIGKILL (a real
// crash: the tracker keeps the peer's record until its TTL), a leave
// SIGTERM; byzantine classes cannot run (p2pd has no such config).
package netns

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"gopkg.in/yaml.v3"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/chunker/chunkertest"
	"github.com/p2pd/p2pd/internal/procstat"
	"github.com/p2pd/p2pd/internal/wire/ctlwire"
	"github.com/p2pd/p2pd/origin/originclient"
	"github.com/p2pd/p2pd/peer/control/controlclient"
	"github.com/p2pd/p2pd/testbed/emu"
	"github.com/p2pd/p2pd/testbed/result"
	"github.com/p2pd/p2pd/testbed/scenario"
	"github.com/p2pd/p2pd/tracker/trackerclient"
)

// ErrUnsupported is returned for a scenario netns mode cannot run.
var ErrUnsupported = errors.New("netns: not supported")

// Options tune a run beyond its scenario.
type Options struct {
	// P2PD is the p2pd binary to run (default: build cmd/p2pd with the go
	// command into the run's directory, which needs the current directory
	// inside the module).
	P2PD string
	// Dir is where the run's directory goes (default emu.DefaultDir():
	// /dev/shm when it exists). It holds the nodes' configs, data, logs
	// and control sockets, and is removed at the end.
	Dir string
	// Logger receives the testbed's messages and every process's log
	// lines, with the node's name (default: discarded; the processes'
	// logs still go to files in the run's directory).
	Logger *slog.Logger
	// Progress receives each sample as the run goes.
	Progress result.Progress
	// Verify reads every completed peer's copy back through its control
	// API after the run and checks its SHA-256; a copy that does not
	// match marks the peer failed. It costs a read of every copy.
	Verify bool
}

// Ports inside the hosts' namespaces (each has its own, so they are
// fixed). The peer protocol listens on a free port.
const (
	trackerPort = 7400
	originPort  = 7401
	// announceInterval is the tracker's, as in emu: the fleet is small
	// and the runs short.
	announceInterval = time.Second
)

// member is one peer of the fleet.
type member struct {
	spec scenario.Peer
	host *host
	dir  string // data directory
	cfg  string // config file
	sock string // control socket

	mu sync.Mutex
	// standby is the process started before the run, waiting for the
	// peer's join; proc the running peer's.
	standby     *proc
	proc        *proc
	joined      time.Time // first start
	done        time.Time
	completed   bool
	left        bool // stopped by an event and not restarted
	failed      bool // its process would not start, or its pull failed
	err         string
	fromPeers   int64
	fromOrigins int64
	pulling     chan struct{} // closed when the current pull returns
}

type fleet struct {
	s   scenario.Scenario
	o   Options
	dir string
	// sockDir holds the peers' control sockets.
	sockDir string
	log     *slog.Logger
	// procLog gets the processes' log lines (nil: files only).
	procLog *slog.Logger
	bin     string
	topo    *topo
	// procCtx ends every process (SIGTERM, then SIGKILL) when the run's
	// context is cancelled.
	procCtx  context.Context
	endProcs context.CancelFunc

	pmu   sync.Mutex
	procs []*proc // every process started, for the CPU meter

	tracker    *proc
	trackerURL string
	tc         *trackerclient.Client
	origins    []*proc
	blob       chunker.Digest
	start      time.Time
	members    []*member
	wg         sync.WaitGroup
}

// Warnings lists what netns mode cannot reproduce of s: latency, jitter
// and loss (no netem on the machines this runs on). Run logs them.
func Warnings(s scenario.Scenario) []string {
	var w []string
	check := func(what string, l scenario.Link) {
		if l.Latency > 0 || l.Jitter > 0 || l.Loss > 0 {
			w = append(w, fmt.Sprintf("%s: latency %v, jitter %v, loss %v are not emulated in netns mode (tc tbf shapes capacity only; no netem): its links add none", what, l.Latency, l.Jitter, l.Loss))
		}
	}
	check("origins", s.Origins.Link)
	for _, c := range s.Classes {
		check("class "+c.Name, c.Link)
	}
	return w
}

// Run runs s on real p2pd processes in network namespaces and returns
// what it measured. It needs root (see Available).
func Run(ctx context.Context, s scenario.Scenario, o Options) (res *result.Result, err error) {
	s = s.WithDefaults()
	v := s
	v.Mode = scenario.ModeNetns // the host limit applies whatever s says
	if err := v.Validate(); err != nil {
		return nil, err
	}
	for _, c := range s.Classes {
		if c.Behavior != scenario.Honest && c.Count > 0 {
			return nil, fmt.Errorf("%w: class %q is %s: p2pd has no byzantine mode", ErrUnsupported, c.Name, c.Behavior)
		}
	}
	if err := Available(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	f := &fleet{s: s, o: o, log: o.Logger, procLog: o.Logger}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	for _, w := range Warnings(s) {
		f.log.Warn(w)
	}
	if o.Dir == "" {
		o.Dir = emu.DefaultDir()
	}
	tmp, err := os.MkdirTemp(o.Dir, "p2pd-netns-")
	if err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	defer os.RemoveAll(tmp)
	f.dir = tmp
	var rmSocks func()
	if f.sockDir, rmSocks, err = sockDir(tmp); err != nil {
		return nil, err
	}
	defer rmSocks()
	f.procCtx, f.endProcs = context.WithCancel(ctx)
	// Deferred: runs on errors and panics too. Processes first, then the
	// namespaces they were in, then (above) their files.
	defer func() { err = errors.Join(err, f.close()) }()
	if err := f.setup(ctx); err != nil {
		return nil, err
	}
	return f.run(ctx)
}

// setup builds or finds p2pd, creates the network, starts the tracker and
// the origins, pushes the blob to every origin, and starts every peer's
// process, ready for its join.
func (f *fleet) setup(ctx context.Context) error {
	f.bin = f.o.P2PD
	if f.bin == "" {
		var err error
		if f.bin, err = buildP2PD(ctx, f.dir); err != nil {
			return err
		}
	}
	peers := f.s.Expand()
	var err error
	if f.topo, err = newTopo(ctx, f.s, peers); err != nil {
		return fmt.Errorf("netns: network: %w", err)
	}
	f.log.Info("netns network", "prefix", f.topo.prefix, "subnet", f.topo.net, "hosts", len(f.topo.hosts))
	hosts := f.topo.hosts

	th := hosts[0]
	f.trackerURL = fmt.Sprintf("http://%s:%d", th.addr, trackerPort)
	cfg, err := f.writeConfig("tracker", map[string]any{
		"listen":  fmt.Sprintf("%s:%d", th.addr, trackerPort),
		"tracker": map[string]any{"announce_interval": announceInterval.String()},
		"log":     logConfig,
	})
	if err != nil {
		return err
	}
	if f.tracker, err = f.startProc(th, "tracker", "tracker", cfg); err != nil {
		return err
	}
	if f.tc, err = trackerclient.New(f.trackerURL, trackerclient.WithHTTPClient(httpIn(th.ns, trackerclient.DefaultTimeout))); err != nil {
		return err
	}
	if err := f.tracker.waitReady(ctx, f.tc.Health); err != nil {
		return fmt.Errorf("netns: tracker: %w", err)
	}

	for i := range f.s.Origins.Count {
		if err := f.startOrigin(ctx, i, hosts[1+i]); err != nil {
			return fmt.Errorf("netns: origin %d: %w", i, err)
		}
	}

	for i, p := range peers {
		m := &member{spec: p, host: hosts[1+f.s.Origins.Count+i], dir: filepath.Join(f.dir, p.Name)}
		m.sock = filepath.Join(f.sockDir, m.host.id+".sock")
		peerCfg := map[string]any{"listen_addrs": []string{fmt.Sprintf("/ip4/%s/tcp/0", m.host.addr)}}
		if p.Zone != "" {
			peerCfg["zone"] = p.Zone
		}
		if p.Rack != "" {
			peerCfg["rack"] = p.Rack
		}
		if m.cfg, err = f.writeConfig(p.Name, map[string]any{
			"control": "unix:" + m.sock, "data_dir": m.dir, "tracker": f.trackerURL,
			"peer": peerCfg, "log": logConfig,
		}); err != nil {
			return err
		}
		f.members = append(f.members, m)
	}
	// Start every peer before the clock does, two at a time (the
	// machine's cores): a process takes a while to start, and the
	// scenario's joins should not wait for it.
	var g errgroup.Group
	g.SetLimit(2)
	for _, m := range f.members {
		g.Go(func() error {
			p, err := f.startPeerProc(ctx, m)
			if err != nil {
				return fmt.Errorf("netns: %s: %w", m.spec.Name, err)
			}
			m.mu.Lock()
			m.standby = p
			m.mu.Unlock()
			return nil
		})
	}
	return g.Wait()
}

// logConfig is every process's log section: JSON, so that its lines can
// be passed on to the Logger with their levels and attributes.
var logConfig = map[string]any{"level": "info", "format": "json"}

// writeConfig writes the YAML config of the node name.
func (f *fleet) writeConfig(name string, cfg map[string]any) (string, error) {
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return "", err
	}
	path := filepath.Join(f.dir, name+".yaml")
	return path, os.WriteFile(path, b, 0o600)
}

// sockDir returns the directory for the peers' control sockets: the
// run's, or a short temporary one (removed with the run) if socket paths
// there could exceed a unix socket's 108 bytes.
func sockDir(dir string) (path string, remove func(), err error) {
	if len(filepath.Join(dir, "p63.sock")) < 100 {
		return dir, func() {}, nil
	}
	d, err := os.MkdirTemp("", "p2t")
	if err != nil {
		return "", nil, fmt.Errorf("netns: %w", err)
	}
	return d, func() { os.RemoveAll(d) }, nil
}

// startProc starts role on h, counted by the CPU meter.
func (f *fleet) startProc(h *host, name, role, cfg string) (*proc, error) {
	p, err := startProc(f.procCtx, f.bin, h.ns, name, role, cfg, filepath.Join(f.dir, name+".log"), f.procLog)
	if err != nil {
		return nil, err
	}
	f.pmu.Lock()
	f.procs = append(f.procs, p)
	f.pmu.Unlock()
	return p, nil
}

// httpIn returns an HTTP client whose connections are made inside ns.
func httpIn(ns string, timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.DialContext = dialer{ns: ns}.DialContext
	return &http.Client{Transport: tr, Timeout: timeout}
}

// startOrigin starts origin i on h and pushes the blob to it.
func (f *fleet) startOrigin(ctx context.Context, i int, h *host) error {
	name := fmt.Sprintf("origin-%d", i)
	cfg, err := f.writeConfig(name, map[string]any{
		"listen": fmt.Sprintf("%s:%d", h.addr, originPort), "data_dir": filepath.Join(f.dir, name),
		"tracker": f.trackerURL,
		"peer":    map[string]any{"listen_addrs": []string{fmt.Sprintf("/ip4/%s/tcp/0", h.addr)}},
		"origin": map[string]any{"chunker": map[string]any{
			"min_size": f.s.Blob.Chunker.MinSize, "avg_size": f.s.Blob.Chunker.AvgSize,
			"max_size": f.s.Blob.Chunker.MaxSize, "normalization": f.s.Blob.Chunker.Normalization,
		}},
		"log": logConfig,
	})
	if err != nil {
		return err
	}
	p, err := f.startProc(h, name, "origin", cfg)
	if err != nil {
		return err
	}
	f.origins = append(f.origins, p)
	oc, err := originclient.New(fmt.Sprintf("http://%s:%d", h.addr, originPort), originclient.WithHTTPClient(httpIn(h.ns, 0)))
	if err != nil {
		return err
	}
	defer oc.CloseIdleConnections()
	if err := p.waitReady(ctx, oc.Health); err != nil {
		return err
	}
	size := int64(f.s.Blob.Size)
	pr, err := oc.Push(ctx, chunkertest.NewStream(f.s.Seed, size), originclient.PushOptions{Size: size})
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	f.blob = pr.Digest
	return nil
}

// startPeerProc starts m's process and waits for its control API.
func (f *fleet) startPeerProc(ctx context.Context, m *member) (*proc, error) {
	// A killed peer leaves its socket file behind.
	if err := os.Remove(m.sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	p, err := f.startProc(m.host, m.spec.Name, "peer", m.cfg)
	if err != nil {
		return nil, err
	}
	cc, err := controlclient.New("unix:" + m.sock)
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	err = p.waitReady(ctx, func(ctx context.Context) error {
		_, err := cc.Node(ctx)
		return err
	})
	if err != nil {
		p.kill()
		return nil, err
	}
	return p, nil
}

// cpu is the CPU time of this process and of every p2pd process of the
// run: the machine's work for the run.
func (f *fleet) cpu() time.Duration {
	f.pmu.Lock()
	procs := slices.Clone(f.procs)
	f.pmu.Unlock()
	t := procstat.CPUTime()
	for _, p := range procs {
		t += p.cpuTime()
	}
	return t
}

// run starts the peers at their join times, fires the events, samples
// until every peer is done or the timeout, and gathers the result.
func (f *fleet) run(ctx context.Context) (*result.Result, error) {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, f.s.Timeout)
	defer cancel()
	f.start = time.Now()
	meter := result.NewHostMeter(f.start, f.cpu)
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
		Mode:      string(scenario.ModeNetns),
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
	if f.o.Verify && parent.Err() == nil {
		f.verify(parent)
	}
	for _, m := range f.members {
		m.mu.Lock()
		p := result.Peer{
			Name: m.spec.Name, Class: m.spec.Class, Zone: m.spec.Zone, Behavior: m.spec.Behavior,
			JoinS: m.spec.JoinAt.Seconds(), Completed: m.completed, Left: m.left && !m.completed,
			Err: m.err, FromPeers: m.fromPeers, FromOrigins: m.fromOrigins,
		}
		if m.completed {
			p.DoneS = m.done.Sub(m.joined).Seconds()
		} else if !p.Left {
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

// settled reports whether every peer has completed or left, and no pull
// is running.
func (f *fleet) settled() bool {
	for _, m := range f.members {
		m.mu.Lock()
		busy := m.pulling != nil || (!m.completed && !m.left && !m.failed)
		m.mu.Unlock()
		if busy {
			return false
		}
	}
	return true
}

// startPeer joins m: it takes the process started before the run (or,
// after a leave, starts one on the same data directory) and pulls the
// blob through its control API.
func (f *fleet) startPeer(ctx context.Context, m *member) {
	m.mu.Lock()
	p := m.standby
	m.standby = nil
	m.mu.Unlock()
	if p == nil {
		var err error
		if p, err = f.startPeerProc(ctx, m); err != nil {
			if ctx.Err() == nil {
				m.mu.Lock()
				m.err, m.failed = fmt.Sprintf("start: %v", err), true
				m.mu.Unlock()
			}
			return
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.proc, m.left = p, false
	if m.joined.IsZero() {
		m.joined = time.Now()
	}
	done := make(chan struct{})
	m.pulling = done
	f.wg.Go(func() {
		defer close(done)
		f.pull(ctx, m, done)
	})
}

func (f *fleet) pull(ctx context.Context, m *member, done chan struct{}) {
	cc, err := controlclient.New("unix:" + m.sock)
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
		if ev.Class != "" && m.spec.Class != ev.Class {
			continue
		}
		m.mu.Lock()
		running := m.proc != nil
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
			f.stopPeer(m, ev.Action == "kill")
		}
	}
	f.log.Info("event", "at", ev.At, "action", ev.Action, "peers", n)
}

// stopPeer stops m's process: SIGKILL for a kill, SIGTERM for a leave.
// Its pull ends, and m counts as having left unless it completed.
func (f *fleet) stopPeer(m *member, kill bool) {
	m.mu.Lock()
	p := m.proc
	m.proc, m.left = nil, true
	m.mu.Unlock()
	switch {
	case p == nil:
	case kill:
		p.kill()
	default:
		p.stop()
	}
}

// sample takes one point of the time series.
func (f *fleet) sample(ctx context.Context, now time.Time) result.Sample {
	sm := result.Sample{T: now.Sub(f.start).Seconds()}
	for _, m := range f.members {
		m.mu.Lock()
		sm.OriginBytes += m.fromOrigins
		sm.PeerBytes += m.fromPeers
		if m.completed {
			sm.Complete++
		}
		if m.proc != nil {
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

// verify reads back the copy of every completed peer still running and
// marks the peer failed if it does not hash to the blob's digest.
func (f *fleet) verify(ctx context.Context) {
	var g errgroup.Group
	g.SetLimit(2)
	for _, m := range f.members {
		m.mu.Lock()
		ok := m.completed && m.proc != nil
		m.mu.Unlock()
		if !ok {
			continue
		}
		g.Go(func() error {
			if err := f.checkCopy(ctx, m); err != nil {
				m.mu.Lock()
				m.completed, m.failed, m.err = false, true, fmt.Sprintf("copy does not verify: %v", err)
				m.mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
}

// checkCopy reads m's copy of the blob and checks its length and SHA-256.
func (f *fleet) checkCopy(ctx context.Context, m *member) error {
	cc, err := controlclient.New("unix:" + m.sock)
	if err != nil {
		return err
	}
	defer cc.Close()
	rc, _, err := cc.Open(ctx, f.blob)
	if err != nil {
		return err
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		return err
	}
	if got := chunker.Digest(h.Sum(nil)); got != f.blob || n != int64(f.s.Blob.Size) {
		return fmt.Errorf("%d bytes hashing to %s, want %d bytes of %s", n, got, f.s.Blob.Size, f.blob)
	}
	return nil
}

// close stops every process, the peers first (SIGTERM, then SIGKILL
// after stopGrace), then deletes the network.
func (f *fleet) close() error {
	var wg sync.WaitGroup
	for _, m := range f.members {
		m.mu.Lock()
		ps := []*proc{m.proc, m.standby}
		m.proc, m.standby = nil, nil
		m.mu.Unlock()
		for _, p := range ps {
			if p != nil {
				wg.Go(p.stop)
			}
		}
	}
	wg.Wait()
	for _, p := range f.origins {
		wg.Go(p.stop)
	}
	wg.Wait()
	if f.tracker != nil {
		f.tracker.stop()
	}
	// Anything else (a peer whose start failed half-way): SIGTERM, and
	// SIGKILL stopGrace later, through the processes' context.
	f.endProcs()
	f.pmu.Lock()
	procs := slices.Clone(f.procs)
	f.pmu.Unlock()
	for _, p := range procs {
		<-p.done
	}
	if f.tc != nil {
		f.tc.CloseIdleConnections()
	}
	if f.topo != nil {
		return f.topo.teardown()
	}
	return nil
}
