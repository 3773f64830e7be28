package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"

	"github.com/p2pd/p2pd/chunker"
)

// VerifyReport is the outcome of Verify.
type VerifyReport struct {
	// Checked and CheckedBytes count the chunks read and hashed, corrupt
	// ones included.
	Checked      int
	CheckedBytes int64
	// Dropped and DroppedBytes count the chunks whose data did not match
	// their digest (or whose file had the wrong size) and were deleted;
	// DroppedDigests lists them.
	Dropped        int
	DroppedBytes   int64
	DroppedDigests []chunker.Digest
	// Missing counts indexed chunks whose file had disappeared; they were
	// removed from the index.
	Missing int
}

// Verify re-reads and re-hashes every stored chunk, deleting those that do
// not match their digest. Puts, reads and evictions may run meanwhile;
// chunks stored after Verify starts are not checked. If ctx is cancelled,
// Verify stops and returns the report so far with the context's error.
func (s *Store) Verify(ctx context.Context) (VerifyReport, error) {
	var rep VerifyReport
	if err := s.begin(); err != nil {
		return rep, fmt.Errorf("store: verify: %w", err)
	}
	defer s.end()
	s.mu.Lock()
	entries := make([]*entry, 0, len(s.index))
	for _, e := range s.index {
		entries = append(entries, e)
	}
	s.mu.Unlock()
	// Digest order spreads the reads evenly over the shard directories.
	slices.SortFunc(entries, func(a, b *entry) int { return cmp.Compare(a.digest.Hex(), b.digest.Hex()) })

	var buf []byte
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return rep, fmt.Errorf("store: verify: %w", err)
		}
		b, err := readChunkFile(s.chunkPath(e.digest), e.size, buf)
		if errors.Is(err, fs.ErrNotExist) {
			if s.dropIfCurrent(e, "file missing") {
				rep.Missing++
			}
			continue
		}
		if err != nil && !errors.Is(err, errCorruptFile) {
			return rep, s.ioErr("verify chunk "+e.digest.String(), err)
		}
		if err == nil {
			buf = b
		}
		rep.Checked++
		rep.CheckedBytes += e.size
		if err == nil && chunker.Sum(b) == e.digest {
			continue
		}
		if s.dropIfCurrent(e, "verify: digest mismatch") {
			rep.Dropped++
			rep.DroppedBytes += e.size
			rep.DroppedDigests = append(rep.DroppedDigests, e.digest)
		}
	}
	s.log.Info("verified chunks", "checked", rep.Checked, "bytes", rep.CheckedBytes,
		"dropped", rep.Dropped, "dropped_bytes", rep.DroppedBytes, "missing", rep.Missing)
	return rep, nil
}
