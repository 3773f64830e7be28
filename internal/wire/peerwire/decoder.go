package peerwire

import (
	"errors"
	"fmt"
	"io"

	"github.com/p2pd/p2pd/chunker"
)

// Decoder reads frames from a stream. It reads exactly the bytes of each
// frame and never ahead, in three reads per frame (length, type, payload),
// so give it a bufio.Reader if the stream is unbuffered. Its buffer grows to
// the largest frame seen, at most its limit, and is reused.
//
// A Decoder is not safe for concurrent use.
type Decoder struct {
	r   io.Reader
	max int
	hdr [frameHeaderLen]byte
	rh  [rangeHeadLen]byte
	buf []byte
	err error
	dst DataDst
}

// DataDst says where the payload of a Data frame goes: given the frame's
// fields and its payload length n, it returns a slice of exactly n bytes
// to read the payload into, or nil to leave it to the Decoder's buffer.
type DataDst func(req, offset, total uint32, n int) []byte

// SetDataDst makes Next ask dst where each Data frame's payload goes, once
// the frame's length, type and fields have been read and checked, so that a
// chunk's pieces can be read straight into the chunk's buffer instead of
// being copied there from the Decoder's. The decoded Data's Payload is
// then the slice dst returned. If the payload cannot be read in full, Next
// fails and that slice may have been partly overwritten. dst runs on the
// goroutine calling Next; nil turns this off.
func (d *Decoder) SetDataDst(dst DataDst) { d.dst = dst }

// NewDecoder returns a Decoder reading from r that refuses frames whose
// length prefix exceeds maxFrame bytes. maxFrame ≤ 0, or over MaxFrameSize,
// means MaxFrameSize. A lower limit bounds memory further but also refuses
// frames a peer may legitimately send: a full Data frame needs
// MaxDataPayload+13 bytes, a Bitfield of n chunks 37+(n+7)/8.
func NewDecoder(r io.Reader, maxFrame int) *Decoder {
	if maxFrame <= 0 || maxFrame > MaxFrameSize {
		maxFrame = MaxFrameSize
	}
	return &Decoder{r: r, max: maxFrame}
}

// Next reads and returns the next message, as a value of one of the message
// types (Hello, Data, ...). Slices in it (Data.Payload, ManifestData.Data,
// Bitfield.Bits) alias the Decoder's buffer and are valid only until the
// next call to Next, except a Data.Payload read where SetDataDst said.
//
// At the end of the stream, between frames, Next returns io.EOF. Input that
// ends inside a frame yields an error wrapping io.ErrUnexpectedEOF; a
// protocol violation one wrapping ErrFrameTooLarge, ErrUnknownType or
// ErrMalformed; any other read error is wrapped as is. Errors are sticky:
// once Next fails, every later call returns the same error, as the stream
// can no longer be trusted to be at a frame boundary.
func (d *Decoder) Next() (Message, error) {
	if d.err != nil {
		return nil, d.err
	}
	m, err := d.next()
	if err != nil {
		d.err = err
		return nil, err
	}
	return m, nil
}

func (d *Decoder) next() (Message, error) {
	// The length first, on its own, so that an oversized claim fails even
	// if the peer then sends nothing more.
	if n, err := io.ReadFull(d.r, d.hdr[:4]); err != nil {
		switch {
		case n == 0 && err == io.EOF:
			return nil, io.EOF
		case errors.Is(err, io.ErrUnexpectedEOF):
			return nil, fmt.Errorf("peerwire: stream ended %d bytes into a 4-byte frame length: %w", n, io.ErrUnexpectedEOF)
		}
		return nil, fmt.Errorf("peerwire: read frame length: %w", err)
	}
	size := be.Uint32(d.hdr[:4])
	switch {
	case size > uint32(d.max):
		return nil, fmt.Errorf("%w: length prefix %d, limit %d", ErrFrameTooLarge, size, d.max)
	case size == 0:
		return nil, fmt.Errorf("%w: empty frame, no type byte", ErrMalformed)
	}

	if _, err := io.ReadFull(d.r, d.hdr[4:5]); err != nil {
		return nil, fmt.Errorf("peerwire: read type of a %d-byte frame: %w", size, noEOF(err))
	}
	t := Type(d.hdr[4])
	l, ok := lookup(t)
	if !ok {
		return nil, fmt.Errorf("%w: type byte %d in a %d-byte frame", ErrUnknownType, uint8(t), size)
	}
	n := int(size) - 1
	if n < l.min || n > l.max {
		if l.min == l.max {
			return nil, malformed(t, "payload is %d bytes, want %d", n, l.min)
		}
		return nil, malformed(t, "payload is %d bytes, want %d to %d", n, l.min, l.max)
	}

	if t == TypeData && d.dst != nil {
		return d.nextData(n)
	}
	p := d.buffer(n)
	if got, err := io.ReadFull(d.r, p); err != nil {
		return nil, fmt.Errorf("peerwire: read %s payload (%d of %d bytes): %w", t, got, n, noEOF(err))
	}
	m, err := l.decode(p)
	if err != nil {
		return nil, err
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// buffer returns the Decoder's buffer, grown to n bytes if needed.
func (d *Decoder) buffer(n int) []byte {
	if cap(d.buf) < n {
		d.buf = make([]byte, min(max(n, 2*cap(d.buf)), d.max))
	}
	return d.buf[:n]
}

// nextData reads the n-byte payload of a Data frame into where d.dst says.
// The checks are Data.validate's, made before the payload is read.
func (d *Decoder) nextData(n int) (Message, error) {
	if got, err := io.ReadFull(d.r, d.rh[:]); err != nil {
		return nil, fmt.Errorf("peerwire: read %s payload (%d of %d bytes): %w", TypeData, got, n, noEOF(err))
	}
	m := Data{ReqID: be.Uint32(d.rh[:]), Offset: be.Uint32(d.rh[4:]), Total: be.Uint32(d.rh[8:])}
	pn := n - rangeHeadLen
	if err := checkReqID(TypeData, m.ReqID); err != nil {
		return nil, err
	}
	if err := checkRange(TypeData, m.Offset, m.Total, pn, chunker.MaxChunkSizeLimit); err != nil {
		return nil, err
	}
	p := d.dst(m.ReqID, m.Offset, m.Total, pn)
	if len(p) != pn {
		p = d.buffer(pn)
	}
	if got, err := io.ReadFull(d.r, p); err != nil {
		return nil, fmt.Errorf("peerwire: read %s payload (%d of %d bytes): %w", TypeData, rangeHeadLen+got, n, noEOF(err))
	}
	m.Payload = tail(p)
	return m, nil
}

// noEOF turns io.EOF, which inside a frame means truncation, into
// io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
