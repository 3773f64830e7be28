// Package originwire defines the origin's HTTP API, version 1: the routes,
// the JSON bodies, the headers and the error codes. The origin server, its
// Go client and the CLI share it, so the wire format is written down in
// exactly one place. It imports nothing of the module but the chunker.
//
// # Routes
//
//	PUT  /v1/blobs                    raw blob bytes  -> 201 BlobInfo (200 if already stored)
//	POST /v1/blobs                    same as PUT
//	GET  /v1/blobs                    -               -> BlobList
//	GET  /v1/blobs/{digest}           -               -> BlobInfo
//	GET  /v1/blobs/{digest}/manifest  -               -> canonical binary manifest (ManifestMediaType)
//	GET  /v1/blobs/{digest}/data      -               -> the blob's bytes (Range requests supported)
//	DELETE /v1/blobs/{digest}         -               -> 204
//	GET  /healthz                     -               -> Health
//	GET  /metrics                     Prometheus text format
//
// {digest} is always the blob's digest in OCI form ("sha256:<hex>"), never
// the manifest's. A push may name the digest it expects, in the
// QueryDigest query parameter or the HeaderExpectedDigest header; a blob
// that hashes otherwise is refused with CodeDigestMismatch and nothing of
// it is kept. A closed origin takes only requests signed with a scoped
// token (an "Authorization: P2PD-HMAC-SHA256 ..." header, see package
// internal/auth and docs/security.md): pushes the push token, deletes the
// admin token, reads any token; /healthz and /metrics stay open.
//
// Errors are an ErrorResponse with status 400 (bad input, digest mismatch),
// 401 (missing, wrong, stale or replayed signature, with a
// WWW-Authenticate header), 403 (a token whose scope may not do this), 404
// (unknown blob or route), 405 (wrong method, with an Allow header), 413
// (blob over the origin's size limit), 500, 503 (store closed) or 507
// (store full).
package originwire

import "github.com/p2pd/p2pd/chunker"

// Paths, and route patterns for Go 1.22 http.ServeMux.
const (
	PathBlobs   = "/v1/blobs"
	PathHealth  = "/healthz"
	PathMetrics = "/metrics"

	// DigestPathValue is the name of the digest wildcard in the blob routes.
	DigestPathValue = "digest"

	RoutePushPut    = "PUT " + PathBlobs
	RoutePushPost   = "POST " + PathBlobs
	RouteList       = "GET " + PathBlobs
	RouteBlob       = "GET " + PathBlobs + "/{" + DigestPathValue + "}"
	RouteManifest   = "GET " + PathBlobs + "/{" + DigestPathValue + "}/manifest"
	RouteData       = "GET " + PathBlobs + "/{" + DigestPathValue + "}/data"
	RouteDelete     = "DELETE " + PathBlobs + "/{" + DigestPathValue + "}"
	RouteHealth     = "GET " + PathHealth
	RouteMetrics    = "GET " + PathMetrics
	PatternBlob     = PathBlobs + "/{" + DigestPathValue + "}"
	PatternManifest = PatternBlob + "/manifest"
	PatternData     = PatternBlob + "/data"
)

// Push parameters and headers.
const (
	// QueryDigest is the query parameter of a push naming the expected
	// blob digest.
	QueryDigest = "digest"
	// HeaderExpectedDigest is the header form of QueryDigest. If both are
	// given they must agree.
	HeaderExpectedDigest = "X-P2PD-Expected-Digest"
	// HeaderBlobDigest and HeaderManifestDigest are sent with the
	// manifest and data routes.
	HeaderBlobDigest     = "X-P2PD-Blob-Digest"
	HeaderManifestDigest = "X-P2PD-Manifest-Digest"
	// ManifestMediaType is the Content-Type of a canonical binary manifest.
	ManifestMediaType = "application/vnd.p2pd.manifest.v1"
	// DataMediaType is the Content-Type of blob data.
	DataMediaType = "application/octet-stream"
)

// BlobPath returns the path of blob d's summary (and of its DELETE).
func BlobPath(d chunker.Digest) string { return PathBlobs + "/" + d.String() }

// ManifestPath returns the path of blob d's canonical manifest.
func ManifestPath(d chunker.Digest) string { return BlobPath(d) + "/manifest" }

// DataPath returns the path of blob d's bytes.
func DataPath(d chunker.Digest) string { return BlobPath(d) + "/data" }

// BlobInfo summarizes a stored blob. It is the answer to a push and to GET
// /v1/blobs/{digest}.
type BlobInfo struct {
	// Digest is the SHA-256 of the whole blob.
	Digest chunker.Digest `json:"digest"`
	// ManifestDigest is the manifest's own digest (chunker.Manifest.ID),
	// which peers use to fetch and check the manifest.
	ManifestDigest chunker.Digest `json:"manifest_digest"`
	Size           int64          `json:"size"`
	Chunks         int            `json:"chunks"`
}

// BlobList is the body of GET /v1/blobs, sorted by Digest.
type BlobList struct {
	Blobs []BlobInfo `json:"blobs"`
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
	CodeBadRequest          = "BAD_REQUEST"          // malformed request, or a push body that ended early
	CodeBadDigest           = "BAD_DIGEST"           // a digest in the path, query or header is malformed
	CodeDigestMismatch      = "DIGEST_MISMATCH"      // the pushed blob does not hash to the expected digest (400)
	CodeUnauthorized        = "UNAUTHORIZED"         // signature missing, wrong, stale or replayed (401), or scope refused (403)
	CodeNotFound            = "NOT_FOUND"            // no such blob or route (404)
	CodeMethodNotAllowed    = "METHOD_NOT_ALLOWED"   // see the Allow header (405)
	CodeTooLarge            = "TOO_LARGE"            // blob over the size limit or the manifest limit (413)
	CodeInsufficientStorage = "INSUFFICIENT_STORAGE" // the store is full (507)
	CodeUnavailable         = "UNAVAILABLE"          // the store is closed (503)
	CodeSeedFailed          = "SEED_FAILED"          // stored, but the peer engine refused to seed it (500)
	CodeInternal            = "INTERNAL"             // any other failure (500)
)
