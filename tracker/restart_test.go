package tracker

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/clock"
	"github.com/p2pd/p2pd/internal/wire/trackerwire"
	"github.com/p2pd/p2pd/tracker/trackerclient"
)

// simPeer is a peer whose state the test changes between rounds.
type simPeer struct {
	id string
	mu sync.Mutex
	st trackerclient.State
	// kinds records what each announce carried: "full", "delta",
	// "complete" or "stopped".
	kinds []string
}

func (p *simPeer) state(context.Context) (trackerclient.State, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.st
	st.Bitfield = st.Bitfield.Clone()
	return st, nil
}

func (p *simPeer) add(chunks ...uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range chunks {
		p.st.Bitfield.Set(c)
	}
	p.st.Downloaded += uint64(len(chunks)) * 1000
}

func (p *simPeer) lastKinds(n int) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.kinds[max(0, len(p.kinds)-n):]...)
}

// recordingClient notes the kind of each announce of a peer.
type recordingClient struct {
	c     *trackerclient.Client
	peers map[string]*simPeer
}

func (r recordingClient) Announce(ctx context.Context, req *trackerwire.AnnounceRequest) (*trackerwire.AnnounceResponse, error) {
	kind := "delta"
	switch {
	case req.Event == trackerwire.EventStopped:
		kind = "stopped"
	case req.Complete:
		kind = "complete"
	case req.Bitfield != nil:
		kind = "full"
	}
	p := r.peers[req.PeerID]
	p.mu.Lock()
	p.kinds = append(p.kinds, kind)
	p.mu.Unlock()
	return r.c.Announce(ctx, req)
}

