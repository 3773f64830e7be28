package peerwire

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"

	"github.com/p2pd/p2pd/chunker"
)

// ProtocolID is the libp2p protocol the frames of this package travel on.
const ProtocolID = "/p2pd/chunks/1.0.0"

// Version is the protocol version this package speaks, as sent in
// Hello.Version: the major version in the high byte, the minor in the low
// byte (1.1: 1.0 and Received).
const Version uint16 = 1<<8 | 1

// Hello.Features bits.
const (
	// FeatureReceived: the sender acknowledges every chunk request it
	// receives in full with a Received frame, and understands one (since
	// 1.1). An uploader holds a request's upload slot until its Received
	// arrives, but only for a peer that advertises this.
	FeatureReceived uint32 = 1 << 0
)

// VersionMajor returns the high byte of a Hello.Version.
func VersionMajor(v uint16) uint8 { return uint8(v >> 8) }

// VersionMinor returns the low byte of a Hello.Version.
func VersionMinor(v uint16) uint8 { return uint8(v) }

// Compatible reports whether a peer announcing Hello.Version v can talk to
// this package: same major version, any minor.
func Compatible(v uint16) bool { return VersionMajor(v) == VersionMajor(Version) }

// Size limits of the protocol.
const (
	// MaxDataPayload bounds Data.Payload and ManifestData.Data. A chunk
	// or manifest larger than this is sent as several frames.
	MaxDataPayload = 1 << 20
	// MaxFrameSize bounds a frame's length prefix (type byte + payload).
	// The largest frame this version produces is a full Data frame,
	// 1 + 12 + MaxDataPayload bytes; the rest is headroom.
	MaxFrameSize = MaxDataPayload + 64
	// MaxPeerIDLen bounds Hello.PeerID, in bytes.
	MaxPeerIDLen = 128
	// MaxReasonLen bounds Reject.Reason, in bytes.
	MaxReasonLen = 256
	// MaxBitfieldBytes bounds Bitfield.Bits: one bit for each of up to
	// chunker.MaxManifestChunks chunks.
	MaxBitfieldBytes = (chunker.MaxManifestChunks + 7) / 8
)

// Type identifies a message. It is the byte that follows a frame's length.
type Type uint8

// Message types. Zero is not a type.
const (
	TypeHello        Type = 1
	TypeInterested   Type = 2
	TypeBitfield     Type = 3
	TypeHave         Type = 4
	TypeGetManifest  Type = 5
	TypeManifestData Type = 6
	TypeRequest      Type = 7
	TypeData         Type = 8
	TypeCancel       Type = 9
	TypeReject       Type = 10
	TypePing         Type = 11
	TypePong         Type = 12
	TypeReceived     Type = 13
)

var typeNames = [...]string{
	TypeHello: "Hello", TypeInterested: "Interested", TypeBitfield: "Bitfield",
	TypeHave: "Have", TypeGetManifest: "GetManifest", TypeManifestData: "ManifestData",
	TypeRequest: "Request", TypeData: "Data", TypeCancel: "Cancel",
	TypeReject: "Reject", TypePing: "Ping", TypePong: "Pong",
	TypeReceived: "Received",
}

// String returns the message name, or "Type(n)" for a value that is not a type.
func (t Type) String() string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// RejectCode says why a request (or, with ReqID 0, the whole session) was
// refused. A receiver treats a code it does not know like RejectBadRequest.
type RejectCode uint16

// Reject codes.
const (
	RejectNotFound   RejectCode = 1 // the blob, manifest or chunk is not held here
	RejectBusy       RejectCode = 2 // all upload slots are taken; retry later
	RejectBanned     RejectCode = 3 // this peer refuses to serve the requester
	RejectBadRequest RejectCode = 4 // the request is invalid (e.g. a range past the chunk's end)
	RejectVersion    RejectCode = 5 // incompatible Hello.Version; the stream is closed next
	RejectDeferred   RejectCode = 6 // the chunk just went to another peer: fetch it from there, ask for others here
)

