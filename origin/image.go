package origin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/wire/originwire"
	"github.com/p2pd/p2pd/origin/upstream"
)

// Upstream fetches images from real registries; *upstream.Client
// implements it. Errors wrap upstream's sentinel errors (ErrNotFound,
// ErrDenied, ErrUnavailable, ErrUnknownRegistry, ErrBadReference,
// ErrTooLarge). It must be safe for concurrent use.
type Upstream interface {
	Manifest(ctx context.Context, registry, repo, ref string) (*upstream.Manifest, error)
	// Blob streams a blob's bytes; the origin verifies them.
	Blob(ctx context.Context, registry, repo, digest string) (io.ReadCloser, int64, error)
	// Tags returns a page of a repository's tags: at most n (n <= 0: the
	// registry's page), after last.
	Tags(ctx context.Context, registry, repo string, n int, last string) (*upstream.Tags, error)
}

var _ Upstream = (*upstream.Client)(nil)

// imageMetrics count what the origin fetched from upstream registries.
type imageMetrics struct {
	requests *prometheus.CounterVec
	bytes    prometheus.Counter
	waiting  prometheus.Gauge
}

func newImageMetrics(reg prometheus.Registerer) (*imageMetrics, error) {
	m := &imageMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2pd_origin_upstream_requests_total",
			Help: "Fetches from upstream registries, by kind (manifest, blob) and result (ok, cached, not_found, denied, unavailable, error).",
		}, []string{"kind", "result"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2pd_origin_upstream_blob_bytes_total",
			Help: "Blob bytes read from upstream registries, including fetches that failed.",
		}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "p2pd_origin_upstream_blob_waiting",
			Help: "Requests waiting for a blob being ingested from an upstream registry (requests for one blob share one fetch).",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.bytes, m.waiting} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("origin: registering metrics: %w", err)
		}
	}
	return m, nil
}

func resultOf(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, upstream.ErrNotFound):
		return "not_found"
	case errors.Is(err, upstream.ErrDenied):
		return "denied"
	case errors.Is(err, upstream.ErrUnavailable):
		return "unavailable"
	}
	return "error"
}

// imageError answers an upstream failure.
func (s *Server) imageError(w http.ResponseWriter, r *http.Request, notFoundCode string, err error) {
	switch {
	case errors.Is(err, upstream.ErrNotFound):
		writeError(w, http.StatusNotFound, notFoundCode, err.Error())
	case errors.Is(err, upstream.ErrUnknownRegistry):
		writeError(w, http.StatusNotFound, originwire.CodeRegistryUnknown, err.Error())
	case errors.Is(err, upstream.ErrBadReference):
		writeError(w, http.StatusBadRequest, originwire.CodeBadRequest, err.Error())
	case errors.Is(err, upstream.ErrDenied):
		s.log.WarnContext(r.Context(), "upstream refused the credentials", "err", err)
		writeError(w, http.StatusBadGateway, originwire.CodeUpstreamDenied, err.Error())
	case errors.Is(err, upstream.ErrTooLarge):
		writeError(w, http.StatusBadGateway, originwire.CodeTooLarge, err.Error())
	default:
		s.log.WarnContext(r.Context(), "upstream failed", "err", err)
		writeError(w, http.StatusBadGateway, originwire.CodeUpstreamUnavailable, err.Error())
	}
}

func (s *Server) noUpstream(w http.ResponseWriter) bool {
	if s.upstream == nil {
		writeError(w, http.StatusNotFound, originwire.CodeRegistryUnknown, "this origin has no upstream registries configured")
		return true
	}
	return false
}

func (s *Server) handleImageManifest(w http.ResponseWriter, r *http.Request) {
	if s.noUpstream(w) {
		return
	}
	q := r.URL.Query()
	m, err := s.upstream.Manifest(r.Context(), q.Get(originwire.QueryRegistry), q.Get(originwire.QueryRepo), q.Get(originwire.QueryRef))
	s.images.requests.WithLabelValues("manifest", resultOf(err)).Inc()
	if err != nil {
		s.imageError(w, r, originwire.CodeManifestUnknown, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", m.MediaType)
	h.Set("Content-Length", strconv.Itoa(len(m.Body)))
	h.Set(originwire.HeaderImageDigest, m.Digest)
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(m.Body)
	}
}

func (s *Server) handleImageTags(w http.ResponseWriter, r *http.Request) {
	if s.noUpstream(w) {
		return
	}
	q := r.URL.Query()
	n := 0
	if v := q.Get(originwire.QueryN); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, originwire.CodeBadRequest, fmt.Sprintf("n %q is not a count", v))
			return
		}
	}
	tags, err := s.upstream.Tags(r.Context(), q.Get(originwire.QueryRegistry), q.Get(originwire.QueryRepo), n, q.Get(originwire.QueryLast))
	s.images.requests.WithLabelValues("tags", resultOf(err)).Inc()
	if err != nil {
		s.imageError(w, r, originwire.CodeNameUnknown, err)
		return
	}
	writeJSON(w, http.StatusOK, &originwire.ImageTags{Tags: tags.Tags, More: tags.More})
}

