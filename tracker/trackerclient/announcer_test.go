package trackerclient

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/p2pd/p2pd/internal/clock"
	"github.com/p2pd/p2pd/internal/wire/trackerwire"
)

// scripted is an AnnounceClient that records requests and answers with
// its reply function.
type scripted struct {
	mu    sync.Mutex
	reqs  []*trackerwire.AnnounceRequest
	reply func(n int, req *trackerwire.AnnounceRequest) (*trackerwire.AnnounceResponse, error)
	calls chan struct{}
}

func newScripted(reply func(int, *trackerwire.AnnounceRequest) (*trackerwire.AnnounceResponse, error)) *scripted {
	return &scripted{reply: reply, calls: make(chan struct{}, 100)}
}

func ok(int, *trackerwire.AnnounceRequest) (*trackerwire.AnnounceResponse, error) {
	return &trackerwire.AnnounceResponse{Interval: 5, Peers: []trackerwire.PeerInfo{}}, nil
}

func (s *scripted) Announce(ctx context.Context, req *trackerwire.AnnounceRequest) (*trackerwire.AnnounceResponse, error) {
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, req)
	n := len(s.reqs)
	s.mu.Unlock()
	defer func() { s.calls <- struct{}{} }()
	return s.reply(n, req)
}

func (s *scripted) requests() []*trackerwire.AnnounceRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs)
}

// await waits for n more announces.
func (s *scripted) await(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for range n {
		select {
		case <-s.calls:
		case <-timeout:
			t.Fatalf("announce did not come")
		}
	}
}

// mutableState is a State callback the test changes.
type mutableState struct {
	mu sync.Mutex
	st State
}

func (m *mutableState) get(context.Context) (State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.st
	st.Bitfield = st.Bitfield.Clone()
	return st, nil
}

func (m *mutableState) update(f func(st *State)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(&m.st)
}

type run struct {
	a      *Announcer
	clk    *clock.Fake
	cancel context.CancelFunc
	done   chan error
}