// String returns the code's name, or "RejectCode(n)".
func (c RejectCode) String() string {
	switch c {
	case RejectNotFound:
		return "NotFound"
	case RejectBusy:
		return "Busy"
	case RejectBanned:
		return "Banned"
	case RejectBadRequest:
		return "BadRequest"
	case RejectVersion:
		return "Version"
	case RejectDeferred:
		return "Deferred"
	}
	return fmt.Sprintf("RejectCode(%d)", uint16(c))
}

// Message is one of the message structs of this package (Hello, Interested,
// Bitfield, Have, GetManifest, ManifestData, Request, Data, Cancel, Reject,
// Ping, Pong, Received), as a value or a non-nil pointer. The Decoder returns values.
// The interface is sealed: other types cannot implement it.
type Message interface {
	// Type returns the frame type byte of the message.
	Type() Type

	// validate reports, wrapping ErrMalformed, why the message cannot be
	// encoded or must not be accepted.
	validate() error
	// appendFields appends the payload up to, not including, bulk().
	appendFields(b []byte) []byte
	// bulk returns the variable-length tail of the payload (raw bytes that
	// run to the end of the frame), or nil.
	bulk() []byte
}

// Hello is the first frame each side sends. A peer whose major version is
// not this package's (see Compatible) is answered with
// Reject{ReqID: 0, Code: RejectVersion} and the stream is closed. Hello's
// layout is the same in every version so that any version can read it.
type Hello struct {
	Version uint16 // major<<8 | minor; this package sends Version
	PeerID  string // the sender's libp2p peer ID, at most MaxPeerIDLen bytes of UTF-8
	// Features are capability bits (FeatureReceived); receivers ignore
	// bits they do not know.
	Features uint32
}

// Interested says "I am working on this blob": the sender wants to learn
// which of its chunks the receiver holds (a Bitfield in answer).
type Interested struct {
	Blob chunker.Digest
}

// Bitfield lists which chunks of a blob the sender holds, by index into the
// blob's manifest. Bit i is bit 7-i%8 (most significant first) of
// Bits[i/8]; len(Bits) must be (NumChunks+7)/8 and the spare low bits of the
// last byte must be zero. NumChunks is at most chunker.MaxManifestChunks.
// Bitset converts to and from this form.
//
// In a decoded Bitfield, Bits aliases the Decoder's buffer and is valid only
// until the next call to Decoder.Next.
type Bitfield struct {
	Blob      chunker.Digest
	NumChunks uint32
	Bits      []byte
}

// Have announces that the sender now holds chunk Index (an index into the
// blob's manifest, below chunker.MaxManifestChunks) of Blob.
type Have struct {
	Blob  chunker.Digest
	Index uint32
}

// GetManifest asks for the canonical manifest encoding of Blob. The answer
// is a series of ManifestData frames with the same ReqID, or a Reject.
// ReqID 0 is reserved (see Reject) and is malformed here.
type GetManifest struct {
	ReqID uint32
	Blob  chunker.Digest
}

// ManifestData carries Data, the bytes [Offset, Offset+len(Data)) of a
// manifest encoding of Total bytes (chunker.Manifest.MarshalBinary, as is),
// in answer to GetManifest ReqID. len(Data) is at most MaxDataPayload,
// Offset+len(Data) ≤ Total ≤ chunker.MaxManifestBytes, and ReqID is not 0.
//
// In a decoded ManifestData, Data aliases the Decoder's buffer and is valid
// only until the next call to Decoder.Next.
type ManifestData struct {
	ReqID  uint32
	Offset uint32
	Total  uint32
	Data   []byte
}

