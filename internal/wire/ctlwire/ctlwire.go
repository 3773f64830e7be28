// Package ctlwire holds the types of a peer daemon's local control API,
// spoken between `p2pd peer` and p2pctl over loopback or a unix socket.
package ctlwire

import (
	"time"

	"github.com/p2pd/p2pd/chunker"
)

// Routes of the control API.
const (
	RouteNode   = "GET /v1/node"
	RoutePull   = "POST /v1/pull"
	RouteBlobs  = "GET /v1/blobs"
	RouteData   = "GET /v1/blobs/{digest}/data"
	RouteRemove = "DELETE /v1/blobs/{digest}"
	RouteHealth = "GET /healthz"
	RouteMetric = "GET /metrics"

	PathNode  = "/v1/node"
	PathPull  = "/v1/pull"
	PathBlobs = "/v1/blobs"
)

// MaxRequestBytes bounds a control request body.
const MaxRequestBytes = 64 << 10

// DataPath is the path of a blob's bytes.
func DataPath(d chunker.Digest) string { return PathBlobs + "/" + d.String() + "/data" }

// BlobPath is the path of a blob.
func BlobPath(d chunker.Digest) string { return PathBlobs + "/" + d.String() }

// NodeInfo describes the daemon.
type NodeInfo struct {
	PeerID  string   `json:"peer_id"`
	Addrs   []string `json:"addrs"`
	Role    string   `json:"role"`
	Tracker string   `json:"tracker"`
}

// PullRequest asks the daemon to fetch a blob through the swarm.
type PullRequest struct {
	Digest chunker.Digest `json:"digest"`
}

// Progress is a snapshot of a pull.
type Progress struct {
	Have             int   `json:"have_chunks"`
	Total            int   `json:"total_chunks"`
	Bytes            int64 `json:"bytes"`
	Size             int64 `json:"size"`
	BytesFromPeers   int64 `json:"bytes_from_peers"`
	BytesFromOrigins int64 `json:"bytes_from_origins"`
	Peers            int   `json:"peers"`
}

// PullEvent is one line of the NDJSON stream POST /v1/pull answers with:
// progress lines, then exactly one line with Done or Error.
type PullEvent struct {
	Progress *Progress `json:"progress,omitempty"`
	Done     *Blob     `json:"done,omitempty"`
	Error    *Error    `json:"error,omitempty"`
}

// Blob is a blob the daemon holds or is fetching.
type Blob struct {
	Digest     chunker.Digest `json:"digest"`
	ManifestID chunker.Digest `json:"manifest_digest"`
	Size       int64          `json:"size"`
	Chunks     int            `json:"chunks"`
	Have       int            `json:"have_chunks"`
	Complete   bool           `json:"complete"`
	Seeding    bool           `json:"seeding"`
	// Elapsed is how long the pull took (Done events only).
	Elapsed          time.Duration `json:"elapsed_ns,omitempty"`
	BytesFromPeers   int64         `json:"bytes_from_peers,omitempty"`
	BytesFromOrigins int64         `json:"bytes_from_origins,omitempty"`
}

// Error is an error body, in responses and in PullEvents.
type Error struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// Error codes.
const (
	CodeNotFound   = "NOT_FOUND"
	CodeBadRequest = "BAD_REQUEST"
	CodeInternal   = "INTERNAL"
	CodeCanceled   = "CANCELED"
)
