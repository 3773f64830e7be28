// Package origin is the p2pd origin: the HTTP service (see package
// originwire for the API) that accepts blob pushes, chunks them into the
// chunk store and hands them to the peer engine to seed.
//
// A push is streamed: the body is chunked as it arrives (chunker.Split) and
// each chunk is stored (store.Put) before the next is read, so a blob of
// any size passes through a few chunk buffers. Once the body has ended,
// the manifest is stored and pinned and the Seeder is told. A push that
// fails before that (the blob does not hash to the expected digest, the
// body ends early, the client goes away, the blob is over the size limit,
// the store is full) leaves nothing behind: the chunks it wrote are
// deleted again, except those that were stored before, that another push
// in progress also wrote, or that another stored manifest references.
//
// The set of stored blobs is the store's pinned manifests, so it survives
// restarts; New reads it. New starts no goroutines, and does not seed:
// re-seeding the stored blobs at startup is the peer engine's job. The
// origin assumes it is the only one to pin and unpin manifests in its store
// while it runs.
package origin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/singleflight"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/auth"
	"github.com/p2pd/p2pd/internal/httpx"
	"github.com/p2pd/p2pd/internal/wire/originwire"
	"github.com/p2pd/p2pd/peer/store"
)

// Seeder makes a stored blob available to peers. The peer engine
// implements it. Seed is called after every successful push, including a
// push of a blob that is already stored (so a client can retry a push whose
// seeding failed), so it must be idempotent. Its context ends if the
// pushing client goes away or the origin shuts down.
type Seeder interface {
	Seed(ctx context.Context, m *chunker.Manifest) error
}

// Unseeder may be implemented by a Seeder: a DELETE then calls Unseed
// before the blob is unpinned, so peers stop being offered it. An error is
// logged and does not stop the delete.
type Unseeder interface {
	Unseed(ctx context.Context, blob chunker.Digest) error
}

// Store is the part of *store.Store the origin uses.
type Store interface {
	Has(d chunker.Digest) bool
	Put(ctx context.Context, d chunker.Digest, data []byte) error
	Delete(ctx context.Context, d chunker.Digest) error
	PutManifest(ctx context.Context, m *chunker.Manifest) (chunker.Digest, error)
	Pin(ctx context.Context, m *chunker.Manifest) error
	Unpin(ctx context.Context, id chunker.Digest) error
	Manifest(ctx context.Context, id chunker.Digest) (*chunker.Manifest, error)
	Manifests() []store.ManifestInfo
	DeleteManifest(ctx context.Context, id chunker.Digest) error
	OpenBlob(ctx context.Context, m *chunker.Manifest) (*store.BlobReader, error)
}

var _ Store = (*store.Store)(nil)

// Deps are the origin's collaborators. Store is required.
type Deps struct {
	// Store keeps the chunks and manifests; the origin does not close it.
	Store Store
	// Seeder is told about every pushed blob (default: none, blobs are
	// only stored).
	Seeder Seeder
	// Logger receives the origin's logs (default: discarded).
	Logger *slog.Logger
	// Registry receives the origin's metrics (default: a new registry).
	Registry prometheus.Registerer
	// Gatherer is served on /metrics (default: Registry, if it is a
	// Gatherer; otherwise /metrics is not served).
	Gatherer prometheus.Gatherer
	// Auth checks the signatures of requests (default nil: an open origin,
	// where anyone who reaches it may push, read and delete). With it,
	// pushes need the push token, deletes the admin token, and reads of
	// blobs (list, summary, manifest, data) any of the announce, push and
	// admin tokens. /healthz and /metrics stay open.
	Auth *auth.Verifier
	// Upstream, if set, is the registries the image routes pull from
	// (default: none; the image routes answer REGISTRY_UNKNOWN).
	Upstream Upstream
}

