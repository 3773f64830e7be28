// Package trackerwire defines the tracker's HTTP/JSON API, version 1: the
// routes, the request and response bodies, their hard limits and their
// validation. The tracker server, its Go client and the CLI share it, so
// the wire format is written down in exactly one place.
//
// # Routes
//
//	POST /v1/announce          AnnounceRequest  -> AnnounceResponse
//	GET  /v1/swarms            -                -> SwarmList
//	GET  /v1/swarms/{digest}   -                -> SwarmStatus
//	GET  /healthz              -                -> Health
//
// A closed tracker takes only requests signed with a scoped token (an
// "Authorization: P2PD-HMAC-SHA256 ..." header over the method, target,
// time, a nonce and the body; see package internal/auth and
// docs/security.md): announces the announce token, reads the announce or
// admin token. Each signature is accepted once, within the tracker's clock
// skew; a resent announce is signed again.
//
// Errors are an ErrorResponse with status 400 (bad input), 401 (a
// signature missing, wrong, stale or replayed), 403 (a token whose scope
// may not do this), 404 (unknown swarm or route), 405 (wrong method, with
// an Allow header), 409 (an announce that contradicts the swarm) or 500.
//
// # Announces and bitfields
//
// A peer announces each blob it serves or fetches every
// AnnounceResponse.Interval seconds. The chunks it holds are a bitmap
// (Bitfield) of NumChunks bits, sent either in full or as a Delta of
// chunk indexes added since the previous announce that the tracker
// acknowledged. The tracker ORs a delta into the bitmap it stored for the
// peer; if it has none (the first announce, after the peer expired, or
// after a tracker restart, since the tracker keeps only soft state), it
// stores nothing and answers NeedFull, and the peer announces again at
// once with its full Bitfield. Applying a delta twice is harmless, so a
// peer that is not sure an announce arrived may resend it. A peer that
// lost chunks sends a full Bitfield. A peer that is Complete may omit both:
// it holds every chunk.
package trackerwire

import (
	"time"

	"github.com/p2pd/p2pd/chunker"
)

// Route patterns for Go 1.22 http.ServeMux, and the paths they match.
const (
	PathAnnounce = "/v1/announce"
	PathSwarms   = "/v1/swarms"
	PathHealth   = "/healthz"
	PathMetrics  = "/metrics"

	RouteAnnounce = "POST " + PathAnnounce
	RouteSwarms   = "GET " + PathSwarms
	RouteSwarm    = "GET " + PathSwarms + "/{" + SwarmPathValue + "}"
	RouteHealth   = "GET " + PathHealth
	RouteMetrics  = "GET " + PathMetrics

	// SwarmPathValue is the name of the digest wildcard in RouteSwarm.
	SwarmPathValue = "digest"
)

// SwarmPath returns the path of the status of blob's swarm.
func SwarmPath(blob chunker.Digest) string { return PathSwarms + "/" + blob.String() }

// Hard limits. The tracker rejects requests beyond them with 400.
const (
	// MaxRequestBytes bounds a request body. A full bitfield of
	// MaxNumChunks bits is 128 KiB, about 171 KiB in base64.
	MaxRequestBytes = 1 << 20
	// MaxNumChunks bounds NumChunks; it is the manifest limit.
	MaxNumChunks = chunker.MaxManifestChunks
	// MaxDeltaAdded bounds len(Delta.Added); a peer with more news sends a
	// full bitfield. 65536 indexes of up to 7 digits fit in MaxRequestBytes.
	MaxDeltaAdded = 1 << 16
	// MaxAddrs bounds len(Addrs); MaxAddrLen bounds each address.
	MaxAddrs   = 32
	MaxAddrLen = 256
	// MaxPeerIDLen bounds PeerID.
	MaxPeerIDLen = 128
	// MaxLabelLen bounds Zone and Rack.
	MaxLabelLen = 64
	// MaxNumWant bounds NumWant.
	MaxNumWant = 1000
)

// Role is what a peer is in a swarm.
type Role string

// Roles.
const (
	// RolePeer is an ordinary member of the fleet that fetches the blob
	// and serves what it holds.
	RolePeer Role = "peer"
	// RoleOrigin is a source of the blob of last resort (a registry
	// mirror, a seed box). The tracker hands out few of them.
	RoleOrigin Role = "origin"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RolePeer || r == RoleOrigin }

