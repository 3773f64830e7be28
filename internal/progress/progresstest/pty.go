// Package progresstest gives tests a real pseudo-terminal, so that code
// which draws only on a terminal (package progress) can be tested as a
// user at a terminal would see it.
package progresstest

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// PTY is a pseudo-terminal pair. Whatever is written to TTY, its terminal
// end, is collected from the master end by a goroutine, so writes never
// block, and read back with Output or WaitFor. The terminal keeps its
// default settings, as an interactive shell would: the line discipline
// turns each "\n" into "\r\n". Open's t.Cleanup closes both ends and waits
// for the goroutine.
type PTY struct {
	// TTY is the terminal end: term.IsTerminal reports true for it.
	TTY *os.File

	master *os.File
	mu     sync.Mutex
	out    bytes.Buffer
	done   chan struct{}
}

// Open opens a pseudo-terminal for the rest of the test. It skips the test
// where the system has none (no /dev/ptmx, or not Linux).
func Open(t testing.TB) *PTY {
	t.Helper()
	master, tty, err := openPTY()
	if errors.Is(err, errors.ErrUnsupported) || errors.Is(err, fs.ErrNotExist) {
		t.Skipf("progresstest: no pseudo-terminal on this system: %v", err)
	}
	if err != nil {
		t.Fatalf("progresstest: open a pseudo-terminal: %v", err)
	}
	p := &PTY{TTY: tty, master: master, done: make(chan struct{})}
	go p.collect()
	t.Cleanup(func() {
		tty.Close()
		master.Close() // the master is in the runtime poller: this ends a blocked Read
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			t.Error("progresstest: the pty reader did not stop within 5s of Close")
		}
	})
	return p
}

// collect copies the master end into p.out until it fails: EIO once the
// terminal end is closed, or ErrClosed once the master is.
func (p *PTY) collect() {
	defer close(p.done)
	buf := make([]byte, 4096)
	for {
		n, err := p.master.Read(buf)
		p.mu.Lock()
		p.out.Write(buf[:n])
		p.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// Output returns everything read from the terminal so far.
func (p *PTY) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// WaitFor polls Output until it contains s and returns it, failing the
// test after d. The terminal delivers writes asynchronously, so a test
// waits for the last thing it expects before asserting on the rest.
func (p *PTY) WaitFor(t testing.TB, d time.Duration, s string) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		out := p.Output()
		if strings.Contains(out, s) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("progresstest: the terminal did not show %q within %v; it showed %q", s, d, out)
		}
		time.Sleep(5 * time.Millisecond) // the polling interval
	}
}
