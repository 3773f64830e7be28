package peer

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	yamux "github.com/libp2p/go-libp2p/p2p/muxer/yamux"
)

// TestMuxFrameSize ties muxFrameSize to the yamux configuration the hosts
// use: a frame carries MaxMessageSize bytes less the 12-byte yamux header.
func TestMuxFrameSize(t *testing.T) {
	const yamuxHeader = 12
	if got := int(yamux.DefaultTransport.Config().MaxMessageSize) - yamuxHeader; got != muxFrameSize {
		t.Fatalf("yamux frames carry %d bytes, muxFrameSize is %d", got, muxFrameSize)
	}
}

// recordWriter records the length of every Write.
type recordWriter struct {
	bytes.Buffer
	writes []int
	failAt int // fail the write that would take the total past this; 0: never
}

func (r *recordWriter) Write(p []byte) (int, error) {
	if r.failAt > 0 && r.Len()+len(p) > r.failAt {
		return 0, errors.New("broken")
	}
	r.writes = append(r.writes, len(p))
	return r.Buffer.Write(p)
}

func TestMuxWriterWritesWholeFrames(t *testing.T) {
	const size = 100
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		var out recordWriter
		w := newMuxWriter(&out, size)
		var want []byte
		flushes := 0
		for range rng.IntN(20) {
			p := make([]byte, rng.IntN(4*size))
			for i := range p {
				p[i] = byte(rng.Uint32())
			}
			if n, err := w.Write(p); n != len(p) || err != nil {
				t.Fatalf("round %d: Write(%d bytes) = %d, %v", round, len(p), n, err)
			}
			want = append(want, p...)
			if rng.IntN(4) == 0 {
				if err := w.Flush(); err != nil {
					t.Fatal(err)
				}
				flushes++
			}
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		flushes++
		if !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("round %d: the stream got other bytes than were written", round)
		}
		partial := 0
		for _, n := range out.writes {
			if n%size != 0 {
				partial++
			}
		}
		if partial > flushes {
			t.Fatalf("round %d: %d writes of partial frames with %d flushes: %v", round, partial, flushes, out.writes)
		}
	}
}

func TestMuxWriterErrorIsSticky(t *testing.T) {
	out := recordWriter{failAt: 250}
	w := newMuxWriter(&out, 100)
	if _, err := w.Write(make([]byte, 230)); err != nil {
		t.Fatalf("first write: %v", err)
	}
	if _, err := w.Write(make([]byte, 100)); err == nil {
		t.Fatal("a write past the failure succeeded")
	}
	if err := w.Flush(); err == nil {
		t.Fatal("Flush after a failed write succeeded")
	}
}
