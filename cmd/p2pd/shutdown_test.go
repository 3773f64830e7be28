package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/chunker/chunkertest"
	"github.com/p2pd/p2pd/internal/wire/ctlwire"
	"github.com/p2pd/p2pd/origin/originclient"
	"github.com/p2pd/p2pd/peer/control/controlclient"
	"github.com/p2pd/p2pd/testbed"
)

// asP2PD, set in a child's environment, makes the test binary run as p2pd
// (see TestMain): the shutdown tests start every role as a process of its
// own through the same run function as the real binary, so that SIGTERM,
// the exit code and the files left behind are the real ones.
const asP2PD = "P2PD_TEST_RUN_AS_P2PD"

// exitLeak is the exit code of a child that stopped cleanly but left
// goroutines running.
const exitLeak = 3

func TestMain(m *testing.M) {
	if os.Getenv(asP2PD) != "" {
		code := run(os.Args[1:])
		if code == 0 {
			if err := goleak.Find(testbed.IgnoredGoroutines()...); err != nil {
				fmt.Fprintln(os.Stderr, "p2pd: goroutines left after a clean stop:", err)
				code = exitLeak
			}
		}
		os.Exit(code)
	}
	goleak.VerifyTestMain(m, testbed.IgnoredGoroutines()...)
}

// Bounds of the shutdown tests. The blob is large enough, and the
// origin's upload rate low enough, that a pull takes seconds: the signal
// always lands while chunks are in flight.
const (
	blobSize   = 64 << 20
	uploadRate = 16 << 20 // bytes/s, the origin's cap per peer
	stopWithin = 10 * time.Second
	logWithin  = 15 * time.Second
	pullWithin = 60 * time.Second
)

// proc is one p2pd role running as a child process.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string        // the file its stderr (JSON logs) goes to
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, set before done is closed
}

// startRole runs `p2pd role --config cfg`, its stderr (JSON logs) going to
// a file in dir. The process is killed when the test ends if it is still
// running.
func startRole(t *testing.T, dir, name, role, cfg string) *proc {
	t.Helper()
	f, err := os.CreateTemp(dir, role+"-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close() // the child has its own descriptor
	p := &proc{name: name, log: f.Name(), done: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], role, "--config", cfg)
	p.cmd.Env = append(os.Environ(), asP2PD+"=1")
	p.cmd.Stderr = f
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if b, _ := os.ReadFile(p.log); t.Failed() {
			t.Logf("%s's log:\n%s", p.name, b)
		}
	})
	return p
}

// logLine waits for the first log line whose msg is msg and returns it.
func (p *proc) logLine(t *testing.T, msg string) map[string]any {
	t.Helper()
	var line map[string]any
	testbed.Eventually(t, logWithin, func() error {
		if line = p.findLog(msg); line == nil {
			return fmt.Errorf("%s has not logged %q", p.name, msg)
		}
		return nil
	})
	return line
}

// findLog returns the first log line whose msg is msg, or nil.
func (p *proc) findLog(msg string) map[string]any {
	b, _ := os.ReadFile(p.log)
	for l := range bytes.Lines(b) {
		var line map[string]any
		if json.Unmarshal(l, &line) == nil && line["msg"] == msg {
			return line
		}
	}
	return nil
}

// addr returns the address the role's listener named what logged.
func (p *proc) addr(t *testing.T, what string) string {
	t.Helper()
	a, _ := p.logLine(t, what+" listening")["addr"].(string)
	if a == "" {
		t.Fatalf("%s logged %q without an address", p.name, what+" listening")
	}
	return a
}

// terminate sends SIGTERM and checks that the process exits with status 0
// within stopWithin.
func (p *proc) terminate(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", p.name, err)
	}
	start := time.Now()
	select {
	case <-p.done:
	case <-time.After(stopWithin):
		t.Fatalf("%s still running %v after SIGTERM", p.name, stopWithin)
	}
	if p.err != nil {
		t.Fatalf("%s exited after SIGTERM with %v, want status 0", p.name, p.err)
	}
	t.Logf("%s stopped %v after SIGTERM", p.name, time.Since(start).Round(time.Millisecond))
}

