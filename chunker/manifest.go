package chunker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// ManifestVersion is the encoding version this build writes and reads.
const ManifestVersion = 1

// Hard limits on manifests, enforced by DecodeManifest before any allocation
// proportional to the input. 1<<20 chunks of up to 4 MiB each cover a 4 TiB
// blob at the maximum chunk size (1 TiB at the default average).
const (
	MaxManifestChunks = 1 << 20
	manifestMagic     = "P2PM"
	manifestHeaderLen = 4 + 2 + 2 + 3*4 + 8 + sha256.Size + 4 // magic, version, flags, min/avg/max, size, digest, count
	manifestEntryLen  = 4 + sha256.Size
	// MaxManifestBytes is the largest encoding DecodeManifest accepts.
	MaxManifestBytes = manifestHeaderLen + MaxManifestChunks*manifestEntryLen
)

// Chunk is one content-defined piece of a blob.
type Chunk struct {
	Digest Digest `json:"digest"`
	Size   uint32 `json:"size"`
}

// Manifest describes a blob as an ordered list of chunks.
//
// Its canonical encoding (MarshalBinary) is, all integers big-endian:
//
//	"P2PM" | version u16 | flags u16 (0) | min u32 | avg u32 | max u32 |
//	size u64 | blob sha256 [32] | count u32 | count × (size u32 | sha256 [32])
//
// Every manifest has exactly one encoding and the decoder accepts nothing
// else, so the SHA-256 of the encoding (Manifest.ID) identifies the manifest.
type Manifest struct {
	Version int    `json:"version"`
	Digest  Digest `json:"digest"` // SHA-256 of the whole blob
	Size    int64  `json:"size"`
	// Params are the chunker settings that produced the chunk list.
	MinSize int     `json:"min_size"`
	AvgSize int     `json:"avg_size"`
	MaxSize int     `json:"max_size"`
	Chunks  []Chunk `json:"chunks"`
}

// Offsets returns the byte offset at which each chunk starts, plus the blob
// size as a final element, so chunk i spans [off[i], off[i+1]).
func (m *Manifest) Offsets() []int64 {
	off := make([]int64, len(m.Chunks)+1)
	for i, c := range m.Chunks {
		off[i+1] = off[i] + int64(c.Size)
	}
	return off
}

// Validate checks that m is internally consistent: a known version, sane
// chunk parameters, chunk sizes in range (every chunk but the last at least
// MinSize, none over MaxSize), and chunk sizes that sum to Size. It wraps
// ErrUnsupportedVersion or ErrManifestInconsistent.
func (m *Manifest) Validate() error {
	if m.Version != ManifestVersion {
		return fmt.Errorf("%w: version %d, this build reads %d", ErrUnsupportedVersion, m.Version, ManifestVersion)
	}
	cfg := Config{MinSize: m.MinSize, AvgSize: m.AvgSize, MaxSize: m.MaxSize, Normalization: -1}
	if m.MinSize == 0 || m.AvgSize == 0 || m.MaxSize == 0 {
		return fmt.Errorf("%w: chunk parameters %d/%d/%d must all be set", ErrManifestInconsistent, m.MinSize, m.AvgSize, m.MaxSize)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrManifestInconsistent, err)
	}
	if m.Size < 0 {
		return fmt.Errorf("%w: negative size %d", ErrManifestInconsistent, m.Size)
	}
	if len(m.Chunks) > MaxManifestChunks {
		return fmt.Errorf("%w: %d chunks, limit %d", ErrManifestTooLarge, len(m.Chunks), MaxManifestChunks)
	}
	var sum int64
	for i, c := range m.Chunks {
		switch {
		case c.Size == 0:
			return fmt.Errorf("%w: chunk %d is empty", ErrManifestInconsistent, i)
		case int64(c.Size) > int64(m.MaxSize):
			return fmt.Errorf("%w: chunk %d is %d bytes, over the maximum %d: %w", ErrManifestInconsistent, i, c.Size, m.MaxSize, ErrChunkTooLarge)
		case i < len(m.Chunks)-1 && int(c.Size) < m.MinSize:
			return fmt.Errorf("%w: chunk %d is %d bytes, under the minimum %d", ErrManifestInconsistent, i, c.Size, m.MinSize)
		}
		sum += int64(c.Size)
	}
	if sum != m.Size {
		return fmt.Errorf("%w: chunk sizes sum to %d, blob size is %d", ErrManifestInconsistent, sum, m.Size)
	}
	if m.Size == 0 && m.Digest != emptyDigest {
		return fmt.Errorf("%w: empty blob with digest %s", ErrManifestInconsistent, m.Digest)
	}
	return nil
}

var emptyDigest = Sum(nil)

// MarshalBinary returns the canonical encoding. It fails if m is invalid.
func (m *Manifest) MarshalBinary() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, manifestHeaderLen+len(m.Chunks)*manifestEntryLen)
	b = append(b, manifestMagic...)
	b = binary.BigEndian.AppendUint16(b, uint16(m.Version))
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(m.MinSize))
	b = binary.BigEndian.AppendUint32(b, uint32(m.AvgSize))
	b = binary.BigEndian.AppendUint32(b, uint32(m.MaxSize))
	b = binary.BigEndian.AppendUint64(b, uint64(m.Size))
	b = append(b, m.Digest[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Chunks)))
	for _, c := range m.Chunks {
		b = binary.BigEndian.AppendUint32(b, c.Size)
		b = append(b, c.Digest[:]...)
	}
	return b, nil
}

// ID returns the manifest's own digest: the SHA-256 of its canonical encoding.
func (m *Manifest) ID() (Digest, error) {
	b, err := m.MarshalBinary()
	if err != nil {
		return Digest{}, err
	}
	return Sum(b), nil
}

