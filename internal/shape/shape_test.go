package shape

import (
	"bytes"
	"io"
	"math"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pair returns the two ends of a loopback TCP connection.
func pair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	a, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b = <-acc
	if b == nil {
		t.Fatal("accept failed")
	}
	return a, b
}

func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

// send writes data on w (closing it after) and returns what r received
// and when the last byte arrived.
func send(t *testing.T, w, r net.Conn, data []byte) ([]byte, time.Duration) {
	t.Helper()
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		_, err := w.Write(data)
		errc <- err
		w.Close()
	}()
	got, err := io.ReadAll(r)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	r.Close()
	return got, took
}

func TestNilLinkIsTransparent(t *testing.T) {
	if l := New(Config{}); l != nil {
		t.Fatalf("New of nothing = %v, want nil", l)
	}
	a, b := pair(t)
	defer a.Close()
	defer b.Close()
	var l *Link
	if l.Wrap(a) != a || l.UpRate() != 0 {
		t.Fatal("a nil Link changed the conn")
	}
}

// The checks on time below are lower bounds only: shaping must never let
// data through faster than the link allows. A slow machine only makes the
// transfers slower, so they cannot flake.

func TestUploadRate(t *testing.T) {
	const rate, size = 8 << 20, 4 << 20
	l := New(Config{Up: rate})
	a, b := pair(t)
	data := payload(size)
	got, took := send(t, l.Wrap(a), b, data)
	if !bytes.Equal(got, data) {
		t.Fatal("data changed")
	}
	min := time.Duration(float64(size-burstFor(rate)) / rate * float64(time.Second))
	if took < min {
		t.Fatalf("%d bytes at %d B/s took %v, less than %v", size, rate, took, min)
	}
}

func TestDownloadRateSharedByConns(t *testing.T) {
	const rate, size = 8 << 20, 2 << 20
	l := New(Config{Down: rate})
	a1, b1 := pair(t)
	a2, b2 := pair(t)
	data := payload(size)
	start := time.Now()
	done := make(chan []byte, 2)
	for _, c := range [][2]net.Conn{{a1, l.Wrap(b1)}, {a2, l.Wrap(b2)}} {
		go func() {
			got, _ := send(t, c[0], c[1], data)
			done <- got
		}()
	}
	for range 2 {
		if got := <-done; !bytes.Equal(got, data) {
			t.Fatal("data changed")
		}
	}
	// Two conns share one bucket: 2×size at rate.
	min := time.Duration(float64(2*size-burstFor(rate)) / rate * float64(time.Second))
	if took := time.Since(start); took < min {
		t.Fatalf("two conns of one link got %d bytes in %v, less than %v", 2*size, took, min)
	}
}

func TestLatencyAndJitterKeepOrder(t *testing.T) {
	const lat = 30 * time.Millisecond
	l := New(Config{Latency: lat, Jitter: 20 * time.Millisecond, Seed: 3})
	a, b := pair(t)
	w := l.Wrap(a)
	start := time.Now()
	if _, err := w.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	one := make([]byte, 1)
	if _, err := io.ReadFull(b, one); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < lat {
		t.Fatalf("first byte arrived after %v, before the latency %v", took, lat)
	}
	// Many small writes with jitter arrive in order, and Close flushes.
	var want bytes.Buffer
	go func() {
		for i := range 200 {
			msg := []byte{byte(i)}
			w.Write(msg)
		}
		w.Close()
	}()
	for i := range 200 {
		want.WriteByte(byte(i))
	}
	got, err := io.ReadAll(b)
	b.Close()
	if err != nil || !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("got %d bytes %v, want 200 in order", len(got), err)
	}
}

func TestLossCapsRate(t *testing.T) {
	l := New(Config{Loss: 0.01, Latency: 10 * time.Millisecond})
	want := int64(MSS / (0.02 * math.Sqrt(2*0.01/3)))
	if got := l.UpRate(); got != want {
		t.Fatalf("UpRate with 1%% loss at 20ms RTT = %d, want %d", got, want)
	}
	if got := New(Config{Up: 1000, Loss: 0.01, Latency: 10 * time.Millisecond}).UpRate(); got != 1000 {
		t.Fatalf("a slower link keeps its rate: %d", got)
	}
}

func TestCloseUnblocksWriter(t *testing.T) {
	l := New(Config{Up: 1 << 10}) // 1 KiB/s: a big write would take minutes
	a, b := pair(t)
	defer b.Close()
	w := l.Wrap(a)
	errc := make(chan error, 1)
	go func() {
		_, err := w.Write(payload(1 << 20))
		errc <- err
	}()
	// Wait for the first burst to arrive, then close.
	if _, err := io.ReadFull(b, make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := <-errc; err == nil {
		t.Fatal("Write after Close succeeded")
	}
}

// A delay line holds about a bandwidth-delay product (plus a burst), not
// megabytes: a writer to a peer that does not read blocks once the line is
// full, as TCP would once a real link's queue is.
func TestDelayLineIsBounded(t *testing.T) {
	const rate = 5_000_000 / 8
	l := New(Config{Up: rate, Latency: 2 * time.Millisecond})
	want := burstFor(rate) + rate*2/1000
	if l.queueCap != want {
		t.Fatalf("queue cap %d, want %d", l.queueCap, want)
	}
	a, b := net.Pipe() // unbuffered: nothing leaves the line while b is not read
	defer b.Close()
	w := l.Wrap(a)
	var pushed atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4<<10)
		for {
			if _, err := w.Write(buf); err != nil {
				return
			}
			pushed.Add(int64(len(buf)))
		}
	}()
	// The writer fills the line (one segment may be held by the line's
	// sender, blocked on the pipe) and then blocks; it can never get
	// further than that.
	limit := int64(want + 4<<10)
	deadline := time.Now().Add(10 * time.Second)
	for pushed.Load() < int64(want)-4<<10 {
		if time.Now().After(deadline) {
			t.Fatalf("the writer got %d bytes into the line, want about %d", pushed.Load(), want)
		}
		runtime.Gosched()
	}
	// Watch for as long as the link would take to send twice the line
	// more: an unbounded line would have taken that much by then.
	watch := time.Now().Add(time.Duration(2 * float64(want) / rate * float64(time.Second)))
	for time.Now().Before(watch) {
		if n := pushed.Load(); n > limit {
			t.Fatalf("the writer got %d bytes into a line bounded at %d", n, limit)
		}
		runtime.Gosched()
	}
	w.Close()
	<-done
	if n := pushed.Load(); n > limit {
		t.Fatalf("the writer got %d bytes into a line bounded at %d", n, limit)
	}
}