// cluster is a tracker, an origin and a peer, each a process, with their
// configs and data dirs under one temp dir.
type cluster struct {
	dir                string
	tracker, org, peer *proc
	trackerURL         string
	originCfg, peerCfg string
	blob               chunker.Digest
	chunks             int
}

func writeConfig(t *testing.T, path, yaml string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// newCluster starts the three roles and pushes a blobSize blob to the
// origin.
func newCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{dir: t.TempDir()}
	trackerCfg := writeConfig(t, filepath.Join(c.dir, "tracker.yaml"),
		"listen: 127.0.0.1:0\ntracker: {announce_interval: 1s}\nlog: {format: json}\n")
	c.tracker = startRole(t, c.dir, "tracker", "tracker", trackerCfg)
	c.trackerURL = "http://" + c.tracker.addr(t, "tracker")

	c.originCfg = writeConfig(t, filepath.Join(c.dir, "origin.yaml"), fmt.Sprintf(
		"listen: 127.0.0.1:0\ndata_dir: %s\ntracker: %s\npeer: {upload_rate: %d}\nlog: {format: json}\n",
		filepath.Join(c.dir, "origin"), c.trackerURL, uploadRate))
	c.peerCfg = writeConfig(t, filepath.Join(c.dir, "peer.yaml"), fmt.Sprintf(
		"control: 127.0.0.1:0\nmirror: {listen: 127.0.0.1:0}\ndata_dir: %s\ntracker: %s\nlog: {format: json}\n",
		filepath.Join(c.dir, "peer"), c.trackerURL))
	c.org = c.startOrigin(t)
	c.peer = startRole(t, c.dir, "peer", "peer", c.peerCfg)

	oc := c.originClient(t)
	res, err := oc.Push(context.Background(), chunkertest.NewStream(1, blobSize), originclient.PushOptions{Size: blobSize})
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	c.blob, c.chunks = res.Digest, res.Chunks
	return c
}

func (c *cluster) startOrigin(t *testing.T) *proc {
	return startRole(t, c.dir, "origin", "origin", c.originCfg)
}

func (c *cluster) originClient(t *testing.T) *originclient.Client {
	t.Helper()
	oc, err := originclient.New("http://" + c.org.addr(t, "origin"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(oc.CloseIdleConnections)
	return oc
}

func (c *cluster) control(t *testing.T) *controlclient.Client {
	t.Helper()
	cc, err := controlclient.New(c.peer.addr(t, "control"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Close)
	return cc
}

// pull is a Pull through the peer's control API running in the
// background.
type pull struct {
	have atomic.Int64 // chunks held, from the latest progress line
	done chan struct{}
	blob ctlwire.Blob
	err  error
}

func (c *cluster) startPull(t *testing.T, cc *controlclient.Client) *pull {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), pullWithin)
	p := &pull{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		defer cancel()
		p.blob, p.err = cc.Pull(ctx, c.blob, func(pr ctlwire.Progress) { p.have.Store(int64(pr.Have)) })
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
	})
	return p
}

// waitInFlight waits until the pull holds at least an eighth of the
// chunks, and fails the test if it finished instead: then the signal
// would not land mid-transfer.
func (p *pull) waitInFlight(t *testing.T, chunks int) {
	t.Helper()
	testbed.Eventually(t, pullWithin, func() error {
		select {
		case <-p.done:
			t.Fatalf("the pull ended before the signal (err %v): raise blobSize or lower uploadRate", p.err)
		default:
		}
		if h := p.have.Load(); h < int64(chunks/8) {
			return fmt.Errorf("pull holds %d of %d chunks", h, chunks)
		}
		return nil
	})
}

// wait waits for the pull's result.
func (p *pull) wait(t *testing.T) (ctlwire.Blob, error) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(pullWithin):
		t.Fatalf("the pull did not end within %v", pullWithin)
	}
	return p.blob, p.err
}

