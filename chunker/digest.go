package chunker

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// DigestPrefix is the algorithm prefix of a Digest's OCI string form.
const DigestPrefix = "sha256:"

// Digest is a SHA-256 content identifier. Its string form is the OCI one,
// "sha256:<64 lowercase hex>", so a container layer keeps its registry digest.
// The zero Digest is not the digest of anything; IsZero reports it.
type Digest [sha256.Size]byte

// Sum returns the Digest of b.
func Sum(b []byte) Digest { return sha256.Sum256(b) }

// String returns "sha256:<hex>".
func (d Digest) String() string { return DigestPrefix + hex.EncodeToString(d[:]) }

// Hex returns the 64 hex characters without the algorithm prefix.
func (d Digest) Hex() string { return hex.EncodeToString(d[:]) }

// IsZero reports whether d is the zero value.
func (d Digest) IsZero() bool { return d == Digest{} }

// MarshalText implements encoding.TextMarshaler.
func (d Digest) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Digest) UnmarshalText(b []byte) error {
	p, err := ParseDigest(string(b))
	if err != nil {
		return err
	}
	*d = p
	return nil
}

// ParseDigest parses the OCI form "sha256:<64 lowercase hex>". It rejects
// other algorithms, upper-case hex and any other length, so that every
// Digest has exactly one string form.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	rest, ok := strings.CutPrefix(s, DigestPrefix)
	if !ok {
		return d, fmt.Errorf("%w: %q: want prefix %q", ErrBadDigest, truncate(s), DigestPrefix)
	}
	if len(rest) != 2*len(d) {
		return d, fmt.Errorf("%w: %q: want %d hex characters, have %d", ErrBadDigest, truncate(s), 2*len(d), len(rest))
	}
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return d, fmt.Errorf("%w: %q: character %d is not lowercase hex", ErrBadDigest, truncate(s), len(DigestPrefix)+i)
		}
	}
	if _, err := hex.Decode(d[:], []byte(rest)); err != nil {
		return d, fmt.Errorf("%w: %q: %w", ErrBadDigest, truncate(s), err)
	}
	return d, nil
}

// truncate keeps error messages about hostile input short.
func truncate(s string) string {
	const max = 80
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
