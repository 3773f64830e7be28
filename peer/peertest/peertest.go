// Package peertest runs in-process swarms of peer engines for tests:
// engines with real stores in temporary directories on loopback, blobs
// generated and chunked into a node's store, a store wrapper that serves
// corrupt chunks, a log recorder, and Eventually for waiting by polling.
//
// The tracker is the caller's: package peer may not import the tracker
// server (internal/archtest), so tests start one with tracker.New on an
// httptest server and pass its client in.
package peertest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/clock"
	"github.com/p2pd/p2pd/internal/wire/trackerwire"
	"github.com/p2pd/p2pd/peer"
	"github.com/p2pd/p2pd/peer/byzantine"
	"github.com/p2pd/p2pd/peer/store"
	"github.com/p2pd/p2pd/tracker/trackerclient"
)

// SmallChunks are chunk sizes for test blobs: min 16 KiB, average 64 KiB,
// max 256 KiB, so that a few MiB make hundreds of chunks.
var SmallChunks = chunker.Config{MinSize: 16 << 10, AvgSize: 64 << 10, MaxSize: 256 << 10}

// TestConfig returns an engine configuration for tests: loopback only,
// announces every second, short timeouts.
func TestConfig() peer.Config {
	return peer.Config{
		ListenAddrs:     []string{"/ip4/127.0.0.1/tcp/0"},
		RequestTimeout:  5 * time.Second,
		ManifestTimeout: 10 * time.Second,
		DialTimeout:     5 * time.Second,
		Announce: trackerclient.AnnouncerConfig{
			DefaultInterval: time.Second,
			MinInterval:     500 * time.Millisecond,
			BackoffMin:      100 * time.Millisecond,
			BackoffMax:      time.Second,
			StopTimeout:     2 * time.Second,
		},
	}
}

// Node is one engine with its store, directory and metrics.
type Node struct {
	t        testing.TB
	Name     string
	Dir      string
	Config   peer.Config
	Tracker  peer.Tracker
	Store    *store.Store
	Engine   *peer.Engine
	Registry *prometheus.Registry
	Logs     *LogRecorder
	// Wrap, if set when the node starts, wraps the store the engine uses
	// (see CorruptReads).
	Wrap func(peer.Store) peer.Store
	// Clock, if set when the node starts, is the engine's clock.
	Clock clock.Clock

	mu      sync.Mutex
	running bool
}

// NewNode returns a node in a new temporary directory; start it with
// Start. It is stopped when the test ends.
func NewNode(t testing.TB, name string, tr peer.Tracker, cfg peer.Config) *Node {
	t.Helper()
	n := &Node{t: t, Name: name, Dir: t.TempDir(), Config: cfg, Tracker: tr}
	t.Cleanup(n.Stop)
	return n
}

// StartNode is NewNode followed by Start.
func StartNode(t testing.TB, name string, tr peer.Tracker, cfg peer.Config) *Node {
	t.Helper()
	n := NewNode(t, name, tr, cfg)
	n.Start()
	return n
}

// Start opens the node's store and starts a new engine on it, with a new
// metrics registry and log recorder.
func (n *Node) Start() {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.running {
		n.t.Fatalf("%s: started twice", n.Name)
	}
	n.Logs = NewLogRecorder(n.t, n.Name)
	st, err := store.Open(store.DefaultConfig(n.Dir), store.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		n.t.Fatalf("%s: open store: %v", n.Name, err)
	}
	var ps peer.Store = st
	if n.Wrap != nil {
		ps = n.Wrap(st)
	}
	n.Registry = prometheus.NewRegistry()
	e, err := peer.New(n.Config, peer.Deps{Store: ps, Tracker: n.Tracker, Clock: n.Clock, Logger: n.Logs.Logger(), Registry: n.Registry})
	if err != nil {
		st.Close()
		n.t.Fatalf("%s: new engine: %v", n.Name, err)
	}
	if err := e.Start(context.Background()); err != nil {
		st.Close()
		n.t.Fatalf("%s: start engine: %v", n.Name, err)
	}
	n.Store, n.Engine, n.running = st, e, true
}

// Stop closes the engine and the store. Stopping a stopped node does
// nothing.
func (n *Node) Stop() {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.running {
		return
	}
	n.running = false
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Engine.Close(ctx); err != nil {
		n.t.Errorf("%s: close engine: %v", n.Name, err)
	}
	if err := n.Store.Close(); err != nil {
		n.t.Errorf("%s: close store: %v", n.Name, err)
	}
}

// Restart stops the node and starts it again on the same directory.
func (n *Node) Restart() {
	n.t.Helper()
	n.Stop()
	n.Start()
}

