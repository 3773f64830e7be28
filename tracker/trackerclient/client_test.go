package trackerclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/wire/trackerwire"
	"github.com/p2pd/p2pd/tracker"
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

var blob = chunker.Sum([]byte("client test blob"))

func peerReq(id string, n uint32, chunks ...uint32) *trackerwire.AnnounceRequest {
	bf := trackerwire.NewBitfield(n)
	for _, c := range chunks {
		bf.Set(c)
	}
	return &trackerwire.AnnounceRequest{
		Blob: blob, PeerID: id, Addrs: []string{"/ip4/127.0.0.1/tcp/4001"},
		Role: trackerwire.RolePeer, NumChunks: n, Bitfield: bf,
	}
}

// newTracker serves a real tracker and returns a client for it.
func newTracker(t *testing.T, opts ...Option) (*Client, *httptest.Server) {
	t.Helper()
	srv, err := tracker.New(tracker.Config{}, tracker.Deps{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	c, err := New(ts.URL, append([]Option{WithHTTPClient(ts.Client())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c, ts
}

func TestClientAgainstTracker(t *testing.T) {
	c, _ := newTracker(t)
	ctx := context.Background()
	if err := c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Announce(ctx, peerReq("p1", 10, 1, 2)); err != nil {
		t.Fatal(err)
	}
	resp, err := c.Announce(ctx, peerReq("p2", 10))
	if err != nil || len(resp.Peers) != 1 || resp.Peers[0].PeerID != "p1" || resp.Peers[0].Have != 2 || resp.Interval != 5 {
		t.Fatalf("Announce = %+v, %v", resp, err)
	}
	st, err := c.Swarm(ctx, blob)
	if err != nil || len(st.Peers) != 2 {
		t.Fatalf("Swarm = %+v, %v", st, err)
	}
	list, err := c.Swarms(ctx)
	if err != nil || len(list) != 1 || list[0].Blob != blob || list[0].Peers != 2 {
		t.Fatalf("Swarms = %+v, %v", list, err)
	}
}

func TestClientErrors(t *testing.T) {
	c, _ := newTracker(t)
	ctx := context.Background()
	tests := []struct {
		name string
		call func() error
		want error
		msg  string
	}{
		{"unknown swarm", func() error { _, err := c.Swarm(ctx, blob); return err }, ErrNotFound, "not_found"},
		{"invalid request, caught locally", func() error {
			r := peerReq("p1", 10)
			r.Bitfield = r.Bitfield[:1]
			_, err := c.Announce(ctx, r)
			return err
		}, ErrBadRequest, "bitfield is 1 bytes"},
		{"conflict", func() error {
			if _, err := c.Announce(ctx, peerReq("p1", 10)); err != nil {
				return err
			}
			_, err := c.Announce(ctx, peerReq("p2", 11))
			return err
		}, ErrConflict, "10 chunks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want %v containing %q", err, tt.want, tt.msg)
			}
		})
	}
}

// fakeTracker answers every request with handler, recording the last one.
func fakeTracker(t *testing.T, handler http.HandlerFunc, opts ...Option) (*Client, *http.Request) {
	t.Helper()
	var last http.Request
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		last = *r.Clone(context.Background())
		handler(w, r)
	}))
	t.Cleanup(ts.Close)
	c, err := New(ts.URL+"/prefix/", append([]Option{WithHTTPClient(ts.Client())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c, &last
}

func TestClientHeadersAndPrefix(t *testing.T) {
	c, last := fakeTracker(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"status":"ok"}`)
	}, WithUserAgent("p2pd/test"))
	if err := c.Health(context.Background()); err != nil {
		t.Fatal(err)
	}
	if last.URL.Path != "/prefix/healthz" || last.Header.Get("User-Agent") != "p2pd/test" {
		t.Fatalf("request: path %q ua %q", last.URL.Path, last.Header.Get("User-Agent"))
	}
	c.CloseIdleConnections()
}

func TestClientBadResponses(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    error
	}{
		{"plain-text 502", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "bad gateway from the proxy", http.StatusBadGateway)
		}, ErrServer},
		{"400 without JSON", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "nope", http.StatusBadRequest)
		}, ErrBadRequest},
		{"not JSON", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "<html>")
		}, ErrResponse},
		{"too large", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"swarms":[`+strings.Repeat(" ", 4096)+`]}`)
		}, ErrResponse},
		{"unhealthy", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"status":"sick"}`)
		}, ErrResponse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := fakeTracker(t, tt.handler, WithMaxResponseBytes(1024))
			var err error
			if tt.name == "unhealthy" {
				err = c.Health(context.Background())
			} else {
				_, err = c.Swarms(context.Background())
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	// The server's message is kept.
	c, _ := fakeTracker(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":"no swarm for that blob","code":"not_found"}`)
	})
	_, err := c.Swarm(context.Background(), blob)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Message != "no swarm for that blob" || !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %#v", err)
	}
}

func TestClientContext(t *testing.T) {
	c, _ := fakeTracker(t, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Health(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want Canceled", err)
	}
}

func TestNew(t *testing.T) {
	for _, u := range []string{"", "localhost:8080", "ftp://x", "http://", "http://[::1"} {
		if _, err := New(u); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
	c, err := New("https://tracker.example:8443/base/?q=1")
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(c.base); got != "https://tracker.example:8443/base" {
		t.Fatalf("base = %s", got)
	}
	c.CloseIdleConnections()
}
