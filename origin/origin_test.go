package origin

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/chunker/chunkertest"
	"github.com/p2pd/p2pd/internal/auth"
	"github.com/p2pd/p2pd/internal/config"
	"github.com/p2pd/p2pd/internal/wire/originwire"
	"github.com/p2pd/p2pd/origin/originclient"
	"github.com/p2pd/p2pd/peer/store"
)

func TestConfig(t *testing.T) {
	d := Config{}.WithDefaults()
	if d.ShutdownTimeout != 10*time.Second || d.StallTimeout != time.Minute || d.MaxBlobSize != 0 ||
		d.Chunker != (chunker.Config{}).WithDefaults() {
		t.Fatalf("defaults: %+v", d)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	st, err := store.Open(store.DefaultConfig(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, c := range []Config{
		{MaxBlobSize: -1},
		{ShutdownTimeout: -1},
		{StallTimeout: -1},
		{Chunker: chunker.Config{AvgSize: 1000}},
		{Chunker: chunker.Config{MinSize: 8}},
	} {
		if err := c.Validate(); !errors.Is(err, ErrBadConfig) {
			t.Errorf("Validate(%+v) = %v, want ErrBadConfig", c, err)
		}
		if _, err := New(c, Deps{Store: st}); !errors.Is(err, ErrBadConfig) {
			t.Errorf("New(%+v) = %v, want ErrBadConfig", c, err)
		}
	}
	if _, err := New(Config{}, Deps{}); !errors.Is(err, ErrBadConfig) {
		t.Errorf("New without a store = %v, want ErrBadConfig", err)
	}
}

func TestConfigYAML(t *testing.T) {
	var c Config
	err := config.Decode([]byte("max_blob_size: 1073741824\nshutdown_timeout: 5s\nstall_timeout: 30s\n"+
		"chunker:\n  min_size: 65536\n  avg_size: 262144\n  max_size: 1048576\n"), &c)
	if err != nil {
		t.Fatal(err)
	}
	c = c.WithDefaults()
	if c.MaxBlobSize != 1<<30 || c.ShutdownTimeout != 5*time.Second || c.StallTimeout != 30*time.Second ||
		c.Chunker.MinSize != 64<<10 || c.Chunker.AvgSize != 256<<10 || c.Chunker.MaxSize != 1<<20 || c.Chunker.Normalization != 2 {
		t.Fatalf("decoded %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := config.Decode([]byte("max_blob_sise: 1\n"), &c); err == nil {
		t.Fatal("unknown key accepted")
	}
}

func TestPushAndReadBack(t *testing.T) {
	e := newEnv(t, Config{Chunker: smallChunks})
	ctx := context.Background()
	data := chunkertest.Bytes(1, 5<<20+12345)
	want := split(t, smallChunks, data)
	wantID, _ := want.ID()

	res := e.push(data, originclient.PushOptions{Size: int64(len(data))})
	if !res.Created || res.Digest != chunker.Sum(data) || res.ManifestDigest != wantID || res.Size != int64(len(data)) || res.Chunks != len(want.Chunks) {
		t.Fatalf("push result %+v, want digest %s manifest %s size %d chunks %d", res, chunker.Sum(data), wantID, len(data), len(want.Chunks))
	}
	if len(want.Chunks) < 40 {
		t.Fatalf("only %d chunks: the test wants many", len(want.Chunks))
	}
	if calls := e.seeder.calls(); len(calls) != 1 || !calls[0].Equal(want) {
		t.Fatalf("seeder called %d times", len(calls))
	}

	info, err := e.client.Stat(ctx, res.Digest)
	if err != nil || *info != res.BlobInfo {
		t.Fatalf("Stat = %+v, %v; want %+v", info, err, res.BlobInfo)
	}
	list, err := e.client.List(ctx)
	if err != nil || len(list) != 1 || list[0] != res.BlobInfo {
		t.Fatalf("List = %+v, %v", list, err)
	}
	m, err := e.client.Manifest(ctx, res.Digest)
	if err != nil || !m.Equal(want) {
		t.Fatalf("Manifest = %v, want the local split's", err)
	}

	// The store holds exactly the blob's chunks, pinned.
	distinct := map[chunker.Digest]int64{}
	for _, c := range want.Chunks {
		distinct[c.Digest] = int64(c.Size)
	}
	var usage int64
	for _, n := range distinct {
		usage += n
	}
	if e.store.Len() != len(distinct) || e.store.Usage() != usage {
		t.Fatalf("store: %d chunks, %d bytes; want %d, %d", e.store.Len(), e.store.Usage(), len(distinct), usage)
	}
	if mis := e.store.Manifests(); len(mis) != 1 || mis[0].ID != wantID || !mis[0].Pinned {
		t.Fatalf("store manifests %+v", mis)
	}

	// Whole, then by ranges: across chunk boundaries, at the ends, random.
	if got := e.fetch(res.Digest, 0, -1); !bytes.Equal(got, data) {
		t.Fatalf("whole blob: %d bytes differ from the %d pushed", len(got), len(data))
	}
	off := want.Offsets()
	size := int64(len(data))
	ranges := [][2]int64{{0, 1}, {size - 1, 1}, {size - 1000, -1}, {off[3] - 10, 20}, {off[5], off[9] - off[5]}, {off[1] - 1, 2}, {12345, 3 << 20}}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		o := rng.Int64N(size)
		ranges = append(ranges, [2]int64{o, 1 + rng.Int64N(size-o)})
	}
	for _, r := range ranges {
		end := size
		if r[1] >= 0 {
			end = r[0] + r[1]
		}
		if got := e.fetch(res.Digest, r[0], r[1]); !bytes.Equal(got, data[r[0]:end]) {
			t.Fatalf("range %d+%d: got %d bytes, differ", r[0], r[1], len(got))
		}
	}
	// A range past the end is refused.
	if _, err := e.client.Fetch(ctx, res.Digest, size+10, 5); !errors.Is(err, originclient.ErrBadRequest) {
		t.Fatalf("range past the end: %v", err)
	}

	// Headers of the raw routes.
	resp, b := e.raw(http.MethodHead, originwire.DataPath(res.Digest), nil, nil)
	if resp.StatusCode != http.StatusOK || resp.ContentLength != size || len(b) != 0 || resp.Header.Get("Accept-Ranges") != "bytes" ||
		resp.Header.Get("ETag") != `"`+res.Digest.String()+`"` {
		t.Fatalf("HEAD data: %d, length %d, headers %v", resp.StatusCode, resp.ContentLength, resp.Header)
	}
	resp, b = e.raw(http.MethodGet, originwire.ManifestPath(res.Digest), nil, nil)
	if resp.Header.Get("Content-Type") != originwire.ManifestMediaType || resp.Header.Get(originwire.HeaderManifestDigest) != wantID.String() ||
		chunker.Sum(b) != wantID {
		t.Fatalf("GET manifest: %d, headers %v", resp.StatusCode, resp.Header)
	}

	// Metrics.
	if e.pushes(resultCreated) != 1 || testutil.ToFloat64(e.srv.metrics.pushBytes) != float64(size) {
		t.Fatalf("metrics: created %d, bytes %v", e.pushes(resultCreated), testutil.ToFloat64(e.srv.metrics.pushBytes))
	}
	n, err := testutil.GatherAndCount(e.reg, "p2pd_origin_push_duration_seconds")
	if err != nil || n != 1 {
		t.Fatalf("duration histogram: %d series, %v", n, err)
	}
	resp, b = e.raw(http.MethodGet, "/metrics", nil, nil)
	for _, want := range []string{"p2pd_origin_blobs 1", `p2pd_origin_pushes_total{result="created"} 1`, "p2pd_origin_push_bytes_total ",
		"p2pd_origin_push_duration_seconds_count 1", `p2pd_origin_http_requests_total{code="201",route="push"} 1`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestPushUnknownSizeAndEmpty(t *testing.T) {
	e := newEnv(t, Config{Chunker: smallChunks})
	ctx := context.Background()
	data := chunkertest.Bytes(2, 3<<20)
	// Neither a bytes.Reader nor a known size: sent chunked.
	res, err := e.client.Push(ctx, io.MultiReader(bytes.NewReader(data[:1000]), bytes.NewReader(data[1000:])), originclient.PushOptions{Size: -1})
	if err != nil || !res.Created || res.Digest != chunker.Sum(data) || res.Size != int64(len(data)) {
		t.Fatalf("chunked push: %+v, %v", res, err)
	}
	if got := e.fetch(res.Digest, 0, -1); !bytes.Equal(got, data) {
		t.Fatal("chunked push read back differs")
	}

	empty, err := e.client.Push(ctx, bytes.NewReader(nil), originclient.PushOptions{ExpectedDigest: digestPtr(chunker.Sum(nil))})
	if err != nil || !empty.Created || empty.Size != 0 || empty.Chunks != 0 || empty.Digest != chunker.Sum(nil) {
		t.Fatalf("empty push: %+v, %v", empty, err)
	}
	if got := e.fetch(empty.Digest, 0, -1); len(got) != 0 {
		t.Fatalf("empty blob read back as %d bytes", len(got))
	}
	if m, err := e.client.Manifest(ctx, empty.Digest); err != nil || m.Size != 0 {
		t.Fatalf("empty manifest: %v", err)
	}
	if list, err := e.client.List(ctx); err != nil || len(list) != 2 {
		t.Fatalf("List = %v, %v", list, err)
	}

	// POST works like PUT, and the header names the expected digest.
	other := chunkertest.Bytes(3, 100<<10)
	resp, b := e.raw(http.MethodPost, originwire.PathBlobs, bytes.NewReader(other),
		http.Header{originwire.HeaderExpectedDigest: {chunker.Sum(other).String()}})
	if resp.StatusCode != http.StatusCreated || !strings.Contains(string(b), chunker.Sum(other).String()) {
		t.Fatalf("POST: %d %s", resp.StatusCode, b)
	}
}

func TestExpectedDigest(t *testing.T) {
	e := newEnv(t, Config{Chunker: smallChunks})
	ctx := context.Background()
	a := chunkertest.Bytes(10, 3<<20)
	res := e.push(a, originclient.PushOptions{ExpectedDigest: digestPtr(chunker.Sum(a)), Size: int64(len(a))})
	if !res.Created {
		t.Fatal("not created")
	}

	// Blob c was pushed and deleted: its chunks stay in the store, unpinned.
	c := chunkertest.Bytes(11, 1<<20)
	cres := e.push(c, originclient.PushOptions{})
	if err := e.client.Delete(ctx, cres.Digest); err != nil {
		t.Fatal(err)
	}
	// Manifest d is stored, unpinned, without its chunks (as a peer engine
	// might): a push that writes them must leave them.
	dData := chunkertest.Bytes(12, 512<<10)
	dm := split(t, smallChunks, dData)
	if _, err := e.store.PutManifest(ctx, dm); err != nil {
		t.Fatal(err)
	}
	before := e.state()
	seeded := len(e.seeder.calls())

	wrong := chunker.Sum([]byte("something else"))
	for name, blob := range map[string][]byte{
		"new data":              chunkertest.Bytes(13, 2<<20),
		"shares pinned chunks":  append(append([]byte{}, a[:2<<20]...), chunkertest.Bytes(14, 1<<20)...),
		"shares evictable ones": append(append([]byte{}, c...), chunkertest.Bytes(15, 1<<20)...),
		"stored blob":           a,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := e.client.Push(ctx, bytes.NewReader(blob), originclient.PushOptions{ExpectedDigest: &wrong, Size: int64(len(blob))})
			if !errors.Is(err, originclient.ErrDigestMismatch) || !errors.Is(err, originclient.ErrBadRequest) ||
				!strings.Contains(err.Error(), chunker.Sum(blob).String()) || !strings.Contains(err.Error(), wrong.String()) {
				t.Fatalf("Push = %v, want ErrDigestMismatch naming both digests", err)
			}
			e.with(t).checkState("after the mismatch", before)
		})
	}
	// The chunks an unpinned stored manifest references are kept: a
	// refused push that happens to bring them leaves them behind.
	_, err := e.client.Push(ctx, bytes.NewReader(dData), originclient.PushOptions{ExpectedDigest: &wrong})
	if !errors.Is(err, originclient.ErrDigestMismatch) {
		t.Fatalf("Push = %v, want ErrDigestMismatch", err)
	}
	after := e.state()
	var dUsage int64
	for _, ch := range dm.Chunks {
		dUsage += int64(ch.Size)
		if !e.store.Has(ch.Digest) {
			t.Fatalf("chunk %s of the unpinned manifest was deleted", ch.Digest)
		}
	}
	if after.chunks != before.chunks+len(dm.Chunks) || after.usage != before.usage+dUsage || after.manifests != before.manifests {
		t.Fatalf("after the push of the unpinned manifest's blob: %d chunks, %d bytes, %d manifests; want %d more chunks, %d more bytes",
			after.chunks, after.usage, after.manifests, len(dm.Chunks), dUsage)
	}
	before = after

	if n := len(e.seeder.calls()); n != seeded {
		t.Fatalf("seeder called for refused pushes: %d calls, want %d", n, seeded)
	}
	if e.pushes(resultDigestMismatch) != 5 {
		t.Fatalf("digest_mismatch pushes: %d", e.pushes(resultDigestMismatch))
	}
	for _, ch := range split(t, smallChunks, c).Chunks {
		if !e.store.Has(ch.Digest) {
			t.Fatal("a chunk stored before the refused push is gone")
		}
	}
	if got := e.fetch(res.Digest, 0, -1); !bytes.Equal(got, a) {
		t.Fatal("the stored blob is damaged")
	}
	if list, err := e.client.List(ctx); err != nil || len(list) != 1 {
		t.Fatalf("List = %v, %v", list, err)
	}

	// The header form, and the header and query disagreeing.
	hdr := http.Header{originwire.HeaderExpectedDigest: {wrong.String()}}
	e.rawError(http.MethodPut, originwire.PathBlobs, bytes.NewReader(c), hdr, http.StatusBadRequest, originwire.CodeDigestMismatch)
	e.rawError(http.MethodPut, originwire.PathBlobs+"?digest="+chunker.Sum(c).String(), bytes.NewReader(c), hdr, http.StatusBadRequest, originwire.CodeBadDigest)
	e.checkState("after the header mismatch", before)
	resp, _ := e.raw(http.MethodPut, originwire.PathBlobs+"?digest="+chunker.Sum(c).String(), bytes.NewReader(c),
		http.Header{originwire.HeaderExpectedDigest: {chunker.Sum(c).String()}})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("agreeing query and header: %d", resp.StatusCode)
	}
}

func TestAuth(t *testing.T) {
	e := newClosedEnv(t, Config{Chunker: smallChunks})
	ctx := context.Background()
	data := chunkertest.Bytes(20, 1<<20)
	empty := e.state()
	stranger, _ := auth.GenerateToken()

	for name, c := range map[string]*originclient.Client{
		"no token":               e.newClient(),
		"unknown token":          e.signedClient(auth.ScopePush, stranger),
		"announce token":         e.signedClient(auth.ScopeAnnounce, e.keys.Announce),
		"admin token":            e.signedClient(auth.ScopeAdmin, e.keys.Admin),
		"announce token as push": e.signedClient(auth.ScopePush, e.keys.Announce),
		"bearer push token":      e.newClient(originclient.WithHTTPClient(&http.Client{Transport: bearer(e.keys.Push)})),
	} {
		t.Run(name, func(t *testing.T) {
			for _, size := range []int64{int64(len(data)), -1} {
				cr := &countingReader{r: bytes.NewReader(data)}
				_, err := c.Push(ctx, cr, originclient.PushOptions{Size: size})
				if !errors.Is(err, originclient.ErrUnauthorized) {
					t.Fatalf("Push(size %d) = %v, want ErrUnauthorized", size, err)
				}
				if cr.n.Load() >= int64(len(data)) {
					t.Errorf("Push(size %d) sent the whole body before it was refused", size)
				}
			}
		})
	}
	e.checkState("after refused pushes", empty)
	if e.pushes(resultUnauthorized) != 12 {
		t.Fatalf("unauthorized pushes: %d", e.pushes(resultUnauthorized))
	}
	resp := e.rawError(http.MethodPut, originwire.PathBlobs, bytes.NewReader(data), nil, http.StatusUnauthorized, originwire.CodeUnauthorized)
	if h := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(h, auth.Scheme) {
		t.Fatalf("WWW-Authenticate: %q", h)
	}

	// The push token pushes; reads need any token; only admin deletes.
	res := e.push(data, originclient.PushOptions{})
	if !res.Created {
		t.Fatal("the signed push did not create the blob")
	}
	anon := e.newClient()
	if _, err := anon.List(ctx); !errors.Is(err, originclient.ErrUnauthorized) {
		t.Fatalf("anonymous List = %v", err)
	}
	if _, err := anon.Manifest(ctx, res.Digest); !errors.Is(err, originclient.ErrUnauthorized) {
		t.Fatalf("anonymous Manifest = %v", err)
	}
	if _, err := anon.Fetch(ctx, res.Digest, 0, -1); !errors.Is(err, originclient.ErrUnauthorized) {
		t.Fatalf("anonymous Fetch = %v", err)
	}
	member := e.signedClient(auth.ScopeAnnounce, e.keys.Announce)
	if _, err := member.Manifest(ctx, res.Digest); err != nil {
		t.Fatalf("member Manifest: %v", err)
	}
	for _, c := range []*originclient.Client{anon, member, e.client} {
		if err := c.Delete(ctx, res.Digest); err == nil {
			t.Fatal("a delete without the admin token succeeded")
		}
	}
	if err := e.signedClient(auth.ScopeAdmin, e.keys.Admin).Delete(ctx, res.Digest); err != nil {
		t.Fatalf("admin Delete: %v", err)
	}
}

func TestBadAndUnknownDigests(t *testing.T) {
	e := newEnv(t, Config{Chunker: smallChunks})
	ctx := context.Background()
	upper := "sha256:" + strings.Repeat("AB", 32)
	for _, p := range []string{"garbage", "sha256:1234", upper, "md5:" + strings.Repeat("ab", 16)} {
		for _, path := range []string{"/v1/blobs/" + p, "/v1/blobs/" + p + "/manifest", "/v1/blobs/" + p + "/data"} {
			e.rawError(http.MethodGet, path, nil, nil, http.StatusBadRequest, originwire.CodeBadDigest)
		}
		e.rawError(http.MethodDelete, "/v1/blobs/"+p, nil, nil, http.StatusBadRequest, originwire.CodeBadDigest)
		e.rawError(http.MethodPut, "/v1/blobs?digest="+p, strings.NewReader("x"), nil, http.StatusBadRequest, originwire.CodeBadDigest)
		e.rawError(http.MethodPut, "/v1/blobs", strings.NewReader("x"), http.Header{originwire.HeaderExpectedDigest: {p}},
			http.StatusBadRequest, originwire.CodeBadDigest)
	}
	e.rawError(http.MethodPut, "/v1/blobs?digest="+chunker.Sum(nil).String()+"&digest="+chunker.Sum(nil).String(), strings.NewReader(""), nil,
		http.StatusBadRequest, originwire.CodeBadDigest)
	if e.pushes(resultBadRequest) != 9 {
		t.Fatalf("bad_request pushes: %d", e.pushes(resultBadRequest))
	}

	unknown := chunker.Sum([]byte("never pushed"))
	checks := map[string]error{}
	_, checks["Stat"] = e.client.Stat(ctx, unknown)
	_, checks["Manifest"] = e.client.Manifest(ctx, unknown)
	_, checks["Fetch"] = e.client.Fetch(ctx, unknown, 0, -1)
	checks["Delete"] = e.client.Delete(ctx, unknown)
	for name, err := range checks {
		var apiErr *originclient.APIError
		if !errors.Is(err, originclient.ErrNotFound) || !errors.As(err, &apiErr) || apiErr.Code != originwire.CodeNotFound ||
			!strings.Contains(err.Error(), unknown.String()) {
			t.Errorf("%s(unknown) = %v, want ErrNotFound naming the digest", name, err)
		}
	}
}

func TestRoutes(t *testing.T) {
	e := newEnv(t, Config{Chunker: smallChunks})
	d := chunker.Sum(nil).String()
	for _, tc := range []struct {
		method, path string
		allow        string
	}{
		{http.MethodDelete, "/v1/blobs", "PUT, POST, GET, HEAD"},
		{http.MethodPost, "/v1/blobs/" + d, "GET, HEAD, DELETE"},
		{http.MethodPut, "/v1/blobs/" + d + "/data", "GET, HEAD"},
		{http.MethodDelete, "/v1/blobs/" + d + "/manifest", "GET, HEAD"},
		{http.MethodPost, "/healthz", "GET, HEAD"},
		{http.MethodPost, "/metrics", "GET, HEAD"},
	} {
		resp := e.rawError(tc.method, tc.path, nil, nil, http.StatusMethodNotAllowed, originwire.CodeMethodNotAllowed)
		if got := strings.Join(resp.Header.Values("Allow"), ", "); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
	}
	e.rawError(http.MethodGet, "/v2/blobs", nil, nil, http.StatusNotFound, originwire.CodeNotFound)
	e.rawError(http.MethodGet, "/v1/blobs/"+d+"/other", nil, nil, http.StatusNotFound, originwire.CodeNotFound)
	if err := e.client.Health(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestTooLarge(t *testing.T) {
	const limit = 1 << 20
	e := newEnv(t, Config{Chunker: smallChunks, MaxBlobSize: limit})
	ctx := context.Background()
	empty := e.state()
	big := chunkertest.Bytes(30, 2*limit)

	// A known size over the limit is refused before the body is sent.
	cr := &countingReader{r: bytes.NewReader(big)}
	_, err := e.client.Push(ctx, cr, originclient.PushOptions{Size: int64(len(big))})
	if !errors.Is(err, originclient.ErrTooLarge) || cr.n.Load() != 0 {
		t.Fatalf("Push(known size) = %v after reading %d bytes, want ErrTooLarge before reading", err, cr.n.Load())
	}
	// An unknown size is cut off at the limit, and rolled back.
	_, err = e.client.Push(ctx, bytes.NewReader(big), originclient.PushOptions{Size: -1})
	if !errors.Is(err, originclient.ErrTooLarge) || !strings.Contains(err.Error(), strconv.Itoa(limit)) {
		t.Fatalf("Push(unknown size) = %v, want ErrTooLarge naming the limit", err)
	}
	e.checkState("after the refused pushes", empty)
	if e.pushes(resultTooLarge) != 2 || len(e.seeder.calls()) != 0 {
		t.Fatalf("too_large pushes %d, seeds %d", e.pushes(resultTooLarge), len(e.seeder.calls()))
	}
	// The limit itself is fine.
	for _, size := range []int64{limit, -1} {
		if _, err := e.client.Push(ctx, bytes.NewReader(big[:limit]), originclient.PushOptions{Size: size}); err != nil {
			t.Fatalf("Push(limit, size %d): %v", size, err)
		}
	}
}

func TestClientCancelsMidUpload(t *testing.T) {
	e := newEnv(t, Config{Chunker: smallChunks})
	empty := e.state()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &blockingReader{data: chunkertest.Bytes(40, 3<<20), ctx: ctx, release: make(chan struct{})}
	errc := make(chan error, 1)
	go func() {
		_, err := e.client.Push(ctx, r, originclient.PushOptions{Size: 10 << 20})
		errc <- err
	}()
	// Chunks are being stored: the upload is under way.
	eventually(t, "chunks of the upload in the store", func() bool { return e.store.Len() >= 10 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Push = %v, want context.Canceled", err)
	}
	eventually(t, "the push to be counted as aborted", func() bool { return e.pushes(resultAborted) == 1 })
	e.checkState("after the cancelled push", empty)
	if len(e.seeder.calls()) != 0 {
		t.Fatal("seeded an aborted push")
	}
}

func TestBodyEndsEarly(t *testing.T) {
	e := newEnv(t, Config{Chunker: smallChunks})
	empty := e.state()
	// A Content-Length the body does not reach, then the connection closes.
	data := chunkertest.Bytes(41, 2<<20)
	r := &blockingReader{data: data, ctx: context.Background(), release: make(chan struct{})}
	close(r.release)
	_, err := e.client.Push(context.Background(), r, originclient.PushOptions{Size: 4 << 20})
	if err == nil {
		t.Fatal("short body accepted")
	}
	eventually(t, "the push to be counted as aborted", func() bool { return e.pushes(resultAborted) == 1 })
	e.checkState("after the short push", empty)
}

func TestStallTimeout(t *testing.T) {
	e := newEnv(t, Config{Chunker: smallChunks, StallTimeout: 300 * time.Millisecond})
	empty := e.state()
	r := &blockingReader{data: chunkertest.Bytes(42, 1<<20), ctx: context.Background(), release: make(chan struct{})}
	errc := make(chan error, 1)
	go func() {
		_, err := e.client.Push(context.Background(), r, originclient.PushOptions{Size: -1})
		errc <- err
	}()
	eventually(t, "the stalled push to be aborted", func() bool { return e.pushes(resultAborted) == 1 })
	e.checkState("after the stalled push", empty)
	close(r.release)
	if err := <-errc; err == nil {
		t.Fatal("stalled push succeeded")
	}
}

func TestIdempotentRepush(t *testing.T) {
	e := newEnv(t, Config{Chunker: smallChunks})
	ctx := context.Background()
	data := chunkertest.Bytes(50, 2<<20)
	first := e.push(data, originclient.PushOptions{})
	after := e.state()
	second := e.push(data, originclient.PushOptions{ExpectedDigest: digestPtr(first.Digest), Size: int64(len(data))})
	if !first.Created || second.Created || second.BlobInfo != first.BlobInfo {
		t.Fatalf("first %+v, second %+v", first, second)
	}
	e.checkState("after the re-push", after)
	if calls := e.seeder.calls(); len(calls) != 2 || !calls[1].Equal(calls[0]) {
		t.Fatalf("seeder called %d times, want twice", len(calls))
	}
	if e.pushes(resultCreated) != 1 || e.pushes(resultExists) != 1 {
		t.Fatalf("created %d, exists %d", e.pushes(resultCreated), e.pushes(resultExists))
	}

	// Under other chunk sizes, the stored copy stays and the new cut goes.
	e.cfg.Chunker = chunker.Config{MinSize: 32 << 10, AvgSize: 128 << 10, MaxSize: 512 << 10}
	e.serve()
	third := e.push(data, originclient.PushOptions{})
	if third.Created || third.BlobInfo != first.BlobInfo {
		t.Fatalf("push under other chunk sizes: %+v, want the stored %+v", third, first.BlobInfo)
	}
	e.checkState("after the re-push under other chunk sizes", after)
	if list, err := e.client.List(ctx); err != nil || len(list) != 1 {
		t.Fatalf("List = %v, %v", list, err)
	}
}

func TestDelete(t *testing.T) {
	e := newEnv(t, Config{Chunker: smallChunks})
	ctx := context.Background()
	data := chunkertest.Bytes(60, 2<<20)
	res := e.push(data, originclient.PushOptions{})
	chunks := e.store.Len()
	if err := e.client.Delete(ctx, res.Digest); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Stat(ctx, res.Digest); !errors.Is(err, originclient.ErrNotFound) {
		t.Fatalf("Stat after delete = %v", err)
	}
	if list, err := e.client.List(ctx); err != nil || len(list) != 0 {
		t.Fatalf("List after delete = %v, %v", list, err)
	}
	if err := e.client.Delete(ctx, res.Digest); !errors.Is(err, originclient.ErrNotFound) {
		t.Fatalf("second Delete = %v", err)
	}
	if len(e.store.Manifests()) != 0 || e.store.Len() != chunks {
		t.Fatalf("store after delete: %d manifests, %d chunks (want 0, %d left as evictable cache)", len(e.store.Manifests()), e.store.Len(), chunks)
	}
	// The chunks are evictable now.
	for _, c := range split(t, smallChunks, data).Chunks {
		if err := e.store.Delete(ctx, c.Digest); err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("chunk still pinned: %v", err)
		}
	}
	e.seeder.mu.Lock()
	unseeded := slices.Clone(e.seeder.unseeded)
	e.seeder.mu.Unlock()
	if len(unseeded) != 1 || unseeded[0] != res.Digest {
		t.Fatalf("unseeded %v", unseeded)
	}
	if again := e.push(data, originclient.PushOptions{}); !again.Created {
		t.Fatal("push after delete not created")
	}
	if got := e.fetch(res.Digest, 0, -1); !bytes.Equal(got, data) {
		t.Fatal("re-pushed blob differs")
	}
	if testutil.ToFloat64(e.srv.metrics.requests.WithLabelValues("delete", "204")) != 1 {
		t.Fatal("delete not counted")
	}
}

func TestRestart(t *testing.T) {
	e := newEnv(t, Config{Chunker: smallChunks})
	ctx := context.Background()
	blobs := [][]byte{chunkertest.Bytes(70, 1<<20), chunkertest.Bytes(71, 2<<20), chunkertest.Bytes(72, 100)}
	var infos []originwire.BlobInfo
	for _, b := range blobs {
		infos = append(infos, e.push(b, originclient.PushOptions{}).BlobInfo)
	}
	if err := e.client.Delete(ctx, infos[2].Digest); err != nil {
		t.Fatal(err)
	}
	e.ts.Close()
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}

	st, err := store.Open(store.DefaultConfig(e.dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.store = st
	e.serve()
	list, err := e.client.List(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("List after restart = %+v, %v", list, err)
	}
	for i, b := range blobs[:2] {
		if info, err := e.client.Stat(ctx, infos[i].Digest); err != nil || *info != infos[i] {
			t.Fatalf("Stat after restart = %+v, %v; want %+v", info, err, infos[i])
		}
		if got := e.fetch(infos[i].Digest, 0, -1); !bytes.Equal(got, b) {
			t.Fatalf("blob %d differs after restart", i)
		}
	}
	if err := testutil.GatherAndCompare(e.reg, strings.NewReader("# HELP p2pd_origin_blobs Blobs stored (pinned) by the origin.\n# TYPE p2pd_origin_blobs gauge\np2pd_origin_blobs 2\n"), "p2pd_origin_blobs"); err != nil {
		t.Fatal(err)
	}
	if len(e.seeder.calls()) != 3 {
		t.Fatal("New seeded: re-seeding at startup is the engine's job")
	}
}

func TestSeedFailure(t *testing.T) {
	e := newEnv(t, Config{Chunker: smallChunks})
	ctx := context.Background()
	data := chunkertest.Bytes(80, 1<<20)
	e.seeder.setErr(errors.New("engine down"))
	_, err := e.client.Push(ctx, bytes.NewReader(data), originclient.PushOptions{})
	var apiErr *originclient.APIError
	if !errors.Is(err, originclient.ErrServer) || !errors.As(err, &apiErr) || apiErr.Code != originwire.CodeSeedFailed ||
		!strings.Contains(err.Error(), "engine down") {
		t.Fatalf("Push with a failing seeder = %v", err)
	}
	// Stored all the same; a re-push retries the seeding.
	if _, err := e.client.Stat(ctx, chunker.Sum(data)); err != nil {
		t.Fatal(err)
	}
	e.seeder.setErr(nil)
	res := e.push(data, originclient.PushOptions{})
	if res.Created || len(e.seeder.calls()) != 2 || e.pushes(resultSeedFailed) != 1 {
		t.Fatalf("retry: created %v, %d seeds", res.Created, len(e.seeder.calls()))
	}
}

func TestCapacityEvictsDuringPush(t *testing.T) {
	// A store too small for the blob evicts the push's own early chunks.
	scfg := store.DefaultConfig(t.TempDir())
	scfg.Capacity = 1 << 20
	e := newEnvStore(t, Config{Chunker: smallChunks}, scfg)
	empty := e.state()
	_, err := e.client.Push(context.Background(), bytes.NewReader(chunkertest.Bytes(90, 3<<20)), originclient.PushOptions{})
	var apiErr *originclient.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusInsufficientStorage || apiErr.Code != originwire.CodeInsufficientStorage {
		t.Fatalf("Push over capacity = %v, want 507", err)
	}
	e.checkState("after the push over capacity", empty)
	if e.pushes(resultNoSpace) != 1 {
		t.Fatalf("no_space pushes: %d", e.pushes(resultNoSpace))
	}
}

func TestConcurrentPushes(t *testing.T) {
	e := newEnv(t, Config{Chunker: smallChunks})
	ctx := context.Background()
	a := chunkertest.Bytes(100, 3<<20)
	b := append(append([]byte{}, a[:1<<20]...), chunkertest.Bytes(101, 2<<20)...)
	wrong := chunker.Sum([]byte("wrong"))
	var wg sync.WaitGroup
	var mu sync.Mutex
	created, exists := 0, 0
	for i := range 9 {
		wg.Go(func() {
			var err error
			var res *originclient.PushResult
			switch i % 3 {
			case 0:
				res, err = e.client.Push(ctx, bytes.NewReader(a), originclient.PushOptions{ExpectedDigest: digestPtr(chunker.Sum(a))})
				if err == nil {
					mu.Lock()
					if res.Created {
						created++
					} else {
						exists++
					}
					mu.Unlock()
				}
			case 1:
				_, err = e.client.Push(ctx, bytes.NewReader(a), originclient.PushOptions{ExpectedDigest: &wrong})
				if errors.Is(err, originclient.ErrDigestMismatch) {
					err = nil
				}
			case 2:
				_, err = e.client.Push(ctx, bytes.NewReader(b), originclient.PushOptions{ExpectedDigest: &wrong, Size: int64(len(b))})
				if errors.Is(err, originclient.ErrDigestMismatch) {
					err = nil
				}
			}
			if err != nil {
				t.Errorf("push %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if created != 1 || exists != 2 || len(e.seeder.calls()) != 3 {
		t.Fatalf("created %d, exists %d, seeds %d", created, exists, len(e.seeder.calls()))
	}
	if got := e.fetch(chunker.Sum(a), 0, -1); !bytes.Equal(got, a) {
		t.Fatal("blob damaged by concurrent refused pushes")
	}
	distinct := map[chunker.Digest]bool{}
	for _, c := range split(t, smallChunks, a).Chunks {
		distinct[c.Digest] = true
	}
	if e.store.Len() != len(distinct) || len(e.store.Manifests()) != 1 {
		t.Fatalf("store holds %d chunks and %d manifests, want %d and 1", e.store.Len(), len(e.store.Manifests()), len(distinct))
	}
	if len(e.srv.refs) != 0 {
		t.Fatalf("%d chunk references left", len(e.srv.refs))
	}
}

func TestServe(t *testing.T) {
	e := newEnv(t, Config{Chunker: smallChunks, ShutdownTimeout: 300 * time.Millisecond})
	ln, err := netListen(t)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(ctx, ln) }()
	c, err := originclient.New("http://"+ln.Addr().String(), originclient.WithHTTPClient(&http.Client{Transport: &http.Transport{}}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	data := chunkertest.Bytes(110, 1<<20)
	if res, err := c.Push(context.Background(), bytes.NewReader(data), originclient.PushOptions{}); err != nil || !res.Created {
		t.Fatalf("Push = %+v, %v", res, err)
	}
	before := e.state()

	// A push that never ends: shutdown waits ShutdownTimeout, then aborts
	// it, and returns once it is rolled back.
	r := &blockingReader{data: chunkertest.Bytes(111, 2<<20), ctx: context.Background(), release: make(chan struct{})}
	defer close(r.release)
	pushed := make(chan error, 1)
	go func() {
		_, err := c.Push(context.Background(), r, originclient.PushOptions{Size: -1})
		pushed <- err
	}()
	eventually(t, "the second push to store chunks", func() bool { return e.store.Len() > before.chunks })
	stop()
	start := time.Now()
	if err := <-served; err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Serve = %v, want a shutdown timeout", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("shutdown took %v", took)
	}
	e.checkState("after shutdown", before)
	if e.pushes(resultAborted) != 1 {
		t.Fatalf("aborted pushes: %d", e.pushes(resultAborted))
	}
	r.release <- struct{}{} // unblock the client's transport
	if err := <-pushed; err == nil {
		t.Fatal("aborted push succeeded")
	}

	// A clean shutdown returns nil.
	ln, err = netListen(t)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop = context.WithCancel(context.Background())
	go func() { served <- e.srv.Serve(ctx, ln) }()
	c2, _ := originclient.New("http://"+ln.Addr().String(), originclient.WithHTTPClient(&http.Client{Transport: &http.Transport{}}))
	defer c2.CloseIdleConnections()
	if err := c2.Health(context.Background()); err != nil {
		t.Fatal(err)
	}
	stop()
	if err := <-served; err != nil {
		t.Fatalf("Serve = %v", err)
	}
}

// countingReader counts the bytes read from r.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func netListen(t *testing.T) (net.Listener, error) {
	t.Helper()
	return net.Listen("tcp", "127.0.0.1:0")
}

// bearer sends its token as "Authorization: Bearer", as clients from before
// signed requests did: the origin must refuse it.
type bearer string

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+string(b))
	return http.DefaultTransport.RoundTrip(r)
}
