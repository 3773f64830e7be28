package progress

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

func TestQuietWhenNotATerminal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if b := New(f, "x", 10, false); b != nil {
		t.Fatal("a bar was created for a regular file")
	}
	if b := New(&bytes.Buffer{}, "x", 10, false); b != nil {
		t.Fatal("a bar was created for a buffer")
	}
	var nilBar *Bar
	nilBar.Add(5) // a nil bar is usable
	nilBar.Finish()
	r := strings.NewReader("abc")
	if nilBar.Reader(r) != io.Reader(r) {
		t.Fatal("a nil bar wrapped the reader")
	}
}

func TestDraw(t *testing.T) {
	var buf bytes.Buffer
	b := &Bar{w: &buf, label: "chunk", total: 100, start: time.Now().Add(-time.Second), last: time.Now().Add(-time.Second)}
	io.Copy(io.Discard, b.Reader(strings.NewReader(strings.Repeat("x", 50))))
	b.Finish()
	out := buf.String()
	if !strings.Contains(out, " 50.0%") || !strings.HasSuffix(out, "\n") || !strings.HasPrefix(out, "\rchunk [") {
		t.Fatalf("unexpected bar output %q", out)
	}
}