// TestTrackerRestart: peers announce to a tracker that is replaced by a
// new, empty one. Their next deltas get NeedFull, they re-send their full
// bitfields at once, and after that one round the new tracker's view
// equals the old one's.
func TestTrackerRestart(t *testing.T) {
	const numPeers, numChunks = 8, 1000
	clk := clock.NewFake(time.Time{})
	blob := chunker.Sum([]byte("restart"))
	newTracker := func(seed uint64) *Server {
		srv, err := New(Config{}, Deps{Clock: clk, Logger: testLogger(t), Registry: prometheus.NewRegistry(), Rand: rand.New(rand.NewPCG(seed, 0))})
		if err != nil {
			t.Fatal(err)
		}
		return srv
	}
	// The listener survives the "restart"; the tracker behind it does not.
	var current atomic.Pointer[Server]
	current.Store(newTracker(1))
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		current.Load().Handler().ServeHTTP(w, r)
	}))
	defer ts.Close()
	client, err := trackerclient.New(ts.URL, trackerclient.WithHTTPClient(ts.Client()))
	if err != nil {
		t.Fatal(err)
	}

	peers := map[string]*simPeer{}
	var list []*simPeer
	for i := range numPeers {
		p := &simPeer{id: fmt.Sprintf("peer-%d", i), st: trackerclient.State{
			Addrs: []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 4000+i)}, NumChunks: numChunks,
			Bitfield: trackerwire.NewBitfield(numChunks),
		}}
		if i == 0 { // an origin: complete, never sends bitfields
			p.id = "origin"
			p.st.Complete, p.st.Bitfield = true, nil
		}
		peers[p.id] = p
		list = append(list, p)
	}
	responses := make(chan string, 4*numPeers)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i, p := range list {
		role := trackerwire.RolePeer
		if p.st.Complete {
			role = trackerwire.RoleOrigin
		}
		a, err := trackerclient.NewAnnouncer(
			trackerclient.Identity{Blob: blob, PeerID: p.id, Role: role},
			trackerclient.AnnouncerConfig{},
			trackerclient.AnnouncerDeps{
				Client: recordingClient{client, peers},
				State:  p.state,
				OnResponse: func(_ context.Context, resp *trackerwire.AnnounceResponse) {
					responses <- p.id
				},
				Clock:  clk,
				Logger: testLogger(t),
				Rand:   rand.New(rand.NewPCG(uint64(i), 9)),
			})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { _ = a.Run(ctx) })
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			wg.Wait()
		}
	}
	defer stop()

	deadline := func() context.Context {
		c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		t.Cleanup(cancel)
		return c
	}
	// awaitRound waits until every peer has had a response.
	awaitRound := func(what string) {
		t.Helper()
		got := map[string]bool{}
		d := deadline()
		for len(got) < numPeers {
			select {
			case id := <-responses:
				got[id] = true
			case <-d.Done():
				t.Fatalf("%s: only %d of %d peers answered", what, len(got), numPeers)
			}
		}
	}
	// round lets every announcer's interval elapse once.
	round := func(what string) {
		t.Helper()
		if err := clk.WaitTimers(deadline(), numPeers); err != nil {
			t.Fatalf("%s: announcers not waiting: %v", what, err)
		}
		clk.Advance(6 * time.Second) // interval 5s, jitter ±10%
		awaitRound(what)
	}
	// view is the tracker's idea of each peer's chunk count.
	view := func(srv *Server) map[string]uint32 {
		t.Helper()
		ts := httptest.NewServer(srv.Handler())
		defer ts.Close()
		c, _ := trackerclient.New(ts.URL, trackerclient.WithHTTPClient(ts.Client()))
		st, err := c.Swarm(context.Background(), blob)
		if err != nil {
			t.Fatalf("Swarm: %v", err)
		}
		out := map[string]uint32{}
		for _, p := range st.Peers {
			out[p.PeerID] = p.Have
		}
		return out
	}
	want := func() map[string]uint32 {
		out := map[string]uint32{}
		for _, p := range list {
			st, _ := p.state(context.Background())
			if st.Complete {
				out[p.id] = numChunks
			} else {
				out[p.id] = uint32(st.Bitfield.Count())
			}
		}
		return out
	}
	checkView := func(what string, srv *Server) {
		t.Helper()
		got, exp := view(srv), want()
		if fmt.Sprint(got) != fmt.Sprint(exp) {
			t.Fatalf("%s: tracker sees %v, peers have %v", what, got, exp)
		}
	}

	awaitRound("start") // the first announces go out at once
	for i, p := range list[1:] {
		p.add(uint32(i), uint32(100+i))
	}
	round("deltas")
	for _, p := range list[1:] {
		if k := p.lastKinds(1); k[0] != "delta" {
			t.Fatalf("%s sent %v, want a delta", p.id, k)
		}
	}
	old := current.Load()
	checkView("before the restart", old)

	// Restart: a new tracker with no state; the peers keep gaining chunks.
	fresh := newTracker(2)
	current.Store(fresh)
	for i, p := range list[1:] {
		p.add(uint32(200 + i))
	}
	round("after the restart")
	for _, p := range list[1:] {
		if k := p.lastKinds(2); fmt.Sprint(k) != "[delta full]" {
			t.Fatalf("%s sent %v after the restart, want [delta full]", p.id, k)
		}
	}
	if k := peers["origin"].lastKinds(1); k[0] != "complete" {
		t.Fatalf("origin sent %v", k)
	}
	checkView("one round after the restart", fresh)
	if got := testutil.ToFloat64(fresh.metrics.announces.WithLabelValues(resultNeedFull)); got != numPeers-1 {
		t.Fatalf("NeedFull answers: %v, want %d", got, numPeers-1)
	}
	// And deltas work again.
	for _, p := range list[1:] {
		p.add(999)
	}
	round("deltas on the new tracker")
	for _, p := range list[1:] {
		if k := p.lastKinds(1); k[0] != "delta" {
			t.Fatalf("%s sent %v, want a delta", p.id, k)
		}
	}
	checkView("after more deltas", fresh)

	// Stopping the announcers removes their records.
	stop()
	for _, p := range list {
		if k := p.lastKinds(1); k[0] != "stopped" {
			t.Fatalf("%s ended with %v", p.id, k)
		}
	}
	if _, err := client.Swarm(context.Background(), blob); err == nil {
		t.Fatal("swarm still known after every peer stopped")
	}
}
