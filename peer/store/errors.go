package store

import "errors"

// Errors returned by this package. Callers match them with errors.Is; the
// message wrapped around each one names the chunk, manifest or directory
// involved. Integrity failures wrap the chunker package's sentinels instead:
// chunker.ErrDigestMismatch (data does not hash to its digest) and
// chunker.ErrChunkTooLarge (a chunk is over chunker.MaxChunkSizeLimit).
var (
	// ErrNotFound: the chunk or manifest is not in the store (or a manifest
	// is not pinned, for Unpin).
	ErrNotFound = errors.New("store: not found")
	// ErrCapacity: storing a chunk would exceed Config.Capacity and not
	// enough unpinned chunks can be evicted to make room. It is a policy
	// limit, unlike ErrNoSpace.
	ErrCapacity = errors.New("store: capacity exceeded")
	// ErrNoSpace: the filesystem itself ran out of space (ENOSPC or EDQUOT).
	// The underlying syscall error is wrapped too, so errors.Is(err,
	// syscall.ENOSPC) also holds.
	ErrNoSpace = errors.New("store: no space left on device")
	// ErrPinned: the operation would remove a chunk or manifest that a
	// pinned manifest needs.
	ErrPinned = errors.New("store: pinned")
	// ErrClosed: the store, or a BlobReader, has been closed.
	ErrClosed = errors.New("store: closed")
	// ErrLocked: another Store (in this or another process) has the
	// directory open.
	ErrLocked = errors.New("store: directory in use")
	// ErrBadConfig: the Config is invalid.
	ErrBadConfig = errors.New("store: invalid config")
	// ErrMustVerify: OpenChunk cannot hand out a chunk's file, because
	// Config.VerifyOnRead wants this read of it hashed: read it with
	// ReadChunk.
	ErrMustVerify = errors.New("store: chunk must be verified on read")

	// errCorruptFile (internal): a chunk file's size alone shows it is
	// damaged. Callers see chunker.ErrDigestMismatch instead.
	errCorruptFile = errors.New("corrupt chunk file")
)