// Request asks for bytes [Offset, Offset+Length) of the chunk with digest
// Chunk; Length 0 means "to the end of the chunk". Offset+Length is at most
// chunker.MaxChunkSizeLimit, and ReqID (chosen by the requester, unique
// among its outstanding requests on the stream) is not 0. The answer is a
// series of Data frames with the same ReqID, or a Reject.
//
// Flags is an optional trailing byte (sent only when not zero); unknown
// bits are ignored.
type Request struct {
	ReqID  uint32
	Chunk  chunker.Digest
	Offset uint32
	Length uint32
	Flags  RequestFlags
}

// RequestFlags qualify a Request.
type RequestFlags uint8

// Request flags.
const (
	// RequestEscalated: the requester could not get the chunk from the
	// peers that advertise it (they failed it or look stalled), so an
	// origin serves it even within its resend window.
	RequestEscalated RequestFlags = 1 << iota
)

// Data carries Payload, the bytes [Offset, Offset+len(Payload)) of a chunk
// of Total bytes, in answer to Request ReqID. len(Payload) is at most
// MaxDataPayload, Offset+len(Payload) ≤ Total ≤ chunker.MaxChunkSizeLimit,
// and ReqID is not 0.
//
// In a decoded Data, Payload aliases the Decoder's buffer and is valid only
// until the next call to Decoder.Next: copy it (or write it out) first.
type Data struct {
	ReqID   uint32
	Offset  uint32
	Total   uint32
	Payload []byte
}

// Cancel withdraws request ReqID (not 0); Data frames already in flight may
// still arrive and are discarded.
type Cancel struct {
	ReqID uint32
}

// Reject refuses request ReqID, or with ReqID 0 the whole session (an
// incompatible version, a ban), in which case the sender closes the stream
// next. Reason is at most MaxReasonLen bytes of UTF-8, for logs only.
type Reject struct {
	ReqID  uint32
	Code   RejectCode
	Reason string
}

// Received says that every byte of chunk request ReqID (not 0) has
// arrived: the data is off the link, and the uploader's slot is free for
// another request. It is sent only to a peer whose Hello advertises
// FeatureReceived.
type Received struct {
	ReqID uint32
}

// Ping asks for a Pong with the same Nonce; either side may send it to keep
// an idle stream alive or measure the round trip.
type Ping struct {
	Nonce uint64
}

// Pong answers a Ping.
type Pong struct {
	Nonce uint64
}

// Type implementations.

func (Hello) Type() Type        { return TypeHello }
func (Interested) Type() Type   { return TypeInterested }
func (Bitfield) Type() Type     { return TypeBitfield }
func (Have) Type() Type         { return TypeHave }
func (GetManifest) Type() Type  { return TypeGetManifest }
func (ManifestData) Type() Type { return TypeManifestData }
func (Request) Type() Type      { return TypeRequest }
func (Data) Type() Type         { return TypeData }
func (Cancel) Type() Type       { return TypeCancel }
func (Reject) Type() Type       { return TypeReject }
func (Ping) Type() Type         { return TypePing }
func (Pong) Type() Type         { return TypePong }
func (Received) Type() Type     { return TypeReceived }

// Payload layouts (all integers big-endian; str = u16 length | bytes):
//
//	Hello        version u16 | features u32 | peer ID str
//	Interested   blob [32]
//	Bitfield     blob [32] | num chunks u32 | bits (rest of frame)
//	Have         blob [32] | index u32
//	GetManifest  req u32 | blob [32]
//	ManifestData req u32 | offset u32 | total u32 | data (rest of frame)
//	Request      req u32 | chunk [32] | offset u32 | length u32
//	Data         req u32 | offset u32 | total u32 | payload (rest of frame)
//	Cancel       req u32
//	Reject       req u32 | code u16 | reason str
//	Ping, Pong   nonce u64
//	Received     req u32

const (
	digestLen   = len(chunker.Digest{})
	strLenBytes = 2
	// rangeHeadLen is the fixed part of Data and ManifestData.
	rangeHeadLen = 12
)

// layout is what the Decoder knows about a type: its payload size bounds,
// checked before the payload is read, and its decoder.
type layout struct {
	min, max int
	decode   func(p []byte) (Message, error)
}

