package peerwire

import (
	"fmt"
	"io"
	"sync"
)

// frameHeaderLen is the length prefix plus the type byte.
const frameHeaderLen = 5

// AppendFrame appends the frame of m to dst and returns the extended
// slice. If m breaks a limit of the protocol it returns dst unchanged and an
// error wrapping ErrMalformed (ErrUnknownType for a nil m), so it never
// produces a frame the Decoder would refuse.
func AppendFrame(dst []byte, m Message) ([]byte, error) {
	b, bulk, err := appendHead(dst, m)
	if err != nil {
		return dst, err
	}
	return append(b, bulk...), nil
}

// appendHead validates m and appends its frame up to, not including,
// m.bulk(), which it returns; the length prefix already counts the bulk.
func appendHead(dst []byte, m Message) ([]byte, []byte, error) {
	if m == nil {
		return dst, nil, fmt.Errorf("%w: cannot encode a nil Message", ErrUnknownType)
	}
	if err := m.validate(); err != nil {
		return dst, nil, err
	}
	start := len(dst)
	b := append(dst, 0, 0, 0, 0, byte(m.Type()))
	b = m.appendFields(b)
	bulk := m.bulk()
	be.PutUint32(b[start:], uint32(len(b)-start-4+len(bulk)))
	return b, bulk, nil
}

// encodeCopyMax is the largest bulk Encode copies next to the header to
// write the frame in one call; a larger one is written by a second call
// straight from the message, saving a copy of up to MaxDataPayload bytes.
const encodeCopyMax = 4 << 10

var encodePool = sync.Pool{New: func() any {
	b := make([]byte, 0, 512+encodeCopyMax)
	return &b
}}

// Encode validates m (as AppendFrame does) and writes its frame to w. A
// frame of up to about 4 KiB is written with a single Write; a larger Data,
// ManifestData or Bitfield frame is written as its header and then its
// bulk bytes, without copying them. Wrap an unbuffered stream in a
// bufio.Writer to coalesce small frames, and serialise concurrent writers:
// an error can leave a partial frame on w, after which the stream is
// unusable.
func Encode(w io.Writer, m Message) error {
	bp := encodePool.Get().(*[]byte)
	defer encodePool.Put(bp)
	b, bulk, err := appendHead((*bp)[:0], m)
	if err != nil {
		return err
	}
	if len(bulk) <= encodeCopyMax {
		b, bulk = append(b, bulk...), nil
	}
	*bp = b[:0]
	if err := write(w, b); err != nil {
		return fmt.Errorf("peerwire: write %s frame: %w", m.Type(), err)
	}
	if len(bulk) > 0 {
		if err := write(w, bulk); err != nil {
			return fmt.Errorf("peerwire: write %s frame payload: %w", m.Type(), err)
		}
	}
	return nil
}

func write(w io.Writer, b []byte) error {
	n, err := w.Write(b)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	return err
}
