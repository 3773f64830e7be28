package netns

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Bounds on the processes.
const (
	// stopGrace is how long a process may take to exit after SIGTERM
	// before it gets SIGKILL.
	stopGrace = 10 * time.Second
	// readyWithin bounds a process's start, to its API answering.
	readyWithin = 30 * time.Second
	// pollEvery is the readiness polling period.
	pollEvery = 20 * time.Millisecond
	// clockTick is the unit of utime and stime in /proc/PID/stat
	// (USER_HZ, 100 on every Linux ABI Go supports).
	clockTick = 10 * time.Millisecond
)

// proc is one p2pd process running in a host's namespace.
type proc struct {
	name string
	log  string // its log file (JSON lines)
	cmd  *exec.Cmd
	done chan struct{} // closed once it has exited and been reaped
	err  error         // Wait's result, set before done is closed
	cpu  atomic.Int64  // its CPU time (ns), last read or final
}

// startProc runs `p2pd role --config cfg` in namespace ns, its output
// going to logPath and, if lg is set, to lg line by line. The process
// gets SIGTERM when ctx ends and SIGKILL stopGrace later, and SIGKILL if
// this process dies first.
func startProc(ctx context.Context, bin, ns, name, role, cfg, logPath string, lg *slog.Logger) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	p := &proc{name: name, log: logPath, done: make(chan struct{})}
	// `ip netns exec` enters the namespace and execs p2pd in place: the
	// child's PID is p2pd's, which is what signals and /proc need.
	p.cmd = exec.CommandContext(ctx, "ip", "netns", "exec", ns, bin, role, "--config", cfg)
	p.cmd.Cancel = func() error { return p.cmd.Process.Signal(syscall.SIGTERM) }
	p.cmd.WaitDelay = stopGrace
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out = &logSink{f: f, lg: lg, node: name}
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		if st := p.cmd.ProcessState; st != nil {
			p.cpu.Store(int64(st.UserTime() + st.SystemTime()))
		}
		out.flush()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether p has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// cpuTime returns the CPU time p has used: from /proc while it runs, its
// final figure once it has been reaped.
func (p *proc) cpuTime() time.Duration {
	if !p.exited() {
		if c, err := procCPU(p.cmd.Process.Pid); err == nil {
			// Never backwards: the final figure may already be stored.
			for {
				old := p.cpu.Load()
				if int64(c) <= old || p.cpu.CompareAndSwap(old, int64(c)) {
					break
				}
			}
		}
	}
	return time.Duration(p.cpu.Load())
}

// procCPU reads utime + stime of pid from /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// Fields 14 and 15 of the line (utime, stime) are 11 and 12 here.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(ut+st) * clockTick, nil
}

// signal sends sig to p unless it has exited.
func (p *proc) signal(sig syscall.Signal) {
	if !p.exited() {
		_ = p.cmd.Process.Signal(sig)
	}
}

// kill stops p at once (SIGKILL: a crash, with no goodbye to the
// tracker) and waits for it.
func (p *proc) kill() {
	p.signal(syscall.SIGKILL)
	<-p.done
}

// stop asks p to stop (SIGTERM), and kills it if it has not exited within
// stopGrace.
func (p *proc) stop() {
	p.signal(syscall.SIGTERM)
	t := time.NewTimer(stopGrace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.kill()
	}
}

// waitReady polls ready until it succeeds, p exits, ctx ends or
// readyWithin passes.
func (p *proc) waitReady(ctx context.Context, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, readyWithin)
	defer cancel()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		err := ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (%v) before it was ready; its log ends:\n%s", p.name, p.err, logTail(p.log, 10))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w (last: %v)", p.name, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// logTail returns the last n lines of the file at path.
func logTail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// logSink writes a process's output to its log file and, if lg is set,
// passes each JSON log line on to lg with the node's name. exec calls
// Write from one goroutine at a time (stdout and stderr share it).
type logSink struct {
	f    *os.File
	lg   *slog.Logger
	node string
	buf  []byte
}

func (s *logSink) Write(b []byte) (int, error) {
	if _, err := s.f.Write(b); err != nil {
		return 0, err
	}
	if s.lg == nil {
		return len(b), nil
	}
	s.buf = append(s.buf, b...)
	for {
		i := bytes.IndexByte(s.buf, '\n')
		if i < 0 {
			break
		}
		s.forward(s.buf[:i])
		s.buf = s.buf[i+1:]
	}
	s.buf = slices.Clip(s.buf)
	return len(b), nil
}

func (s *logSink) flush() {
	if s.lg != nil && len(s.buf) > 0 {
		s.forward(s.buf)
		s.buf = nil
	}
}

// forward logs one line of the child's: a JSON record keeps its level,
// message and attributes; anything else is logged as it is.
func (s *logSink) forward(line []byte) {
	ctx := context.Background()
	var rec map[string]any
	if json.Unmarshal(line, &rec) != nil {
		s.lg.Log(ctx, slog.LevelInfo, string(line), "node", s.node)
		return
	}
	var level slog.Level
	if l, ok := rec["level"].(string); ok {
		_ = level.UnmarshalText([]byte(l))
	}
	if !s.lg.Enabled(ctx, level) {
		return
	}
	msg, _ := rec["msg"].(string)
	delete(rec, "time")
	delete(rec, "level")
	delete(rec, "msg")
	args := []any{"node", s.node}
	keys := make([]string, 0, len(rec))
	for k := range rec {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		args = append(args, k, rec[k])
	}
	s.lg.Log(ctx, level, msg, args...)
}

// dialer dials TCP from inside a network namespace, so that the testbed,
// in the root namespace, reaches the tracker's and the origins' APIs
// without any interface of its own on the hosts' network. It connects
// from the host's own namespace to the host's address, over that
// namespace's loopback: unshaped, as the pushes and the sampling must be.
type dialer struct{ ns string }

// DialContext is net.Dialer.DialContext from inside d's namespace.
func (d dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNetns(d.ns, func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// inNetns runs fn on an OS thread that has entered the named network
// namespace; sockets fn creates belong to that namespace for good. fn
// runs on a goroutine of its own, locked to its thread, which returns to
// this process's namespace afterwards (or, if it cannot, ends with the
// goroutine). Since Go 1.10 the runtime never starts new threads from a
// locked one, so the namespace does not spread.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: own namespace: %w", err)
			return
		}
		defer unix.Close(self)
		target, err := unix.Open(filepath.Join("/var/run/netns", ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: namespace %s: %w", ns, err)
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: enter %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(self, unix.CLONE_NEWNET); err != nil {
			// Still locked: the thread ends with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("netns: leave %s: %w", ns, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// buildP2PD builds cmd/p2pd into dir with the go command; the current
// directory must be inside the module (as it is for `go test`).
func buildP2PD(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "p2pd")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/p2pd/p2pd/cmd/p2pd")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("netns: build p2pd (or give its path): %w: %s", err, bytes.TrimSpace(out))
	}
	return bin, nil
}