var layouts = [...]layout{
	TypeHello:        {2 + 4 + strLenBytes, 2 + 4 + strLenBytes + MaxPeerIDLen, decodeHello},
	TypeInterested:   {digestLen, digestLen, decodeInterested},
	TypeBitfield:     {digestLen + 4, digestLen + 4 + MaxBitfieldBytes, decodeBitfield},
	TypeHave:         {digestLen + 4, digestLen + 4, decodeHave},
	TypeGetManifest:  {4 + digestLen, 4 + digestLen, decodeGetManifest},
	TypeManifestData: {rangeHeadLen, rangeHeadLen + MaxDataPayload, decodeManifestData},
	TypeRequest:      {4 + digestLen + 4 + 4, 4 + digestLen + 4 + 4 + 1, decodeRequest},
	TypeData:         {rangeHeadLen, rangeHeadLen + MaxDataPayload, decodeData},
	TypeCancel:       {4, 4, decodeCancel},
	TypeReject:       {4 + 2 + strLenBytes, 4 + 2 + strLenBytes + MaxReasonLen, decodeReject},
	TypePing:         {8, 8, decodePing},
	TypePong:         {8, 8, decodePong},
	TypeReceived:     {4, 4, decodeReceived},
}

// lookup returns the layout of t, or false if t is not a message type.
func lookup(t Type) (layout, bool) {
	if int(t) >= len(layouts) || layouts[t].decode == nil {
		return layout{}, false
	}
	return layouts[t], true
}

var be = binary.BigEndian

func malformed(t Type, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrMalformed, t, fmt.Sprintf(format, args...))
}

func checkString(t Type, field, s string, limit int) error {
	if len(s) > limit {
		return malformed(t, "%s is %d bytes, limit %d", field, len(s), limit)
	}
	if !utf8.ValidString(s) {
		return malformed(t, "%s is not valid UTF-8", field)
	}
	return nil
}

func checkReqID(t Type, id uint32) error {
	if id == 0 {
		return malformed(t, "request ID 0 is reserved")
	}
	return nil
}

// checkRange checks a Data or ManifestData piece: at most MaxDataPayload
// bytes, ending within total, total within limit.
func checkRange(t Type, off, total uint32, n int, limit uint64) error {
	switch {
	case n > MaxDataPayload:
		return malformed(t, "%d data bytes, limit %d", n, MaxDataPayload)
	case uint64(total) > limit:
		return malformed(t, "total size %d is over the limit %d", total, limit)
	case uint64(off)+uint64(n) > uint64(total):
		return malformed(t, "%d bytes at offset %d run past the total size %d", n, off, total)
	}
	return nil
}

func (m Hello) validate() error { return checkString(TypeHello, "peer ID", m.PeerID, MaxPeerIDLen) }

func (Interested) validate() error { return nil }

func (m Bitfield) validate() error {
	if m.NumChunks > chunker.MaxManifestChunks {
		return malformed(TypeBitfield, "%d chunks, limit %d", m.NumChunks, chunker.MaxManifestChunks)
	}
	if want := (int(m.NumChunks) + 7) / 8; len(m.Bits) != want {
		return malformed(TypeBitfield, "%d chunks need %d bytes of bits, have %d", m.NumChunks, want, len(m.Bits))
	}
	if r := m.NumChunks % 8; r != 0 {
		if spare := m.Bits[len(m.Bits)-1] & (0xff >> r); spare != 0 {
			return malformed(TypeBitfield, "spare bits %#02x after chunk %d are set", spare, m.NumChunks-1)
		}
	}
	return nil
}

func (m Have) validate() error {
	if m.Index >= chunker.MaxManifestChunks {
		return malformed(TypeHave, "chunk index %d, a manifest has at most %d chunks", m.Index, chunker.MaxManifestChunks)
	}
	return nil
}

