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
// same Result, measured the same way (testbed/fleet drives the peers in
// both), so that the two modes can be compared on the same scenario.
// Differences: every peer's process starts before the run's clock, and
// its join only starts its pull; a kill is SIGKILL (a real crash: the
// tracker keeps the peer's record until its TTL), a leave SIGTERM;
// byzantine classes cannot run (p2pd has no such config).
package netns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	"github.com/p2pd/p2pd/internal/auth"
	"github.com/p2pd/p2pd/internal/procstat"
	"github.com/p2pd/p2pd/origin/originclient"
	"github.com/p2pd/p2pd/peer/control/controlclient"
	"github.com/p2pd/p2pd/testbed/fleet"
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
	// Dir is where the run's directory goes (default fleet.DefaultDir():
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

// peerHost is where a peer runs: its host, data directory, config
// file and control socket, and the process started for it before the
// run.
type peerHost struct {
	name string
	host *host
	dir  string // data directory
	cfg  string // config file
	sock string // control socket

	mu sync.Mutex
	// standby is the process started before the run, waiting for the
	// peer's join.
	standby *proc
}

// takeStandby returns h's standby process, if it still has one, and
// leaves it none.
func (h *peerHost) takeStandby() *proc {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.standby
	h.standby = nil
	return p
}

// cluster is the processes of a run and the network they run in: the
// tracker, the origins, and the peers as the fleet starts and stops them.
// It is the fleet's Hosts.
type cluster struct {
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
	// peers are by scenario.Peer.Index.
	peers []*peerHost
	fleet *fleet.Fleet
	// security is every process's: the fleet runs closed, like a real
	// one, with credentials made for the run.
	security auth.Config
	creds    *auth.Credentials
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
	c := &cluster{s: s, o: o, log: o.Logger, procLog: o.Logger}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	for _, w := range Warnings(s) {
		c.log.Warn(w)
	}
	tmp, err := fleet.TempDir(o.Dir, "p2pd-netns-")
	if err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	defer os.RemoveAll(tmp)
	c.dir = tmp
	var rmSocks func()
	if c.sockDir, rmSocks, err = sockDir(tmp); err != nil {
		return nil, err
	}
	defer rmSocks()
	c.procCtx, c.endProcs = context.WithCancel(ctx)
	// Deferred: runs on errors and panics too. Processes first, then the
	// namespaces they were in, then (above) their files.
	defer func() { err = errors.Join(err, c.close()) }()
	if err := c.setup(ctx); err != nil {
		return nil, err
	}
	c.fleet = fleet.New(fleet.Config{
		Scenario: s, Mode: scenario.ModeNetns, Blob: c.blob, Tracker: c.tc, Hosts: c,
		CPU: c.cpu, Verify: o.Verify, Logger: c.log, Progress: o.Progress,
	})
	return c.fleet.Run(ctx), nil
}