// Server is an origin. Create it with New; serve it with Serve, or mount
// Handler.
type Server struct {
	cfg     Config
	chunker *chunker.Chunker
	store   Store
	seeder  Seeder
	log     *slog.Logger
	metrics *metrics
	handler http.Handler
	auth    *auth.Verifier

	locks keyLocks // per blob digest: commit, seed and delete
	ops   opCount  // pushes and deletes in progress

	upstream Upstream
	images   *imageMetrics
	ingests  singleflight.Group // by blob digest

	mu    sync.Mutex
	blobs map[chunker.Digest]originwire.BlobInfo // by blob digest
	refs  map[chunker.Digest]*chunkRef           // chunks of pushes in progress
}

// New returns an origin for cfg (defaults applied) that serves the blobs
// pinned in deps.Store. It reads every pinned manifest once.
func New(cfg Config, deps Deps) (*Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Store == nil {
		return nil, fmt.Errorf("%w: no store", ErrBadConfig)
	}
	ch, err := chunker.New(cfg.Chunker)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Registry == nil {
		reg := prometheus.NewRegistry()
		deps.Registry = reg
		if deps.Gatherer == nil {
			deps.Gatherer = reg
		}
	}
	if deps.Gatherer == nil {
		deps.Gatherer, _ = deps.Registry.(prometheus.Gatherer)
	}
	s := &Server{
		cfg:      cfg,
		chunker:  ch,
		store:    deps.Store,
		seeder:   deps.Seeder,
		log:      deps.Logger,
		auth:     deps.Auth,
		blobs:    make(map[chunker.Digest]originwire.BlobInfo),
		refs:     make(map[chunker.Digest]*chunkRef),
		upstream: deps.Upstream,
	}
	s.load()
	s.metrics, err = newMetrics(deps.Registry, func() float64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		return float64(len(s.blobs))
	})
	if err != nil {
		return nil, err
	}
	if s.images, err = newImageMetrics(deps.Registry); err != nil {
		return nil, err
	}
	s.handler = s.routes(deps.Gatherer)
	return s, nil
}

// load indexes the store's pinned manifests by blob digest. If two pinned
// manifests describe the same blob (pushed under different chunk sizes),
// the one cut with the current sizes wins, then the smaller ID.
func (s *Server) load() {
	ctx := context.Background()
	cur := s.chunker.Config()
	current := func(m *chunker.Manifest) bool {
		return m.MinSize == cur.MinSize && m.AvgSize == cur.AvgSize && m.MaxSize == cur.MaxSize
	}
	isCurrent := make(map[chunker.Digest]bool)
	for _, mi := range s.store.Manifests() { // ordered by ID
		if !mi.Pinned {
			continue
		}
		m, err := s.store.Manifest(ctx, mi.ID)
		if err != nil {
			s.log.Error("skipping unreadable pinned manifest", "manifest", mi.ID, "err", err)
			continue
		}
		if _, dup := s.blobs[m.Digest]; dup && (isCurrent[m.Digest] || !current(m)) {
			s.log.Warn("blob has more than one pinned manifest", "blob", m.Digest, "serving", s.blobs[m.Digest].ManifestDigest, "ignoring", mi.ID)
			continue
		}
		s.blobs[m.Digest] = blobInfo(m, mi.ID)
		isCurrent[m.Digest] = current(m)
	}
	s.log.Info("origin loaded stored blobs", "blobs", len(s.blobs))
}

func blobInfo(m *chunker.Manifest, id chunker.Digest) originwire.BlobInfo {
	return originwire.BlobInfo{Digest: m.Digest, ManifestDigest: id, Size: m.Size, Chunks: len(m.Chunks)}
}

// Config returns the configuration in use, defaults applied.
func (s *Server) Config() Config { return s.cfg }

