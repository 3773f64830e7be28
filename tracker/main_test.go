package tracker

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/clock"
	"github.com/p2pd/p2pd/internal/wire/trackerwire"
	"github.com/p2pd/p2pd/tracker/peerstore"
	"github.com/p2pd/p2pd/tracker/trackerclient"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testWriter sends log output to t.Log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

var (
	blobA = chunker.Sum([]byte("blob a"))
	blobB = chunker.Sum([]byte("blob b"))
)

// env is a tracker served by httptest, with its client.
type env struct {
	srv    *Server
	store  *peerstore.Memory
	clk    *clock.Fake
	reg    *prometheus.Registry
	ts     *httptest.Server
	client *trackerclient.Client
}

func newEnv(t testing.TB, cfg Config) *env {
	t.Helper()
	e := &env{clk: clock.NewFake(time.Time{}), reg: prometheus.NewRegistry()}
	cfg = cfg.WithDefaults()
	e.store = peerstore.NewMemory(e.clk, cfg.PeerTTL)
	srv, err := New(cfg, Deps{
		Store: e.store, Clock: e.clk, Logger: testLogger(t), Registry: e.reg,
		Rand: rand.New(rand.NewPCG(1, 2)),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.srv = srv
	e.ts = httptest.NewServer(srv.Handler())
	t.Cleanup(e.ts.Close)
	e.client, err = trackerclient.New(e.ts.URL, trackerclient.WithHTTPClient(e.ts.Client()))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// peerReq is an announce of a peer holding chunks of an n-chunk blob.
func peerReq(blob chunker.Digest, id string, n uint32, chunks ...uint32) *trackerwire.AnnounceRequest {
	bf := trackerwire.NewBitfield(n)
	for _, c := range chunks {
		bf.Set(c)
	}
	return &trackerwire.AnnounceRequest{
		Blob: blob, PeerID: id, Addrs: []string{"/ip4/127.0.0.1/tcp/4001/p2p/" + id},
		Role: trackerwire.RolePeer, NumChunks: n, Bitfield: bf,
	}
}

func originReq(blob chunker.Digest, id string, n uint32) *trackerwire.AnnounceRequest {
	r := peerReq(blob, id, n)
	r.Bitfield, r.Role, r.Complete = nil, trackerwire.RoleOrigin, true
	return r
}

func (e *env) announce(t testing.TB, req *trackerwire.AnnounceRequest) *trackerwire.AnnounceResponse {
	t.Helper()
	resp, err := e.client.Announce(context.Background(), req)
	if err != nil {
		t.Fatalf("Announce(%s): %v", req.PeerID, err)
	}
	return resp
}
