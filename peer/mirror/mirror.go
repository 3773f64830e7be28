// Package mirror is the pull-only OCI registry mirror every `p2pd peer`
// runs on loopback, so that containerd or Docker pull images through the
// swarm.
//
// It serves the distribution spec's pull API: GET and HEAD of /v2/, of
// /v2/<name>/manifests/<tag or digest> (image manifests and indexes, as
// upstream serves them), of /v2/<name>/blobs/<digest> (with Range) and of
// /v2/<name>/tags/list (with the spec's n and last, passed through the
// origin to the upstream, and a Link header to the next page). Other
// methods (POST, PUT, PATCH, DELETE) answer 405 UNSUPPORTED on every
// path; errors are the spec's JSON bodies (MANIFEST_UNKNOWN,
// BLOB_UNKNOWN and NAME_UNKNOWN 404, DIGEST_INVALID, NAME_INVALID,
// MANIFEST_INVALID and PAGINATION_NUMBER_INVALID 400, DENIED 403,
// UNAVAILABLE 503).
//
// Manifests are negotiated on the Accept header as distribution's
// registry does: a manifest whose media type the client accepts is
// served; an OCI manifest or index it does not accept is
// MANIFEST_UNKNOWN; a Docker manifest list asked for by tag by a client
// that does not accept lists is answered with its linux/amd64 image
// (MANIFEST_INVALID if that is not acceptable either); anything else is
// served as it is. Unlike distribution, a request without an Accept
// header (or with a wildcard) accepts any type, as HTTP has it.
// If-None-Match with the manifest's digest answers 304.
//
// The registry a request is for is the ns query parameter containerd adds
// to mirror requests, or Config.DefaultRegistry; the origin maps it to an
// upstream. Manifests resolve through the origin, which fetches and caches
// them. A blob is a p2pd blob whose digest is the layer's: the mirror
// serves it from the local store if it is complete there; otherwise it has
// the origin ingest it from upstream (once, for the whole fleet), pulls it
// through the swarm, verifying every chunk, and streams it to the client
// while it downloads: each chunk in order as soon as the pull has stored
// (and so verified) it. Blobs may implement Streamer for that; otherwise,
// and for Range requests, the blob is sent once the pull has completed.
package mirror

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/httpx"
	"github.com/p2pd/p2pd/internal/wire/ctlwire"
	"github.com/p2pd/p2pd/internal/wire/originwire"
	"github.com/p2pd/p2pd/origin/originclient"
	"github.com/p2pd/p2pd/origin/upstream"
)

// Origin resolves manifests and ingests blobs; *originclient.Client
// implements it. Errors are *originclient.APIError with originwire's
// image codes, or transport errors.
type Origin interface {
	ImageManifest(ctx context.Context, registry, repo, ref string) (*originclient.ImageManifest, error)
	ImageBlob(ctx context.Context, registry, repo string, d chunker.Digest) (*originwire.BlobInfo, error)
	ImageTags(ctx context.Context, registry, repo string, n int, last string) (*originwire.ImageTags, error)
}

// Blobs is the local peer: Open returns a blob complete in the local
// store (an error otherwise), Pull fetches one through the swarm,
// verified, and pins it. The daemon's engine adapter implements it.
type Blobs interface {
	Open(ctx context.Context, d chunker.Digest) (io.ReadSeekCloser, int64, error)
	Pull(ctx context.Context, d chunker.Digest, progress func(ctlwire.Progress)) (ctlwire.Blob, error)
}

// Defaults.
const DefaultShutdownTimeout = 10 * time.Second

// ErrBadConfig wraps the errors of Config.Validate.
var ErrBadConfig = errors.New("mirror: invalid config")

