package progress

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/p2pd/p2pd/internal/clock"
	"github.com/p2pd/p2pd/internal/progress/progresstest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestQuietWhenNotATerminal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	pty := progresstest.Open(t)
	tests := []struct {
		name  string
		w     io.Writer
		quiet bool
	}{
		{"regular file", f, false},
		{"pipe", pw, false},
		{"buffer", &bytes.Buffer{}, false},
		{"terminal with quiet", pty.TTY, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if b := New(tc.w, "x", 10, tc.quiet); b != nil {
				t.Fatal("New returned a bar")
			}
		})
	}
	if b := New(pty.TTY, "x", 10, false); b == nil {
		t.Fatal("New returned no bar for a terminal")
	}
	var nilBar *Bar
	nilBar.Add(5) // a nil bar is usable
	nilBar.Set(5, "detail")
	nilBar.Finish()
	r := strings.NewReader("abc")
	if nilBar.Reader(r) != io.Reader(r) {
		t.Fatal("a nil bar wrapped the reader")
	}
	if fi, _ := f.Stat(); fi.Size() != 0 {
		t.Fatalf("%d bytes were written to the regular file", fi.Size())
	}
}

// TestTerminal draws a bar on a real pseudo-terminal while a fake clock
// moves, and reads what the terminal shows.
func TestTerminal(t *testing.T) {
	pty := progresstest.Open(t)
	clk := clock.NewFake(time.Time{})
	b := newBar(pty.TTY, "pull", 100e6, false, clk)
	if b == nil {
		t.Fatal("no bar on a terminal")
	}
	b.Set(0, "peers 0 B, origin 0 B, 0 conns")
	clk.Advance(time.Second)
	b.Add(25e6) // 25 MB in 1s: 25 MB/s, 75 MB to go
	clk.Advance(time.Second)
	b.Set(50e6, "peers 30 MB, origin 20 MB, 2 conns")
	clk.Advance(50 * time.Millisecond)
	b.Add(1) // too soon to redraw
	clk.Advance(2 * time.Second)
	b.Set(100e6, "peers 70 MB, origin 30 MB, 2 conns")
	b.Finish()

	out := pty.WaitFor(t, 5*time.Second, "\n")
	for _, want := range []string{
		"\rpull [=======       ",
		" 25.0% ", "25 MB/s ETA 3s peers 0 B, origin 0 B, 0 conns\x1b[K",
		" 50.0% ", "25 MB/s ETA 2s peers 30 MB, origin 20 MB, 2 conns\x1b[K",
		"\rpull [==============================] 100.0% ", "25 MB/s ETA -- peers 70 MB, origin 30 MB, 2 conns\x1b[K",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the terminal does not show %q:\n%q", want, out)
		}
	}
	// 25%, 50%, 100% by Set, and 100% again by Finish; not the Add 50ms
	// after a draw.
	if n := strings.Count(out, "\rpull ["); n != 4 {
		t.Errorf("the bar was drawn %d times, want 4:\n%q", n, out)
	}
	if !strings.HasSuffix(out, "\x1b[K\r\n") || strings.Count(out, "\n") != 1 {
		t.Errorf("the output does not end with the bar's only newline:\n%q", out)
	}
}

func TestDraw(t *testing.T) {
	var buf bytes.Buffer
	clk := clock.NewFake(time.Time{})
	start := clk.Now()
	clk.Advance(time.Second)
	b := &Bar{clock: clk, w: &buf, label: "chunk", total: 100, start: start, last: start}
	io.Copy(io.Discard, b.Reader(strings.NewReader(strings.Repeat("x", 50))))
	b.Finish()
	out := buf.String()
	if !strings.Contains(out, " 50.0%") || !strings.HasSuffix(out, "\n") || !strings.HasPrefix(out, "\rchunk [") {
		t.Fatalf("unexpected bar output %q", out)
	}
}