func (m GetManifest) validate() error { return checkReqID(TypeGetManifest, m.ReqID) }

func (m ManifestData) validate() error {
	if err := checkReqID(TypeManifestData, m.ReqID); err != nil {
		return err
	}
	return checkRange(TypeManifestData, m.Offset, m.Total, len(m.Data), chunker.MaxManifestBytes)
}

func (m Request) validate() error {
	if err := checkReqID(TypeRequest, m.ReqID); err != nil {
		return err
	}
	if end := uint64(m.Offset) + uint64(m.Length); end > chunker.MaxChunkSizeLimit {
		return malformed(TypeRequest, "range [%d, %d) is past the chunk size limit %d", m.Offset, end, chunker.MaxChunkSizeLimit)
	}
	return nil
}

func (m Data) validate() error {
	if err := checkReqID(TypeData, m.ReqID); err != nil {
		return err
	}
	return checkRange(TypeData, m.Offset, m.Total, len(m.Payload), chunker.MaxChunkSizeLimit)
}

func (m Cancel) validate() error { return checkReqID(TypeCancel, m.ReqID) }

func (m Received) validate() error { return checkReqID(TypeReceived, m.ReqID) }

func (m Reject) validate() error { return checkString(TypeReject, "reason", m.Reason, MaxReasonLen) }

func (Ping) validate() error { return nil }
func (Pong) validate() error { return nil }

