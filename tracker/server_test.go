package tracker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/config"
	"github.com/p2pd/p2pd/internal/wire/trackerwire"
	"github.com/p2pd/p2pd/tracker/handout"
	"github.com/p2pd/p2pd/tracker/peerstore"
	"github.com/p2pd/p2pd/tracker/trackerclient"
)

func TestConfig(t *testing.T) {
	d := Config{}.WithDefaults()
	if d.AnnounceInterval != 5*time.Second || d.PeerTTL != 15*time.Second || d.HandoutLimit != 50 ||
		d.MaxOrigins != 2 || d.CandidateSample != 200 || d.SweepInterval != 5*time.Second {
		t.Fatalf("defaults: %+v", d)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	if c := (Config{AnnounceInterval: 10 * time.Second}).WithDefaults(); c.PeerTTL != 30*time.Second {
		t.Fatalf("PeerTTL follows the interval: %v", c.PeerTTL)
	}
	for _, c := range []Config{
		{AnnounceInterval: 500 * time.Millisecond},
		{AnnounceInterval: 1500 * time.Millisecond},
		{AnnounceInterval: 2 * time.Hour},
		{PeerTTL: 5 * time.Second},
		{PeerTTL: 9 * time.Second},
		{SweepInterval: -1},
		{HandoutLimit: 100, CandidateSample: 50},
		{HandoutLimit: -1},
		{MaxOrigins: 51},
		{FreshFraction: 2},
		{ShutdownTimeout: -1},
	} {
		if err := c.Validate(); !errors.Is(err, ErrBadConfig) {
			t.Errorf("Validate(%+v) = %v, want ErrBadConfig", c, err)
		}
		if _, err := New(c, Deps{}); !errors.Is(err, ErrBadConfig) {
			t.Errorf("New(%+v) = %v, want ErrBadConfig", c, err)
		}
	}
}

func TestConfigYAML(t *testing.T) {
	var c Config
	err := config.Decode([]byte("announce_interval: 10s\npeer_ttl: 1m\nhandout_limit: 30\nmax_origins: 1\nlocal_fraction: 0.5\n"), &c)
	if err != nil {
		t.Fatal(err)
	}
	c = c.WithDefaults()
	if c.AnnounceInterval != 10*time.Second || c.PeerTTL != time.Minute || c.HandoutLimit != 30 || c.MaxOrigins != 1 ||
		c.LocalFraction != 0.5 || c.CandidateSample != 120 || c.SweepInterval != 20*time.Second {
		t.Fatalf("decoded %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := config.Decode([]byte("announce_intervall: 10s\n"), &c); err == nil {
		t.Fatal("unknown key accepted")
	}
}

func TestAnnounceAndStatus(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()

	o := originReq(blobA, "origin-1", 100)
	o.Uploaded = 5000
	resp := e.announce(t, o)
	if resp.Interval != 5 || len(resp.Peers) != 0 || resp.NeedFull {
		t.Fatalf("first announce: %+v", resp)
	}
	for i := range 10 {
		req := peerReq(blobA, fmt.Sprintf("peer-%d", i), 100, uint32(i))
		req.Uploaded, req.Downloaded, req.DownloadedFromOrigins = 100, 300, 200
		req.Zone, req.Rack = "z1", "r1"
		req.Event = trackerwire.EventStarted
		e.announce(t, req)
	}
	seed := peerReq(blobA, "seeder", 100)
	seed.Bitfield, seed.Complete = trackerwire.FullBitfield(100), true
	e.announce(t, seed)

	resp = e.announce(t, peerReq(blobA, "peer-3", 100, 3))
	if len(resp.Peers) != 11 {
		t.Fatalf("handed out %d peers, want the 11 others", len(resp.Peers))
	}
	origins := 0
	for _, p := range resp.Peers {
		if p.PeerID == "peer-3" {
			t.Fatal("requester handed itself")
		}
		if p.Role == trackerwire.RoleOrigin {
			origins++
		}
		if len(p.Addrs) != 1 || !strings.HasSuffix(p.Addrs[0], p.PeerID) {
			t.Fatalf("addrs of %s: %v", p.PeerID, p.Addrs)
		}
	}
	if origins != 1 || resp.Peers[len(resp.Peers)-1].Role != trackerwire.RoleOrigin {
		t.Fatalf("%d origins, want 1, last", origins)
	}
	if resp.Peers[0].PeerID != "seeder" || !resp.Peers[0].Complete || resp.Peers[0].Have != 100 {
		t.Fatalf("best peer first: %+v", resp.Peers[0])
	}

	st, err := e.client.Swarm(ctx, blobA)
	if err != nil {
		t.Fatal(err)
	}
	if st.Blob != blobA || st.NumChunks != 100 || len(st.Peers) != 12 || st.Complete != 1 || st.Origins != 1 {
		t.Fatalf("status: blob %s chunks %d peers %d complete %d origins %d", st.Blob, st.NumChunks, len(st.Peers), st.Complete, st.Origins)
	}
	// peer-3 re-announced with a zero counter: its 100 bytes stay counted.
	if st.BytesFromOrigins != 5000 || st.BytesFromPeers != 10*100 {
		t.Fatalf("bytes from origins %d, peers %d", st.BytesFromOrigins, st.BytesFromPeers)
	}
	if st.Replication != nil {
		t.Fatalf("replication sent without being asked for")
	}
	// peer-i holds chunk i; the seeder holds all; the origin is not counted.
	rs, err := e.client.SwarmReplication(ctx, blobA)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Replication) != 100 || rs.Replication[0] != 2 || rs.Replication[9] != 2 || rs.Replication[10] != 1 || rs.Replication[99] != 1 {
		t.Fatalf("replication %v", rs.Replication)
	}
	p0 := st.Peers[1] // sorted: origin-1, peer-0, ...
	if p0.PeerID != "peer-0" || p0.Have != 1 || p0.Zone != "z1" || p0.Rack != "r1" || p0.Downloaded != 300 ||
		p0.DownloadedFromOrigins != 200 || !p0.LastSeen.Equal(e.clk.Now()) {
		t.Fatalf("peer status: %+v", p0)
	}

	e.announce(t, peerReq(blobB, "peer-0", 7))
	list, err := e.client.Swarms(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 {
		t.Fatalf("Swarms: %+v", list)
	}
	for _, s := range list {
		switch s.Blob {
		case blobA:
			if s.Peers != 12 || s.Origins != 1 || s.Complete != 1 || s.NumChunks != 100 {
				t.Fatalf("summary A: %+v", s)
			}
		case blobB:
			if s.Peers != 1 || s.NumChunks != 7 {
				t.Fatalf("summary B: %+v", s)
			}
		default:
			t.Fatalf("unknown swarm %s", s.Blob)
		}
	}
	if err := e.client.Health(ctx); err != nil {
		t.Fatalf("Health: %v", err)
	}

	// Stop removes the record at once.
	stop := &trackerwire.AnnounceRequest{Blob: blobB, PeerID: "peer-0", Role: trackerwire.RolePeer, NumChunks: 7, Event: trackerwire.EventStopped}
	if resp := e.announce(t, stop); len(resp.Peers) != 0 {
		t.Fatalf("stop answered peers: %+v", resp)
	}
	if _, err := e.client.Swarm(ctx, blobB); !errors.Is(err, trackerclient.ErrNotFound) {
		t.Fatalf("Swarm after the last peer stopped = %v, want ErrNotFound", err)
	}
}

func TestDeltaAndNeedFull(t *testing.T) {
	e := newEnv(t, Config{})
	req := peerReq(blobA, "p1", 64)
	req.Bitfield, req.Delta = nil, &trackerwire.Delta{Added: []uint32{1}}
	if resp := e.announce(t, req); !resp.NeedFull || len(resp.Peers) != 0 {
		t.Fatalf("delta to an empty tracker: %+v", resp)
	}
	e.announce(t, peerReq(blobA, "p1", 64, 0))
	req.Delta.Added = []uint32{1, 2, 63}
	if resp := e.announce(t, req); resp.NeedFull {
		t.Fatal("NeedFull with state")
	}
	st, _ := e.client.Swarm(context.Background(), blobA)
	if st.Peers[0].Have != 4 {
		t.Fatalf("have %d after delta, want 4", st.Peers[0].Have)
	}
}

// TestNumWant checks that an announce's num_want bounds its hand-out, down
// to none, while the announce is still recorded, and that the tracker's
// limit bounds it from above.
func TestNumWant(t *testing.T) {
	e := newEnv(t, Config{HandoutLimit: 8})
	e.announce(t, originReq(blobA, "origin-1", 100))
	for i := range 10 {
		e.announce(t, peerReq(blobA, fmt.Sprintf("peer-%d", i), 100, uint32(i)))
	}
	want := func(n *int, wantPeers, wantOrigins int) {
		t.Helper()
		req := peerReq(blobA, "peer-3", 100)
		req.Bitfield, req.Delta, req.NumWant = nil, &trackerwire.Delta{Added: []uint32{50}}, n
		resp := e.announce(t, req)
		if len(resp.Peers) != wantPeers || resp.NeedFull || resp.Interval != 5 {
			t.Fatalf("num_want %v: %d peers (need_full %v), want %d", n, len(resp.Peers), resp.NeedFull, wantPeers)
		}
		origins := 0
		for _, p := range resp.Peers {
			if p.Role == trackerwire.RoleOrigin {
				origins++
			}
		}
		if origins != wantOrigins {
			t.Fatalf("num_want %v: %d origins handed out, want %d", n, origins, wantOrigins)
		}
	}
	want(trackerwire.WantPeers(0), 0, 0)
	// The announce with num_want 0 was recorded all the same.
	st, err := e.client.Swarm(context.Background(), blobA)
	if err != nil {
		t.Fatal(err)
	}
	if p := st.Peers[4]; p.PeerID != "peer-3" || p.Have != 2 {
		t.Fatalf("peer-3 after its num_want 0 announce: %+v", p)
	}
	// A few peers wanted are peers with chunks peer-3 lacks, not origins.
	want(trackerwire.WantPeers(3), 3, 0)
	want(trackerwire.WantPeers(1), 1, 0)
	want(trackerwire.WantPeers(handout.MinOriginLimit), handout.MinOriginLimit, 1)
	want(trackerwire.WantPeers(trackerwire.MaxNumWant), 8, 1)
	want(nil, 8, 1)

	// An old tracker's clients send no num_want; a bad one is refused.
	valid, _ := json.Marshal(peerReq(blobA, "p1", 100, 3))
	if bytes.Contains(valid, []byte("num_want")) {
		t.Fatalf("num_want sent unset: %s", valid)
	}
	for _, bad := range []string{`-1`, `1001`, `"3"`, `1.5`} {
		// The request's only '}' is its last byte.
		body := bytes.Replace(valid, []byte(`}`), []byte(`,"num_want":`+bad+`}`), 1)
		code, er := rawPost(t, e, bytes.NewReader(body))
		if code != http.StatusBadRequest {
			t.Fatalf("num_want %s: status %d %+v", bad, code, er)
		}
	}
}

// TestOriginHandoutBudget: an origin is handed out to OriginHandouts
// requesters per announce interval, then only to a requester with no one
// else to ask, until the interval has passed.
func TestOriginHandoutBudget(t *testing.T) {
	e := newEnv(t, Config{OriginHandouts: 2})
	e.announce(t, originReq(blobA, "origin-1", 100))
	gotOrigin := func(id string) bool {
		t.Helper()
		for _, p := range e.announce(t, peerReq(blobA, id, 100)).Peers {
			if p.Role == trackerwire.RoleOrigin {
				return true
			}
		}
		return false
	}
	for i, want := range []bool{true, true, false, false} {
		if got := gotOrigin(fmt.Sprintf("peer-%d", i)); got != want {
			t.Fatalf("peer-%d handed the origin: %v, want %v", i, got, want)
		}
	}
	e.clk.Advance(e.srv.Config().AnnounceInterval)
	if !gotOrigin("peer-3") {
		t.Fatal("peer-3 not handed the origin an interval later")
	}
	// Without a bound every requester gets it.
	e = newEnv(t, Config{OriginHandouts: -1})
	e.announce(t, originReq(blobA, "origin-1", 100))
	for i := range 20 {
		if !gotOrigin(fmt.Sprintf("peer-%d", i)) {
			t.Fatalf("origin_handouts -1: peer-%d not handed the origin", i)
		}
	}
}

// rawPost posts body to the announce route and decodes the error answer.
func rawPost(t *testing.T, e *env, body io.Reader) (int, trackerwire.ErrorResponse) {
	t.Helper()
	resp, err := e.ts.Client().Post(e.ts.URL+trackerwire.PathAnnounce, "application/json", body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var er trackerwire.ErrorResponse
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		if err := json.Unmarshal(b, &er); err != nil || er.Error == "" || er.Code == "" {
			t.Fatalf("error body %q is not an ErrorResponse: %v", b, err)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("Content-Type %q", ct)
		}
	}
	return resp.StatusCode, er
}

func TestGarbageAnnounces(t *testing.T) {
	e := newEnv(t, Config{})
	valid, _ := json.Marshal(peerReq(blobA, "p1", 20, 3, 19))
	sub := func(old, new string) string { return strings.Replace(string(valid), old, new, 1) }
	tests := []struct {
		name string
		body io.Reader
		code string
	}{
		{"empty", strings.NewReader(""), trackerwire.CodeMalformed},
		{"not json", strings.NewReader("GET / HTTP/1.0\r\n\r\n"), trackerwire.CodeMalformed},
		{"binary", bytes.NewReader([]byte{0, 1, 2, 0xff, 0xfe}), trackerwire.CodeMalformed},
		{"truncated", strings.NewReader(string(valid[:30])), trackerwire.CodeMalformed},
		{"deep nesting", strings.NewReader(strings.Repeat("[", 100000)), trackerwire.CodeMalformed},
		{"oversized", strings.NewReader(`{"peer_id":"` + strings.Repeat("x", 2<<20) + `"}`), trackerwire.CodeTooLarge},
		{"endless", io.LimitReader(zeroReader{}, 8<<20), trackerwire.CodeTooLarge},
		{"bad digest", strings.NewReader(sub(blobA.String(), "sha256:1234")), trackerwire.CodeMalformed},
		{"md5 digest", strings.NewReader(sub("sha256:", "md5:")), trackerwire.CodeMalformed},
		{"no digest", strings.NewReader(sub(`"blob":"`+blobA.String()+`",`, "")), trackerwire.CodeInvalid},
		{"short bitfield", strings.NewReader(sub(`"num_chunks":20`, `"num_chunks":200`)), trackerwire.CodeInvalid},
		{"long bitfield", strings.NewReader(sub(`"num_chunks":20`, `"num_chunks":2`)), trackerwire.CodeInvalid},
		{"padding bits", strings.NewReader(sub(`"num_chunks":20`, `"num_chunks":18`)), trackerwire.CodeInvalid},
		{"too many chunks", strings.NewReader(sub(`"num_chunks":20`, `"num_chunks":2000000`)), trackerwire.CodeInvalid},
		{"bad role", strings.NewReader(sub(`"role":"peer"`, `"role":"god"`)), trackerwire.CodeInvalid},
		{"wrong type", strings.NewReader(sub(`"num_chunks":20`, `"num_chunks":"20"`)), trackerwire.CodeMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, er := rawPost(t, e, tt.body)
			if code != http.StatusBadRequest || er.Code != tt.code {
				t.Fatalf("got %d %q (%s), want 400 %q", code, er.Code, er.Error, tt.code)
			}
		})
	}
	// The tracker still works and stored nothing.
	if err := e.client.Health(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.store.Stats(context.Background()); st.Peers != 0 {
		t.Fatalf("garbage stored %d records", st.Peers)
	}
	if code, _ := rawPost(t, e, bytes.NewReader(valid)); code != http.StatusOK {
		t.Fatalf("valid announce: %d", code)
	}
	if got := testutil.ToFloat64(e.srv.metrics.announces.WithLabelValues(resultMalformed)); got != 8 {
		t.Errorf("malformed announces counted %v, want 8", got)
	}
	if got := testutil.ToFloat64(e.srv.metrics.announces.WithLabelValues(resultOK)); got != 1 {
		t.Errorf("ok announces counted %v, want 1", got)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

func TestErrorStatuses(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	e.announce(t, peerReq(blobA, "p1", 20))

	// Through the client: typed errors carrying the tracker's message.
	_, err := e.client.Swarm(ctx, blobB)
	var apiErr *trackerclient.APIError
	if !errors.Is(err, trackerclient.ErrNotFound) || !errors.As(err, &apiErr) || apiErr.Code != trackerwire.CodeNotFound || !strings.Contains(apiErr.Message, blobB.String()) {
		t.Fatalf("unknown swarm: %v", err)
	}
	_, err = e.client.Announce(ctx, peerReq(blobA, "p2", 21))
	if !errors.Is(err, trackerclient.ErrConflict) || !strings.Contains(err.Error(), "20 chunks") {
		t.Fatalf("conflicting NumChunks: %v", err)
	}

	// Raw requests: status, JSON body, Allow header.
	tests := []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{"GET", trackerwire.PathAnnounce, 405, trackerwire.CodeMethodNotAllowed, "POST"},
		{"PUT", trackerwire.PathAnnounce, 405, trackerwire.CodeMethodNotAllowed, "POST"},
		{"POST", trackerwire.PathSwarms, 405, trackerwire.CodeMethodNotAllowed, "GET"},
		{"DELETE", trackerwire.SwarmPath(blobA), 405, trackerwire.CodeMethodNotAllowed, "GET"},
		{"POST", trackerwire.PathHealth, 405, trackerwire.CodeMethodNotAllowed, "GET"},
		{"POST", trackerwire.PathMetrics, 405, trackerwire.CodeMethodNotAllowed, "GET"},
		{"GET", trackerwire.PathSwarms + "/sha256:abc", 400, trackerwire.CodeBadDigest, ""},
		{"GET", trackerwire.PathSwarms + "/" + blobA.Hex(), 400, trackerwire.CodeBadDigest, ""},
		{"GET", trackerwire.SwarmPath(blobB), 404, trackerwire.CodeNotFound, ""},
		{"GET", "/v2/announce", 404, trackerwire.CodeNotFound, ""},
		{"GET", "/", 404, trackerwire.CodeNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, e.ts.URL+tt.path, nil)
			resp, err := e.ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var er trackerwire.ErrorResponse
			if err := json.NewDecoder(resp.Body).Decode(&er); err != nil {
				t.Fatalf("body: %v", err)
			}
			if resp.StatusCode != tt.status || er.Code != tt.code {
				t.Fatalf("got %d %q (%s), want %d %q", resp.StatusCode, er.Code, er.Error, tt.status, tt.code)
			}
			if tt.allow != "" && resp.Header.Get("Allow") != tt.allow {
				t.Fatalf("Allow = %q, want %q", resp.Header.Get("Allow"), tt.allow)
			}
		})
	}
}

func TestExpiryWithFakeClock(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	e.announce(t, originReq(blobA, "origin", 10))
	e.announce(t, peerReq(blobA, "p1", 10, 1))

	e.clk.Advance(10 * time.Second)
	resp := e.announce(t, peerReq(blobA, "p2", 10))
	if len(resp.Peers) != 2 {
		t.Fatalf("before the TTL: %d peers", len(resp.Peers))
	}
	// origin and p1 reach the 15s TTL; p2 has 10s left.
	e.clk.Advance(5 * time.Second)
	st, err := e.client.Swarm(ctx, blobA)
	if err != nil || len(st.Peers) != 1 || st.Peers[0].PeerID != "p2" {
		t.Fatalf("after the TTL: %+v, %v", st, err)
	}
	if resp := e.announce(t, peerReq(blobA, "p3", 10)); len(resp.Peers) != 1 || resp.Peers[0].PeerID != "p2" {
		t.Fatalf("expired records handed out: %+v", resp.Peers)
	}

	// The sweeper, driven by the fake clock, frees them.
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.srv.RunSweeper(sctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunSweeper: %v", err)
		}
	}()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := e.clk.WaitTimers(wctx, 1); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(e.srv.Config().SweepInterval)
	waitFor(t, 10*time.Second, "the sweep", func() bool {
		st, _ := e.store.Stats(ctx)
		return st.Peers == 2
	})
	if got := testutil.ToFloat64(e.srv.metrics.expired); got != 2 {
		t.Fatalf("expired counter %v, want 2", got)
	}
	// Everyone left: the swarm disappears.
	e.clk.Advance(e.srv.Config().PeerTTL)
	if _, err := e.client.Swarm(ctx, blobA); !errors.Is(err, trackerclient.ErrNotFound) {
		t.Fatalf("Swarm after everyone expired = %v", err)
	}
	if list, _ := e.client.Swarms(ctx); len(list) != 0 {
		t.Fatalf("Swarms after everyone expired = %+v", list)
	}
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, Config{})
	e.announce(t, peerReq(blobA, "p1", 10))
	e.announce(t, peerReq(blobA, "p2", 10))
	resp, err := e.ts.Client().Get(e.ts.URL + trackerwire.PathMetrics)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`p2pd_tracker_announces_total{result="ok"} 2`,
		`p2pd_tracker_announces_total{result="malformed"} 0`,
		`p2pd_tracker_announce_duration_seconds_count 2`,
		`p2pd_tracker_swarms 1`,
		`p2pd_tracker_peers 2`,
		`p2pd_tracker_handout_peers_count 2`,
		`p2pd_tracker_http_requests_total{code="200",route="announce"} 2`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Registering twice in one registry fails cleanly.
	if _, err := New(Config{}, Deps{Registry: e.reg}); err == nil {
		t.Fatal("second tracker on the same registry: no error")
	}
	// A Registerer that is not a Gatherer: no /metrics, no failure.
	srv, err := New(Config{}, Deps{Registry: registerOnly{prometheus.NewRegistry()}})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptestRecorder(srv, "GET", trackerwire.PathMetrics)
	if rec != http.StatusNotFound {
		t.Fatalf("/metrics without a gatherer: %d", rec)
	}
}