// Handler returns the origin's HTTP handler: the originwire routes and
// /metrics.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) routes(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern, route string, h http.HandlerFunc) {
		mux.Handle(pattern, s.instrument(route, h))
	}
	guard := func(h http.HandlerFunc, rule auth.Rule) http.HandlerFunc { return s.auth.Guard(h, rule).ServeHTTP }
	read := auth.Rule{Scopes: []auth.Scope{auth.ScopeAnnounce, auth.ScopePush, auth.ScopeAdmin}, Code: originwire.CodeUnauthorized}
	admin := auth.Rule{Scopes: []auth.Scope{auth.ScopeAdmin}, Code: originwire.CodeUnauthorized}
	// A push checks its signature itself, to count refusals by result.
	handle(originwire.RoutePushPut, "push", s.handlePush)
	handle(originwire.RoutePushPost, "push", s.handlePush)
	handle(originwire.RouteList, "list", guard(s.handleList, read))
	handle(originwire.RouteBlob, "blob", guard(s.handleBlob, read))
	handle(originwire.RouteManifest, "manifest", guard(s.handleManifest, read))
	handle(originwire.RouteData, "data", guard(s.handleData, read))
	handle(originwire.RouteDelete, "delete", guard(s.handleDelete, admin))
	handle(originwire.RouteHealth, "healthz", s.handleHealth)
	handle(originwire.RouteImageManifest, "image_manifest", guard(s.handleImageManifest, read))
	handle(originwire.RouteImageBlob, "image_blob", guard(s.handleImageBlob, read))
	handle(originwire.RouteImageTags, "image_tags", guard(s.handleImageTags, read))
	handle(originwire.RouteImagePreheat, "image_preheat", guard(s.handleImagePreheat, auth.Rule{Scopes: []auth.Scope{auth.ScopePush}}))
	handle(originwire.PathImageManifest, "image_manifest", methodNotAllowed(http.MethodGet, http.MethodHead))
	handle(originwire.PathImageBlob, "image_blob", methodNotAllowed(http.MethodPost))
	handle(originwire.PathImageTags, "image_tags", methodNotAllowed(http.MethodGet, http.MethodHead))
	handle(originwire.PathImagePreheat, "image_preheat", methodNotAllowed(http.MethodPost))
	// The same paths without a method answer 405 in JSON.
	handle(originwire.PathBlobs, "blobs", methodNotAllowed(http.MethodPut, http.MethodPost, http.MethodGet, http.MethodHead))
	handle(originwire.PatternBlob, "blob", methodNotAllowed(http.MethodGet, http.MethodHead, http.MethodDelete))
	handle(originwire.PatternManifest, "manifest", methodNotAllowed(http.MethodGet, http.MethodHead))
	handle(originwire.PatternData, "data", methodNotAllowed(http.MethodGet, http.MethodHead))
	handle(originwire.PathHealth, "healthz", methodNotAllowed(http.MethodGet, http.MethodHead))
	if g != nil {
		handle(originwire.RouteMetrics, "metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{
			ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		}).ServeHTTP)
		handle(originwire.PathMetrics, "metrics", methodNotAllowed(http.MethodGet, http.MethodHead))
	}
	handle("/", "other", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, originwire.CodeNotFound, "no route for "+r.URL.Path)
	})
	return mux
}

// instrument counts requests by route and status code.
func (s *Server) instrument(route string, h http.HandlerFunc) http.Handler {
	return httpx.Instrument(s.metrics.requests, route, h)
}

func methodNotAllowed(allow ...string) http.HandlerFunc {
	return httpx.MethodNotAllowed(originwire.CodeMethodNotAllowed, allow...)
}

// pushRule is who may push: the push token, with the body streamed.
var pushRule = auth.Rule{Scopes: []auth.Scope{auth.ScopePush}, StreamBody: true, Code: originwire.CodeUnauthorized}

// pathDigest parses the {digest} of a blob route, answering 400 if it is
// malformed.
func pathDigest(w http.ResponseWriter, r *http.Request) (chunker.Digest, bool) {
	d, err := chunker.ParseDigest(r.PathValue(originwire.DigestPathValue))
	if err != nil {
		writeError(w, http.StatusBadRequest, originwire.CodeBadDigest, err.Error())
		return d, false
	}
	return d, true
}