// Config configures the mirror.
type Config struct {
	// Listen is the mirror's address, a loopback host:port. Empty means
	// no mirror (`p2pd peer` sets 127.0.0.1:7403 unless told "off").
	Listen string `yaml:"listen"`
	// Origin is the origin's base URL, which resolves manifests and
	// ingests layers (default http://127.0.0.1:7401).
	Origin string `yaml:"origin"`
	// DefaultRegistry is the upstream registry of requests without an ns
	// parameter (Docker's registry-mirrors sends none; default: the
	// origin's default registry).
	DefaultRegistry string `yaml:"default_registry"`
	// ShutdownTimeout bounds the wait for requests in flight at shutdown
	// (default 10s).
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// DefaultOrigin is Config.Origin's default.
const DefaultOrigin = "http://127.0.0.1:7401"

// WithDefaults returns c with zero fields replaced by their defaults.
func (c Config) WithDefaults() Config {
	if c.Origin == "" {
		c.Origin = DefaultOrigin
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	return c
}

// Validate reports why c is unusable, wrapping ErrBadConfig.
func (c Config) Validate() error {
	c = c.WithDefaults()
	if c.ShutdownTimeout < 0 {
		return fmt.Errorf("%w: shutdown_timeout %v is negative", ErrBadConfig, c.ShutdownTimeout)
	}
	if c.Listen != "" && c.Listen != "off" {
		host, _, err := net.SplitHostPort(c.Listen)
		if err != nil {
			return fmt.Errorf("%w: listen %q: %w", ErrBadConfig, c.Listen, err)
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("%w: listen %q: the mirror serves loopback only", ErrBadConfig, c.Listen)
		}
	}
	return nil
}

// Deps are the mirror's collaborators; Origin and Blobs are required.
type Deps struct {
	Origin Origin
	Blobs  Blobs
	// Logger receives the mirror's logs (default: discarded).
	Logger *slog.Logger
	// Registry receives the mirror's metrics (default: a new registry).
	Registry prometheus.Registerer
}

// Server is a mirror. Create it with New, serve it with Serve.
type Server struct {
	cfg     Config
	origin  Origin
	blobs   Blobs
	log     *slog.Logger
	met     *metrics
	handler http.Handler
	pulls   singleflight.Group // by blob digest
	pulseMu sync.Mutex
	pulses  map[chunker.Digest]*pulse // of the fetches running, by blob digest
	base    context.Context           // outlives requests: a pull others wait on goes on if its client leaves
}

// New returns a mirror for cfg (defaults applied).
func New(cfg Config, deps Deps) (*Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Origin == nil || deps.Blobs == nil {
		return nil, fmt.Errorf("%w: Origin and Blobs are required", ErrBadConfig)
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Registry == nil {
		deps.Registry = prometheus.NewRegistry()
	}
	met, err := newMetrics(deps.Registry)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, origin: deps.Origin, blobs: deps.Blobs, log: deps.Logger, met: met, base: context.Background(),
		pulses: map[chunker.Digest]*pulse{}}
	s.handler = httpx.Instrument(met.requests, "v2", s.serveHTTP)
	return s, nil
}

// Handler returns the mirror's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve serves the mirror on ln until ctx ends, then waits up to
// ShutdownTimeout for requests in flight. It closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.base = ctx
	return httpx.Serve(ctx, ln, s.handler, httpx.ServerOptions{Name: "mirror", Logger: s.log, ShutdownTimeout: s.cfg.ShutdownTimeout})
}

// Spec error codes.
const (
	codeBlobUnknown     = "BLOB_UNKNOWN"
	codeManifestUnknown = "MANIFEST_UNKNOWN"
	codeDigestInvalid   = "DIGEST_INVALID"
	codeNameInvalid     = "NAME_INVALID"
	codeNameUnknown     = "NAME_UNKNOWN"
	codeTagInvalid      = "TAG_INVALID"
	codeUnsupported     = "UNSUPPORTED"
	codeDenied          = "DENIED"
	codeManifestInvalid = "MANIFEST_INVALID"
	codePaginationInval = "PAGINATION_NUMBER_INVALID"
	codeUnavailable     = "UNAVAILABLE"
)

// nameRE is the distribution spec's repository name.
var nameRE = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)