// setup builds or finds p2pd, creates the network, starts the tracker and
// the origins, pushes the blob to every origin, and starts every peer's
// process, ready for its join.
func (c *cluster) setup(ctx context.Context) error {
	c.bin = c.o.P2PD
	if c.bin == "" {
		var err error
		if c.bin, err = buildP2PD(ctx, c.dir); err != nil {
			return err
		}
	}
	peers := c.s.Expand()
	var err error
	if c.topo, err = newTopo(ctx, c.s, peers); err != nil {
		return fmt.Errorf("netns: network: %w", err)
	}
	c.log.Info("netns network", "prefix", c.topo.prefix, "subnet", c.topo.net, "hosts", len(c.topo.hosts))
	hosts := c.topo.hosts

	if c.security, err = auth.Generate(filepath.Join(c.dir, "credentials"), auth.GenerateOptions{}); err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	if c.creds, err = c.security.Load(); err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	th := hosts[0]
	c.trackerURL = fmt.Sprintf("http://%s:%d", th.addr, trackerPort)
	cfg, err := c.writeConfig("tracker", map[string]any{
		"listen":   fmt.Sprintf("%s:%d", th.addr, trackerPort),
		"tracker":  map[string]any{"announce_interval": announceInterval.String()},
		"log":      logConfig,
		"security": c.security,
	})
	if err != nil {
		return err
	}
	if c.tracker, err = c.startProc(th, "tracker", "tracker", cfg); err != nil {
		return err
	}
	if c.tc, err = trackerclient.New(c.trackerURL, trackerclient.WithHTTPClient(c.httpIn(th.ns, auth.ScopeAdmin, trackerclient.DefaultTimeout))); err != nil {
		return err
	}
	if err := c.tracker.waitReady(ctx, c.tc.Health); err != nil {
		return fmt.Errorf("netns: tracker: %w", err)
	}

	for i := range c.s.Origins.Count {
		if err := c.startOrigin(ctx, i, hosts[1+i]); err != nil {
			return fmt.Errorf("netns: origin %d: %w", i, err)
		}
	}

	for i, p := range peers {
		h := &peerHost{name: p.Name, host: hosts[1+c.s.Origins.Count+i], dir: filepath.Join(c.dir, p.Name)}
		h.sock = filepath.Join(c.sockDir, h.host.id+".sock")
		peerCfg := map[string]any{"listen_addrs": []string{fmt.Sprintf("/ip4/%s/tcp/0", h.host.addr)}}
		if p.Zone != "" {
			peerCfg["zone"] = p.Zone
		}
		if p.Rack != "" {
			peerCfg["rack"] = p.Rack
		}
		if c.s.Conns.Max > 0 {
			peerCfg["max_conns"] = c.s.Conns.Max
		}
		if c.s.Conns.Inbound > 0 {
			peerCfg["max_inbound"] = c.s.Conns.Inbound
		}
		if h.cfg, err = c.writeConfig(p.Name, map[string]any{
			"control": "unix:" + h.sock, "data_dir": h.dir, "tracker": c.trackerURL, "mirror": map[string]any{"listen": "off"},
			"peer": peerCfg, "log": logConfig, "security": c.security,
		}); err != nil {
			return err
		}
		c.peers = append(c.peers, h)
	}
	// Start every peer before the clock does, two at a time (the
	// machine's cores): a process takes a while to start, and the
	// scenario's joins should not wait for it.
	var g errgroup.Group
	g.SetLimit(2)
	for _, h := range c.peers {
		g.Go(func() error {
			p, err := c.startPeerProc(ctx, h)
			if err != nil {
				return fmt.Errorf("netns: %s: %w", h.name, err)
			}
			h.mu.Lock()
			h.standby = p
			h.mu.Unlock()
			return nil
		})
	}
	return g.Wait()
}

// logConfig is every process's log section: JSON, so that its lines can
// be passed on to the Logger with their levels and attributes.
var logConfig = map[string]any{"level": "info", "format": "json"}

// writeConfig writes the YAML config of the node name.
func (c *cluster) writeConfig(name string, cfg map[string]any) (string, error) {
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return "", err
	}
	path := filepath.Join(c.dir, name+".yaml")
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
func (c *cluster) startProc(h *host, name, role, cfg string) (*proc, error) {
	p, err := startProc(c.procCtx, c.bin, h.ns, name, role, cfg, filepath.Join(c.dir, name+".log"), c.procLog)
	if err != nil {
		return nil, err
	}
	c.pmu.Lock()
	c.procs = append(c.procs, p)
	c.pmu.Unlock()
	return p, nil
}

// httpIn returns an HTTP client whose connections are made inside ns,
// and whose requests are signed with the run's token for scope.
func (c *cluster) httpIn(ns string, scope auth.Scope, timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.DialContext = dialer{ns: ns}.DialContext
	return auth.Client(tr, scope, c.creds.Keys.Get(scope), timeout)
}

