// Package tracker is the p2pd tracker: an HTTP/JSON service (see package
// trackerwire for the API) that records which peers hold which chunks of
// which blob and hands out peers to connect to. Its state is soft: records
// expire unless refreshed by announces, and a restarted tracker rebuilds
// its state from one round of announces (asking peers that send a delta
// for their full bitfield).
package tracker

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/auth"
	"github.com/p2pd/p2pd/internal/clock"
	"github.com/p2pd/p2pd/internal/httpx"
	"github.com/p2pd/p2pd/internal/wire/trackerwire"
	"github.com/p2pd/p2pd/tracker/handout"
	"github.com/p2pd/p2pd/tracker/peerstore"
)

// maxOriginCandidates bounds the origins scored per announce.
const maxOriginCandidates = 64

// minCandidateSample is the fewest peers scored for a hand-out smaller
// than the limit (a small num_want).
const minCandidateSample = 32

// Deps are the tracker's collaborators. Every field is optional.
type Deps struct {
	// Store holds the records (default: peerstore.NewMemory with
	// Config.PeerTTL). A Store given here expires records by its own TTL,
	// which should be Config.PeerTTL.
	Store peerstore.Store
	// Clock times expiry and latency (default clock.Real()).
	Clock clock.Clock
	// Logger receives the tracker's logs (default: discarded).
	Logger *slog.Logger
	// Registry receives the tracker's metrics (default: a new registry).
	Registry prometheus.Registerer
	// Gatherer is served on /metrics (default: Registry, if it is a
	// Gatherer; otherwise /metrics is not served).
	Gatherer prometheus.Gatherer
	// Rand seeds the random choices of handouts (default: a random seed).
	Rand *rand.Rand
	// Auth checks the signatures of requests (default nil: an open
	// tracker). Announces need the announce token; reading swarms the
	// announce or the admin token. /healthz and /metrics stay open.
	Auth *auth.Verifier
}

// Server is a tracker. Create it with New; serve it with Serve, or mount
// Handler and call RunSweeper yourself.
type Server struct {
	cfg      Config
	policy   handout.Policy
	budget   *handout.OriginBudget // origin hand-outs per interval
	interval int64                 // seconds
	store    peerstore.Store
	clock    clock.Clock
	log      *slog.Logger
	metrics  *metrics
	handler  http.Handler
	auth     *auth.Verifier

	rngMu sync.Mutex
	rng   *rand.Rand
}

// New returns a tracker for cfg (defaults applied).
func New(cfg Config, deps Deps) (*Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Clock == nil {
		deps.Clock = clock.Real()
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Store == nil {
		deps.Store = peerstore.NewMemory(deps.Clock, cfg.PeerTTL)
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
	if deps.Rand == nil {
		deps.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	m, err := newMetrics(deps.Registry, deps.Store)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		policy:   cfg.Policy(),
		budget:   cfg.OriginBudget(),
		interval: int64(cfg.AnnounceInterval / time.Second),
		store:    deps.Store,
		clock:    deps.Clock,
		log:      deps.Logger,
		metrics:  m,
		rng:      deps.Rand,
		auth:     deps.Auth,
	}
	s.handler = s.routes(deps.Gatherer)
	return s, nil
}

// Config returns the configuration in use, defaults applied.
func (s *Server) Config() Config { return s.cfg }

// Handler returns the tracker's HTTP handler: the trackerwire routes and
// /metrics.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) routes(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern, route string, h http.HandlerFunc) {
		mux.Handle(pattern, s.instrument(route, h))
	}
	guard := func(h http.HandlerFunc, scopes ...auth.Scope) http.HandlerFunc {
		return s.auth.Guard(h, auth.Rule{Scopes: scopes, Code: trackerwire.CodeUnauthorized}).ServeHTTP
	}
	handle(trackerwire.RouteAnnounce, "announce", guard(s.handleAnnounce, auth.ScopeAnnounce))
	handle(trackerwire.RouteSwarms, "swarms", guard(s.handleSwarms, auth.ScopeAnnounce, auth.ScopeAdmin))
	handle(trackerwire.RouteSwarm, "swarm", guard(s.handleSwarm, auth.ScopeAnnounce, auth.ScopeAdmin))
	handle(trackerwire.RouteHealth, "healthz", s.handleHealth)
	// The same paths without a method answer 405 in JSON.
	handle(trackerwire.PathAnnounce, "announce", methodNotAllowed(http.MethodPost))
	handle(trackerwire.PathSwarms, "swarms", methodNotAllowed(http.MethodGet, http.MethodHead))
	handle(trackerwire.PathSwarms+"/{"+trackerwire.SwarmPathValue+"}", "swarm", methodNotAllowed(http.MethodGet, http.MethodHead))
	handle(trackerwire.PathHealth, "healthz", methodNotAllowed(http.MethodGet, http.MethodHead))
	if g != nil {
		handle(trackerwire.RouteMetrics, "metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{
			ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		}).ServeHTTP)
		handle(trackerwire.PathMetrics, "metrics", methodNotAllowed(http.MethodGet, http.MethodHead))
	}
	handle("/", "other", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, trackerwire.CodeNotFound, "no route for "+r.URL.Path)
	})
	return mux
}