// lookup returns the stored blob d, answering 404 if there is none.
func (s *Server) lookup(w http.ResponseWriter, d chunker.Digest) (originwire.BlobInfo, bool) {
	s.mu.Lock()
	info, ok := s.blobs[d]
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, originwire.CodeNotFound, "no blob "+d.String())
	}
	return info, ok
}

// manifest reads the manifest of a stored blob, answering an error if it
// cannot.
func (s *Server) manifest(w http.ResponseWriter, r *http.Request) (*chunker.Manifest, originwire.BlobInfo, bool) {
	d, ok := pathDigest(w, r)
	if !ok {
		return nil, originwire.BlobInfo{}, false
	}
	info, ok := s.lookup(w, d)
	if !ok {
		return nil, info, false
	}
	m, err := s.store.Manifest(r.Context(), info.ManifestDigest)
	if err == nil && m.Digest != d { // cannot happen: the store checks the manifest's digest
		err = fmt.Errorf("manifest %s describes blob %s: %w", info.ManifestDigest, m.Digest, chunker.ErrDigestMismatch)
	}
	if err != nil {
		s.storeError(w, r, "reading the manifest", err)
		return nil, info, false
	}
	return m, info, true
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	list := originwire.BlobList{Blobs: make([]originwire.BlobInfo, 0, len(s.blobs))}
	for _, b := range s.blobs {
		list.Blobs = append(list.Blobs, b)
	}
	s.mu.Unlock()
	slices.SortFunc(list.Blobs, func(a, b originwire.BlobInfo) int { return strings.Compare(a.Digest.Hex(), b.Digest.Hex()) })
	writeJSON(w, http.StatusOK, &list)
}

func (s *Server) handleBlob(w http.ResponseWriter, r *http.Request) {
	d, ok := pathDigest(w, r)
	if !ok {
		return
	}
	if info, ok := s.lookup(w, d); ok {
		writeJSON(w, http.StatusOK, &info)
	}
}

func (s *Server) handleManifest(w http.ResponseWriter, r *http.Request) {
	m, info, ok := s.manifest(w, r)
	if !ok {
		return
	}
	b, err := m.MarshalBinary()
	if err != nil { // cannot happen: the store decoded and validated it
		s.storeError(w, r, "encoding the manifest", err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", originwire.ManifestMediaType)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("ETag", `"`+info.ManifestDigest.String()+`"`)
	h.Set(originwire.HeaderBlobDigest, info.Digest.String())
	h.Set(originwire.HeaderManifestDigest, info.ManifestDigest.String())
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}

func (s *Server) handleData(w http.ResponseWriter, r *http.Request) {
	m, info, ok := s.manifest(w, r)
	if !ok {
		return
	}
	// A missing chunk would cut the response short after its headers:
	// refuse up front instead (it is only a check of the index).
	if i := s.missingChunk(m); i >= 0 {
		s.log.ErrorContext(r.Context(), "stored blob is incomplete", "blob", m.Digest, "chunk", i, "digest", m.Chunks[i].Digest)
		writeError(w, http.StatusInternalServerError, originwire.CodeInternal,
			fmt.Sprintf("blob %s is incomplete: chunk %d (%s) is missing from the store", m.Digest, i, m.Chunks[i].Digest))
		return
	}
	br, err := s.store.OpenBlob(r.Context(), m)
	if err != nil {
		s.storeError(w, r, "opening the blob", err)
		return
	}
	defer br.Close()
	h := w.Header()
	h.Set("Content-Type", originwire.DataMediaType)
	h.Set("ETag", `"`+info.Digest.String()+`"`)
	h.Set(originwire.HeaderBlobDigest, info.Digest.String())
	h.Set(originwire.HeaderManifestDigest, info.ManifestDigest.String())
	sw := newStallWriter(w, s.cfg.StallTimeout)
	defer sw.reset()
	http.ServeContent(sw, r, "", time.Time{}, br)
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	s.ops.add()
	defer s.ops.done()
	d, ok := pathDigest(w, r)
	if !ok {
		return
	}
	unlock := s.locks.lock(d)
	defer unlock()
	info, ok := s.lookup(w, d)
	if !ok {
		return
	}
	if u, ok := s.seeder.(Unseeder); ok {
		if err := u.Unseed(r.Context(), d); err != nil {
			s.log.WarnContext(r.Context(), "unseed failed; deleting anyway", "blob", d, "err", err)
		}
	}
	ctx := context.WithoutCancel(r.Context())
	if err := s.store.Unpin(ctx, info.ManifestDigest); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.storeError(w, r, "unpinning the manifest", err)
		return
	}
	if err := s.store.DeleteManifest(ctx, info.ManifestDigest); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.storeError(w, r, "deleting the manifest", err)
		return
	}
	s.mu.Lock()
	delete(s.blobs, d)
	s.mu.Unlock()
	s.log.InfoContext(ctx, "blob deleted", "blob", d, "manifest", info.ManifestDigest, "size", info.Size)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, &originwire.Health{Status: "ok"})
}

