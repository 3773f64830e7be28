package trackerbench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/p2pd/p2pd/internal/daemon"
	"github.com/p2pd/p2pd/internal/procstat"
)

// procStats is the resource use of the process the tracker runs in.
type procStats struct {
	CPU time.Duration `json:"cpu_ns"`
	// HeapAlloc is the live heap after a GC when asked for, else the
	// heap allocated so far.
	HeapAlloc  uint64 `json:"heap_alloc"`
	RSS        int64  `json:"rss"`
	Goroutines int    `json:"goroutines"`
}

// readStats reads this process's stats. With settle it first waits (up to
// a second) for the goroutines to fall to at most settle, so that
// connections just closed have let go of their buffers, then collects
// garbage twice (the second empties what sync.Pools kept from the first).
func readStats(settle int) procStats {
	if settle > 0 {
		for deadline := time.Now().Add(time.Second); runtime.NumGoroutine() > settle && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		runtime.GC()
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss, _ := procstat.RSS()
	return procStats{CPU: procstat.CPUTime(), HeapAlloc: ms.HeapAlloc, RSS: rss, Goroutines: runtime.NumGoroutine()}
}

// trackerProc is the tracker under test.
type trackerProc interface {
	url() string
	// stats reads the resource use of the tracker's process; with gc, the
	// heap is the live heap once idle connections are gone.
	stats(ctx context.Context, gc bool) (procStats, error)
	// separate reports whether the tracker has a process of its own, so
	// that stats are the tracker's alone.
	separate() bool
	// profile starts (or with end, stops) the tracker's own CPU profile,
	// if it has one.
	profile(ctx context.Context, end bool) error
	close(ctx context.Context) error
}

// inProcess runs the tracker in this process.
type inProcess struct {
	n    *daemon.Node
	base int // goroutines once the tracker is up
}

func startInProcess(ctx context.Context, cfg daemon.TrackerConfig, lg *slog.Logger) (*inProcess, error) {
	var (
		n   *daemon.Node
		err error
	)
	// The tracker's goroutines inherit the label, for CPU profiles.
	pprof.Do(ctx, pprof.Labels("role", "tracker"), func(ctx context.Context) { n, err = daemon.RunTracker(ctx, cfg, lg) })
	if err != nil {
		return nil, err
	}
	return &inProcess{n: n, base: runtime.NumGoroutine()}, nil
}

func (p *inProcess) url() string    { return p.n.URL("http") }
func (p *inProcess) separate() bool { return false }

func (p *inProcess) stats(_ context.Context, gc bool) (procStats, error) {
	if gc {
		return readStats(p.base), nil
	}
	return readStats(0), nil
}

func (p *inProcess) close(ctx context.Context) error { return p.n.Close(ctx) }

func (p *inProcess) profile(context.Context, bool) error { return nil } // Options.CPUProfile has it all

// The child protocol, on the child's stdin and stdout, one JSON value or
// command a line: the parent sends a childConfig; the child starts the
// tracker and answers a childHello; then to each command it answers a
// procStats: "stats"; "mem", for the live heap; "profile" and
// "endprofile", which start and stop the CPU profile if the config names
// a file. When its stdin closes, the child stops the tracker and exits.
type childConfig struct {
	Tracker    daemon.TrackerConfig `json:"tracker"`
	CPUProfile string               `json:"cpu_profile,omitempty"`
}

type childHello struct {
	URL   string `json:"url"`
	Error string `json:"error,omitempty"`
}

// ServeChild is the tracker side of a run with Options.Child: it runs a
// tracker through daemon.RunTracker, as p2pd does, and answers the
// parent's requests for its resource use on in and out, until in ends.
// Logs go to stderr.
func ServeChild(ctx context.Context, in io.Reader, out io.Writer) (err error) {
	sc := bufio.NewScanner(in)
	enc := json.NewEncoder(out)
	var cfg childConfig
	if !sc.Scan() {
		return fmt.Errorf("trackerbench: child: no config: %w", errors.Join(sc.Err(), io.ErrUnexpectedEOF))
	}
	if err := json.Unmarshal(sc.Bytes(), &cfg); err != nil {
		return fmt.Errorf("trackerbench: child: config: %w", err)
	}
	var prof *os.File
	if cfg.CPUProfile != "" {
		if prof, err = os.Create(cfg.CPUProfile); err != nil {
			_ = enc.Encode(childHello{Error: err.Error()})
			return err
		}
		defer prof.Close()
	}
	p, err := startInProcess(ctx, cfg.Tracker, daemon.NewLogger(cfg.Tracker.Log, os.Stderr))
	if err != nil {
		_ = enc.Encode(childHello{Error: err.Error()})
		return err
	}
	if err := enc.Encode(childHello{URL: p.url()}); err != nil {
		return errors.Join(err, p.close(context.WithoutCancel(ctx)))
	}
	profiling := false
	for sc.Scan() {
		switch cmd := sc.Text(); {
		case cmd == "profile" && prof != nil && !profiling:
			profiling = pprof.StartCPUProfile(prof) == nil
		case cmd == "endprofile" && profiling:
			pprof.StopCPUProfile()
			profiling = false
		}
		st, _ := p.stats(ctx, sc.Text() == "mem")
		if err := enc.Encode(st); err != nil {
			break
		}
	}
	if profiling {
		pprof.StopCPUProfile()
	}
	return p.close(context.WithoutCancel(ctx))
}

// child runs the tracker in a child process that runs ServeChild.
type child struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Scanner
	addr string
}