// writeError writes the spec's error body.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	type specError struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	httpx.WriteJSON(w, status, struct {
		Errors []specError `json:"errors"`
	}{[]specError{{Code: code, Message: msg}}})
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, codeUnsupported, "this mirror is pull-only: "+r.Method+" is not supported")
		return
	}
	path := r.URL.Path
	if path == "/v2/" || path == "/v2" {
		httpx.WriteJSON(w, http.StatusOK, struct{}{})
		return
	}
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		writeError(w, http.StatusNotFound, codeUnsupported, "no route for "+path)
		return
	}
	registry := r.URL.Query().Get("ns")
	if registry == "" {
		registry = s.cfg.DefaultRegistry
	}
	if i := strings.LastIndex(rest, "/manifests/"); i > 0 {
		s.serveManifest(w, r, registry, rest[:i], rest[i+len("/manifests/"):])
		return
	}
	if repo, ok := strings.CutSuffix(rest, "/tags/list"); ok {
		s.serveTags(w, r, registry, repo)
		return
	}
	if i := strings.LastIndex(rest, "/blobs/"); i > 0 {
		s.serveBlob(w, r, registry, rest[:i], rest[i+len("/blobs/"):])
		return
	}
	writeError(w, http.StatusNotFound, codeUnsupported, "this mirror serves manifests, blobs and tag lists only, not "+path)
}

func validName(w http.ResponseWriter, repo string) bool {
	if len(repo) > 255 || !nameRE.MatchString(repo) {
		writeError(w, http.StatusBadRequest, codeNameInvalid, fmt.Sprintf("invalid repository name %q", repo))
		return false
	}
	return true
}

func (s *Server) serveManifest(w http.ResponseWriter, r *http.Request, registry, repo, ref string) {
	if !validName(w, repo) {
		return
	}
	isDigest := strings.Contains(ref, ":")
	switch {
	case isDigest && !upstream.IsDigest(ref):
		writeError(w, http.StatusBadRequest, codeDigestInvalid, fmt.Sprintf("invalid digest %q: want sha256:<64 lowercase hex>", ref))
		return
	case !isDigest && !upstream.IsTag(ref):
		writeError(w, http.StatusBadRequest, codeTagInvalid, fmt.Sprintf("invalid tag %q", ref))
		return
	}
	m, err := s.manifest(r.Context(), registry, repo, ref)
	if err != nil {
		s.originError(w, r, codeManifestUnknown, err)
		return
	}
	acc := parseAccept(r.Header.Values("Accept"))
	if !acc.accepts(m.MediaType) {
		switch m.MediaType {
		case mediaOCIManifest, mediaOCIIndex:
			// As distribution's registry: an OCI manifest is unknown to a
			// client that does not accept OCI manifests.
			writeError(w, http.StatusNotFound, codeManifestUnknown,
				fmt.Sprintf("the manifest is a %s, which the Accept header does not name", m.MediaType))
			return
		case mediaDockerList:
			if !isDigest {
				// Also as distribution's: a client that does not take
				// lists gets the linux/amd64 image of a tag.
				if m, err = s.defaultPlatform(r.Context(), registry, repo, m); err != nil {
					s.originError(w, r, codeManifestUnknown, err)
					return
				}
				if !acc.accepts(m.MediaType) {
					writeError(w, http.StatusBadRequest, codeManifestInvalid,
						fmt.Sprintf("the tag's linux/amd64 manifest is a %s, which the Accept header does not name", m.MediaType))
					return
				}
			}
		}
		// Other types (Docker image manifests, lists by digest,
		// artifacts) are served as they are, as distribution's registry
		// does.
	}
	h := w.Header()
	h.Set("Content-Type", m.MediaType)
	h.Set("Content-Length", fmt.Sprint(len(m.Body)))
	h.Set("Docker-Content-Digest", m.Digest)
	h.Set("ETag", `"`+m.Digest+`"`)
	if etagMatch(r, m.Digest) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(m.Body)
	}
}

// manifest resolves repo:ref through the origin, checking a manifest
// asked for by digest against it.
func (s *Server) manifest(ctx context.Context, registry, repo, ref string) (*originclient.ImageManifest, error) {
	m, err := s.origin.ImageManifest(ctx, registry, repo, ref)
	if err == nil && upstream.IsDigest(ref) && m.Digest != ref {
		err = fmt.Errorf("the origin answered manifest %s for %s", m.Digest, ref)
	}
	return m, err
}

