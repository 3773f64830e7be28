// Package httpx serves the project's HTTP APIs (tracker, origin, peer
// control) the same way: hardened server timeouts, graceful shutdown when
// the context ends, and JSON error bodies, which the clients of those APIs
// read back with DecodeError as an *APIError.
package httpx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultShutdownTimeout bounds the wait for requests in flight.
const DefaultShutdownTimeout = 10 * time.Second

// ServerOptions tune Serve. The zero value is usable.
type ServerOptions struct {
	// Name labels log lines ("tracker", "origin", ...).
	Name string
	// Logger receives the server's logs (default: discarded).
	Logger *slog.Logger
	// ShutdownTimeout bounds the graceful shutdown (default 10s).
	ShutdownTimeout time.Duration
	// ReadTimeout and WriteTimeout bound reading a request and writing a
	// response; zero means none, which streaming endpoints (uploads, blob
	// data, progress) need. Headers always have a 10s deadline.
	ReadTimeout, WriteTimeout time.Duration
}

// Serve serves h on ln until ctx ends, then stops accepting, waits up to
// ShutdownTimeout for requests in flight, and returns nil (or the
// shutdown error). It returns early with the error if serving fails. It
// closes ln. Requests keep ctx's values but outlive its cancellation, so
// that shutdown lets them finish.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, o ServerOptions) error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       o.ReadTimeout,
		WriteTimeout:      o.WriteTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(o.Logger.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	o.Logger.InfoContext(ctx, o.Name+" listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("%s: serve: %w", o.Name, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.ShutdownTimeout)
	defer cancel()
	err := hs.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		_ = hs.Close() // requests still running are cut off
		return fmt.Errorf("%s: shutdown: %w", o.Name, err)
	}
	return nil
}

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// JSONAppender is a type that encodes itself as JSON, with the bytes
// json.Marshal would make, but faster (trackerwire.AnnounceResponse, the
// tracker's busiest answer).
type JSONAppender interface {
	AppendJSON(b []byte) []byte
}

// bufPool holds the buffers WriteJSON encodes JSONAppenders into.
var bufPool = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBuf bounds the buffers kept in bufPool.
const maxPooledBuf = 1 << 20

// WriteJSON writes v as JSON with status code, uncached. A v that is a
// JSONAppender encodes itself, into a pooled buffer.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	if a, ok := v.(JSONAppender); ok {
		bp := bufPool.Get().(*[]byte)
		b := append(a.AppendJSON((*bp)[:0]), '\n')
		writeJSONBytes(w, code, b)
		if cap(b) <= maxPooledBuf {
			*bp = b
			bufPool.Put(bp)
		}
		return
	}
	b, err := json.Marshal(v)
	if err != nil { // a programming error: the API types always encode
		WriteError(w, http.StatusInternalServerError, "INTERNAL", "encoding the response failed")
		return
	}
	writeJSONBytes(w, code, append(b, '\n'))
}

// writeJSONBytes writes the JSON body b, which ends in a newline.
func writeJSONBytes(w http.ResponseWriter, code int, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// WriteError writes an ErrorBody with status code.
func WriteError(w http.ResponseWriter, code int, errCode, msg string) {
	WriteJSON(w, code, ErrorBody{Error: msg, Code: errCode})
}

// Instrument counts h's responses in requests, labelled by route and
// status code.
func Instrument(requests *prometheus.CounterVec, route string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h(sw, r)
		requests.WithLabelValues(route, strconv.Itoa(sw.code)).Inc()
	})
}

type statusWriter struct {
	http.ResponseWriter
	code    int
	written bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.written {
		w.code, w.written = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.written = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// MethodNotAllowed answers 405 with an Allow header listing allow and an
// ErrorBody with code.
func MethodNotAllowed(code string, allow ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for _, m := range allow {
			w.Header().Add("Allow", m)
		}
		WriteError(w, http.StatusMethodNotAllowed, code, fmt.Sprintf("method %s not allowed on %s", r.Method, r.URL.Path))
	}
}

// Underlying unwraps middleware writers (those with an Unwrap method) down
// to the server's own ResponseWriter.
func Underlying(w http.ResponseWriter) http.ResponseWriter {
	for {
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return w
		}
		w = u.Unwrap()
	}
}