// instrument counts requests by route and status code.
func (s *Server) instrument(route string, h http.HandlerFunc) http.Handler {
	return httpx.Instrument(s.metrics.requests, route, h)
}

func methodNotAllowed(allow ...string) http.HandlerFunc {
	return httpx.MethodNotAllowed(trackerwire.CodeMethodNotAllowed, allow...)
}

// newRand returns a generator for one request, seeded from the server's.
func (s *Server) newRand() *rand.Rand {
	s.rngMu.Lock()
	a, b := s.rng.Uint64(), s.rng.Uint64()
	s.rngMu.Unlock()
	return rand.New(rand.NewPCG(a, b))
}

func (s *Server) handleAnnounce(w http.ResponseWriter, r *http.Request) {
	start := s.clock.Now()
	result := s.announce(w, r)
	s.metrics.announces.WithLabelValues(result).Inc()
	s.metrics.duration.Observe(s.clock.Since(start).Seconds())
}

// announce handles one announce and returns its result label.
func (s *Server) announce(w http.ResponseWriter, r *http.Request) string {
	ctx := r.Context()
	req, err := trackerwire.DecodeAnnounceRequest(http.MaxBytesReader(w, r.Body, trackerwire.MaxRequestBytes))
	if err != nil {
		code, result := trackerwire.CodeInvalid, resultInvalid
		switch {
		case errors.Is(err, trackerwire.ErrTooLarge):
			code, result = trackerwire.CodeTooLarge, resultTooLarge
		case errors.Is(err, trackerwire.ErrMalformed):
			code, result = trackerwire.CodeMalformed, resultMalformed
		}
		s.log.DebugContext(ctx, "bad announce", "remote", r.RemoteAddr, "err", err)
		writeError(w, http.StatusBadRequest, code, err.Error())
		return result
	}
	res, err := s.store.Announce(ctx, req)
	if err != nil {
		switch {
		case errors.Is(err, peerstore.ErrConflict):
			s.log.WarnContext(ctx, "announce conflicts with swarm", "blob", req.Blob, "peer", req.PeerID, "err", err)
			writeError(w, http.StatusConflict, trackerwire.CodeConflict, err.Error())
			return resultConflict
		case errors.Is(err, trackerwire.ErrInvalid):
			writeError(w, http.StatusBadRequest, trackerwire.CodeInvalid, err.Error())
			return resultInvalid
		}
		s.log.ErrorContext(ctx, "announce", "blob", req.Blob, "peer", req.PeerID, "err", err)
		writeError(w, http.StatusInternalServerError, trackerwire.CodeInternal, "storing the announce failed")
		return resultError
	}
	resp := trackerwire.AnnounceResponse{Interval: s.interval, Peers: []trackerwire.PeerInfo{}}
	switch {
	case req.Event == trackerwire.EventStopped:
		s.log.DebugContext(ctx, "peer stopped", "blob", req.Blob, "peer", req.PeerID, "removed", res.Removed)
		writeJSON(w, http.StatusOK, &resp)
		return resultStopped
	case res.NeedFull:
		s.log.DebugContext(ctx, "delta without state: asking for the full bitfield", "blob", req.Blob, "peer", req.PeerID)
		resp.NeedFull = true
		writeJSON(w, http.StatusOK, &resp)
		return resultNeedFull
	}
	if res.Created {
		s.log.DebugContext(ctx, "peer joined", "blob", req.Blob, "peer", req.PeerID, "role", req.Role, "have", res.Record.Have)
	}
	policy, sample := s.policy, s.cfg.CandidateSample
	if req.NumWant != nil && *req.NumWant < policy.Limit {
		if *req.NumWant == 0 {
			// The peer has the peers it needs: nothing to choose or
			// encode, the commonest announce of a swarm in steady state.
			s.metrics.handedOut.Observe(0)
			writeJSON(w, http.StatusOK, &resp)
			return resultOK
		}
		policy.Limit = *req.NumWant
		// Score as many candidates per peer wanted as for a full hand-out,
		// but enough to find peers with chunks the requester lacks.
		sample = min(max(sample*policy.Limit/s.cfg.HandoutLimit, minCandidateSample), sample)
	}
	rng := s.newRand()
	cands, err := s.store.Candidates(ctx, req.Blob, peerstore.CandidateQuery{
		Exclude:    req.PeerID,
		MaxPeers:   sample,
		MaxOrigins: maxOriginCandidates,
		Rand:       rng,
	})
	if err != nil && !errors.Is(err, peerstore.ErrNotFound) { // not found: the swarm just emptied
		s.log.ErrorContext(ctx, "announce candidates", "blob", req.Blob, "err", err)
		writeError(w, http.StatusInternalServerError, trackerwire.CodeInternal, "reading the swarm failed")
		return resultError
	}
	picked := s.budget.Select(handout.ForRecord(res.Record, s.clock.Now()), cands, policy, rng)
	pp := peerInfoPool.Get().(*[]trackerwire.PeerInfo)
	defer func() {
		clear(resp.Peers) // let go of the records' strings
		*pp = resp.Peers[:0]
		peerInfoPool.Put(pp)
	}()
	resp.Peers = slices.Grow(*pp, len(picked))[:len(picked)]
	for i, p := range picked {
		resp.Peers[i] = trackerwire.PeerInfo{
			PeerID: p.PeerID, Addrs: p.Addrs, Role: p.Role, Complete: p.Complete,
			Have: p.Have, Zone: p.Zone, Rack: p.Rack,
		}
	}
	s.metrics.handedOut.Observe(float64(len(picked)))
	writeJSON(w, http.StatusOK, &resp)
	return resultOK
}

