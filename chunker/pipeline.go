package chunker

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
)

// The hashing pipeline shared by Split and Verify.
//
// One goroutine reads the input into chunk-sized buffers and decides where
// each chunk ends (the splitter). Each finished chunk goes, in parallel, to a
// pool of workers that compute chunk digests and to a single goroutine that
// feeds the blob digest in order. The caller's goroutine receives the chunks
// in order, with their digests, and recycles the buffers. A fixed number of
// buffers bounds memory: about (inflight + 1) × MaxSize, whatever the blob size.

// readStep is how many bytes the reader adds per boundary search step. A
// chunk's buffer overshoots its boundary by less than readStep, and that
// overshoot is copied to the next chunk's buffer.
const readStep = 64 << 10

// errTrailingData is returned by a splitter when the input continues after
// the last chunk it expects.
var errTrailingData = errors.New("trailing data")

// window is the buffer of the chunk being cut. buf[:n] holds input bytes
// starting at the chunk's first byte.
type window struct {
	r   io.Reader
	buf []byte
	n   int
	eof bool
	err error
}

// fill reads until at least want bytes are buffered, the input ends, or a
// read fails. It returns the number of bytes buffered.
func (w *window) fill(want int) int {
	if want > len(w.buf) {
		want = len(w.buf)
	}
	if w.n >= want || w.eof || w.err != nil {
		return w.n
	}
	k, err := io.ReadFull(w.r, w.buf[w.n:want])
	w.n += k
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		w.eof = true
	case err != nil:
		w.err = err
	}
	return w.n
}

// splitter returns the length of the next chunk, which starts at w.buf[0],
// reading more input through w.fill as needed. It returns 0 at the end of
// the input. A splitter may return an error to stop the pipeline.
type splitter func(w *window) (int, error)

// cdcSplitter cuts FastCDC-style with normalized chunking.
func (c *Chunker) split(w *window) (int, error) {
	cfg := c.cfg
	// Positions p are byte indexes; a candidate at p cuts the chunk at length p+1.
	p := cfg.MinSize - 1
	for {
		thr, lim := c.thrLarge, cfg.MaxSize-1
		if p < cfg.AvgSize-1 {
			thr, lim = c.thrSmall, cfg.AvgSize-1
		}
		end := min(p+readStep, lim)
		n := w.fill(end)
		if w.err != nil {
			return 0, w.err
		}
		end = min(end, n)
		if end > p {
			if r := scanGear(w.buf[p-(gearWindow-1):end], thr); r >= 0 {
				return p - (gearWindow - 1) + r + 1, nil
			}
			p = end
		}
		if p >= n && w.eof { // the input ends inside this chunk
			return n, nil
		}
		if p == cfg.MaxSize-1 { // no candidate: force a cut at the maximum
			return w.fill(cfg.MaxSize), w.err
		}
	}
}

// manifestSplitter cuts where m's chunks end, for Verify.
func manifestSplitter(m *Manifest) splitter {
	i := 0
	return func(w *window) (int, error) {
		if i == len(m.Chunks) {
			if w.fill(1) > 0 {
				return 0, errTrailingData
			}
			return 0, w.err
		}
		size := int(m.Chunks[i].Size)
		i++
		n := w.fill(size)
		return min(n, size), w.err
	}
}

// pipeline is a reusable set of chunk buffers.
type pipeline struct {
	maxSize  int
	inflight int
}

func newPipeline(maxSize int) *pipeline {
	return &pipeline{maxSize: maxSize, inflight: runtime.GOMAXPROCS(0) + 4}
}

type job struct {
	buf    []byte // owned by the job until it is recycled
	size   int
	digest Digest
	hashed sync.WaitGroup // chunk digest and blob digest both done
}

// run reads r to the end, cutting it with split. For every chunk, in order,
// it calls fn with the chunk and its bytes (valid only during the call). It
// returns the blob's digest and size. fn may be nil.
func (p *pipeline) run(ctx context.Context, r io.Reader, split splitter, fn func(Chunk, []byte) error) (Digest, int64, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	free := make(chan []byte, p.inflight)
	for range p.inflight {
		free <- nil // allocated on first use, so small blobs stay small
	}
	work := make(chan *job, p.inflight)
	blob := make(chan *job, p.inflight)
	order := make(chan *job, p.inflight)
	stop := make(chan struct{})
	var readErr error

	var wg sync.WaitGroup
	// Reader and splitter.
	wg.Go(func() {
		defer close(work)
		defer close(blob)
		defer close(order)
		w := &window{r: r}
		var carry []byte
		for {
			var buf []byte
			select {
			case buf = <-free:
			case <-stop:
				return
			}
			if buf == nil {
				buf = make([]byte, p.maxSize)
			}
			w.buf, w.n = buf, copy(buf, carry)
			if err := ctx.Err(); err != nil {
				readErr = err
				return
			}
			cut, err := split(w)
			if err != nil {
				readErr = err
				return
			}
			if cut == 0 {
				return
			}
			j := &job{buf: buf, size: cut}
			j.hashed.Add(2)
			carry = append(carry[:0], buf[cut:w.n]...)
			work <- j
			blob <- j
			order <- j
		}
	})
	// Chunk digests.
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for j := range work {
				j.digest = sha256.Sum256(j.buf[:j.size])
				j.hashed.Done()
			}
		})
	}
	// Blob digest.
	blobHash := sha256.New()
	wg.Go(func() {
		for j := range blob {
			blobHash.Write(j.buf[:j.size])
			j.hashed.Done()
		}
	})

	var total int64
	var fnErr error
	for j := range order {
		j.hashed.Wait()
		if fnErr == nil && fn != nil {
			if err := fn(Chunk{Digest: j.digest, Size: uint32(j.size)}, j.buf[:j.size]); err != nil {
				fnErr = err
				close(stop)
			}
		}
		total += int64(j.size)
		select {
		case free <- j.buf:
		default:
		}
	}
	wg.Wait()
	if fnErr != nil {
		return Digest{}, 0, fnErr
	}
	if readErr != nil {
		if errors.Is(readErr, errTrailingData) || errors.Is(readErr, context.Canceled) || errors.Is(readErr, context.DeadlineExceeded) {
			return Digest{}, 0, readErr
		}
		return Digest{}, 0, fmt.Errorf("chunker: read input: %w", readErr)
	}
	var d Digest
	blobHash.Sum(d[:0])
	return d, total, nil
}