// Stats returns the engine's counters.
func (n *Node) Stats() peer.Stats { return n.Engine.Stats() }

// Cluster is a swarm for one test: an origin (Role origin) and peers,
// all announcing to one tracker.
type Cluster struct {
	Tracker peer.Tracker
	Origin  *Node
	Peers   []*Node
}

// ClusterOptions shape a Cluster.
type ClusterOptions struct {
	// Peers is the number of ordinary peers.
	Peers int
	// NoOrigin leaves the origin out.
	NoOrigin bool
	// Config, if set, adjusts each node's configuration (TestConfig, with
	// Role origin for the origin) before it starts.
	Config func(name string, cfg *peer.Config)
}

// NewCluster starts the nodes of a cluster; they stop when the test ends.
func NewCluster(t testing.TB, tr peer.Tracker, o ClusterOptions) *Cluster {
	t.Helper()
	c := &Cluster{Tracker: tr}
	mk := func(name string, role trackerwire.Role) *Node {
		cfg := TestConfig()
		cfg.Role = role
		if o.Config != nil {
			o.Config(name, &cfg)
		}
		return StartNode(t, name, tr, cfg)
	}
	if !o.NoOrigin {
		c.Origin = mk("origin", trackerwire.RoleOrigin)
	}
	for i := range o.Peers {
		c.Peers = append(c.Peers, mk(fmt.Sprintf("peer%d", i), trackerwire.RolePeer))
	}
	return c
}

// AddBlob chunks r with cfg into n's store, without seeding it.
func AddBlob(t testing.TB, n *Node, r io.Reader, cfg chunker.Config) *chunker.Manifest {
	t.Helper()
	c, err := chunker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m, err := c.Split(ctx, r, func(ch chunker.Chunk, b []byte) error {
		return n.Store.Put(ctx, ch.Digest, b)
	})
	if err != nil {
		t.Fatalf("%s: chunk blob: %v", n.Name, err)
	}
	return m
}

// SeedBlob chunks r with cfg into n's store and seeds it.
func SeedBlob(t testing.TB, n *Node, r io.Reader, cfg chunker.Config) *chunker.Manifest {
	t.Helper()
	m := AddBlob(t, n, r, cfg)
	if err := n.Engine.Seed(context.Background(), m); err != nil {
		t.Fatalf("%s: seed: %v", n.Name, err)
	}
	return m
}

// Eventually calls f until it returns nil, failing the test with f's last
// error if that takes longer than d. It polls; it never sleeps longer
// than 20ms at a time.
func Eventually(t testing.TB, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %v", d, err)
		}
		<-tick.C
	}
}

// CorruptReads is byzantine.CorruptReads: a node using it serves corrupt
// chunks.
func CorruptReads(s peer.Store) peer.Store { return byzantine.CorruptReads(s) }

// LogRecorder sends a node's logs to the test log (Warn and above, or
// everything with P2PD_TEST_DEBUG=1) and keeps every record's message and
// attributes for assertions.
type LogRecorder struct {
	t    testing.TB
	name string
	mu   sync.Mutex
	recs []string
	done bool
}

// NewLogRecorder returns a recorder; it stops writing to the test log when
// the test ends.
func NewLogRecorder(t testing.TB, name string) *LogRecorder {
	r := &LogRecorder{t: t, name: name}
	t.Cleanup(func() {
		r.mu.Lock()
		r.done = true
		r.mu.Unlock()
	})
	return r
}

// Logger returns a logger that records into r.
func (r *LogRecorder) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(recWriter{r}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Contains reports whether a record contains every one of the substrings
// (matched against "msg key=value ...").
func (r *LogRecorder) Contains(subs ...string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
next:
	for _, rec := range r.recs {
		for _, s := range subs {
			if !strings.Contains(rec, s) {
				continue next
			}
		}
		return true
	}
	return false
}

// Count returns the number of records that contain every one of the
// substrings.
func (r *LogRecorder) Count(subs ...string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
next:
	for _, rec := range r.recs {
		for _, s := range subs {
			if !strings.Contains(rec, s) {
				continue next
			}
		}
		n++
	}
	return n
}

type recWriter struct{ r *LogRecorder }

func (w recWriter) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\n")
	w.r.mu.Lock()
	w.r.recs = append(w.r.recs, line)
	done := w.r.done
	w.r.mu.Unlock()
	if !done && (os.Getenv("P2PD_TEST_DEBUG") != "" || strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR")) {
		w.r.t.Logf("%s: %s", w.r.name, line)
	}
	return len(p), nil
}