func startAnnouncer(t *testing.T, c AnnounceClient, state func(context.Context) (State, error), role trackerwire.Role) *run {
	t.Helper()
	clk := clock.NewFake(time.Time{})
	a, err := NewAnnouncer(Identity{Blob: blob, PeerID: "p1", Role: role, Zone: "z"}, AnnouncerConfig{StopTimeout: time.Second},
		AnnouncerDeps{Client: c, State: state, Clock: clk, Logger: testLogger(t), Rand: rand.New(rand.NewPCG(1, 1))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{a: a, clk: clk, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

func (r *run) stop() {
	r.cancel()
	<-r.done
	r.done <- nil // let a second stop return
}

// tick waits until the announcer sleeps and lets d pass.
func (r *run) tick(t *testing.T, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := r.clk.WaitTimers(ctx, 1); err != nil {
		t.Fatal("announcer is not waiting")
	}
	r.clk.Advance(d)
}

func kind(req *trackerwire.AnnounceRequest) string {
	switch {
	case req.Event == trackerwire.EventStopped:
		return "stopped"
	case req.Complete && req.Bitfield == nil && req.Delta == nil:
		return "complete"
	case req.Bitfield != nil:
		return "full"
	case req.Delta != nil:
		return fmt.Sprint("delta", req.Delta.Added)
	}
	return "?"
}

func TestAnnouncerLifecycle(t *testing.T) {
	const n = 1000
	c := newScripted(ok)
	st := &mutableState{st: State{Addrs: []string{"/ip4/1.2.3.4/tcp/1"}, NumChunks: n, Bitfield: trackerwire.NewBitfield(n)}}
	var responses []*trackerwire.AnnounceResponse
	var mu sync.Mutex
	clk := clock.NewFake(time.Time{})
	a, err := NewAnnouncer(Identity{Blob: blob, PeerID: "p1", Role: trackerwire.RolePeer}, AnnouncerConfig{},
		AnnouncerDeps{Client: c, State: st.get, Clock: clk, Rand: rand.New(rand.NewPCG(1, 1)),
			OnResponse: func(_ context.Context, r *trackerwire.AnnounceResponse) {
				mu.Lock()
				responses = append(responses, r)
				mu.Unlock()
			}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	r := &run{a: a, clk: clk}

	c.await(t, 1) // started, full
	r.tick(t, 6*time.Second)
	c.await(t, 1) // heartbeat: empty delta
	st.update(func(s *State) { s.Bitfield.Set(7); s.Bitfield.Set(500); s.NumWant = trackerwire.WantPeers(3) })
	r.tick(t, 6*time.Second)
	c.await(t, 1) // delta [7 500]
	st.update(func(s *State) {
		s.Bitfield = trackerwire.NewBitfield(n) // chunks lost: full
		s.Bitfield.Set(1)
	})
	r.tick(t, 6*time.Second)
	c.await(t, 1)
	st.update(func(s *State) { s.Complete, s.Bitfield, s.NumWant = true, nil, trackerwire.WantPeers(0) })
	a.Trigger() // no need to wait for the interval
	c.await(t, 1)
	r.tick(t, 6*time.Second)
	c.await(t, 1)
	// await sees the request; its answer reaches OnResponse just after.
	nresp := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(responses)
	}
	for deadline := time.Now().Add(20 * time.Second); nresp() < 6 && time.Now().Before(deadline); {
		runtime.Gosched()
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	var got, wants []string
	var events []trackerwire.Event
	for _, req := range c.requests() {
		got = append(got, kind(req))
		events = append(events, req.Event)
		w := "-"
		if req.NumWant != nil {
			w = fmt.Sprint(*req.NumWant)
		}
		wants = append(wants, w)
	}
	// The state's NumWant is sent as it is; absent, the tracker's default.
	if want := "[- - 3 3 0 0 -]"; fmt.Sprint(wants) != want {
		t.Fatalf("num_want %v, want %s", wants, want)
	}
	want := []string{"full", "delta[]", "delta[7 500]", "full", "complete", "complete", "stopped"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("announces %v, want %v", got, want)
	}
	wantEvents := []trackerwire.Event{"started", "", "", "", "completed", "", "stopped"}
	if fmt.Sprint(events) != fmt.Sprint(wantEvents) {
		t.Fatalf("events %q, want %q", events, wantEvents)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(responses) != 6 {
		t.Fatalf("OnResponse called %d times, want 6", len(responses))
	}
}

func TestAnnouncerNeedFull(t *testing.T) {
	const n = 1000
	c := newScripted(func(i int, req *trackerwire.AnnounceRequest) (*trackerwire.AnnounceResponse, error) {
		if i == 2 { // the tracker restarted: it cannot apply the delta
			return &trackerwire.AnnounceResponse{Interval: 5, NeedFull: true}, nil
		}
		return ok(i, req)
	})
	st := &mutableState{st: State{Addrs: []string{"/a"}, NumChunks: n, Bitfield: trackerwire.NewBitfield(n)}}
	r := startAnnouncer(t, c, st.get, trackerwire.RolePeer)
	c.await(t, 1)
	st.update(func(s *State) { s.Bitfield.Set(3) })
	r.tick(t, 6*time.Second)
	c.await(t, 2) // the delta, then at once the full bitfield
	r.tick(t, 6*time.Second)
	c.await(t, 1)
	var got []string
	for _, req := range c.requests() {
		got = append(got, kind(req))
	}
	if want := "[full delta[3] full delta[]]"; fmt.Sprint(got) != want {
		t.Fatalf("announces %v, want %s", got, want)
	}
}

func TestAnnouncerBackoff(t *testing.T) {
	errDown := errors.New("tracker down")
	const failures = 5
	c := newScripted(func(i int, req *trackerwire.AnnounceRequest) (*trackerwire.AnnounceResponse, error) {
		if i <= failures {
			return nil, errDown
		}
		return ok(i, req)
	})
	st := &mutableState{st: State{Addrs: []string{"/a"}, NumChunks: 8, Complete: true}}
	r := startAnnouncer(t, c, st.get, trackerwire.RoleOrigin)
	c.await(t, 1)
	// The waits double from 1s: each lies in [d/2, d].
	for i := range failures {
		d := time.Second << i
		r.tick(t, d/2-time.Millisecond)
		select {
		case <-c.calls:
			t.Fatalf("retry %d came before %v", i+1, d/2)
		case <-time.After(10 * time.Millisecond):
		}
		r.tick(t, d/2+time.Millisecond)
		c.await(t, 1)
	}
	reqs := c.requests()
	if len(reqs) != failures+1 {
		t.Fatalf("%d announces", len(reqs))
	}
	// The first success is the start.
	if reqs[failures].Event != trackerwire.EventStarted {
		t.Fatalf("first successful announce has event %q", reqs[failures].Event)
	}
}

// TestAnnouncerBackoffCappedAtInterval: once the tracker has named its
// interval (5s), a tracker that goes away is retried at least every
// interval (with jitter), however many failures in a row: when it comes
// back empty, every record is back within one interval.
func TestAnnouncerBackoffCappedAtInterval(t *testing.T) {
	errDown := errors.New("tracker down")
	const failures = 8 // uncapped, the 8th wait would be 64-128s
	c := newScripted(func(i int, req *trackerwire.AnnounceRequest) (*trackerwire.AnnounceResponse, error) {
		if i >= 2 && i < 2+failures {
			return nil, errDown
		}
		return ok(i, req)
	})
	st := &mutableState{st: State{Addrs: []string{"/a"}, NumChunks: 8, Complete: true}}
	r := startAnnouncer(t, c, st.get, trackerwire.RoleOrigin)
	c.await(t, 1)
	for range failures + 1 {
		r.tick(t, 5500*time.Millisecond) // the interval plus the 10% jitter
		c.await(t, 1)
	}
	if n := len(c.requests()); n != failures+2 {
		t.Fatalf("%d announces, want %d", n, failures+2)
	}
}

func TestBackoffBounds(t *testing.T) {
	a, err := NewAnnouncer(Identity{Blob: blob, PeerID: "p", Role: trackerwire.RolePeer}, AnnouncerConfig{},
		AnnouncerDeps{Client: newScripted(ok), State: (&mutableState{}).get, Rand: rand.New(rand.NewPCG(3, 3))})
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n < 100; n++ {
		d := min(time.Second<<min(n-1, 30), time.Minute)
		for range 20 {
			if b := a.backoff(n); b < d/2 || b > d {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", n, b, d/2, d)
			}
		}
	}
	for range 100 {
		if j := a.jitter(10 * time.Second); j < 9*time.Second || j > 11*time.Second {
			t.Fatalf("jitter = %v", j)
		}
	}
	for in, want := range map[int64]time.Duration{0: 5 * time.Second, -3: 5 * time.Second, 7: 7 * time.Second,
		1 << 62: 5 * time.Minute, 100000: 5 * time.Minute} {
		if got := a.interval(&trackerwire.AnnounceResponse{Interval: in}); got != want {
			t.Errorf("interval(%d) = %v, want %v", in, got, want)
		}
	}
}

func TestAnnouncerStopTimeout(t *testing.T) {
	// A tracker that hangs on the final announce does not hold Run up for
	// longer than StopTimeout.
	block := make(chan struct{})
	defer close(block)
	c := newScripted(func(i int, req *trackerwire.AnnounceRequest) (*trackerwire.AnnounceResponse, error) {
		if req.Event == trackerwire.EventStopped {
			<-block
		}
		return ok(i, req)
	})
	hang := hangingClient{c, block}
	a, err := NewAnnouncer(Identity{Blob: blob, PeerID: "p", Role: trackerwire.RoleOrigin}, AnnouncerConfig{StopTimeout: 50 * time.Millisecond},
		AnnouncerDeps{Client: hang, State: (&mutableState{st: State{Addrs: []string{"/a"}, NumChunks: 1, Complete: true}}).get})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	c.await(t, 1)
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run hangs on the stop announce")
	}
}

// hangingClient gives up on a stop announce when its context ends.
type hangingClient struct {
	c     *scripted
	block chan struct{}
}

func (h hangingClient) Announce(ctx context.Context, req *trackerwire.AnnounceRequest) (*trackerwire.AnnounceResponse, error) {
	if req.Event != trackerwire.EventStopped {
		return h.c.Announce(ctx, req)
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestDeltaOf(t *testing.T) {
	bf := func(n uint32, set ...uint32) trackerwire.Bitfield {
		b := trackerwire.NewBitfield(n)
		for _, i := range set {
			b.Set(i)
		}
		return b
	}
	tests := []struct {
		name       string
		acked, cur trackerwire.Bitfield
		want       []uint32
		ok         bool
	}{
		{"unknown", nil, bf(100, 1), nil, false},
		{"resized", bf(100), bf(200), nil, false},
		{"nothing new", bf(1000, 5), bf(1000, 5), []uint32{}, true},
		{"added", bf(1000, 5), bf(1000, 5, 0, 7, 8, 999), []uint32{0, 7, 8, 999}, true},
		{"lost", bf(1000, 5), bf(1000, 6), nil, false},
		{"cheaper in full", bf(1000), bf(1000, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21), nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := deltaOf(tt.acked, tt.cur)
			slices.Sort(got)
			if ok != tt.ok || (ok && !slices.Equal(got, tt.want)) {
				t.Fatalf("deltaOf = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestNewAnnouncerErrors(t *testing.T) {
	good := Identity{Blob: blob, PeerID: "p", Role: trackerwire.RolePeer}
	deps := AnnouncerDeps{Client: newScripted(ok), State: (&mutableState{}).get}
	for name, tc := range map[string]struct {
		id   Identity
		cfg  AnnouncerConfig
		deps AnnouncerDeps
	}{
		"no client":     {good, AnnouncerConfig{}, AnnouncerDeps{State: deps.State}},
		"no state":      {good, AnnouncerConfig{}, AnnouncerDeps{Client: deps.Client}},
		"no peer id":    {Identity{Blob: blob, Role: trackerwire.RolePeer}, AnnouncerConfig{}, deps},
		"no blob":       {Identity{PeerID: "p", Role: trackerwire.RolePeer}, AnnouncerConfig{}, deps},
		"bad role":      {Identity{Blob: blob, PeerID: "p", Role: "x"}, AnnouncerConfig{}, deps},
		"min over max":  {good, AnnouncerConfig{MinInterval: time.Hour}, deps},
		"jitter":        {good, AnnouncerConfig{Jitter: 1}, deps},
		"backoff":       {good, AnnouncerConfig{BackoffMin: 2 * time.Minute}, deps},
		"default range": {good, AnnouncerConfig{DefaultInterval: time.Millisecond}, deps},
		"negative stop": {good, AnnouncerConfig{StopTimeout: -1}, deps},
	} {
		if _, err := NewAnnouncer(tc.id, tc.cfg, tc.deps); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%s: err = %v, want ErrBadConfig", name, err)
		}
	}
}

func TestAnnouncerStateError(t *testing.T) {
	c := newScripted(ok)
	var calls int
	var mu sync.Mutex
	state := func(context.Context) (State, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			return State{}, errors.New("disk on fire")
		}
		return State{Addrs: []string{"/a"}, NumChunks: 1, Complete: true}, nil
	}
	r := startAnnouncer(t, c, state, trackerwire.RoleOrigin)
	r.tick(t, time.Second) // backoff after the failed state
	c.await(t, 1)
	if reqs := c.requests(); len(reqs) != 1 || reqs[0].Event != trackerwire.EventStarted {
		t.Fatalf("requests: %d", len(reqs))
	}
}