// peerInfoPool holds the Peers slices of announce responses.
var peerInfoPool = sync.Pool{New: func() any { return new([]trackerwire.PeerInfo) }}

func (s *Server) handleSwarm(w http.ResponseWriter, r *http.Request) {
	blob, err := chunker.ParseDigest(r.PathValue(trackerwire.SwarmPathValue))
	if err != nil {
		writeError(w, http.StatusBadRequest, trackerwire.CodeBadDigest, err.Error())
		return
	}
	snap, err := s.store.Swarm(r.Context(), blob)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	st := trackerwire.SwarmStatus{
		Blob:             snap.Blob,
		NumChunks:        snap.NumChunks,
		Peers:            make([]trackerwire.PeerStatus, len(snap.Records)),
		BytesFromOrigins: snap.UploadedByOrigins,
		BytesFromPeers:   snap.UploadedByPeers,
		Manifest:         snap.Manifest,
	}
	if r.URL.RawQuery == trackerwire.SwarmChunksQuery {
		st.Replication = replication(snap)
	}
	for i, rec := range snap.Records {
		st.Peers[i] = trackerwire.PeerStatus{
			PeerID: rec.PeerID, Role: rec.Role, Have: rec.Have, Complete: rec.Complete,
			Uploaded: rec.Uploaded, Downloaded: rec.Downloaded, DownloadedFromOrigins: rec.DownloadedFromOrigins,
			Zone: rec.Zone, Rack: rec.Rack, JoinedAt: rec.JoinedAt.UTC(), LastSeen: rec.LastSeen.UTC(),
		}
		switch {
		case rec.IsOrigin():
			st.Origins++
		case rec.Complete:
			st.Complete++
		}
	}
	writeJSON(w, http.StatusOK, &st)
}