// Event marks an announce that changes a peer's life cycle.
type Event string

// Events.
const (
	// EventNone is a periodic announce.
	EventNone Event = ""
	// EventStarted is the first announce of a peer for a blob.
	EventStarted Event = "started"
	// EventCompleted is sent once, when the peer has the whole blob.
	EventCompleted Event = "completed"
	// EventStopped removes the peer from the swarm at once instead of
	// letting it expire. Its bitfield and addresses may be omitted.
	EventStopped Event = "stopped"
)

// Valid reports whether e is a known event.
func (e Event) Valid() bool {
	switch e {
	case EventNone, EventStarted, EventCompleted, EventStopped:
		return true
	}
	return false
}

// Delta lists the chunk indexes a peer gained since its last acknowledged
// announce. Order and duplicates do not matter.
type Delta struct {
	Added []uint32 `json:"added"`
}

// AnnounceRequest is the body of POST /v1/announce: one peer's state for
// one blob. At most one of Bitfield and Delta is set; neither is allowed
// only if Complete or Event is EventStopped.
type AnnounceRequest struct {
	// Blob is the digest of the whole blob: the swarm's key.
	Blob chunker.Digest `json:"blob"`
	// PeerID is the libp2p peer ID ("12D3KooW..."), opaque to the tracker.
	PeerID string `json:"peer_id"`
	// Addrs are the peer's dialable multiaddrs ("/ip4/10.0.0.1/tcp/4001"),
	// opaque to the tracker. At least one unless Event is EventStopped.
	Addrs []string `json:"addrs,omitempty"`
	Role  Role     `json:"role"`
	// NumChunks is the number of chunks in the blob's manifest. Every
	// peer of a swarm must agree on it.
	NumChunks uint32 `json:"num_chunks"`
	// Bitfield is the full bitmap of the chunks the peer holds, chunk i
	// in bit 7-i%8 of byte i/8 (most significant bit first), exactly
	// (NumChunks+7)/8 bytes with the padding bits zero. Base64 in JSON.
	Bitfield Bitfield `json:"bitfield,omitempty"`
	// Delta lists chunks added since the last acknowledged announce.
	Delta *Delta `json:"delta,omitempty"`
	// Complete reports that the peer holds, and has verified, the whole
	// blob. A full Bitfield sent with it must have every bit set.
	Complete bool `json:"complete,omitempty"`
	// Uploaded and Downloaded count the blob's payload bytes the peer has
	// sent to and received from other peers (origins included) since it
	// started. They only grow; a smaller value means the peer restarted.
	Uploaded   uint64 `json:"uploaded"`
	Downloaded uint64 `json:"downloaded"`
	// DownloadedFromOrigins is the part of Downloaded that came from
	// origins.
	DownloadedFromOrigins uint64 `json:"downloaded_from_origins,omitempty"`
	// Zone and Rack are optional topology labels; the tracker prefers
	// handing out peers that share them.
	Zone  string `json:"zone,omitempty"`
	Rack  string `json:"rack,omitempty"`
	Event Event  `json:"event,omitempty"`
	// Manifest is the ID (chunker.Manifest.ID) of the manifest an origin
	// made when it chunked the blob. Only origins send it. The tracker
	// passes it on in SwarmStatus.Manifest, so that a peer can trust a
	// manifest it got from any peer without hashing the whole blob again.
	Manifest chunker.Digest `json:"manifest,omitzero"`
	// NumWant, if set, is the most peers the peer wants handed out this
	// time, 0..MaxNumWant: a peer that has enough connections, or a
	// complete one that dials nobody, asks for few or none, and spares the
	// tracker choosing and encoding them. Absent means the tracker's
	// default (its handout limit), as for peers that predate the field.
	// The tracker never hands out more than its limit.
	NumWant *int `json:"num_want,omitempty"`
}

// WantPeers returns a NumWant of n, for AnnounceRequest.NumWant.
func WantPeers(n int) *int { return &n }

// AnnounceResponse is the reply to an announce.
type AnnounceResponse struct {
	// Interval is the number of seconds the peer should wait before its
	// next announce (the peer adds jitter).
	Interval int64 `json:"interval"`
	// Peers are the peers to connect to, best first; origins come last.
	Peers []PeerInfo `json:"peers"`
	// NeedFull asks the peer to announce again at once with its full
	// Bitfield: the tracker had no state to apply a Delta to. Peers is
	// empty in that case.
	NeedFull bool `json:"need_full,omitempty"`
}

