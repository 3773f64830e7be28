package peerstore

import (
	"fmt"

	"github.com/p2pd/p2pd/chunker"
)

func notFound(blob chunker.Digest) error { return fmt.Errorf("%w: swarm %s", ErrNotFound, blob) }

// conflictError says which NumChunks disagree; it matches ErrConflict.
type conflictError struct {
	blob      chunker.Digest
	have, got uint32
}

func (e *conflictError) Error() string {
	return fmt.Sprintf("%v: swarm %s has %d chunks, announce says %d", ErrConflict, e.blob, e.have, e.got)
}

func (e *conflictError) Unwrap() error { return ErrConflict }
