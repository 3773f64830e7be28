package originclient

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/chunker/chunkertest"
	"github.com/p2pd/p2pd/internal/auth"
	"github.com/p2pd/p2pd/internal/wire/originwire"
	"github.com/p2pd/p2pd/origin"
	"github.com/p2pd/p2pd/peer/store"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

var smallChunks = chunker.Config{MinSize: 16 << 10, AvgSize: 64 << 10, MaxSize: 256 << 10}

// newOrigin serves a real origin on a real store under prefix and returns
// the server's URL (with the prefix).
func newOrigin(t *testing.T, cfg origin.Config, prefix string) string {
	t.Helper()
	return newClosedOrigin(t, cfg, prefix, auth.Keys{})
}

// newClosedOrigin is newOrigin with an origin that needs requests signed
// with keys.
func newClosedOrigin(t *testing.T, cfg origin.Config, prefix string, keys auth.Keys) string {
	t.Helper()
	st, err := store.Open(store.DefaultConfig(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv, err := origin.New(cfg, origin.Deps{Store: st, Logger: testLogger(t), Auth: auth.NewVerifier(keys, auth.VerifierOptions{})})
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = srv.Handler()
	if prefix != "" {
		h = http.StripPrefix(prefix, h)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts.URL + prefix
}

// newClient returns a client with its own transport, closed at cleanup.
func newClient(t *testing.T, url string, opts ...Option) *Client {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	c, err := New(url, append([]Option{WithHTTPClient(&http.Client{Transport: tr})}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNew(t *testing.T) {
	for _, u := range []string{"", "localhost:8080", "ftp://host", "http://", "http://[::1", "/v1"} {
		if _, err := New(u); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
	c, err := New("https://origin.example:8443/p2pd/?x=1#frag")
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	if got := c.url(originwire.PathBlobs).String(); got != "https://origin.example:8443/p2pd/v1/blobs" {
		t.Fatalf("url = %s", got)
	}
}

func TestAPIError(t *testing.T) {
	all := []error{ErrBadRequest, ErrDigestMismatch, ErrUnauthorized, ErrNotFound, ErrTooLarge, ErrServer}
	for _, tc := range []struct {
		status int
		code   string
		want   []error
	}{
		{400, originwire.CodeDigestMismatch, []error{ErrDigestMismatch, ErrBadRequest}},
		{400, originwire.CodeBadDigest, []error{ErrBadRequest}},
		{416, "", []error{ErrBadRequest}},
		{401, originwire.CodeUnauthorized, []error{ErrUnauthorized}},
		{404, originwire.CodeNotFound, []error{ErrNotFound}},
		{413, originwire.CodeTooLarge, []error{ErrTooLarge}},
		{500, originwire.CodeSeedFailed, []error{ErrServer}},
		{507, originwire.CodeInsufficientStorage, []error{ErrServer}},
		{502, "", []error{ErrServer}},
	} {
		err := error(&APIError{StatusCode: tc.status, Code: tc.code, Message: "the message", Kind: errorKind(tc.status, tc.code)})
		for _, s := range all {
			want := false
			for _, w := range tc.want {
				want = want || w == s
			}
			if errors.Is(err, s) != want {
				t.Errorf("%d %s: errors.Is(%v) = %v", tc.status, tc.code, s, !want)
			}
		}
		if !strings.Contains(err.Error(), "the message") || !strings.Contains(err.Error(), tc.code) {
			t.Errorf("Error() = %q", err.Error())
		}
	}
	if got := (&APIError{Service: "origin", Method: "GET", Path: "/v1/blobs", StatusCode: 502}).Error(); got != "origin: GET /v1/blobs: 502: Bad Gateway" {
		t.Errorf("Error() without a body = %q", got)
	}
}

func TestAgainstOrigin(t *testing.T) {
	keys := auth.Keys{Announce: "announce-token-0123456789", Push: "push-token-0123456789", Admin: "admin-token-0123456789"}
	url := newClosedOrigin(t, origin.Config{Chunker: smallChunks, MaxBlobSize: 4 << 20}, "/p2pd", keys)
	signed := func(scope auth.Scope, opts ...Option) *Client {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		t.Cleanup(tr.CloseIdleConnections)
		c, err := New(url, append([]Option{WithHTTPClient(auth.Client(tr, scope, keys.Get(scope), 0))}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := signed(auth.ScopePush, WithUserAgent("test/1"))
	member := signed(auth.ScopeAnnounce)
	admin := signed(auth.ScopeAdmin)
	anon := newClient(t, url)
	ctx := context.Background()
	if err := anon.Health(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := anon.List(ctx); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("List without token = %v", err)
	}
	data := chunkertest.Bytes(1, 2<<20)
	d := chunker.Sum(data)

	_, err := anon.Push(ctx, bytes.NewReader(data), PushOptions{})
	if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "signed request") {
		t.Fatalf("Push without token = %v", err)
	}
	wrong := chunker.Sum([]byte("other"))
	_, err = c.Push(ctx, bytes.NewReader(data), PushOptions{ExpectedDigest: &wrong})
	if !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), d.String()) {
		t.Fatalf("Push with the wrong digest = %v", err)
	}
	_, err = c.Push(ctx, bytes.NewReader(chunkertest.Bytes(2, 5<<20)), PushOptions{Size: -1})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Push over the limit = %v", err)
	}

	res, err := c.Push(ctx, bytes.NewReader(data), PushOptions{ExpectedDigest: &d, Size: int64(len(data))})
	if err != nil || !res.Created || res.Digest != d || res.Size != int64(len(data)) {
		t.Fatalf("Push = %+v, %v", res, err)
	}
	info, err := member.Stat(ctx, d)
	if err != nil || *info != res.BlobInfo {
		t.Fatalf("Stat = %+v, %v", info, err)
	}
	list, err := member.List(ctx)
	if err != nil || len(list) != 1 || list[0] != res.BlobInfo {
		t.Fatalf("List = %+v, %v", list, err)
	}
	m, err := member.Manifest(ctx, d)
	if err != nil || m.Digest != d || len(m.Chunks) != res.Chunks {
		t.Fatalf("Manifest = %v", err)
	}
	if id, _ := m.ID(); id != res.ManifestDigest {
		t.Fatalf("manifest ID %s, pushed %s", id, res.ManifestDigest)
	}
	rc, err := member.Fetch(ctx, d, 1000, 5000)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data[1000:6000]) {
		t.Fatalf("Fetch range: %d bytes, %v", len(got), err)
	}
	if rc, err := member.Fetch(ctx, d, 0, 0); err != nil {
		t.Fatal(err)
	} else if b, _ := io.ReadAll(rc); len(b) != 0 {
		t.Fatal("zero-length fetch returned data")
	}
	if _, err := member.Fetch(ctx, d, -1, 5); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("Fetch at a negative offset = %v", err)
	}
	if err := anon.Delete(ctx, d); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Delete without token = %v", err)
	}
	if err := c.Delete(ctx, d); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Delete with the push token = %v", err)
	}
	if err := admin.Delete(ctx, d); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stat(ctx, d); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Stat after delete = %v", err)
	}
}

// fakeOrigin answers every request with h.
func fakeOrigin(t *testing.T, h http.HandlerFunc) *Client {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return newClient(t, ts.URL)
}

func TestBadResponses(t *testing.T) {
	ctx := context.Background()
	data := chunkertest.Bytes(3, 300<<10)
	m, err := func() (*chunker.Manifest, error) {
		ch, _ := chunker.New(smallChunks)
		return ch.Split(ctx, bytes.NewReader(data), nil)
	}()
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := m.MarshalBinary()
	other := chunker.Sum([]byte("other"))

	c := fakeOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == originwire.BlobPath(m.Digest):
			w.Write([]byte("{not json"))
		case r.URL.Path == originwire.BlobPath(other):
			w.Write([]byte(`{"digest":"` + m.Digest.String() + `"}`))
		case r.URL.Path == originwire.ManifestPath(other): // another blob's manifest
			w.Write(enc)
		case r.URL.Path == originwire.ManifestPath(m.Digest) && r.URL.Query().Has("lie"):
			w.Header().Set(originwire.HeaderManifestDigest, other.String())
			w.Write(enc)
		case r.URL.Path == originwire.ManifestPath(m.Digest):
			w.Write(enc[:len(enc)-1])
		case r.URL.Path == originwire.DataPath(m.Digest): // ignores Range
			w.Write(data)
		case r.URL.Path == originwire.PathBlobs && r.Method == http.MethodPut:
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusCreated)
			w.Write([]byte(`{"digest":"` + other.String() + `"}`))
		default:
			http.Error(w, "upstream is down", http.StatusBadGateway)
		}
	})
	if _, err := c.Stat(ctx, m.Digest); !errors.Is(err, ErrResponse) {
		t.Errorf("Stat with a garbage body = %v", err)
	}
	if _, err := c.Stat(ctx, other); !errors.Is(err, ErrResponse) {
		t.Errorf("Stat answered for another blob = %v", err)
	}
	if _, err := c.Manifest(ctx, other); !errors.Is(err, ErrResponse) || !strings.Contains(err.Error(), "describes blob") {
		t.Errorf("Manifest of another blob = %v", err)
	}
	if _, err := c.Manifest(ctx, m.Digest); !errors.Is(err, ErrResponse) || !errors.Is(err, chunker.ErrManifestCorrupt) {
		t.Errorf("truncated Manifest = %v", err)
	}
	if _, err := c.Fetch(ctx, m.Digest, 10, 10); !errors.Is(err, ErrResponse) {
		t.Errorf("Fetch answered 200 to a range = %v", err)
	}
	if _, err := c.Push(ctx, bytes.NewReader(data), PushOptions{ExpectedDigest: &m.Digest}); !errors.Is(err, ErrResponse) {
		t.Errorf("Push answered for another blob = %v", err)
	}
	_, err = c.List(ctx)
	var apiErr *APIError
	if !errors.Is(err, ErrServer) || !errors.As(err, &apiErr) || apiErr.StatusCode != 502 || apiErr.Message != "upstream is down" {
		t.Errorf("List through a broken proxy = %v", err)
	}

	lie := fakeOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(originwire.HeaderManifestDigest, other.String())
		w.Write(enc)
	})
	if _, err := lie.Manifest(ctx, m.Digest); !errors.Is(err, ErrResponse) || !strings.Contains(err.Error(), "hashes to") {
		t.Errorf("Manifest with a wrong manifest digest header = %v", err)
	}
}

