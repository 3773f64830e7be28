package peer

import "errors"

// Errors returned by this package. Callers match them with errors.Is; the
// message wrapped around each one names the blob, peer or file involved.
var (
	// ErrNotFound: the blob is unknown. From Pull: no peer or origin
	// offered its manifest within Config.ManifestTimeout (the tracker
	// knows no swarm for it, handed out nobody, or everyone answered
	// NotFound). From Status and Remove: the engine holds no such blob.
	ErrNotFound = errors.New("peer: blob not found")
	// ErrIncomplete: Seed was given a manifest whose chunks the store does
	// not all hold.
	ErrIncomplete = errors.New("peer: blob incomplete in the store")
	// ErrVerify: every chunk of a download verified, but the assembled
	// blob does not hash to its digest: the manifest it was fetched with
	// was wrong. The chunks stay in the store, unpinned.
	ErrVerify = errors.New("peer: blob verification failed")
	// ErrClosed: the engine is closed, or closing.
	ErrClosed = errors.New("peer: engine closed")
	// ErrNotStarted: the call needs Start first.
	ErrNotStarted = errors.New("peer: engine not started")
	// ErrRemoved: the blob was removed while a Pull of it was running.
	ErrRemoved = errors.New("peer: blob removed")
	// ErrBadConfig: the Config or Deps are invalid.
	ErrBadConfig = errors.New("peer: invalid config")
	// ErrIdentity: the identity key file cannot be read or written.
	ErrIdentity = errors.New("peer: identity key")
)
