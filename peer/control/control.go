// Package control serves a peer daemon's local control API (see
// internal/wire/ctlwire) for p2pctl: pull a blob through the swarm with
// streamed progress, read its bytes, list and remove blobs. It listens on
// loopback or a unix socket only.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/httpx"
	"github.com/p2pd/p2pd/internal/wire/ctlwire"
)

// ErrNotFound is what an Engine wraps when a blob is unknown.
var ErrNotFound = errors.New("not found")

// Engine is what the control API drives; the daemon adapts the peer
// engine to it.
type Engine interface {
	Info() ctlwire.NodeInfo
	// Pull fetches blob d through the swarm, calling progress now and then.
	Pull(ctx context.Context, d chunker.Digest, progress func(ctlwire.Progress)) (ctlwire.Blob, error)
	Blobs() []ctlwire.Blob
	Remove(ctx context.Context, d chunker.Digest) error
	// Open returns a complete blob's bytes and size.
	Open(ctx context.Context, d chunker.Digest) (io.ReadSeekCloser, int64, error)
}

// ProgressInterval is how often a pull's progress is streamed.
const ProgressInterval = 200 * time.Millisecond

// Server is the control API.
type Server struct {
	eng Engine
	log *slog.Logger
	mux *http.ServeMux
}

// New returns the control API for eng. g is served on /metrics (may be nil).
func New(eng Engine, g prometheus.Gatherer, lg *slog.Logger) *Server {
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	s := &Server{eng: eng, log: lg, mux: http.NewServeMux()}
	s.mux.HandleFunc(ctlwire.RouteNode, func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, eng.Info())
	})
	s.mux.HandleFunc(ctlwire.RouteBlobs, func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, eng.Blobs())
	})
	s.mux.HandleFunc(ctlwire.RoutePull, s.pull)
	s.mux.HandleFunc(ctlwire.RouteData, s.data)
	s.mux.HandleFunc(ctlwire.RouteRemove, s.remove)
	s.mux.HandleFunc(ctlwire.RouteHealth, func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	if g != nil {
		s.mux.Handle(ctlwire.RouteMetric, promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	}
	return s
}

// Handler returns the API's handler.
func (s *Server) Handler() http.Handler { return s.mux }

// Serve serves the API on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return httpx.Serve(ctx, ln, s.mux, httpx.ServerOptions{Name: "control", Logger: s.log})
}

// Listen binds a control address: "unix:/path" or "unix:///path" for a
// unix socket (mode 0600), else host:port, which must be loopback.
func Listen(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		path = strings.TrimPrefix(path, "//")
		ln, err := net.Listen("unix", path)
		if err != nil {
			return nil, fmt.Errorf("control: listen on %s: %w", addr, err)
		}
		return ln, nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("control: address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("control: address %q is not loopback: the control API must stay local", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("control: listen on %s: %w", addr, err)
	}
	return ln, nil
}

func digestParam(w http.ResponseWriter, r *http.Request) (chunker.Digest, bool) {
	d, err := chunker.ParseDigest(r.PathValue("digest"))
	if err != nil {
		httpx.WriteError(w, http.StatusBadRequest, ctlwire.CodeBadRequest, err.Error())
		return d, false
	}
	return d, true
}

func writeErr(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrNotFound) {
		httpx.WriteError(w, http.StatusNotFound, ctlwire.CodeNotFound, err.Error())
		return
	}
	httpx.WriteError(w, http.StatusInternalServerError, ctlwire.CodeInternal, err.Error())
}

func errorEvent(err error) *ctlwire.Error {
	switch {
	case errors.Is(err, ErrNotFound):
		return &ctlwire.Error{Error: err.Error(), Code: ctlwire.CodeNotFound}
	case errors.Is(err, context.Canceled):
		return &ctlwire.Error{Error: err.Error(), Code: ctlwire.CodeCanceled}
	}
	return &ctlwire.Error{Error: err.Error(), Code: ctlwire.CodeInternal}
}

// pull answers with NDJSON progress lines and a final Done or Error line.
// The pull is cancelled if the client goes away.
func (s *Server) pull(w http.ResponseWriter, r *http.Request) {
	var req ctlwire.PullRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, ctlwire.MaxRequestBytes))
	if err := dec.Decode(&req); err != nil || req.Digest.IsZero() {
		httpx.WriteError(w, http.StatusBadRequest, ctlwire.CodeBadRequest, fmt.Sprintf("want {\"digest\": \"sha256:...\"}: %v", err))
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	send := func(ev ctlwire.PullEvent) {
		_ = enc.Encode(ev)
		_ = rc.Flush()
	}
	var last time.Time
	blob, err := s.eng.Pull(r.Context(), req.Digest, func(p ctlwire.Progress) {
		if now := time.Now(); now.Sub(last) >= ProgressInterval {
			last = now
			send(ctlwire.PullEvent{Progress: &p})
		}
	})
	if err != nil {
		s.log.WarnContext(r.Context(), "pull failed", "digest", req.Digest, "err", err)
		send(ctlwire.PullEvent{Error: errorEvent(err)})
		return
	}
	send(ctlwire.PullEvent{Done: &blob})
}

func (s *Server) data(w http.ResponseWriter, r *http.Request) {
	d, ok := digestParam(w, r)
	if !ok {
		return
	}
	rd, _, err := s.eng.Open(r.Context(), d)
	if err != nil {
		writeErr(w, err)
		return
	}
	defer rd.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Docker-Content-Digest", d.String())
	w.Header().Set("ETag", `"`+d.String()+`"`)
	http.ServeContent(w, r, "", time.Time{}, rd)
}

func (s *Server) remove(w http.ResponseWriter, r *http.Request) {
	d, ok := digestParam(w, r)
	if !ok {
		return
	}
	if err := s.eng.Remove(r.Context(), d); err != nil {
		writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