type registerOnly struct{ r *prometheus.Registry }

func (r registerOnly) Register(c prometheus.Collector) error   { return r.r.Register(c) }
func (r registerOnly) MustRegister(cs ...prometheus.Collector) { r.r.MustRegister(cs...) }
func (r registerOnly) Unregister(c prometheus.Collector) bool  { return r.r.Unregister(c) }

func TestServe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{}, Deps{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()

	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	c, err := trackerclient.New("http://"+ln.Addr().String(), trackerclient.WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Announce(ctx, peerReq(blobA, "p1", 10)); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve = %v, want nil after a graceful shutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	if err := c.Health(context.Background()); err == nil {
		t.Fatal("tracker still answers after shutdown")
	}
}

func TestServeListenerError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	srv, _ := New(Config{}, Deps{})
	if err := srv.Serve(context.Background(), ln); err == nil {
		t.Fatal("Serve on a closed listener returned nil")
	}
}

// failingStore fails every call.
type failingStore struct{ peerstore.Store }

var errBroken = errors.New("broken store")

func (failingStore) Announce(context.Context, *trackerwire.AnnounceRequest) (peerstore.Result, error) {
	return peerstore.Result{}, errBroken
}
func (failingStore) Swarm(context.Context, chunker.Digest) (*peerstore.Snapshot, error) {
	return nil, errBroken
}
func (failingStore) Swarms(context.Context) ([]peerstore.Summary, error) { return nil, errBroken }
func (failingStore) Stats(context.Context) (peerstore.Stats, error) {
	return peerstore.Stats{}, errBroken
}

func TestStoreFailure(t *testing.T) {
	srv, err := New(Config{}, Deps{Store: failingStore{}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(peerReq(blobA, "p1", 10))
	for _, tc := range []struct {
		method, path string
		body         []byte
	}{
		{"POST", trackerwire.PathAnnounce, body},
		{"GET", trackerwire.SwarmPath(blobA), nil},
		{"GET", trackerwire.PathSwarms, nil},
	} {
		if code := httptestRecorderBody(srv, tc.method, tc.path, tc.body); code != http.StatusInternalServerError {
			t.Errorf("%s %s = %d, want 500", tc.method, tc.path, code)
		}
	}
	if code := httptestRecorder(srv, "GET", trackerwire.PathMetrics); code != http.StatusOK {
		t.Errorf("/metrics with a failing store = %d", code)
	}
}
