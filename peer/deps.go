package peer

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/clock"
	"github.com/p2pd/p2pd/internal/shape"
	"github.com/p2pd/p2pd/internal/wire/trackerwire"
	"github.com/p2pd/p2pd/peer/store"
	"github.com/p2pd/p2pd/tracker/trackerclient"
)

// Store is what the engine needs of the chunk store; *store.Store is one.
// Implementations are safe for concurrent use. Put must verify that data
// hashes to d (failing with an error wrapping chunker.ErrDigestMismatch)
// and make the chunk visible to Has and ReadChunk only once it is
// completely and durably written. ReadChunk fails with an error wrapping
// store.ErrNotFound for a chunk it does not hold.
type Store interface {
	// Dir is the store's directory; the identity key goes there unless
	// Config.IdentityFile says otherwise.
	Dir() string
	Has(d chunker.Digest) bool
	Put(ctx context.Context, d chunker.Digest, data []byte) error
	ReadChunk(ctx context.Context, d chunker.Digest, dst []byte) ([]byte, error)
	Pin(ctx context.Context, m *chunker.Manifest) error
	Unpin(ctx context.Context, id chunker.Digest) error
	Manifest(ctx context.Context, id chunker.Digest) (*chunker.Manifest, error)
	Manifests() []store.ManifestInfo
	DeleteManifest(ctx context.Context, id chunker.Digest) error
}

var _ Store = (*store.Store)(nil)

// Tracker is what the engine needs of the tracker; *trackerclient.Client
// is one. Announce keeps the engine's records alive and hands out peers.
// Swarm tells a peer that has no manifest yet how many chunks the blob has,
// which every announce must state; it fails with an error wrapping
// trackerclient.ErrNotFound for a blob nobody announces.
type Tracker interface {
	trackerclient.AnnounceClient
	Swarm(ctx context.Context, blob chunker.Digest) (*trackerwire.SwarmStatus, error)
}

var _ Tracker = (*trackerclient.Client)(nil)

// Deps are an Engine's collaborators.
type Deps struct {
	// Store holds the chunks and manifests. Required. The engine does not
	// close it.
	Store Store
	// Tracker is the tracker's client. Required.
	Tracker Tracker
	// Clock times timeouts, bans and announces (default clock.Real()).
	Clock clock.Clock
	// Logger receives the engine's logs (default: discarded).
	Logger *slog.Logger
	// Registry receives the engine's metrics (default: a private
	// registry).
	Registry prometheus.Registerer
	// Link, if set, shapes every TCP connection of the engine's host: the
	// testbed's emulated links. Without it, Config.HostUploadRate and
	// HostDownloadRate build one.
	Link *shape.Link
}
