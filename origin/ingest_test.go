package origin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/chunker/chunkertest"
	"github.com/p2pd/p2pd/internal/auth"
	"github.com/p2pd/p2pd/internal/wire/originwire"
	"github.com/p2pd/p2pd/origin/originclient"
	"github.com/p2pd/p2pd/origin/upstream"
)

// fakeUpstream serves blobs by digest; a blob may be served as other
// bytes than its digest names (a corrupt upstream).
type fakeUpstream struct{ blobs map[string][]byte }

func (f *fakeUpstream) Manifest(ctx context.Context, registry, repo, ref string) (*upstream.Manifest, error) {
	return nil, fmt.Errorf("%w: %s", upstream.ErrNotFound, ref)
}

func (f *fakeUpstream) Tags(ctx context.Context, registry, repo string, n int, last string) (*upstream.Tags, error) {
	return nil, fmt.Errorf("%w: %s", upstream.ErrNotFound, repo)
}

func (f *fakeUpstream) Blob(ctx context.Context, registry, repo, digest string) (io.ReadCloser, int64, error) {
	b, ok := f.blobs[digest]
	if !ok {
		return nil, 0, fmt.Errorf("%w: %s", upstream.ErrNotFound, digest)
	}
	return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
}

// TestImageBlobIsNoPush checks that the image blob route, which a member
// (announce token) may call, stores only what the upstream serves under
// the digest asked for: a body sent with it is ignored, and a blob the
// upstream does not have, or serves corrupt, stores nothing. Ingesting
// shares the push's code (storeBlob), not its route: no request reaches
// the push path without the push token.
func TestImageBlobIsNoPush(t *testing.T) {
	layer := chunkertest.Bytes(31, 3<<20)
	evil := chunkertest.Bytes(32, 1<<20)
	corrupt := chunkertest.Bytes(33, 1<<20)
	up := &fakeUpstream{blobs: map[string][]byte{
		chunker.Sum(layer).String():   layer,
		chunker.Sum(corrupt).String(): evil, // served as other bytes
	}}
	e := newClosedEnv(t, Config{Chunker: smallChunks})
	e.ts.Close() // serve again, with the upstream
	e.upstream = up
	e.serve()
	empty := e.state()
	member := e.signedClient(auth.ScopeAnnounce, e.keys.Announce)
	ctx := context.Background()

	// The member's body is ignored: a digest the upstream lacks stores
	// nothing, even with the bytes that hash to it in the body.
	post := func(d chunker.Digest, body []byte) (*http.Response, []byte) {
		t.Helper()
		q := url.Values{originwire.QueryRepo: {"team/app"}, originwire.QueryDigest: {d.String()}}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.ts.URL+originwire.PathImageBlob+"?"+q.Encode(), bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		resp, err := auth.Client(tr, auth.ScopeAnnounce, e.keys.Announce, 0).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	resp, b := post(chunker.Sum(evil), evil)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("image blob of a digest upstream lacks, with its bytes in the body: %d %s", resp.StatusCode, b)
	}
	e.checkState("after an image blob request upstream cannot serve", empty)

	// Corrupt bytes from upstream are refused and leave nothing.
	resp, b = post(chunker.Sum(corrupt), corrupt)
	var er originwire.ErrorResponse
	if resp.StatusCode != http.StatusBadGateway || json.Unmarshal(b, &er) != nil || er.Code != originwire.CodeUpstreamDigestFailed {
		t.Fatalf("image blob served corrupt by upstream: %d %s", resp.StatusCode, b)
	}
	e.checkState("after a corrupt upstream blob", empty)

	// What the upstream has is stored, whatever the body says.
	resp, b = post(chunker.Sum(layer), evil)
	var info originwire.BlobInfo
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &info) != nil || info.Digest != chunker.Sum(layer) || info.Size != int64(len(layer)) {
		t.Fatalf("image blob of an upstream layer: %d %s", resp.StatusCode, b)
	}
	if got := e.fetch(info.Digest, 0, -1); !bytes.Equal(got, layer) {
		t.Fatal("the stored layer is not the upstream's bytes")
	}
	if e.pushes(resultCreated) != 1 || e.pushes(resultDigestMismatch) != 1 {
		t.Errorf("pushes counted: created %d, digest_mismatch %d; want 1 and 1", e.pushes(resultCreated), e.pushes(resultDigestMismatch))
	}

	// And the push route still wants the push token.
	e.rawError(http.MethodPut, originwire.PathBlobs+"?digest="+chunker.Sum(evil).String(), bytes.NewReader(evil), nil,
		http.StatusUnauthorized, originwire.CodeUnauthorized)
	if _, err := member.Push(ctx, bytes.NewReader(evil), originclient.PushOptions{}); err == nil {
		t.Fatal("a member pushed")
	}
	e.srv.mu.Lock()
	_, ok := e.srv.blobs[chunker.Sum(evil)]
	e.srv.mu.Unlock()
	if ok {
		t.Fatal("the member's bytes are stored")
	}
}

// gatedUpstream serves one blob once release is closed, or fails with
// the request's context.
type gatedUpstream struct {
	fakeUpstream
	entered chan struct{} // closed when the first Blob call arrives
	release chan struct{}
	once    sync.Once
}

func (g *gatedUpstream) Blob(ctx context.Context, registry, repo, digest string) (io.ReadCloser, int64, error) {
	g.once.Do(func() { close(g.entered) })
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
	return g.fakeUpstream.Blob(ctx, registry, repo, digest)
}

// An ingest that several requests share runs to its end when the request
// that started it goes away: the others get the blob, and the one that
// left gets its own context's error at once.
func TestIngestOutlivesFirstCaller(t *testing.T) {
	layer := chunkertest.Bytes(34, 1<<20)
	d := chunker.Sum(layer)
	up := &gatedUpstream{
		fakeUpstream: fakeUpstream{blobs: map[string][]byte{d.String(): layer}},
		entered:      make(chan struct{}),
		release:      make(chan struct{}),
	}
	e := newClosedEnv(t, Config{Chunker: smallChunks})
	e.ts.Close()
	e.upstream = up
	e.serve()

	first, cancel := context.WithCancel(context.Background())
	firstErr := make(chan error, 1)
	go func() {
		_, err := e.srv.ingest(first, "registry.test", "team/app", d)
		firstErr <- err
	}()
	<-up.entered
	type result struct {
		info originwire.BlobInfo
		err  error
	}
	second := make(chan result, 1)
	go func() {
		info, err := e.srv.ingest(context.Background(), "registry.test", "team/app", d)
		second <- result{info, err}
	}()
	// Both wait for the one fetch before the first leaves.
	for testutil.ToFloat64(e.srv.images.waiting) != 2 {
		runtime.Gosched()
	}
	cancel()
	if err := <-firstErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("the caller that left: %v, want context.Canceled", err)
	}
	close(up.release)
	r := <-second
	if r.err != nil || r.info.Digest != d || r.info.Size != int64(len(layer)) {
		t.Fatalf("the caller that stayed: %+v, %v; want the blob", r.info, r.err)
	}
	if got := e.fetch(d, 0, -1); !bytes.Equal(got, layer) {
		t.Fatal("the stored blob is not the upstream's bytes")
	}
}