// DecodeManifest parses a canonical encoding and validates the result. It
// never allocates more than the input's length justifies, and wraps
// ErrManifestCorrupt, ErrManifestTooLarge, ErrUnsupportedVersion or
// ErrManifestInconsistent.
func DecodeManifest(b []byte) (*Manifest, error) {
	if len(b) > MaxManifestBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrManifestTooLarge, len(b), MaxManifestBytes)
	}
	if len(b) < manifestHeaderLen {
		return nil, fmt.Errorf("%w: truncated: %d bytes, header alone is %d", ErrManifestCorrupt, len(b), manifestHeaderLen)
	}
	if string(b[:4]) != manifestMagic {
		return nil, fmt.Errorf("%w: bad magic %q", ErrManifestCorrupt, b[:4])
	}
	be := binary.BigEndian
	m := &Manifest{Version: int(be.Uint16(b[4:]))}
	if m.Version != ManifestVersion {
		return nil, fmt.Errorf("%w: version %d, this build reads %d", ErrUnsupportedVersion, m.Version, ManifestVersion)
	}
	if f := be.Uint16(b[6:]); f != 0 {
		return nil, fmt.Errorf("%w: reserved flags %#x are set", ErrManifestCorrupt, f)
	}
	m.MinSize = int(be.Uint32(b[8:]))
	m.AvgSize = int(be.Uint32(b[12:]))
	m.MaxSize = int(be.Uint32(b[16:]))
	size := be.Uint64(b[20:])
	if size > 1<<62 {
		return nil, fmt.Errorf("%w: blob size %d is out of range", ErrManifestCorrupt, size)
	}
	m.Size = int64(size)
	copy(m.Digest[:], b[28:60])
	n := int(be.Uint32(b[60:]))
	if n > MaxManifestChunks {
		return nil, fmt.Errorf("%w: %d chunks, limit %d", ErrManifestTooLarge, n, MaxManifestChunks)
	}
	body := b[manifestHeaderLen:]
	if want := n * manifestEntryLen; len(body) != want {
		if len(body) < want {
			return nil, fmt.Errorf("%w: truncated: %d chunks need %d bytes, have %d", ErrManifestCorrupt, n, want, len(body))
		}
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrManifestCorrupt, len(body)-want)
	}
	if n > 0 {
		m.Chunks = make([]Chunk, n)
	}
	for i := range m.Chunks {
		e := body[i*manifestEntryLen:]
		m.Chunks[i].Size = be.Uint32(e)
		copy(m.Chunks[i].Digest[:], e[4:manifestEntryLen])
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// ReadManifest reads one canonical encoding from r, refusing more than
// MaxManifestBytes.
func ReadManifest(r io.Reader) (*Manifest, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("chunker: read manifest: %w", err)
	}
	return DecodeManifest(b)
}

// Equal reports whether two manifests are identical.
func (m *Manifest) Equal(o *Manifest) bool {
	a, err1 := m.MarshalBinary()
	b, err2 := o.MarshalBinary()
	return err1 == nil && err2 == nil && bytes.Equal(a, b)
}

// Verify checks that r yields exactly the blob m describes: every chunk's
// size and digest, the whole blob's digest, and nothing after the end. It
// reads r once, holding at most a few chunks in memory, and wraps
// ErrDigestMismatch or ErrSizeMismatch with the first chunk that is wrong.
func Verify(ctx context.Context, m *Manifest, r io.Reader) error {
	if err := m.Validate(); err != nil {
		return err
	}
	p := newPipeline(m.MaxSize)
	next := 0
	digest, size, err := p.run(ctx, r, manifestSplitter(m), func(c Chunk, _ []byte) error {
		if want := m.Chunks[next]; c != want {
			if c.Size != want.Size {
				return fmt.Errorf("%w: chunk %d at offset %d: %d bytes, manifest says %d", ErrSizeMismatch, next, m.Offsets()[next], c.Size, want.Size)
			}
			return fmt.Errorf("%w: chunk %d at offset %d: data hashes to %s, manifest says %s", ErrDigestMismatch, next, m.Offsets()[next], c.Digest, want.Digest)
		}
		next++
		return nil
	})
	if err != nil {
		if errors.Is(err, errTrailingData) {
			return fmt.Errorf("%w: data continues past the manifest's %d bytes", ErrSizeMismatch, m.Size)
		}
		return err
	}
	if size != m.Size {
		return fmt.Errorf("%w: data ends after %d bytes, manifest says %d", ErrSizeMismatch, size, m.Size)
	}
	if digest != m.Digest {
		return fmt.Errorf("%w: blob hashes to %s, manifest says %s", ErrDigestMismatch, digest, m.Digest)
	}
	return nil
}

// MaxManifestJSONBytes bounds the JSON form that ParseManifest accepts.
const MaxManifestJSONBytes = 160 << 20

// ParseManifest accepts either the canonical binary encoding or the JSON
// form that `p2pctl chunk --json` prints, and validates the result. JSON is
// decoded strictly: unknown fields and trailing data are refused.
func ParseManifest(b []byte) (*Manifest, error) {
	if bytes.HasPrefix(b, []byte(manifestMagic)) {
		return DecodeManifest(b)
	}
	if len(b) > MaxManifestJSONBytes {
		return nil, fmt.Errorf("%w: %d bytes of JSON, limit %d", ErrManifestTooLarge, len(b), MaxManifestJSONBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	m := new(Manifest)
	if err := dec.Decode(m); err != nil {
		return nil, fmt.Errorf("%w: not a binary manifest, and not JSON: %w", ErrManifestCorrupt, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the JSON manifest", ErrManifestCorrupt)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}