// startOrigin starts origin i on h and pushes the blob to it.
func (c *cluster) startOrigin(ctx context.Context, i int, h *host) error {
	name := fmt.Sprintf("origin-%d", i)
	cfg, err := c.writeConfig(name, map[string]any{
		"listen": fmt.Sprintf("%s:%d", h.addr, originPort), "data_dir": filepath.Join(c.dir, name),
		"tracker": c.trackerURL,
		"peer":    map[string]any{"listen_addrs": []string{fmt.Sprintf("/ip4/%s/tcp/0", h.addr)}},
		"origin": map[string]any{"chunker": map[string]any{
			"min_size": c.s.Blob.Chunker.MinSize, "avg_size": c.s.Blob.Chunker.AvgSize,
			"max_size": c.s.Blob.Chunker.MaxSize, "normalization": c.s.Blob.Chunker.Normalization,
		}},
		"log":      logConfig,
		"security": c.security,
	})
	if err != nil {
		return err
	}
	p, err := c.startProc(h, name, "origin", cfg)
	if err != nil {
		return err
	}
	c.origins = append(c.origins, p)
	oc, err := originclient.New(fmt.Sprintf("http://%s:%d", h.addr, originPort), originclient.WithHTTPClient(c.httpIn(h.ns, auth.ScopePush, 0)))
	if err != nil {
		return err
	}
	defer oc.CloseIdleConnections()
	if err := p.waitReady(ctx, oc.Health); err != nil {
		return err
	}
	size := int64(c.s.Blob.Size)
	pr, err := oc.Push(ctx, chunkertest.NewStream(c.s.Seed, size), originclient.PushOptions{Size: size})
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	c.blob = pr.Digest
	return nil
}

// startPeerProc starts h's peer process and waits for its control API.
func (c *cluster) startPeerProc(ctx context.Context, h *peerHost) (*proc, error) {
	// A killed peer leaves its socket file behind.
	if err := os.Remove(h.sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	p, err := c.startProc(h.host, h.name, "peer", h.cfg)
	if err != nil {
		return nil, err
	}
	cc, err := controlclient.New("unix:" + h.sock)
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
func (c *cluster) cpu() time.Duration {
	c.pmu.Lock()
	procs := slices.Clone(c.procs)
	c.pmu.Unlock()
	t := procstat.CPUTime()
	for _, p := range procs {
		t += p.cpuTime()
	}
	return t
}

// StartPeer joins p: it takes the process started for p before the
// run or, after a leave or a kill, starts one on the same data
// directory. Stop sends SIGKILL for a kill, SIGTERM for a leave.
func (c *cluster) StartPeer(ctx context.Context, p scenario.Peer) (fleet.Node, error) {
	h := c.peers[p.Index]
	pr := h.takeStandby()
	if pr == nil {
		var err error
		if pr, err = c.startPeerProc(ctx, h); err != nil {
			return fleet.Node{}, err
		}
	}
	return fleet.Node{
		Control: "unix:" + h.sock,
		Stop: func(_ context.Context, kill bool) error {
			if kill {
				pr.kill()
			} else {
				pr.stop()
			}
			return nil
		},
	}, nil
}

// close stops every process, the peers first (SIGTERM, then SIGKILL
// after stopGrace), then deletes the network.
func (c *cluster) close() error {
	var wg sync.WaitGroup
	if c.fleet != nil {
		wg.Go(func() { _ = c.fleet.Close(context.Background()) }) // Stop never fails
	}
	for _, h := range c.peers {
		if p := h.takeStandby(); p != nil {
			wg.Go(p.stop)
		}
	}
	wg.Wait()
	for _, p := range c.origins {
		wg.Go(p.stop)
	}
	wg.Wait()
	if c.tracker != nil {
		c.tracker.stop()
	}
	// Anything else (a peer whose start failed half-way): SIGTERM, and
	// SIGKILL stopGrace later, through the processes' context.
	c.endProcs()
	c.pmu.Lock()
	procs := slices.Clone(c.procs)
	c.pmu.Unlock()
	for _, p := range procs {
		<-p.done
	}
	if c.tc != nil {
		c.tc.CloseIdleConnections()
	}
	if c.topo != nil {
		return c.topo.teardown()
	}
	return nil
}