func TestTimeout(t *testing.T) {
	c := fakeOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	c.timeout = 50 * time.Millisecond
	start := time.Now()
	if _, err := c.List(context.Background()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("List = %v, want a deadline error", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("took %v", took)
	}
}

// endless yields zeros forever and counts the reads made after stopped
// is set.
type endless struct {
	stopped atomic.Bool
	late    atomic.Int64
	reads   atomic.Int64
}

func (r *endless) Read(p []byte) (int, error) {
	r.reads.Add(1)
	if r.stopped.Load() {
		r.late.Add(1)
	}
	clear(p)
	return len(p), nil
}

func TestPushStopsReadingOnReturn(t *testing.T) {
	// The origin answers at once, then goes on reading the body for a
	// while; the transport does not wait for "100 Continue", so it is
	// still sending when the answer arrives.
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := `{"error":"no","code":"UNAUTHORIZED"}`
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(body))
		http.NewResponseController(w).Flush()
		io.Copy(io.Discard, io.LimitReader(r.Body, 64<<20))
	}))
	defer ts.Close()
	tr := &http.Transport{} // ExpectContinueTimeout 0: send the body at once
	defer tr.CloseIdleConnections()
	c, err := New(ts.URL, WithHTTPClient(&http.Client{Transport: tr}))
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		r := &endless{}
		_, err := c.Push(context.Background(), r, PushOptions{Size: -1})
		r.stopped.Store(true)
		if err == nil { // ErrUnauthorized, or the write failing first
			t.Fatal("Push succeeded")
		}
		t.Logf("Push = %v after %d reads", err, r.reads.Load())
		time.Sleep(50 * time.Millisecond)
		if n := r.late.Load(); n != 0 {
			t.Fatalf("the reader was read %d times after Push returned", n)
		}
	}
}