func (s *Server) handleImageBlob(w http.ResponseWriter, r *http.Request) {
	if s.noUpstream(w) {
		return
	}
	q := r.URL.Query()
	d, err := chunker.ParseDigest(q.Get(originwire.QueryDigest))
	if err != nil {
		writeError(w, http.StatusBadRequest, originwire.CodeBadDigest, err.Error())
		return
	}
	info, err := s.ingest(r.Context(), q.Get(originwire.QueryRegistry), q.Get(originwire.QueryRepo), d)
	if err != nil {
		s.ingestError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, &info)
}

func (s *Server) ingestError(w http.ResponseWriter, r *http.Request, err error) {
	var o stored
	if errors.As(err, &o) {
		o.write(w)
		return
	}
	s.imageError(w, r, originwire.CodeBlobUnknown, err)
}

// ingest makes sure blob d of repo in registry is stored and seeded:
// unless it is stored already it streams it from upstream into
// storeBlob, as a push would, which chunks, stores and verifies it
// against d, and keeps nothing of it on a mismatch. Concurrent ingests of
// one blob share one download. It runs to its end even if the caller
// that started it goes away: the others wait for it, and each caller
// waits only as long as its own ctx lets it. A failure to store it is a
// stored.
func (s *Server) ingest(ctx context.Context, registry, repo string, d chunker.Digest) (originwire.BlobInfo, error) {
	s.mu.Lock()
	info, ok := s.blobs[d]
	s.mu.Unlock()
	if ok {
		return info, nil
	}
	shared := context.WithoutCancel(ctx)
	ch := s.ingests.DoChan(d.String(), func() (any, error) {
		return s.ingestOnce(shared, registry, repo, d)
	})
	s.images.waiting.Inc()
	defer s.images.waiting.Dec()
	select {
	case r := <-ch:
		if r.Err != nil {
			return originwire.BlobInfo{}, r.Err
		}
		return r.Val.(originwire.BlobInfo), nil
	case <-ctx.Done():
		return originwire.BlobInfo{}, ctx.Err()
	}
}

func (s *Server) ingestOnce(ctx context.Context, registry, repo string, d chunker.Digest) (originwire.BlobInfo, error) {
	body, _, err := s.upstream.Blob(ctx, registry, repo, d.String())
	if err != nil {
		s.images.requests.WithLabelValues("blob", resultOf(err)).Inc()
		return originwire.BlobInfo{}, err
	}
	defer body.Close()
	cr := &upstreamReader{r: body, bytes: s.images.bytes}
	out := s.storeBlob(ctx, cr, &d, "upstream:"+registry, nil)
	if out.ok() {
		s.images.requests.WithLabelValues("blob", "ok").Inc()
		s.log.InfoContext(ctx, "blob ingested from upstream", "registry", registry, "repo", repo, "blob", d, "size", out.info.Size)
		return out.info, nil
	}
	switch {
	case cr.err != nil && strings.Contains(cr.err.Error(), "error verifying"):
		// go-containerregistry checks the digest at the end of the body.
		out.status, out.code = http.StatusBadGateway, originwire.CodeUpstreamDigestFailed
		out.msg = fmt.Sprintf("upstream sent a blob that is not %s (%v); nothing was kept", d, cr.err)
	case out.code == originwire.CodeDigestMismatch:
		out.status, out.code = http.StatusBadGateway, originwire.CodeUpstreamDigestFailed
		out.msg = "upstream sent a corrupt blob: " + out.msg
	case cr.err != nil:
		err := fmt.Errorf("reading blob %s from upstream: %w", d, cr.err)
		s.images.requests.WithLabelValues("blob", resultOf(err)).Inc()
		return originwire.BlobInfo{}, err
	}
	s.images.requests.WithLabelValues("blob", "error").Inc()
	s.log.WarnContext(ctx, "ingesting a blob from upstream failed", "registry", registry, "repo", repo, "blob", d, "err", out)
	return originwire.BlobInfo{}, out
}

// upstreamReader counts upstream bytes and keeps the read error.
type upstreamReader struct {
	r     io.Reader
	bytes prometheus.Counter
	err   error
}