// IntervalDuration returns Interval as a duration.
func (r *AnnounceResponse) IntervalDuration() time.Duration {
	return time.Duration(r.Interval) * time.Second
}

// PeerInfo is a peer handed out by the tracker.
type PeerInfo struct {
	PeerID   string   `json:"peer_id"`
	Addrs    []string `json:"addrs"`
	Role     Role     `json:"role"`
	Complete bool     `json:"complete,omitempty"`
	// Have is the number of chunks the peer holds.
	Have uint32 `json:"have"`
	Zone string `json:"zone,omitempty"`
	Rack string `json:"rack,omitempty"`
}

// SwarmStatus is the body of GET /v1/swarms/{digest}.
type SwarmStatus struct {
	Blob      chunker.Digest `json:"blob"`
	NumChunks uint32         `json:"num_chunks"`
	// Peers are the live records, sorted by PeerID, origins included.
	Peers []PeerStatus `json:"peers"`
	// Complete counts the peers of role "peer" that are complete;
	// Origins counts the peers of role "origin".
	Complete int `json:"complete"`
	Origins  int `json:"origins"`
	// BytesFromOrigins and BytesFromPeers are the bytes uploaded by
	// origins and by ordinary peers, from their announced Uploaded
	// counters, including peers that have since left the swarm (while the
	// swarm lives on the tracker).
	BytesFromOrigins uint64 `json:"bytes_from_origins"`
	BytesFromPeers   uint64 `json:"bytes_from_peers"`
	// Manifest is the manifest ID the swarm's live origins announced, when
	// at least one did and they all agree; zero otherwise.
	Manifest chunker.Digest `json:"manifest,omitzero"`
	// Replication, when asked for (SwarmChunksQuery), counts for each
	// chunk the live peers of role peer that hold it.
	Replication []uint32 `json:"replication,omitempty"`
}

// SwarmChunksQuery is the query that asks GET /v1/swarms/{digest} for
// SwarmStatus.Replication.
const SwarmChunksQuery = "chunks=1"

// PeerStatus is one peer's record in a SwarmStatus.
type PeerStatus struct {
	PeerID                string    `json:"peer_id"`
	Role                  Role      `json:"role"`
	Have                  uint32    `json:"have"`
	Complete              bool      `json:"complete"`
	Uploaded              uint64    `json:"uploaded"`
	Downloaded            uint64    `json:"downloaded"`
	DownloadedFromOrigins uint64    `json:"downloaded_from_origins,omitempty"`
	Zone                  string    `json:"zone,omitempty"`
	Rack                  string    `json:"rack,omitempty"`
	JoinedAt              time.Time `json:"joined_at"`
	LastSeen              time.Time `json:"last_seen"`
}

// SwarmList is the body of GET /v1/swarms, sorted by Blob.
type SwarmList struct {
	Swarms []SwarmSummary `json:"swarms"`
}

// SwarmSummary is one swarm in a SwarmList.
type SwarmSummary struct {
	Blob      chunker.Digest `json:"blob"`
	NumChunks uint32         `json:"num_chunks"`
	// Peers counts live records, origins included.
	Peers    int `json:"peers"`
	Complete int `json:"complete"`
	Origins  int `json:"origins"`
}

// Health is the body of GET /healthz.
type Health struct {
	Status string `json:"status"`
}

// ErrorResponse is the body of every error reply.
type ErrorResponse struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// Error codes in ErrorResponse.Code.
const (
	CodeMalformed        = "malformed"          // not JSON, or not of the expected shape
	CodeTooLarge         = "too_large"          // body over MaxRequestBytes
	CodeInvalid          = "invalid"            // a field fails Validate
	CodeBadDigest        = "bad_digest"         // the {digest} in the path is malformed
	CodeNotFound         = "not_found"          // no such swarm or route
	CodeMethodNotAllowed = "method_not_allowed" // see the Allow header
	CodeConflict         = "conflict"           // NumChunks differs from the swarm's
	CodeUnauthorized     = "unauthorized"       // signature missing, wrong, stale or replayed (401), or scope refused (403)
	CodeInternal         = "internal"
)