func startChild(ctx context.Context, argv []string, cfg childConfig, stderr io.Writer) (_ *child, err error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("trackerbench: starting the tracker process: %w", err)
	}
	c := &child{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.close(context.WithoutCancel(ctx)))
		}
	}()
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	var hello childHello
	if err := c.ask(ctx, string(b), &hello); err != nil {
		return nil, err
	}
	if hello.Error != "" {
		return nil, fmt.Errorf("trackerbench: tracker process: %s", hello.Error)
	}
	c.addr = hello.URL
	return c, nil
}

// ask sends one line and decodes the answer line into v. If ctx ends
// first the child is killed, which ends the wait.
func (c *child) ask(ctx context.Context, line string, v any) error {
	stop := context.AfterFunc(ctx, func() { _ = c.cmd.Process.Kill() })
	defer stop()
	if _, err := io.WriteString(c.in, line+"\n"); err != nil {
		return fmt.Errorf("trackerbench: tracker process: %w", errors.Join(err, ctx.Err()))
	}
	if !c.out.Scan() {
		return fmt.Errorf("trackerbench: tracker process ended: %w", errors.Join(c.out.Err(), ctx.Err(), io.ErrUnexpectedEOF))
	}
	return json.Unmarshal(c.out.Bytes(), v)
}

func (c *child) url() string    { return c.addr }
func (c *child) separate() bool { return true }

func (c *child) stats(ctx context.Context, gc bool) (procStats, error) {
	cmd := "stats"
	if gc {
		cmd = "mem"
	}
	var st procStats
	err := c.ask(ctx, cmd, &st)
	return st, err
}

func (c *child) profile(ctx context.Context, end bool) error {
	cmd := "profile"
	if end {
		cmd = "endprofile"
	}
	var st procStats
	return c.ask(ctx, cmd, &st)
}

// close closes the child's stdin, which stops it, and waits for it; if
// ctx ends first, it kills it.
func (c *child) close(ctx context.Context) error {
	c.in.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.cmd.Process.Kill() })
	defer stop()
	if err := c.cmd.Wait(); err != nil {
		return fmt.Errorf("trackerbench: tracker process: %w", errors.Join(err, ctx.Err()))
	}
	return nil
}