// storeError answers a store failure while doing what.
func (s *Server) storeError(w http.ResponseWriter, r *http.Request, what string, err error) {
	s.storeFailure(r.Context(), what, err).write(w)
}

// storeFailure is the answer to a store failure while doing what.
func (s *Server) storeFailure(ctx context.Context, what string, err error) stored {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return failed(http.StatusNotFound, resultError, originwire.CodeNotFound, err.Error())
	case errors.Is(err, store.ErrClosed):
		return failed(http.StatusServiceUnavailable, resultError, originwire.CodeUnavailable, what+": the store is closed")
	case errors.Is(err, store.ErrCapacity), errors.Is(err, store.ErrNoSpace):
		s.log.WarnContext(ctx, "store full", "what", what, "err", err)
		return failed(http.StatusInsufficientStorage, resultNoSpace, originwire.CodeInsufficientStorage, what+": "+err.Error())
	}
	s.log.ErrorContext(ctx, "store", "what", what, "err", err)
	return failed(http.StatusInternalServerError, resultError, originwire.CodeInternal, what+" failed")
}

func writeJSON(w http.ResponseWriter, code int, v any) { httpx.WriteJSON(w, code, v) }

func writeError(w http.ResponseWriter, code int, errCode, msg string) {
	httpx.WriteError(w, code, errCode, msg)
}

// Serve serves the origin on ln until ctx ends; then it stops accepting,
// waits up to ShutdownTimeout for requests in flight, and returns nil (or
// the shutdown error). Pushes still running after that are aborted, and
// Serve waits for their rollback, so that the store can be closed when it
// returns. It returns early with the error if serving fails. It closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.log.InfoContext(ctx, "origin starting", "auth", s.auth != nil,
		"max_blob_size", s.cfg.MaxBlobSize, "chunker", s.chunker.Config())
	// No read or write timeouts: a push or a download of a large blob may
	// rightly take hours. StallTimeout catches stalled ones.
	err := httpx.Serve(ctx, ln, s.handler, httpx.ServerOptions{
		Name:            "origin",
		Logger:          s.log,
		ShutdownTimeout: s.cfg.ShutdownTimeout,
	})
	if err != nil {
		// Serve cut the connections off, which makes the pushes left fail
		// and roll back: wait for that before the store may be closed.
		select {
		case <-s.ops.idle():
		case <-time.After(s.cfg.ShutdownTimeout):
			s.log.WarnContext(ctx, "pushes or deletes still running after shutdown")
		}
		return err
	}
	s.log.InfoContext(ctx, "origin stopped")
	return nil
}