// replication counts, per chunk, the peers (not origins) holding it.
func replication(snap *peerstore.Snapshot) []uint32 {
	out := make([]uint32, snap.NumChunks)
	for _, rec := range snap.Records {
		switch {
		case rec.IsOrigin():
		case rec.Complete:
			for i := range out {
				out[i]++
			}
		default:
			for i := range out {
				if rec.Bitfield.Has(uint32(i)) {
					out[i]++
				}
			}
		}
	}
	return out
}

func (s *Server) handleSwarms(w http.ResponseWriter, r *http.Request) {
	list, err := s.store.Swarms(r.Context())
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	out := trackerwire.SwarmList{Swarms: make([]trackerwire.SwarmSummary, len(list))}
	for i, sum := range list {
		out.Swarms[i] = trackerwire.SwarmSummary{
			Blob: sum.Blob, NumChunks: sum.NumChunks, Peers: sum.Peers, Complete: sum.Complete, Origins: sum.Origins,
		}
	}
	writeJSON(w, http.StatusOK, &out)
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, &trackerwire.Health{Status: "ok"})
}

func (s *Server) storeError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, peerstore.ErrNotFound) {
		writeError(w, http.StatusNotFound, trackerwire.CodeNotFound, err.Error())
		return
	}
	s.log.ErrorContext(r.Context(), "store", "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, trackerwire.CodeInternal, "reading the store failed")
}

func writeJSON(w http.ResponseWriter, code int, v any) { httpx.WriteJSON(w, code, v) }

func writeError(w http.ResponseWriter, code int, errCode, msg string) {
	httpx.WriteJSON(w, code, &trackerwire.ErrorResponse{Error: msg, Code: errCode})
}

// RunSweeper frees expired records every SweepInterval until ctx ends. It
// returns nil then. Serve runs it; call it when serving Handler otherwise.
func (s *Server) RunSweeper(ctx context.Context) error {
	t := s.clock.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		}
		n, err := s.store.Expire(ctx)
		s.metrics.expired.Add(float64(n))
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.WarnContext(ctx, "expiry sweep", "err", err)
		case n > 0:
			s.log.DebugContext(ctx, "expired records", "n", n)
		}
	}
}

// Serve serves the tracker on ln, and runs the expiry sweeper, until ctx
// ends; then it stops accepting, waits up to ShutdownTimeout for requests
// in flight, and returns nil (or the shutdown error). It returns early
// with the error if serving fails. It closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	sweepCtx, stopSweep := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = s.RunSweeper(sweepCtx) })
	defer func() {
		stopSweep()
		wg.Wait()
	}()
	s.log.InfoContext(ctx, "tracker starting", "announce_interval", s.cfg.AnnounceInterval, "peer_ttl", s.cfg.PeerTTL, "auth", s.auth != nil)
	err := httpx.Serve(ctx, ln, s.handler, httpx.ServerOptions{
		Name:            "tracker",
		Logger:          s.log,
		ShutdownTimeout: s.cfg.ShutdownTimeout,
		ReadTimeout:     30 * time.Second,
		WriteTimeout:    30 * time.Second,
	})
	s.log.InfoContext(ctx, "tracker stopped")
	return err
}