// defaultPlatform returns the linux/amd64 manifest that list names.
func (s *Server) defaultPlatform(ctx context.Context, registry, repo string, list *originclient.ImageManifest) (*originclient.ImageManifest, error) {
	var idx struct {
		Manifests []struct {
			Digest   string `json:"digest"`
			Platform struct {
				OS           string `json:"os"`
				Architecture string `json:"architecture"`
			} `json:"platform"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(list.Body, &idx); err != nil {
		return nil, fmt.Errorf("decoding manifest list %s: %w", list.Digest, err)
	}
	for _, d := range idx.Manifests {
		if d.Platform.OS == "linux" && d.Platform.Architecture == "amd64" && upstream.IsDigest(d.Digest) {
			return s.manifest(ctx, registry, repo, d.Digest)
		}
	}
	return nil, &originclient.APIError{Code: originwire.CodeManifestUnknown,
		Message: fmt.Sprintf("manifest list %s has no linux/amd64 image, and the Accept header does not name manifest lists", list.Digest)}
}

// Manifest media types.
const (
	mediaDockerList  = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaOCIManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaOCIIndex    = "application/vnd.oci.image.index.v1+json"
)

// accept is what a request's Accept headers allow.
type accept struct {
	any   bool // no Accept header, or a wildcard
	types map[string]bool
}

// parseAccept reads Accept header values. Quality values matter only as
// q=0, which excludes a type. No header accepts anything (RFC 9110),
// where distribution's registry takes it for an old client that wants
// no OCI types: the mirror serves what the upstream has.
func parseAccept(values []string) accept {
	a := accept{any: len(values) == 0, types: map[string]bool{}}
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			if q, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(q, 64); err == nil && f == 0 {
					continue
				}
			}
			if mt == "*/*" || mt == "application/*" {
				a.any = true
				continue
			}
			a.types[mt] = true
		}
	}
	return a
}

func (a accept) accepts(mediaType string) bool { return a.any || a.types[mediaType] }

// etagMatch reports whether If-None-Match names digest (quoted or not).
func etagMatch(r *http.Request, digest string) bool {
	for _, v := range r.Header.Values("If-None-Match") {
		for part := range strings.SplitSeq(v, ",") {
			part = strings.TrimSpace(part)
			if part == digest || part == `"`+digest+`"` || part == "*" {
				return true
			}
		}
	}
	return false
}

// maxTagsPage bounds n in a tag list request; larger asks get this many.
const maxTagsPage = 10000

// serveTags answers a tag list: a page from the upstream, through the
// origin, with the spec's n and last and a Link header to the next page.
func (s *Server) serveTags(w http.ResponseWriter, r *http.Request, registry, repo string) {
	if !validName(w, repo) {
		return
	}
	q := r.URL.Query()
	n, hasN := 0, q.Has("n")
	if hasN {
		var err error
		if n, err = strconv.Atoi(q.Get("n")); err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, codePaginationInval, fmt.Sprintf("n %q is not a count", q.Get("n")))
			return
		}
		n = min(n, maxTagsPage)
	}
	last := q.Get("last")
	out := struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{Name: repo, Tags: []string{}}
	if !hasN || n > 0 {
		tags, err := s.origin.ImageTags(r.Context(), registry, repo, n, last)
		if err != nil {
			s.originError(w, r, codeNameUnknown, err)
			return
		}
		out.Tags = tags.Tags
		if tags.More && len(tags.Tags) > 0 {
			next := url.Values{"last": {tags.Tags[len(tags.Tags)-1]}}
			if hasN {
				next.Set("n", strconv.Itoa(n))
			}
			if ns := q.Get("ns"); ns != "" {
				next.Set("ns", ns)
			}
			w.Header().Set("Link", fmt.Sprintf(`</v2/%s/tags/list?%s>; rel="next"`, repo, next.Encode()))
		}
	}
	httpx.WriteJSON(w, http.StatusOK, &out)
}

// originError answers a failure of the origin.
func (s *Server) originError(w http.ResponseWriter, r *http.Request, notFound string, err error) {
	var ae *originclient.APIError
	if errors.As(err, &ae) {
		switch ae.Code {
		case originwire.CodeManifestUnknown, originwire.CodeBlobUnknown, originwire.CodeNotFound, originwire.CodeNameUnknown:
			writeError(w, http.StatusNotFound, notFound, ae.Message)
			return
		case originwire.CodeRegistryUnknown:
			writeError(w, http.StatusNotFound, codeNameUnknown, ae.Message)
			return
		case originwire.CodeBadRequest:
			writeError(w, http.StatusBadRequest, codeNameInvalid, ae.Message)
			return
		case originwire.CodeBadDigest:
			writeError(w, http.StatusBadRequest, codeDigestInvalid, ae.Message)
			return
		case originwire.CodeUpstreamDenied:
			writeError(w, http.StatusForbidden, codeDenied, ae.Message)
			return
		}
	}
	s.log.WarnContext(r.Context(), "mirror request failed", "path", r.URL.Path, "err", err)
	writeError(w, http.StatusServiceUnavailable, codeUnavailable, err.Error())
}

func (s *Server) serveBlob(w http.ResponseWriter, r *http.Request, registry, repo, digest string) {
	if !validName(w, repo) {
		return
	}
	d, err := chunker.ParseDigest(digest)
	if err != nil {
		writeError(w, http.StatusBadRequest, codeDigestInvalid, err.Error())
		return
	}
	ctx := r.Context()
	rc, _, err := s.blobs.Open(ctx, d)
	if err == nil {
		s.met.local.Inc()
		s.serveLocal(w, r, d, rc)
		return
	}
	done := s.fetch(registry, repo, d)
	if st, ok := s.blobs.(Streamer); ok && r.Header.Get("Range") == "" {
		var handled bool
		if handled, err = s.stream(w, r, st, registry, repo, d, done); handled {
			return
		}
	} else {
		select {
		case res := <-done:
			err = res.Err
		case <-ctx.Done():
			return
		}
	}
	if err != nil {
		s.originError(w, r, codeBlobUnknown, err)
		return
	}
	if rc, _, err = s.blobs.Open(ctx, d); err != nil {
		s.originError(w, r, codeBlobUnknown, err)
		return
	}
	s.serveLocal(w, r, d, rc)
}

// serveLocal serves a blob complete in the local store, with Range.
func (s *Server) serveLocal(w http.ResponseWriter, r *http.Request, d chunker.Digest, rc io.ReadSeekCloser) {
	defer rc.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Docker-Content-Digest", d.String())
	h.Set("ETag", `"`+d.String()+`"`)
	cw := &countWriter{ResponseWriter: w, c: s.met.served}
	http.ServeContent(cw, r, "", time.Time{}, rc)
}

// Streamer lets the mirror send a blob while the peer downloads it: the
// blob's manifest once known (nil before; an error while the peer does not
// track the blob yet), and the chunks, verified, as they are stored.
type Streamer interface {
	Manifest(d chunker.Digest) (*chunker.Manifest, error)
	HasChunk(d chunker.Digest) bool
	ReadChunk(ctx context.Context, d chunker.Digest, dst []byte) ([]byte, error)
}

// InOrderPuller may be implemented by Blobs: PullInOrder is Pull fetching
// the chunks near the front of the blob first, which the mirror's streams,
// sending the chunks in order, need.
type InOrderPuller interface {
	PullInOrder(ctx context.Context, d chunker.Digest, progress func(ctlwire.Progress)) (ctlwire.Blob, error)
}

// ChunkOpener may be implemented by a Streamer: OpenChunk opens the file
// of a stored chunk that needs no check on this read, so that the mirror
// sends it with sendfile rather than through a buffer. An error sends the
// mirror to ReadChunk.
type ChunkOpener interface {
	OpenChunk(ctx context.Context, d chunker.Digest) (*os.File, error)
}

// streamPoll is how often a streaming answer checks for the next chunk
// if no progress of the pull wakes it first (the pull it waits on may be
// another answer's, or start again); maxStreamRetries bounds the pulls started again for one answer when a
// pull fails before all chunks are in.
const (
	streamPoll       = 5 * time.Millisecond
	maxStreamRetries = 2
)

// stream answers a GET or HEAD of blob d while fetch (done) pulls it: once
// the manifest is known it sends the headers, then each chunk in order as
// soon as the pull has stored (and so verified) it. If the fetch ends
// before the manifest is known, stream returns its error and handled false,
// and the caller answers. A fetch failing after the headers went out is
// started again (up to maxStreamRetries times), then aborts the answer, so
// that the client sees a truncated body, never a wrong one;
// the last chunk goes out only once the pull has verified the whole blob.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, st Streamer, registry, repo string, d chunker.Digest, done <-chan singleflight.Result) (handled bool, err error) {
	ctx := r.Context()
	tick := time.NewTicker(streamPoll)
	defer tick.Stop()
	var m *chunker.Manifest
	for m == nil {
		select {
		case res := <-done:
			return false, res.Err
		case <-ctx.Done():
			return true, ctx.Err()
		case <-s.progress(d):
		case <-tick.C:
		}
		m, _ = st.Manifest(d)
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", fmt.Sprint(m.Size))
	h.Set("Docker-Content-Digest", d.String())
	h.Set("ETag", `"`+d.String()+`"`)
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return true, nil
	}
	s.met.streamed.Inc()
	opener, _ := st.(ChunkOpener)
	out := bodyWriter(w)
	var buf []byte
	finished, retries := false, 0
	for i, c := range m.Chunks {
		for !st.HasChunk(c.Digest) {
			if finished {
				s.log.WarnContext(ctx, "blob pulled but a chunk is missing", "blob", d, "chunk", i)
				panic(http.ErrAbortHandler)
			}
			select {
			case res := <-done:
				if res.Err != nil && retries < maxStreamRetries {
					// The chunks sent stay in the store: pull the rest.
					retries++
					s.log.WarnContext(ctx, "pull failed while streaming; pulling again", "blob", d, "chunk", i, "err", res.Err)
					done = s.fetch(registry, repo, d)
					continue
				}
				if res.Err != nil {
					s.log.WarnContext(ctx, "pull failed while streaming; aborting the answer", "blob", d, "chunk", i, "err", res.Err)
					panic(http.ErrAbortHandler)
				}
				finished = true
			case <-ctx.Done():
				return true, ctx.Err()
			case <-s.progress(d):
			case <-tick.C:
			}
		}
		// The chunk's file if the store trusts it (the pull wrote and
		// verified it), its bytes otherwise.
		var f *os.File
		var b []byte
		if opener != nil {
			f, _ = opener.OpenChunk(ctx, c.Digest)
		}
		if f == nil {
			if buf == nil {
				buf = make([]byte, m.MaxSize)
			}
			var err error
			if b, err = st.ReadChunk(ctx, c.Digest, buf); err != nil || len(b) != int(c.Size) {
				s.log.WarnContext(ctx, "reading a chunk while streaming; aborting the answer", "blob", d, "chunk", i, "err", err)
				panic(http.ErrAbortHandler)
			}
		}
		if i == len(m.Chunks)-1 && !finished {
			// The last chunk waits for the pull's check of the whole
			// blob: a client never gets all of a blob that failed it.
			select {
			case res := <-done:
				if res.Err != nil {
					closeFile(f)
					s.log.WarnContext(ctx, "pull failed at the end; aborting the answer", "blob", d, "err", res.Err)
					panic(http.ErrAbortHandler)
				}
			case <-ctx.Done():
				closeFile(f)
				return true, ctx.Err()
			}
		}
		var n int64
		var err error
		if f != nil {
			n, err = io.Copy(out, io.LimitReader(f, int64(c.Size)))
			f.Close()
			if err == nil && n != int64(c.Size) {
				s.log.WarnContext(ctx, "a chunk file ended early while streaming; aborting the answer", "blob", d, "chunk", i, "sent", n)
				panic(http.ErrAbortHandler)
			}
		} else {
			var k int
			k, err = out.Write(b)
			n = int64(k)
		}
		s.met.served.Add(float64(n))
		if err != nil {
			return true, err
		}
	}
	return true, nil
}

func closeFile(f *os.File) {
	if f != nil {
		f.Close()
	}
}

// bodyWriter returns the writer a response body goes to once the headers
// are out: the server's own, whose ReadFrom sends a file with sendfile,
// past middleware that would hide it. (The status is recorded already.)
func bodyWriter(w http.ResponseWriter) io.Writer {
	if rf, ok := httpx.Underlying(w).(io.ReaderFrom); ok {
		return readerFrom{rf, w}
	}
	return w
}

type readerFrom struct {
	io.ReaderFrom
	w io.Writer
}

func (r readerFrom) Write(p []byte) (int, error) { return r.w.Write(p) }

// fetch has the origin ingest blob d and pulls it through the swarm, and
// returns a channel for the result. One fetch per blob runs at a time; it
// goes on if the request that started it ends, for the others that wait on
// it and for the next pull, until the mirror shuts down.
func (s *Server) fetch(registry, repo string, d chunker.Digest) <-chan singleflight.Result {
	return s.pulls.DoChan(d.String(), func() (any, error) {
		ctx := s.base
		start := time.Now()
		p := &pulse{}
		s.pulseMu.Lock()
		s.pulses[d] = p
		s.pulseMu.Unlock()
		defer func() {
			s.pulseMu.Lock()
			delete(s.pulses, d)
			s.pulseMu.Unlock()
			p.fire()
		}()
		if _, err := s.origin.ImageBlob(ctx, registry, repo, d); err != nil {
			return nil, err
		}
		pull := s.blobs.Pull
		if ip, ok := s.blobs.(InOrderPuller); ok {
			pull = ip.PullInOrder
		}
		b, err := pull(ctx, d, func(ctlwire.Progress) { p.fire() })
		if err != nil {
			return nil, fmt.Errorf("pulling %s through the swarm: %w", d, err)
		}
		s.met.layerBytes.WithLabelValues("peers").Add(float64(b.BytesFromPeers))
		s.met.layerBytes.WithLabelValues("origins").Add(float64(b.BytesFromOrigins))
		s.log.InfoContext(ctx, "mirror pulled a blob", "blob", d, "size", b.Size, "from_peers", b.BytesFromPeers,
			"from_origins", b.BytesFromOrigins, "elapsed", time.Since(start))
		return nil, nil
	})
}

// pulse wakes the streams of a blob when its pull makes progress (the
// manifest is known, a chunk is stored), so that they need not wait for
// their next poll.
type pulse struct {
	mu sync.Mutex
	ch chan struct{} // closed by the next fire
}

func (p *pulse) wait() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ch == nil {
		p.ch = make(chan struct{})
	}
	return p.ch
}

func (p *pulse) fire() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ch != nil {
		close(p.ch)
		p.ch = nil
	}
}

// progress returns a channel closed at the next progress of the running
// pull of d, or nil (which never fires: the caller's poll covers it) if
// none runs.
func (s *Server) progress(d chunker.Digest) <-chan struct{} {
	s.pulseMu.Lock()
	p := s.pulses[d]
	s.pulseMu.Unlock()
	if p == nil {
		return nil
	}
	return p.wait()
}

// countWriter counts the blob bytes served.
type countWriter struct {
	http.ResponseWriter
	c prometheus.Counter
}

func (w *countWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.c.Add(float64(n))
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *countWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type metrics struct {
	requests   *prometheus.CounterVec
	layerBytes *prometheus.CounterVec
	local      prometheus.Counter
	streamed   prometheus.Counter
	served     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2pd_mirror_http_requests_total",
			Help: "Registry mirror requests, by route and status code.",
		}, []string{"route", "code"}),
		layerBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2pd_mirror_blob_bytes_fetched_total",
			Help: "Verified bytes of image blobs (layers, configs) the mirror pulled, by source: peers, or origins (which fetch them from upstream).",
		}, []string{"source"}),
		local: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2pd_mirror_blob_local_hits_total",
			Help: "Blob requests served from the local store without a pull.",
		}),
		streamed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2pd_mirror_blob_streamed_total",
			Help: "Blob requests answered while the blob downloaded, chunk by chunk in order.",
		}),
		served: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2pd_mirror_blob_bytes_served_total",
			Help: "Blob bytes sent to registry clients.",
		}),
	}
	m.layerBytes.WithLabelValues("peers")
	m.layerBytes.WithLabelValues("origins")
	for _, c := range []prometheus.Collector{m.requests, m.layerBytes, m.local, m.streamed, m.served} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("mirror: registering metrics: %w", err)
		}
	}
	return m, nil
}