func appendString(b []byte, s string) []byte {
	b = be.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func (m Hello) appendFields(b []byte) []byte {
	b = be.AppendUint16(b, m.Version)
	b = be.AppendUint32(b, m.Features)
	return appendString(b, m.PeerID)
}

func (m Interested) appendFields(b []byte) []byte { return append(b, m.Blob[:]...) }

func (m Bitfield) appendFields(b []byte) []byte {
	b = append(b, m.Blob[:]...)
	return be.AppendUint32(b, m.NumChunks)
}

func (m Have) appendFields(b []byte) []byte {
	b = append(b, m.Blob[:]...)
	return be.AppendUint32(b, m.Index)
}

func (m GetManifest) appendFields(b []byte) []byte {
	b = be.AppendUint32(b, m.ReqID)
	return append(b, m.Blob[:]...)
}

func (m ManifestData) appendFields(b []byte) []byte {
	return appendRangeHead(b, m.ReqID, m.Offset, m.Total)
}

func (m Request) appendFields(b []byte) []byte {
	b = be.AppendUint32(b, m.ReqID)
	b = append(b, m.Chunk[:]...)
	b = be.AppendUint32(b, m.Offset)
	b = be.AppendUint32(b, m.Length)
	if m.Flags != 0 {
		b = append(b, byte(m.Flags))
	}
	return b
}

func (m Data) appendFields(b []byte) []byte { return appendRangeHead(b, m.ReqID, m.Offset, m.Total) }

func (m Cancel) appendFields(b []byte) []byte { return be.AppendUint32(b, m.ReqID) }

func (m Received) appendFields(b []byte) []byte { return be.AppendUint32(b, m.ReqID) }

func (m Reject) appendFields(b []byte) []byte {
	b = be.AppendUint32(b, m.ReqID)
	b = be.AppendUint16(b, uint16(m.Code))
	return appendString(b, m.Reason)
}

func (m Ping) appendFields(b []byte) []byte { return be.AppendUint64(b, m.Nonce) }
func (m Pong) appendFields(b []byte) []byte { return be.AppendUint64(b, m.Nonce) }

func appendRangeHead(b []byte, req, off, total uint32) []byte {
	b = be.AppendUint32(b, req)
	b = be.AppendUint32(b, off)
	return be.AppendUint32(b, total)
}

func (Hello) bulk() []byte          { return nil }
func (Interested) bulk() []byte     { return nil }
func (m Bitfield) bulk() []byte     { return m.Bits }
func (Have) bulk() []byte           { return nil }
func (GetManifest) bulk() []byte    { return nil }
func (m ManifestData) bulk() []byte { return m.Data }
func (Request) bulk() []byte        { return nil }
func (m Data) bulk() []byte         { return m.Payload }
func (Cancel) bulk() []byte         { return nil }
func (Received) bulk() []byte       { return nil }
func (Reject) bulk() []byte         { return nil }
func (Ping) bulk() []byte           { return nil }
func (Pong) bulk() []byte           { return nil }

// Decoders. Each gets a payload whose length is within its layout's
// bounds, so fixed-size fields can be read without further checks; the
// result is validated by the caller.

// readString reads a str field that must end the payload.
func readString(t Type, field string, p []byte, limit int) (string, error) {
	n := int(be.Uint16(p))
	p = p[strLenBytes:]
	switch {
	case n > limit:
		return "", malformed(t, "%s length %d, limit %d", field, n, limit)
	case n > len(p):
		return "", malformed(t, "%s length %d, but only %d bytes follow", field, n, len(p))
	case n < len(p):
		return "", malformed(t, "%d trailing bytes after the %s", len(p)-n, field)
	}
	return string(p), nil
}

// tail returns the rest-of-frame field, nil when empty.
func tail(p []byte) []byte {
	if len(p) == 0 {
		return nil
	}
	return p
}

func decodeHello(p []byte) (Message, error) {
	id, err := readString(TypeHello, "peer ID", p[6:], MaxPeerIDLen)
	return Hello{Version: be.Uint16(p), Features: be.Uint32(p[2:]), PeerID: id}, err
}

func decodeInterested(p []byte) (Message, error) {
	return Interested{Blob: chunker.Digest(p)}, nil
}

func decodeBitfield(p []byte) (Message, error) {
	return Bitfield{
		Blob:      chunker.Digest(p),
		NumChunks: be.Uint32(p[digestLen:]),
		Bits:      tail(p[digestLen+4:]),
	}, nil
}

func decodeHave(p []byte) (Message, error) {
	return Have{Blob: chunker.Digest(p), Index: be.Uint32(p[digestLen:])}, nil
}

func decodeGetManifest(p []byte) (Message, error) {
	return GetManifest{ReqID: be.Uint32(p), Blob: chunker.Digest(p[4:])}, nil
}

func decodeManifestData(p []byte) (Message, error) {
	return ManifestData{ReqID: be.Uint32(p), Offset: be.Uint32(p[4:]), Total: be.Uint32(p[8:]), Data: tail(p[rangeHeadLen:])}, nil
}

func decodeRequest(p []byte) (Message, error) {
	m := Request{
		ReqID:  be.Uint32(p),
		Chunk:  chunker.Digest(p[4:]),
		Offset: be.Uint32(p[4+digestLen:]),
		Length: be.Uint32(p[8+digestLen:]),
	}
	if len(p) > 12+digestLen {
		m.Flags = RequestFlags(p[12+digestLen])
	}
	return m, nil
}

func decodeData(p []byte) (Message, error) {
	return Data{ReqID: be.Uint32(p), Offset: be.Uint32(p[4:]), Total: be.Uint32(p[8:]), Payload: tail(p[rangeHeadLen:])}, nil
}

func decodeCancel(p []byte) (Message, error) { return Cancel{ReqID: be.Uint32(p)}, nil }

func decodeReceived(p []byte) (Message, error) { return Received{ReqID: be.Uint32(p)}, nil }

func decodeReject(p []byte) (Message, error) {
	reason, err := readString(TypeReject, "reason", p[6:], MaxReasonLen)
	return Reject{ReqID: be.Uint32(p), Code: RejectCode(be.Uint16(p[4:])), Reason: reason}, err
}

func decodePing(p []byte) (Message, error) { return Ping{Nonce: be.Uint64(p)}, nil }
func decodePong(p []byte) (Message, error) { return Pong{Nonce: be.Uint64(p)}, nil }
