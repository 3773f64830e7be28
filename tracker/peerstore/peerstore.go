// Package peerstore holds the tracker's soft state: for each blob (a
// swarm), the latest announce of each peer, which expires when the peer
// stops announcing. Nothing here is durable; a tracker that restarts
// rebuilds its state from the next round of announces.
package peerstore

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/wire/trackerwire"
)

// Errors returned by a Store; match them with errors.Is.
var (
	// ErrNotFound: the swarm, or the peer in it, has no live record.
	ErrNotFound = errors.New("peerstore: not found")
	// ErrConflict: an announce's NumChunks differs from that of the live
	// peers of its swarm.
	ErrConflict = errors.New("peerstore: announce conflicts with swarm")
)

// Record is the stored state of one peer in one swarm. Records returned
// by a Store are shared, immutable snapshots: an announce replaces a
// record rather than change it, so callers may keep them but must not
// modify them or their slices.
type Record struct {
	// The fields read when choosing handouts come first, to share cache
	// lines.

	// LastSeen is the time of the latest announce; JoinedAt of the first
	// since the record was created.
	LastSeen time.Time
	JoinedAt time.Time
	// Bitfield holds the chunks the peer has; Have counts them.
	Bitfield  trackerwire.Bitfield
	Have      uint32
	NumChunks uint32
	Complete  bool
	Role      trackerwire.Role
	Zone      string
	Rack      string
	PeerID    string
	Addrs     []string
	// Counters from the latest announce.
	Uploaded              uint64
	Downloaded            uint64
	DownloadedFromOrigins uint64
	// Manifest is the manifest ID an origin announced (zero for peers).
	Manifest chunker.Digest
}

// IsOrigin reports whether r is an origin.
func (r *Record) IsOrigin() bool { return r.Role == trackerwire.RoleOrigin }

// Result is the outcome of an announce.
type Result struct {
	// Record is the peer's record after the announce; nil if NeedFull or
	// the announce was a stop.
	Record *Record
	// Created reports that the peer had no live record before.
	Created bool
	// NeedFull reports that the announce carried a delta but there was no
	// bitfield to apply it to. Nothing was stored.
	NeedFull bool
	// Removed reports that a stop removed a live record.
	Removed bool
}

// CandidateQuery bounds the records Candidates returns.
type CandidateQuery struct {
	// Exclude is a peer ID to leave out (the requester).
	Exclude string
	// MaxPeers bounds the records of role peer; when the swarm has more,
	// a uniform random sample of that many (fewer if some are expired or
	// excluded) is returned. 0 means no bound.
	MaxPeers int
	// MaxOrigins bounds the origins in the same way. 0 means no bound.
	MaxOrigins int
	// Rand draws the samples. Required when a bound applies.
	Rand *rand.Rand
}

// Snapshot is the state of one swarm.
type Snapshot struct {
	Blob      chunker.Digest
	NumChunks uint32
	// Records are the live records, sorted by PeerID.
	Records []*Record
	// UploadedByOrigins and UploadedByPeers sum the Uploaded counters of
	// the swarm's origins and ordinary peers, including the final counts
	// of records that have expired, stopped, or restarted their counters.
	UploadedByOrigins uint64
	UploadedByPeers   uint64
	// Manifest is the manifest ID the live origins announced, if at least
	// one did and none disagrees; zero otherwise.
	Manifest chunker.Digest
}

// Summary describes a swarm in a listing.
type Summary struct {
	Blob      chunker.Digest
	NumChunks uint32
	// Peers counts live records, origins included; Complete counts the
	// complete ones of role peer; Origins counts origins.
	Peers    int
	Complete int
	Origins  int
}

// Stats counts what a store holds. Records that have expired but have
// not been swept yet may be counted.
type Stats struct {
	Swarms int
	Peers  int
}

// Store is the tracker's state. Implementations are safe for concurrent
// use.
type Store interface {
	// Announce applies a validated announce: it creates or replaces the
	// peer's record, applies a delta to the stored bitfield (NeedFull if
	// there is none), or removes the record on EventStopped. A complete
	// peer holds every chunk whatever its announce carries. It returns
	// ErrConflict if the swarm's live peers have a different NumChunks,
	// and an error wrapping trackerwire.ErrInvalid if req fails Validate.
	Announce(ctx context.Context, req *trackerwire.AnnounceRequest) (Result, error)
	// Get returns a peer's live record, or ErrNotFound.
	Get(ctx context.Context, blob chunker.Digest, peerID string) (*Record, error)
	// Candidates returns live records of the swarm to choose handouts
	// from: up to q.MaxOrigins origins and a uniform random sample of up
	// to q.MaxPeers other peers, in no particular order. ErrNotFound if
	// the swarm is unknown.
	Candidates(ctx context.Context, blob chunker.Digest, q CandidateQuery) ([]*Record, error)
	// Swarm returns the swarm's live records and totals, or ErrNotFound
	// if it has none.
	Swarm(ctx context.Context, blob chunker.Digest) (*Snapshot, error)
	// Swarms lists the swarms that have live records, sorted by blob.
	Swarms(ctx context.Context) ([]Summary, error)
	// Expire removes the records not announced within the TTL, and the
	// swarms left empty, and returns the number of records removed.
	Expire(ctx context.Context) (int, error)
	// Stats counts swarms and records.
	Stats(ctx context.Context) (Stats, error)
}
