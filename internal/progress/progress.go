// Package progress draws a one-line progress bar on a terminal and stays
// silent otherwise, so piped and scripted output is never cluttered.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/p2pd/p2pd/internal/clock"
	"github.com/p2pd/p2pd/internal/units"
)

// redrawInterval is the shortest time between two draws by Add or Set.
const redrawInterval = 100 * time.Millisecond

// Bar is a progress bar for a known total. A nil *Bar is valid and draws
// nothing, which is what New returns when w is not a terminal.
type Bar struct {
	mu     sync.Mutex
	clock  clock.Clock
	w      io.Writer
	label  string
	total  int64
	done   int64
	start  time.Time
	last   time.Time
	detail string
}

// New returns a bar writing to w, or nil when w is not a terminal or quiet is set.
func New(w io.Writer, label string, total int64, quiet bool) *Bar {
	return newBar(w, label, total, quiet, clock.Real())
}

// newBar is New on clk, which times the rate, the ETA and the redraws.
func newBar(w io.Writer, label string, total int64, quiet bool, clk clock.Clock) *Bar {
	f, ok := w.(*os.File)
	if quiet || !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	now := clk.Now()
	return &Bar{clock: clk, w: w, label: label, total: total, start: now, last: now}
}

// Add records n more bytes and redraws at most ten times a second.
func (b *Bar) Add(n int64) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done += n
	b.redrawLocked()
}

// Set records the absolute progress, replacing the count, and a detail
// shown after the rate (e.g. where the bytes came from).
func (b *Bar) Set(done int64, detail string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done, b.detail = done, detail
	b.redrawLocked()
}

// redrawLocked draws if the last draw is at least redrawInterval old.
func (b *Bar) redrawLocked() {
	if now := b.clock.Now(); now.Sub(b.last) >= redrawInterval {
		b.last = now
		b.draw(now)
	}
}

// Finish always draws the final state, however recent the last draw, and
// ends the line.
func (b *Bar) Finish() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.draw(b.clock.Now())
	fmt.Fprintln(b.w)
}

func (b *Bar) draw(now time.Time) {
	const width = 30
	frac := 1.0
	if b.total > 0 {
		frac = min(float64(b.done)/float64(b.total), 1)
	}
	fill := int(frac * width)
	secs := now.Sub(b.start).Seconds()
	rate := units.MBps(b.done, secs)
	eta := "--"
	if rate > 0 && b.total > b.done {
		eta = (time.Duration(float64(b.total-b.done) / (rate * 1e6) * float64(time.Second))).Round(time.Second).String()
	}
	fmt.Fprintf(b.w, "\r%s [%s%s] %5.1f%% %s %.0f MB/s ETA %s %s\x1b[K", b.label, strings.Repeat("=", fill), strings.Repeat(" ", width-fill),
		100*frac, units.FormatSize(b.done), rate, eta, b.detail)
}

// Reader counts bytes read through r on the bar.
func (b *Bar) Reader(r io.Reader) io.Reader {
	if b == nil {
		return r
	}
	return &reader{r: r, b: b}
}

type reader struct {
	r io.Reader
	b *Bar
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.b.Add(int64(n))
	return n, err
}
