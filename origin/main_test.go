package origin

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/auth"
	"github.com/p2pd/p2pd/internal/wire/originwire"
	"github.com/p2pd/p2pd/origin/originclient"
	"github.com/p2pd/p2pd/peer/store"
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

// smallChunks keeps test blobs of a few MiB at dozens of chunks.
var smallChunks = chunker.Config{MinSize: 16 << 10, AvgSize: 64 << 10, MaxSize: 256 << 10}

// fakeSeeder records the blobs it is asked to seed and unseed. It is the
// only fake in these tests.
type fakeSeeder struct {
	mu       sync.Mutex
	seeded   []*chunker.Manifest
	unseeded []chunker.Digest
	err      error
}

func (f *fakeSeeder) Seed(ctx context.Context, m *chunker.Manifest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seeded = append(f.seeded, m)
	return f.err
}

func (f *fakeSeeder) Unseed(ctx context.Context, d chunker.Digest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unseeded = append(f.unseeded, d)
	return nil
}

func (f *fakeSeeder) calls() []*chunker.Manifest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.seeded)
}

func (f *fakeSeeder) setErr(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

// env is an origin on a real store in a temp dir, served by httptest, with
// a client.
type env struct {
	t      testing.TB
	cfg    Config
	dir    string
	store  *store.Store
	seeder *fakeSeeder
	reg    *prometheus.Registry
	srv    *Server
	ts     *httptest.Server
	client *originclient.Client
	// keys, if set, close the origin (Deps.Auth); client then signs
	// with the push token.
	keys auth.Keys
	// upstream, if set before serve, is the origin's Deps.Upstream.
	upstream Upstream
}

func newEnv(t testing.TB, cfg Config) *env {
	t.Helper()
	return newEnvStore(t, cfg, store.DefaultConfig(t.TempDir()))
}

// newClosedEnv is newEnv with an origin that needs signed requests, with
// newly generated keys.
func newClosedEnv(t testing.TB, cfg Config) *env {
	t.Helper()
	var keys auth.Keys
	for _, k := range []*string{&keys.Announce, &keys.Push, &keys.Admin} {
		var err error
		if *k, err = auth.GenerateToken(); err != nil {
			t.Fatal(err)
		}
	}
	return newEnvKeys(t, cfg, store.DefaultConfig(t.TempDir()), keys)
}

func newEnvStore(t testing.TB, cfg Config, scfg store.Config) *env {
	t.Helper()
	return newEnvKeys(t, cfg, scfg, auth.Keys{})
}

func newEnvKeys(t testing.TB, cfg Config, scfg store.Config, keys auth.Keys) *env {
	t.Helper()
	st, err := store.Open(scfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, cfg: cfg, dir: scfg.Dir, store: st, seeder: &fakeSeeder{}, keys: keys}
	e.serve()
	return e
}

// serve starts an origin on e.store.
func (e *env) serve() {
	t := e.t
	t.Helper()
	e.reg = prometheus.NewRegistry()
	srv, err := New(e.cfg, Deps{Store: e.store, Seeder: e.seeder, Logger: testLogger(t), Registry: e.reg,
		Auth: auth.NewVerifier(e.keys, auth.VerifierOptions{}), Upstream: e.upstream})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.srv = srv
	e.ts = httptest.NewServer(srv.Handler())
	t.Cleanup(e.ts.Close)
	e.client = e.signedClient(auth.ScopePush, e.keys.Push)
}

// signedClient returns a client of e's origin that signs with token for
// scope (no signature if token is empty).
func (e *env) signedClient(scope auth.Scope, token string) *originclient.Client {
	e.t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	e.t.Cleanup(tr.CloseIdleConnections)
	c, err := originclient.New(e.ts.URL, originclient.WithHTTPClient(auth.Client(tr, scope, token, 0)))
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// with returns a copy of e that reports to t (a subtest).
func (e *env) with(t testing.TB) *env {
	c := *e
	c.t = t
	return &c
}

// newClient returns a client of e's origin with its own transport.
func (e *env) newClient(opts ...originclient.Option) *originclient.Client {
	e.t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	e.t.Cleanup(tr.CloseIdleConnections)
	c, err := originclient.New(e.ts.URL, append([]originclient.Option{originclient.WithHTTPClient(&http.Client{Transport: tr})}, opts...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) push(data []byte, opts originclient.PushOptions) *originclient.PushResult {
	e.t.Helper()
	res, err := e.client.Push(context.Background(), bytes.NewReader(data), opts)
	if err != nil {
		e.t.Fatalf("Push(%d bytes): %v", len(data), err)
	}
	return res
}

// fetch reads a whole stored blob through the client.
func (e *env) fetch(d chunker.Digest, off, n int64) []byte {
	e.t.Helper()
	rc, err := e.client.Fetch(context.Background(), d, off, n)
	if err != nil {
		e.t.Fatalf("Fetch(%s, %d, %d): %v", d, off, n, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		e.t.Fatalf("Fetch(%s, %d, %d): reading: %v", d, off, n, err)
	}
	return b
}

// raw sends a request without the client and returns the response and
// its body.
func (e *env) raw(method, path string, body io.Reader, hdr http.Header) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.ts.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, b
}

// rawError sends a request that must fail with status and code.
func (e *env) rawError(method, path string, body io.Reader, hdr http.Header, status int, code string) *http.Response {
	e.t.Helper()
	resp, b := e.raw(method, path, body, hdr)
	var er originwire.ErrorResponse
	if resp.StatusCode != status || json.Unmarshal(b, &er) != nil || er.Code != code || er.Error == "" {
		e.t.Fatalf("%s %s = %d %s, want %d with code %s", method, path, resp.StatusCode, b, status, code)
	}
	return resp
}

// storeState is what a failed push must leave unchanged.
type storeState struct {
	chunks    int
	usage     int64
	manifests int
	files     []string // every file under the store's chunks/, manifests/, pins/ and tmp/
}

func (e *env) state() storeState {
	e.t.Helper()
	s := storeState{chunks: e.store.Len(), usage: e.store.Usage(), manifests: len(e.store.Manifests())}
	err := filepath.WalkDir(e.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() != "LOCK" {
			rel, _ := filepath.Rel(e.dir, path)
			s.files = append(s.files, rel)
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) checkState(what string, want storeState) {
	e.t.Helper()
	got := e.state()
	if got.chunks != want.chunks || got.usage != want.usage || got.manifests != want.manifests || !slices.Equal(got.files, want.files) {
		var added, removed []string
		for _, f := range got.files {
			if !slices.Contains(want.files, f) {
				added = append(added, f)
			}
		}
		for _, f := range want.files {
			if !slices.Contains(got.files, f) {
				removed = append(removed, f)
			}
		}
		e.t.Fatalf("%s: store has %d chunks (%d bytes), %d manifests; want %d chunks (%d bytes), %d manifests; files added %v, removed %v",
			what, got.chunks, got.usage, got.manifests, want.chunks, want.usage, want.manifests, added, removed)
	}
}

func (e *env) pushes(result string) int {
	return int(testutil.ToFloat64(e.srv.metrics.pushes.WithLabelValues(result)))
}

// eventually waits up to 10s for cond.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// split returns the manifest of data under cfg.
func split(t testing.TB, cfg chunker.Config, data []byte) *chunker.Manifest {
	t.Helper()
	c, err := chunker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Split(context.Background(), bytes.NewReader(data), nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func digestPtr(d chunker.Digest) *chunker.Digest { return &d }

// blockingReader yields data, then blocks until release is closed (then
// fails) or ctx ends.
type blockingReader struct {
	data    []byte
	off     int
	ctx     context.Context
	release chan struct{}
}

func (r *blockingReader) Read(p []byte) (int, error) {
	if r.off < len(r.data) {
		n := copy(p, r.data[r.off:])
		r.off += n
		return n, nil
	}
	select {
	case <-r.release:
		return 0, io.ErrUnexpectedEOF
	case <-r.ctx.Done():
		return 0, r.ctx.Err()
	}
}
