// Package peerwire is the wire codec of the p2pd peer protocol
// (ProtocolID, "/p2pd/chunks/1.0.0"): the messages two peers exchange over
// one libp2p stream to announce which chunks of a blob they hold and to move
// manifests and chunk data between them.
//
// It is a leaf package: no networking, only framing. Every message travels in
// one frame,
//
//	length u32 (big-endian, counts the type byte and the payload) | type u8 | payload
//
// and every limit is enforced before memory is committed to it: a Decoder
// refuses a length over its limit (ErrFrameTooLarge) or outside the bounds
// of the message type (ErrMalformed) as soon as the 5-byte header has been
// read, so a hostile peer can make it allocate at most MaxFrameSize bytes,
// and only by actually sending that many. Chunk data (up to
// chunker.MaxChunkSizeLimit) and manifests (up to chunker.MaxManifestBytes)
// are larger than a frame, so they are sent as a series of Data and
// ManifestData frames carrying at most MaxDataPayload bytes each, and no side
// ever needs a whole chunk in one buffer.
//
// The encoding is canonical: every message has exactly one encoding, the
// Decoder accepts nothing else (no trailing bytes, no non-zero padding
// bits), and Encode and AppendFrame validate a message with the same rules
// the Decoder applies, so they never produce a frame a peer would refuse.
// docs/protocol.md in the repository describes the layouts for implementers
// in other languages.
//
// Versioning: each side's first frame is a Hello carrying Version (major in
// the high byte, minor in the low byte) and Features (capability bits:
// FeatureReceived since 1.1; unknown bits are ignored). A peer whose major version
// differs (see Compatible) is answered with Reject{ReqID: 0, Code:
// RejectVersion} and the stream is closed; minor versions only add message
// types and codes, and a new message type is only sent to a peer whose
// Features advertise it.
package peerwire
