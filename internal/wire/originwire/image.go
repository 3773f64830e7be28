package originwire

// The image routes let peers pull container images through the origin,
// which fetches them from the upstream registries it is configured with
// (see origin.UpstreamConfig):
//
//	GET  /v1/images/manifest?registry=R&repo=N&ref=X  -> the manifest bytes as upstream serves them
//	HEAD /v1/images/manifest?...                      -> the same headers
//	GET  /v1/images/tags?registry=R&repo=N&n=K&last=T -> ImageTags: a page of the repository's tags
//	POST /v1/images/blob?registry=R&repo=N&digest=D   -> BlobInfo: the layer is stored and seeded
//	POST /v1/images/preheat?ref=REF                   -> Preheat: every blob of the image stored and seeded
//
// R is the upstream registry's name as clients know it ("docker.io", the
// ns parameter containerd adds to mirror requests); empty means the
// origin's default registry. A manifest answer carries the manifest's
// media type as Content-Type and its digest in HeaderImageDigest. A blob
// is streamed from upstream into the chunk store and verified against D;
// nothing of it is kept on a mismatch.
const (
	PathImageManifest = "/v1/images/manifest"
	PathImageBlob     = "/v1/images/blob"
	PathImageTags     = "/v1/images/tags"
	PathImagePreheat  = "/v1/images/preheat"

	RouteImageManifest = "GET " + PathImageManifest
	RouteImageBlob     = "POST " + PathImageBlob
	RouteImageTags     = "GET " + PathImageTags
	RouteImagePreheat  = "POST " + PathImagePreheat

	QueryRegistry = "registry"
	QueryRepo     = "repo"
	QueryRef      = "ref"
	// QueryN and QueryLast are the distribution spec's tag list
	// pagination, passed to the upstream as they are: at most n tags,
	// those after last.
	QueryN    = "n"
	QueryLast = "last"

	// HeaderImageDigest is the digest of a manifest answer, as the
	// distribution spec's Docker-Content-Digest.
	HeaderImageDigest = "Docker-Content-Digest"

	// MaxImageManifestSize bounds a manifest or index, at the origin and
	// at its clients (the distribution spec suggests registries accept at
	// least 4 MiB).
	MaxImageManifestSize = 4 << 20
)

// Error codes of the image routes.
const (
	CodeManifestUnknown      = "MANIFEST_UNKNOWN"       // upstream has no such tag or manifest (404)
	CodeBlobUnknown          = "BLOB_UNKNOWN"           // upstream has no such blob (404)
	CodeNameUnknown          = "NAME_UNKNOWN"           // upstream has no such repository (404, tag lists)
	CodeRegistryUnknown      = "REGISTRY_UNKNOWN"       // no upstream is configured under that name (404)
	CodeUpstreamDenied       = "UPSTREAM_DENIED"        // upstream refused the origin's credentials (502)
	CodeUpstreamUnavailable  = "UPSTREAM_UNAVAILABLE"   // upstream cannot be reached or failed (502)
	CodeUpstreamDigestFailed = "UPSTREAM_DIGEST_FAILED" // upstream sent bytes that do not hash to the digest (502)
)

// Preheat is the answer of the preheat route: the image's manifests (the
// index and each platform's manifest) and every blob (configs and layers)
// now stored at the origin.
type Preheat struct {
	Ref       string     `json:"ref"`
	Digest    string     `json:"digest"`
	Manifests []string   `json:"manifests"`
	Blobs     []BlobInfo `json:"blobs"`
}

// ImageTags is the answer of the tags route: a page of the repository's
// tags as the upstream registry lists them (lexically), and whether it
// has more after the last of them.
type ImageTags struct {
	Tags []string `json:"tags"`
	More bool     `json:"more"`
}
