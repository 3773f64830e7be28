// Package testbed runs fleets of p2pd nodes in one process, built through
// internal/daemon exactly as the p2pd binary builds them, and measures how
// a blob fans out. This first part holds the in-process cluster used by
// tests and the demo that `make demo` runs.
package testbed

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/chunker/chunkertest"
	"github.com/p2pd/p2pd/internal/auth"
	"github.com/p2pd/p2pd/internal/daemon"
	"github.com/p2pd/p2pd/internal/units"
	"github.com/p2pd/p2pd/origin/originclient"
	"github.com/p2pd/p2pd/peer/control/controlclient"
	"github.com/p2pd/p2pd/tracker/trackerclient"
)

// PeerResult is one peer's pull in a fan-out.
type PeerResult struct {
	Peer             int           `json:"peer"`
	PeerID           string        `json:"peer_id"`
	Elapsed          time.Duration `json:"elapsed_ns"`
	BytesFromPeers   int64         `json:"bytes_from_peers"`
	BytesFromOrigins int64         `json:"bytes_from_origins"`
	Verified         bool          `json:"verified"`
	Err              string        `json:"error,omitempty"`
}

// FanOut is the result of pushing one blob and pulling it on every peer.
type FanOut struct {
	Blob   chunker.Digest `json:"blob"`
	Size   int64          `json:"size"`
	Peers  []PeerResult   `json:"peers"`
	Total  time.Duration  `json:"total_ns"`
	Push   time.Duration  `json:"push_ns"`
	Failed int            `json:"failed"`
	// OriginEgress is what the origin uploaded, from the tracker's view
	// of the swarm (announced upload counters).
	OriginEgress int64 `json:"origin_egress_bytes"`
	PeerEgress   int64 `json:"peer_egress_bytes"`
}

// RunFanOut pushes a generated blob of size bytes to the cluster's origin,
// pulls it on every peer at once through their control APIs, then reads
// every peer's copy back and checks its SHA-256.
func RunFanOut(ctx context.Context, c *daemon.Cluster, size int64, seed uint64) (*FanOut, error) {
	oc, err := originclient.New(c.Origin.URL("http"), originclient.WithHTTPClient(c.Client(auth.ScopePush)))
	if err != nil {
		return nil, err
	}
	defer oc.CloseIdleConnections()
	start := time.Now()
	res, err := oc.Push(ctx, chunkertest.NewStream(seed, size), originclient.PushOptions{Size: size})
	if err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	f := &FanOut{Blob: res.Digest, Size: res.Size, Push: time.Since(start), Peers: make([]PeerResult, len(c.Peers))}

	start = time.Now()
	var wg sync.WaitGroup
	for i, p := range c.Peers {
		wg.Go(func() { f.Peers[i] = pullAndVerify(ctx, i, p.Addrs["control"], f.Blob) })
	}
	wg.Wait()
	f.Total = time.Since(start)
	for _, r := range f.Peers {
		if r.Err != "" {
			f.Failed++
		}
	}
	tc, err := trackerclient.New(c.Tracker.URL("http"), trackerclient.WithHTTPClient(c.Client(auth.ScopeAdmin)))
	if err != nil {
		return nil, err
	}
	defer tc.CloseIdleConnections()
	// The byte counters reach the tracker with each node's next announce.
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := tc.Swarm(ctx, f.Blob)
		if err == nil {
			f.OriginEgress, f.PeerEgress = int64(st.BytesFromOrigins), int64(st.BytesFromPeers)
		}
		var fromOrigins int64
		for _, r := range f.Peers {
			fromOrigins += r.BytesFromOrigins
		}
		if f.OriginEgress >= fromOrigins || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return f, ctx.Err()
		case <-time.After(200 * time.Millisecond): // polling the tracker
		}
	}
	return f, nil
}

func pullAndVerify(ctx context.Context, i int, addr string, d chunker.Digest) PeerResult {
	r := PeerResult{Peer: i}
	cc, err := controlclient.New(addr)
	if err != nil {
		r.Err = err.Error()
		return r
	}
	defer cc.Close()
	if n, err := cc.Node(ctx); err == nil {
		r.PeerID = n.PeerID
	}
	blob, err := cc.Pull(ctx, d, nil)
	if err != nil {
		r.Err = err.Error()
		return r
	}
	r.Elapsed, r.BytesFromPeers, r.BytesFromOrigins = blob.Elapsed, blob.BytesFromPeers, blob.BytesFromOrigins
	rc, _, err := cc.Open(ctx, d)
	if err != nil {
		r.Err = err.Error()
		return r
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		r.Err = err.Error()
		return r
	}
	if chunker.Digest(h.Sum(nil)) != d {
		r.Err = "copy does not hash to " + d.String()
		return r
	}
	r.Verified = true
	return r
}

// Print writes a human-readable report of f.
func (f *FanOut) Print(w io.Writer) {
	fmt.Fprintf(w, "blob %s, %s, pushed in %.2fs\n\n", f.Blob, units.FormatSize(f.Size), f.Push.Seconds())
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tTIME\tFROM PEERS\tFROM ORIGIN\tVERIFIED")
	sorted := slices.Clone(f.Peers)
	slices.SortFunc(sorted, func(a, b PeerResult) int { return int(a.Elapsed - b.Elapsed) })
	for _, r := range sorted {
		status := "yes"
		if !r.Verified {
			status = "NO: " + r.Err
		}
		fmt.Fprintf(tw, "peer-%d\t%.2fs\t%s\t%s\t%s\n", r.Peer, r.Elapsed.Seconds(),
			units.FormatSize(r.BytesFromPeers), units.FormatSize(r.BytesFromOrigins), status)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nall pulls done in %.2fs; origin uploaded %s (%.2fx the blob), peers uploaded %s\n",
		f.Total.Seconds(), units.FormatSize(f.OriginEgress), float64(f.OriginEgress)/float64(max(f.Size, 1)), units.FormatSize(f.PeerEgress))
	if f.Failed == 0 {
		fmt.Fprintf(w, "all %d copies verified (SHA-256 %s)\n", len(f.Peers), f.Blob)
	} else {
		fmt.Fprintf(w, "%d of %d copies FAILED\n", f.Failed, len(f.Peers))
	}
}

// Err reports a fan-out in which some copy failed.
func (f *FanOut) Err() error {
	if f.Failed > 0 {
		return fmt.Errorf("%d of %d peers did not get a verified copy", f.Failed, len(f.Peers))
	}
	return nil
}
