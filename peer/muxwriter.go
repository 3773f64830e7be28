package peer

import "io"

// muxFrameSize is the most data one yamux frame carries with the
// configuration libp2p's yamux transport uses: its MaxMessageSize (64 KiB)
// less yamux's 12-byte header. A frame that full is exactly four full TLS
// records; TestMuxFrameSize checks it against the library.
const muxFrameSize = 64<<10 - 12

// muxWriter buffers writes to a yamux stream so that the stream sees
// whole frames: it writes only multiples of size (from its buffer when that
// is full, or straight from the caller's slice when that is at least size
// long and nothing is buffered) until Flush writes the rest. A stream
// written through a bufio.Writer gets a frame of a few bytes (a whole TLS
// record and write system call) after nearly every full one, because
// neither 64 KiB flushes nor Data frames line up with yamux frames.
//
// Like bufio.Writer, an error is sticky and a muxWriter is not safe for
// concurrent use.
type muxWriter struct {
	w   io.Writer
	buf []byte // len: bytes buffered; cap: the frame size
	err error
	// written counts the bytes Write has taken.
	written int64
}

func newMuxWriter(w io.Writer, size int) *muxWriter {
	return &muxWriter{w: w, buf: make([]byte, 0, size)}
}

// Write buffers or writes p. It writes to the stream only in multiples of
// the frame size.
func (m *muxWriter) Write(p []byte) (n int, err error) {
	defer func() { m.written += int64(n) }()
	size := cap(m.buf)
	for len(p) > 0 {
		if m.err != nil {
			return n, m.err
		}
		if len(m.buf) == 0 && len(p) >= size {
			k, err := m.w.Write(p[:len(p)-len(p)%size])
			n += k
			p = p[k:]
			if err == nil && k%size != 0 {
				err = io.ErrShortWrite
			}
			m.err = err
			continue
		}
		c := copy(m.buf[len(m.buf):size], p)
		m.buf = m.buf[:len(m.buf)+c]
		n += c
		p = p[c:]
		if len(m.buf) == size {
			m.flush()
		}
	}
	return n, m.err
}

// Flush writes what is buffered.
func (m *muxWriter) Flush() error {
	if m.err == nil && len(m.buf) > 0 {
		m.flush()
	}
	return m.err
}

func (m *muxWriter) flush() {
	k, err := m.w.Write(m.buf)
	if err == nil && k < len(m.buf) {
		err = io.ErrShortWrite
	}
	m.err = err
	m.buf = m.buf[:0]
}
