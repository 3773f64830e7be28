// Package daemon is the composition root: the only package that calls the
// components' constructors. It defines each role's YAML configuration
// (composed of the components' own Configs), and RunTracker, RunOrigin,
// RunPeer and RunDev, which bind the listeners, start the role and return
// a Node once it is serving. cmd/p2pd and the testbed both build nodes
// only through here, so tests run the code the binaries run.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/p2pd/p2pd/internal/auth"
)

// Node is a running role. Close stops it; Done is closed when it has
// stopped by itself or been closed.
type Node struct {
	Role string
	// Scheme is "https" when the node's HTTP API serves TLS, else "http".
	Scheme string
	// Addrs maps a listener's name ("http", "control", "p2p") to its bound address.
	Addrs  map[string]string
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	err    error
}

func newNode(role string, cancel context.CancelFunc) *Node {
	return &Node{Role: role, Scheme: "http", Addrs: map[string]string{}, cancel: cancel, done: make(chan struct{})}
}

// URL returns the scheme and the named listener's address: "https://" for
// the HTTP API of a node that serves TLS, else "http://".
func (n *Node) URL(name string) string {
	if name == "http" {
		return n.Scheme + "://" + n.Addrs[name]
	}
	return "http://" + n.Addrs[name]
}

// listenAPI binds an HTTP API's listener, with TLS if cr has a server
// certificate, and returns it with its URL scheme.
func listenAPI(what, addr string, cr *auth.Credentials) (net.Listener, string, error) {
	ln, err := listen(what, addr)
	if err != nil {
		return nil, "", err
	}
	if cr.ServerTLS == nil {
		return ln, "http", nil
	}
	return tls.NewListener(ln, cr.ServerTLS), "https", nil
}

// loadSecurity loads the credentials c names.
func loadSecurity(role string, c auth.Config) (*auth.Credentials, error) {
	cr, err := c.Load()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", role, err)
	}
	return cr, nil
}

// Done is closed once the node has stopped.
func (n *Node) Done() <-chan struct{} { return n.done }

// Err returns why the node stopped (nil after a clean Close).
func (n *Node) Err() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.err
}

// Close stops the node gracefully and waits for it, or for ctx.
func (n *Node) Close(ctx context.Context) error {
	n.cancel()
	select {
	case <-n.done:
		return n.Err()
	case <-ctx.Done():
		return fmt.Errorf("%s: close: %w", n.Role, ctx.Err())
	}
}

// run starts fns (each serving until ctx ends) and closes the node when
// all have returned. The first error cancels the others.
func (n *Node) run(ctx context.Context, fns ...func(context.Context) error) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, fn := range fns {
		wg.Go(func() {
			if err := fn(ctx); err != nil && !errors.Is(err, context.Canceled) {
				n.mu.Lock()
				n.err = errors.Join(n.err, err)
				n.mu.Unlock()
				cancel()
			}
		})
	}
	go func() {
		wg.Wait()
		cancel()
		close(n.done)
	}()
}

// listen binds addr ("host:port", port 0 for any) on TCP.
func listen(what, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen on %s: %w", what, addr, err)
	}
	return ln, nil
}

// LogConfig configures logging for every role.
type LogConfig struct {
	// Level is debug, info, warn or error (default info).
	Level string `yaml:"level"`
	// Format is text or json (default text).
	Format string `yaml:"format"`
}

// Validate reports an unknown level or format.
func (c LogConfig) Validate() error {
	var l slog.Level
	if c.Level != "" {
		if err := l.UnmarshalText([]byte(c.Level)); err != nil {
			return fmt.Errorf("log: level %q: want debug, info, warn or error", c.Level)
		}
	}
	switch strings.ToLower(c.Format) {
	case "", "text", "json":
		return nil
	}
	return fmt.Errorf("log: format %q: want text or json", c.Format)
}

// NewLogger returns the logger c describes, writing to w (stderr if nil).
func NewLogger(c LogConfig, w io.Writer) *slog.Logger {
	if w == nil {
		w = os.Stderr
	}
	var l slog.Level
	_ = l.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: l}
	if strings.EqualFold(c.Format, "json") {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// newRegistry returns a metrics registry with the Go runtime and process
// collectors, served on the role's /metrics.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
