package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/wire/ctlwire"
	"github.com/p2pd/p2pd/internal/wire/trackerwire"
	"github.com/p2pd/p2pd/testbed/scenario"
)

// slowHosts starts peers whose control API is one fake daemon that
// completes every pull at once. The last peer is slow to start: it waits
// for a pull to arrive (or for a second), as a daemon starting on a busy
// machine would lag behind the others.
type slowHosts struct {
	total    int
	up       atomic.Int32
	pulled   chan struct{} // closed by the first pull
	once     atomic.Bool
	early    atomic.Int32 // pulls that arrived before every daemon was up
	addr     string
	lastName string
}

func (h *slowHosts) StartPeer(ctx context.Context, p scenario.Peer) (Node, error) {
	if p.Name == h.lastName {
		select {
		case <-h.pulled:
		case <-time.After(time.Second):
		case <-ctx.Done():
		}
	}
	h.up.Add(1)
	return Node{Control: h.addr, Stop: func(context.Context, bool) error { return nil }}, nil
}

func (h *slowHosts) serve(w http.ResponseWriter, r *http.Request) {
	if int(h.up.Load()) < h.total {
		h.early.Add(1)
	}
	if h.once.CompareAndSwap(false, true) {
		close(h.pulled)
	}
	_ = json.NewEncoder(w).Encode(ctlwire.PullEvent{Done: &ctlwire.Blob{Size: 1}})
}

type noTracker struct{}

func (noTracker) SwarmReplication(context.Context, chunker.Digest) (*trackerwire.SwarmStatus, error) {
	return nil, errors.New("no tracker")
}

// The peers that join at the start begin their pulls together, once all
// of their daemons are up, and their clocks start then: a daemon slow to
// start delays no one's pull and is not charged to anyone's time.
func TestInitialPeersPullOnceAllAreUp(t *testing.T) {
	s, err := scenario.Parse([]byte(`
name: start
blob: {size: 4MiB, chunk: 32KiB}
origins: {count: 1, up: 1Mbit, down: 1Mbit}
classes:
  - {name: peer, count: 8, up: 1Mbit, down: 1Mbit}
timeout: 30s
sample: 10ms
`))
	if err != nil {
		t.Fatal(err)
	}
	s = s.WithDefaults()
	peers := s.Expand()
	h := &slowHosts{total: len(peers), pulled: make(chan struct{}), lastName: peers[len(peers)-1].Name}
	srv := httptest.NewServer(http.HandlerFunc(h.serve))
	defer srv.Close()
	h.addr = strings.TrimPrefix(srv.URL, "http://")
	f := New(Config{Scenario: s, Mode: scenario.ModeEmu, Tracker: noTracker{}, Hosts: h})
	res := f.Run(context.Background())
	if err := f.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := h.early.Load(); n > 0 {
		t.Errorf("%d of %d pulls began before every daemon was up", n, len(peers))
	}
	for _, p := range res.Peers {
		if !p.Completed {
			t.Fatalf("peer %s did not complete: %s", p.Name, p.Err)
		}
		if p.DoneS > 0.5 {
			t.Errorf("peer %s took %.2f s for an instant pull: its daemon's start counted", p.Name, p.DoneS)
		}
	}
}
