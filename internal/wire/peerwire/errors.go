package peerwire

import "errors"

// Errors returned by this package. Callers match them with errors.Is; the
// message wrapped around each one says which frame or field was wrong and
// why. All three mean the peer broke the protocol: the stream cannot be
// resynchronised and should be closed (a Decoder keeps returning the same
// error). Input that merely ends early is not a protocol violation: the
// Decoder reports it as io.EOF at a frame boundary and wraps
// io.ErrUnexpectedEOF inside a frame, and it wraps any other read error as is.
var (
	// ErrFrameTooLarge: a frame's length prefix exceeds the decoder's limit
	// (MaxFrameSize unless lowered). It is reported before the frame is read
	// or any memory is allocated for it.
	ErrFrameTooLarge = errors.New("peerwire: frame too large")
	// ErrUnknownType: a frame's type byte is not a message type of this
	// protocol version, or Encode was given a nil Message.
	ErrUnknownType = errors.New("peerwire: unknown message type")
	// ErrMalformed: a frame is empty, its payload has the wrong size for its
	// type, a field is out of range (a payload over MaxDataPayload, an offset
	// past the total, a string over its limit or not UTF-8, ...), bytes
	// trail the last field, or a bitfield is not canonical. Encode and
	// AppendFrame return it for a message that would decode to this error.
	ErrMalformed = errors.New("peerwire: malformed message")
)
