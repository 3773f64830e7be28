package chunker

import "errors"

// Errors returned by this package. Callers match them with errors.Is; the
// messages wrapped around them say which value was wrong and why.
var (
	// ErrBadDigest: a digest string is not "sha256:" followed by 64 lowercase hex characters.
	ErrBadDigest = errors.New("chunker: malformed digest")
	// ErrBadConfig: chunk size parameters are out of range or inconsistent.
	ErrBadConfig = errors.New("chunker: invalid config")
	// ErrManifestCorrupt: a manifest's encoding is truncated, malformed or not canonical.
	ErrManifestCorrupt = errors.New("chunker: corrupt manifest")
	// ErrManifestTooLarge: a manifest exceeds MaxManifestChunks or MaxManifestBytes.
	ErrManifestTooLarge = errors.New("chunker: manifest too large")
	// ErrManifestInconsistent: a manifest decodes but contradicts itself
	// (sizes do not sum to the blob size, a chunk is over the maximum, ...).
	ErrManifestInconsistent = errors.New("chunker: inconsistent manifest")
	// ErrUnsupportedVersion: a manifest has a version this build cannot read.
	ErrUnsupportedVersion = errors.New("chunker: unsupported manifest version")
	// ErrDigestMismatch: data does not hash to the digest it claims.
	ErrDigestMismatch = errors.New("chunker: digest mismatch")
	// ErrSizeMismatch: data is longer or shorter than the manifest says.
	ErrSizeMismatch = errors.New("chunker: size mismatch")
	// ErrChunkTooLarge: a chunk is larger than the maximum chunk size.
	ErrChunkTooLarge = errors.New("chunker: chunk too large")
)