func (c *upstreamReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.bytes.Add(float64(n))
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

// imageManifest is the part of an OCI or Docker manifest or index that
// preheat needs.
type imageManifest struct {
	Manifests []struct {
		Digest string `json:"digest"`
	} `json:"manifests"`
	Config struct {
		Digest string `json:"digest"`
	} `json:"config"`
	Layers []struct {
		Digest string `json:"digest"`
	} `json:"layers"`
}

// maxIndexManifests bounds the platforms preheat follows in an index, and
// maxManifestBlobs the layers of one image.
const (
	maxIndexManifests = 64
	maxManifestBlobs  = 1024
)

// ParseImageManifest decodes an OCI or Docker image manifest or index (at
// most originwire.MaxImageManifestSize bytes) into the digests of the
// manifests an index lists, and of the config and layers an image
// manifest names, each checked to be a sha256 digest.
func ParseImageManifest(b []byte) (children []string, blobs []chunker.Digest, err error) {
	if len(b) > originwire.MaxImageManifestSize {
		return nil, nil, fmt.Errorf("%w: %d bytes", upstream.ErrTooLarge, len(b))
	}
	var im imageManifest
	if err := json.Unmarshal(b, &im); err != nil {
		return nil, nil, fmt.Errorf("decoding the manifest: %w", err)
	}
	if len(im.Manifests) > maxIndexManifests || len(im.Layers) > maxManifestBlobs {
		return nil, nil, fmt.Errorf("%w: %d manifests and %d layers, the limits are %d and %d",
			upstream.ErrTooLarge, len(im.Manifests), len(im.Layers), maxIndexManifests, maxManifestBlobs)
	}
	for _, m := range im.Manifests {
		if !upstream.IsDigest(m.Digest) {
			return nil, nil, fmt.Errorf("index entry %q is not a sha256 digest", m.Digest)
		}
		children = append(children, m.Digest)
	}
	add := func(n string) error {
		d, err := chunker.ParseDigest(n)
		if err != nil {
			return fmt.Errorf("blob %q is not a sha256 digest", n)
		}
		blobs = append(blobs, d)
		return nil
	}
	if im.Config.Digest != "" {
		if err := add(im.Config.Digest); err != nil {
			return nil, nil, err
		}
	}
	for _, l := range im.Layers {
		if err := add(l.Digest); err != nil {
			return nil, nil, err
		}
	}
	return children, blobs, nil
}

func (s *Server) handleImagePreheat(w http.ResponseWriter, r *http.Request) {
	if s.noUpstream(w) {
		return
	}
	ref := r.URL.Query().Get(originwire.QueryRef)
	registry, repo, tag, err := SplitImageRef(ref)
	if err != nil {
		writeError(w, http.StatusBadRequest, originwire.CodeBadRequest, err.Error())
		return
	}
	ctx := r.Context()
	out := originwire.Preheat{Ref: ref, Blobs: []originwire.BlobInfo{}}
	top, err := s.upstream.Manifest(ctx, registry, repo, tag)
	if err != nil {
		s.imageError(w, r, originwire.CodeManifestUnknown, err)
		return
	}
	out.Digest = top.Digest
	queue := []*upstream.Manifest{top}
	seen := map[chunker.Digest]bool{}
	for len(queue) > 0 {
		m := queue[0]
		queue = queue[1:]
		out.Manifests = append(out.Manifests, m.Digest)
		children, blobs, err := ParseImageManifest(m.Body)
		if err != nil {
			writeError(w, http.StatusBadGateway, originwire.CodeUpstreamUnavailable, fmt.Sprintf("manifest %s: %v", m.Digest, err))
			return
		}
		if m == top { // an index: follow each platform's manifest once
			for _, c := range children {
				cm, err := s.upstream.Manifest(ctx, registry, repo, c)
				if err != nil {
					s.imageError(w, r, originwire.CodeManifestUnknown, err)
					return
				}
				queue = append(queue, cm)
			}
		}
		for _, b := range blobs {
			if seen[b] {
				continue
			}
			seen[b] = true
			info, err := s.ingest(ctx, registry, repo, b)
			if err != nil {
				s.ingestError(w, r, err)
				return
			}
			out.Blobs = append(out.Blobs, info)
		}
	}
	writeJSON(w, http.StatusOK, &out)
}

// SplitImageRef splits an image reference "[registry/]repo(:tag|@digest)"
// into its parts; a missing tag is "latest" and a missing registry is ""
// (the origin's default). The first path element is the registry if it
// has a dot or a port, or is localhost, as in Docker's references.
func SplitImageRef(ref string) (registry, repo, tagOrDigest string, err error) {
	if ref == "" || len(ref) > 1024 {
		return "", "", "", fmt.Errorf("%w: image reference %q: empty or too long", upstream.ErrBadReference, ref)
	}
	rest := ref
	if first, after, ok := strings.Cut(ref, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		registry, rest = first, after
	}
	switch {
	case strings.Contains(rest, "@"):
		repo, tagOrDigest, _ = strings.Cut(rest, "@")
	case strings.LastIndex(rest, ":") > strings.LastIndex(rest, "/"):
		i := strings.LastIndex(rest, ":")
		repo, tagOrDigest = rest[:i], rest[i+1:]
	default:
		repo, tagOrDigest = rest, "latest"
	}
	if repo == "" || tagOrDigest == "" {
		return "", "", "", fmt.Errorf("%w: image reference %q: want [registry/]repository[:tag|@digest]", upstream.ErrBadReference, ref)
	}
	return registry, repo, tagOrDigest, nil
}