// checkStore checks what a stopped node left in its store: nothing in
// tmp/, and every chunk file under chunks/<shard>/ hashing to its name. It
// returns the number of chunks.
func checkStore(t *testing.T, dir string) int {
	t.Helper()
	tmp, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range tmp {
		t.Errorf("%s left in the store's tmp/", e.Name())
	}
	n := 0
	err = filepath.WalkDir(filepath.Join(dir, "chunks"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path) // a chunk is at most a few MiB
		if err != nil {
			return err
		}
		name, shard := d.Name(), filepath.Base(filepath.Dir(path))
		if sum := chunker.Sum(b).Hex(); sum != name || !strings.HasPrefix(name, shard) {
			t.Errorf("chunk file %s/%s holds data hashing to %s", shard, name, sum)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// checkLogged checks that p logged each message of its shutdown.
func checkLogged(t *testing.T, p *proc, msgs ...string) {
	t.Helper()
	for _, m := range msgs {
		if p.findLog(m) == nil {
			t.Errorf("%s did not log %q while stopping", p.name, m)
		}
	}
}

// checkCopy reads the peer's copy of the blob back and hashes it.
func (c *cluster) checkCopy(t *testing.T, cc *controlclient.Client) {
	t.Helper()
	rc, _, err := cc.Open(context.Background(), c.blob)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		t.Fatal(err)
	}
	if got := chunker.Digest(h.Sum(nil)); got != c.blob || n != blobSize {
		t.Fatalf("the peer's copy is %d bytes hashing to %s, want %d bytes of %s", n, got, blobSize, c.blob)
	}
}

// stopAll stops every role still running with SIGTERM, checking each
// exits cleanly.
func (c *cluster) stopAll(t *testing.T) {
	t.Helper()
	c.peer.terminate(t)
	c.org.terminate(t)
	c.tracker.terminate(t)
}

// TestPeerStopsCleanlyOnSIGTERMMidPull: SIGTERM reaches a peer while it
// pulls; it exits 0 promptly, having logged its shutdown, with no temp
// files and only whole, verified chunks in its store. Restarted on the
// same data dir, it pulls only the rest and ends with the right blob.
func TestPeerStopsCleanlyOnSIGTERMMidPull(t *testing.T) {
	c := newCluster(t)
	p := c.startPull(t, c.control(t))
	p.waitInFlight(t, c.chunks)

	c.peer.terminate(t)
	checkLogged(t, c.peer, "engine closed", "store closed")
	if _, err := p.wait(t); err == nil {
		t.Fatal("the pull succeeded although the peer stopped mid-transfer")
	}
	held := checkStore(t, filepath.Join(c.dir, "peer", "store"))
	if held == 0 || held >= c.chunks {
		t.Fatalf("the stopped peer holds %d of %d chunks, want some but not all", held, c.chunks)
	}

	c.peer = startRole(t, c.dir, "peer (restarted)", "peer", c.peerCfg)
	cc := c.control(t)
	if _, err := c.startPull(t, cc).wait(t); err != nil {
		t.Fatalf("pull after the restart: %v", err)
	}
	resumed := c.peer.logLine(t, "pull starts with chunks held")
	if h, _ := resumed["held"].(float64); int(h) < held {
		t.Errorf("the restarted pull started with %v chunks held, want at least the %d left by the first run", resumed["held"], held)
	}
	c.checkCopy(t, cc)
	c.stopAll(t)
	checkStore(t, filepath.Join(c.dir, "peer", "store"))
}

// TestOriginStopsCleanlyOnSIGTERMWhileServing: SIGTERM reaches the origin
// while it uploads chunks to a peer; it exits 0 promptly, having logged
// its shutdown, with its store intact. Once it is restarted, the peer's
// pull goes on and ends with the right blob.
func TestOriginStopsCleanlyOnSIGTERMWhileServing(t *testing.T) {
	c := newCluster(t)
	cc := c.control(t)
	p := c.startPull(t, cc)
	p.waitInFlight(t, c.chunks)

	c.org.terminate(t)
	checkLogged(t, c.org, "origin stopped", "engine closed", "store closed")
	if n := checkStore(t, filepath.Join(c.dir, "origin", "store")); n != c.chunks {
		t.Fatalf("the stopped origin holds %d chunks, want all %d", n, c.chunks)
	}

	c.org = c.startOrigin(t)
	if _, err := p.wait(t); err != nil {
		t.Fatalf("the pull did not survive the origin's restart: %v", err)
	}
	c.checkCopy(t, cc)
	c.stopAll(t)
	checkStore(t, filepath.Join(c.dir, "peer", "store"))
}
