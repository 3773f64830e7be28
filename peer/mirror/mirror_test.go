package mirror_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"go.uber.org/goleak"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/daemon"
	"github.com/p2pd/p2pd/internal/registrytest"
	"github.com/p2pd/p2pd/origin"
	"github.com/p2pd/p2pd/origin/originclient"
	"github.com/p2pd/p2pd/origin/upstream"
	"github.com/p2pd/p2pd/peer"
	"github.com/p2pd/p2pd/peer/byzantine"
	"github.com/p2pd/p2pd/peer/mirror"
	"github.com/p2pd/p2pd/tracker"
	"github.com/p2pd/p2pd/tracker/trackerclient"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// cluster is a tracker, an origin with upstreams and peers with mirrors,
// all through internal/daemon as p2pd runs them.
type cluster struct {
	t        testing.TB
	dir      string
	peerDirs []string
	log      *slog.Logger
	tracker  *daemon.Node
	origin   *daemon.Node
	peers    []*daemon.Node
}

// smallChunks makes a few-MiB test layer many chunks, as a real layer is.
var smallChunks = origin.Config{Chunker: chunker.Config{MinSize: 64 << 10, AvgSize: 256 << 10, MaxSize: 1 << 20}}

func newCluster(t testing.TB, ups []upstream.Registry) *cluster {
	t.Helper()
	return newClusterWith(t, ups, smallChunks)
}

func newClusterWith(t testing.TB, ups []upstream.Registry, ocfg origin.Config) *cluster {
	t.Helper()
	c := &cluster{t: t, dir: t.TempDir(), log: slog.New(slog.DiscardHandler)}
	ctx := context.Background()
	if os.Getenv("P2PD_TEST_LOG") != "" {
		c.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	lg := c.log
	var err error
	c.tracker, err = daemon.RunTracker(ctx, daemon.TrackerConfig{Listen: "127.0.0.1:0", Tracker: tracker.Config{AnnounceInterval: time.Second}}, lg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.close(c.tracker) })
	c.origin, err = daemon.RunOrigin(ctx, daemon.OriginConfig{
		NodeConfig: c.node("origin"), Listen: "127.0.0.1:0",
		Upstream: upstream.Config{Registries: ups},
		Origin:   ocfg,
	}, lg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.close(c.origin) })
	return c
}

func (c *cluster) node(name string) daemon.NodeConfig {
	return daemon.NodeConfig{DataDir: filepath.Join(c.dir, name), Tracker: c.tracker.URL("http")}
}

func (c *cluster) close(n *daemon.Node) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		c.t.Errorf("closing %s: %v", n.Role, err)
	}
}

// addPeer starts a peer with a mirror; wrap, if set, is its byzantine
// store.
func (c *cluster) addPeer(wrap func(peer.Store) peer.Store) *daemon.Node {
	c.t.Helper()
	nc := c.node(fmt.Sprintf("peer-%d", len(c.peers)))
	nc.Hooks.WrapStore = wrap
	p, err := daemon.RunPeer(context.Background(), daemon.PeerConfig{
		NodeConfig: nc, Control: "127.0.0.1:0",
		Mirror: mirror.Config{Listen: "127.0.0.1:0", Origin: c.origin.URL("http")},
	}, c.log.With("peer", len(c.peers)))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { c.close(p) })
	c.peers = append(c.peers, p)
	c.peerDirs = append(c.peerDirs, nc.DataDir)
	return p
}

// waitComplete polls the tracker until n peers are complete in the swarm
// of every blob of idx: the next puller finds them there.
func (c *cluster) waitComplete(t testing.TB, idx v1.ImageIndex, n int) {
	t.Helper()
	tc, err := trackerclient.New(c.tracker.URL("http"))
	if err != nil {
		t.Fatal(err)
	}
	defer tc.CloseIdleConnections()
	digests, _ := registrytest.Blobs(t, idx)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, s := range digests {
		d, err := chunker.ParseDigest(s)
		if err != nil {
			t.Fatal(err)
		}
		for {
			st, err := tc.Swarm(ctx, d)
			if err == nil && st.Complete >= n {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("blob %s: %d complete peers on the tracker after 30s, want %d (%v)", d, st.Complete, n, err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// nsTransport adds containerd's ns parameter to every request, as
// containerd does to mirror requests.
type nsTransport struct {
	ns string
	rt http.RoundTripper
}

func (n nsTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	q := r.URL.Query()
	q.Set("ns", n.ns)
	r.URL.RawQuery = q.Encode()
	return n.rt.RoundTrip(r)
}

// pullAll pulls every platform's image of repo:tag through the mirror of
// p with go-containerregistry as the client, reads every blob and checks
// its digest. It returns the layer and config bytes read.
func pullAll(t *testing.T, p *daemon.Node, ns, repo, tag string) int64 {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	opts := []remote.Option{remote.WithTransport(nsTransport{ns: ns, rt: tr})}
	ref, err := name.ParseReference(p.Addrs["mirror"]+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(ref, opts...)
	if err != nil {
		t.Fatalf("index %s: %v", ref, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != len(registrytest.Platforms) {
		t.Fatalf("index lists %d manifests, want %d", len(im.Manifests), len(registrytest.Platforms))
	}
	var total int64
	for _, desc := range im.Manifests {
		img, err := remote.Image(ref.Context().Digest(desc.Digest.String()), opts...)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := img.RawConfigFile()
		if err != nil {
			t.Fatalf("config of %s: %v", desc.Digest, err)
		}
		total += int64(len(cfg))
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range layers {
			total += readLayer(t, l)
		}
	}
	return total
}

// readLayer reads l's compressed bytes and checks them against its digest.
func readLayer(t *testing.T, l v1.Layer) int64 {
	t.Helper()
	want, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		t.Fatalf("layer %s: %v", want, err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		t.Fatalf("reading layer %s: %v", want, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != want.String() {
		t.Fatalf("layer %s read back as %s", want, got)
	}
	return n
}

// metric returns the value of the sample of family name whose labels
// contain label (e.g. `source="peers"`), from the node's /metrics.
func metric(t *testing.T, n *daemon.Node, name, label string) float64 {
	t.Helper()
	resp, err := http.Get(n.URL("control") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || !strings.Contains(line, label) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	t.Fatalf("no metric %s{%s}", name, label)
	return 0
}

func TestMirrorPullThroughSwarm(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	idx := registrytest.Index(t, 3, 3<<20)
	registrytest.Push(t, reg.Host, "team/app", "v1", idx, "", "")
	c := newCluster(t, []upstream.Registry{{Name: "registry.test", Endpoint: reg.URL}})
	a, b := c.addPeer(nil), c.addPeer(nil)

	total := pullAll(t, a, "registry.test", "team/app", "v1")
	_, sizes := registrytest.Blobs(t, idx)
	var want int64
	for _, s := range sizes {
		want += s
	}
	if total != want {
		t.Fatalf("first peer read %d blob bytes, the image has %d", total, want)
	}
	if got := metric(t, a, "p2pd_mirror_blob_bytes_fetched_total", `source="origins"`); got == 0 {
		t.Errorf("first peer fetched nothing from the origin")
	}

	c.waitComplete(t, idx, 1)
	pullAll(t, b, "registry.test", "team/app", "v1")
	fromPeers := metric(t, b, "p2pd_mirror_blob_bytes_fetched_total", `source="peers"`)
	fromOrigins := metric(t, b, "p2pd_mirror_blob_bytes_fetched_total", `source="origins"`)
	t.Logf("second peer: %.0f bytes from peers, %.0f from origins, image %d", fromPeers, fromOrigins, want)
	if fromPeers+fromOrigins < float64(want) || fromPeers < 0.9*(fromPeers+fromOrigins) {
		t.Errorf("second peer took %.0f of %.0f blob bytes from peers, want >= 90%%", fromPeers, fromPeers+fromOrigins)
	}
	if got := metric(t, b, "p2pd_mirror_blob_streamed_total", ""); got == 0 {
		t.Errorf("the second peer streamed no blob while it downloaded")
	}
	// A third pull on the same node is served from its store.
	before := metric(t, b, "p2pd_mirror_blob_local_hits_total", "")
	pullAll(t, b, "registry.test", "team/app", "v1")
	if got := metric(t, b, "p2pd_mirror_blob_local_hits_total", ""); got-before < float64(len(sizes)/len(registrytest.Platforms)) {
		t.Errorf("local hits went from %v to %v on a repeated pull", before, got)
	}

	t.Run("protocol", func(t *testing.T) { testProtocol(t, a, idx) })
	t.Run("not local", func(t *testing.T) { testNotLocal(t, c.addPeer(nil), idx) })
	t.Run("errors", func(t *testing.T) { testErrors(t, a) })
}

// get sends a request to the mirror and returns the answer, its body read.
func get(t *testing.T, method, url string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// wantError checks an answer is the spec's error with status and code.
func wantError(t *testing.T, resp *http.Response, body []byte, status int, code string) {
	t.Helper()
	var e struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	if resp.StatusCode != status || json.Unmarshal(body, &e) != nil || len(e.Errors) != 1 || e.Errors[0].Code != code {
		t.Errorf("%s %s: got %d %s, want %d with code %s", resp.Request.Method, resp.Request.URL, resp.StatusCode, body, status, code)
	}
}

func testProtocol(t *testing.T, p *daemon.Node, idx v1.ImageIndex) {
	base := "http://" + p.Addrs["mirror"]
	resp, body := get(t, http.MethodGet, base+"/v2/", nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Errorf("GET /v2/: %d %s", resp.StatusCode, body)
	}
	if resp, _ := get(t, http.MethodHead, base+"/v2/", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("HEAD /v2/: %d", resp.StatusCode)
	}
	idxDigest, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	rawIdx, err := idx.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"v1", idxDigest.String()} {
		resp, body := get(t, http.MethodHead, base+"/v2/team/app/manifests/"+ref+"?ns=registry.test", nil)
		if resp.StatusCode != http.StatusOK || len(body) != 0 || resp.Header.Get("Docker-Content-Digest") != idxDigest.String() ||
			resp.Header.Get("Content-Length") != strconv.Itoa(len(rawIdx)) || !strings.Contains(resp.Header.Get("Content-Type"), "index") {
			t.Errorf("HEAD manifest %s: %d %v", ref, resp.StatusCode, resp.Header)
		}
		resp, body = get(t, http.MethodGet, base+"/v2/team/app/manifests/"+ref+"?ns=registry.test", nil)
		if resp.StatusCode != http.StatusOK || string(body) != string(rawIdx) {
			t.Errorf("GET manifest %s: %d, body %d bytes, want the index's %d", ref, resp.StatusCode, len(body), len(rawIdx))
		}
	}
	digests, sizes := registrytest.Blobs(t, idx)
	blob := base + "/v2/team/app/blobs/" + digests[1] + "?ns=registry.test"
	resp, full := get(t, http.MethodGet, blob, nil)
	if resp.StatusCode != http.StatusOK || int64(len(full)) != sizes[1] || resp.Header.Get("Docker-Content-Digest") != digests[1] {
		t.Fatalf("GET blob: %d, %d bytes, want %d", resp.StatusCode, len(full), sizes[1])
	}
	resp, part := get(t, http.MethodGet, blob, map[string]string{"Range": "bytes=1000-1999"})
	if resp.StatusCode != http.StatusPartialContent || string(part) != string(full[1000:2000]) ||
		resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 1000-1999/%d", sizes[1]) {
		t.Errorf("GET blob range: %d %v, %d bytes", resp.StatusCode, resp.Header, len(part))
	}
	resp, body = get(t, http.MethodHead, blob, nil)
	if resp.StatusCode != http.StatusOK || len(body) != 0 || resp.Header.Get("Content-Length") != strconv.FormatInt(sizes[1], 10) {
		t.Errorf("HEAD blob: %d %v", resp.StatusCode, resp.Header)
	}
}

// testNotLocal sends a HEAD and a Range request for blobs the peer does
// not hold yet: the HEAD is answered once the manifest is known, the Range
// request once the pull has completed.
func testNotLocal(t *testing.T, p *daemon.Node, idx v1.ImageIndex) {
	base := "http://" + p.Addrs["mirror"] + "/v2/team/app/blobs/"
	digests, sizes := registrytest.Blobs(t, idx)
	resp, body := get(t, http.MethodHead, base+digests[2]+"?ns=registry.test", nil)
	if resp.StatusCode != http.StatusOK || len(body) != 0 || resp.Header.Get("Content-Length") != strconv.FormatInt(sizes[2], 10) ||
		resp.Header.Get("Docker-Content-Digest") != digests[2] {
		t.Errorf("HEAD of a blob not held: %d %v", resp.StatusCode, resp.Header)
	}
	resp, part := get(t, http.MethodGet, base+digests[3]+"?ns=registry.test", map[string]string{"Range": "bytes=5-104"})
	if resp.StatusCode != http.StatusPartialContent || len(part) != 100 {
		t.Fatalf("Range of a blob not held: %d, %d bytes", resp.StatusCode, len(part))
	}
	_, full := get(t, http.MethodGet, base+digests[3]+"?ns=registry.test", nil)
	if string(full[5:105]) != string(part) {
		t.Errorf("the range differs from the blob's bytes 5-104")
	}
}

func testErrors(t *testing.T, p *daemon.Node) {
	base := "http://" + p.Addrs["mirror"]
	unknown := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v2/team/app/manifests/nosuchtag?ns=registry.test", 404, "MANIFEST_UNKNOWN"},
		{"HEAD", "/v2/team/app/manifests/nosuchtag?ns=registry.test", 404, ""},
		{"GET", "/v2/team/app/manifests/" + unknown + "?ns=registry.test", 404, "MANIFEST_UNKNOWN"},
		{"GET", "/v2/team/nosuchrepo/manifests/v1?ns=registry.test", 404, "MANIFEST_UNKNOWN"},
		{"GET", "/v2/team/app/blobs/" + unknown + "?ns=registry.test", 404, "BLOB_UNKNOWN"},
		{"GET", "/v2/team/app/blobs/sha256:xyz?ns=registry.test", 400, "DIGEST_INVALID"},
		{"GET", "/v2/team/app/manifests/sha256:abc?ns=registry.test", 400, "DIGEST_INVALID"},
		{"GET", "/v2/Team/App/manifests/v1?ns=registry.test", 400, "NAME_INVALID"},
		{"GET", "/v2/team/app/manifests/v1?ns=nosuch.registry", 404, "NAME_UNKNOWN"},
		{"PUT", "/v2/team/app/manifests/v1", 405, "UNSUPPORTED"},
		{"POST", "/v2/team/app/blobs/uploads/", 405, "UNSUPPORTED"},
		{"DELETE", "/v2/team/app/blobs/" + unknown, 405, "UNSUPPORTED"},
	} {
		resp, body := get(t, tc.method, base+tc.path, nil)
		if tc.code == "" { // HEAD: no body
			if resp.StatusCode != tc.status {
				t.Errorf("%s %s: %d, want %d", tc.method, tc.path, resp.StatusCode, tc.status)
			}
			continue
		}
		wantError(t, resp, body, tc.status, tc.code)
		if tc.status == 405 && resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: Allow %q", tc.method, tc.path, resp.Header.Get("Allow"))
		}
	}
}

// TestMirrorUpstreamFailures: a down upstream, one that refuses the
// origin's credentials, and one that serves a corrupt layer get the
// spec's errors, and the origin keeps nothing of the corrupt layer.
func TestMirrorUpstreamFailures(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	locked := registrytest.Start(t, registrytest.Options{Username: "ci", Password: "s3cret"})
	tokened := registrytest.Start(t, registrytest.Options{Username: "ci", Password: "t0ken", Token: true})
	idx := registrytest.Index(t, 2, 64<<10)
	registrytest.Push(t, reg.Host, "team/corrupt", "v1", idx, "", "")
	registrytest.Push(t, locked.Host, "team/app", "v1", idx, "ci", "s3cret")
	registrytest.Push(t, tokened.Host, "team/app", "v1", idx, "ci", "t0ken")
	c := newCluster(t, []upstream.Registry{
		{Name: "registry.test", Endpoint: reg.URL},
		{Name: "down.test", Endpoint: "http://127.0.0.1:1"},
		{Name: "locked.test", Endpoint: locked.URL, Username: "ci", Password: "wrong"},
		{Name: "unlocked.test", Endpoint: locked.URL, Username: "ci", Password: "s3cret"},
		{Name: "bearer.test", Endpoint: tokened.URL, Username: "ci", Password: "t0ken"},
		{Name: "badbearer.test", Endpoint: tokened.URL, Username: "ci", Password: "wrong"},
		{Name: "anonbearer.test", Endpoint: tokened.URL},
	})
	p := c.addPeer(nil)
	base := "http://" + p.Addrs["mirror"]
	digests, _ := registrytest.Blobs(t, idx)

	resp, body := get(t, "GET", base+"/v2/team/app/manifests/v1?ns=down.test", nil)
	wantError(t, resp, body, 503, "UNAVAILABLE")
	resp, body = get(t, "GET", base+"/v2/team/app/blobs/"+digests[1]+"?ns=down.test", nil)
	wantError(t, resp, body, 503, "UNAVAILABLE")
	resp, body = get(t, "GET", base+"/v2/team/app/manifests/v1?ns=locked.test", nil)
	wantError(t, resp, body, 403, "DENIED")
	resp, body = get(t, "GET", base+"/v2/team/app/blobs/"+digests[1]+"?ns=locked.test", nil)
	wantError(t, resp, body, 403, "DENIED")
	// The right password works, with basic auth and with a bearer token
	// from the registry's token service (negotiated by the client).
	for _, ns := range []string{"unlocked.test", "bearer.test"} {
		if resp, body := get(t, "GET", base+"/v2/team/app/manifests/v1?ns="+ns, nil); resp.StatusCode != 200 {
			t.Errorf("%s with the right credentials: %d %s", ns, resp.StatusCode, body)
		}
	}
	if resp, body := get(t, "GET", base+"/v2/team/app/blobs/"+digests[2]+"?ns=bearer.test", nil); resp.StatusCode != 200 {
		t.Errorf("a layer through a bearer token: %d %s", resp.StatusCode, body)
	}
	for _, ns := range []string{"badbearer.test", "anonbearer.test"} {
		resp, body := get(t, "GET", base+"/v2/team/app/manifests/v1?ns="+ns, nil)
		wantError(t, resp, body, 403, "DENIED")
	}

	// Corrupt a layer in the upstream's storage: same size, other bytes.
	layer := digests[1]
	path := reg.BlobPath(layer)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	resp, body = get(t, "GET", base+"/v2/team/corrupt/blobs/"+layer+"?ns=registry.test", nil)
	wantError(t, resp, body, 503, "UNAVAILABLE")
	if !strings.Contains(string(body), "nothing was kept") {
		t.Errorf("corrupt upstream layer: %s", body)
	}
	oc, err := originclient.New(c.origin.URL("http"))
	if err != nil {
		t.Fatal(err)
	}
	defer oc.CloseIdleConnections()
	list, err := oc.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range list {
		if b.Digest.String() == layer {
			t.Errorf("the origin kept the corrupt layer %s", layer)
		}
	}
	// The other blobs of that image are fine.
	if resp, body := get(t, "GET", base+"/v2/team/corrupt/blobs/"+digests[2]+"?ns=registry.test", nil); resp.StatusCode != 200 {
		t.Errorf("a sound layer of the same image: %d %s", resp.StatusCode, body)
	}
}

// TestMirrorCorruptPeer: a peer that serves corrupt chunks does not make
// the mirror serve a corrupt layer; the puller rejects its chunks and
// fetches them again elsewhere.
func TestMirrorCorruptPeer(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	idx := registrytest.Index(t, 2, 2<<20)
	registrytest.Push(t, reg.Host, "team/app", "v1", idx, "", "")
	c := newCluster(t, []upstream.Registry{{Name: "registry.test", Endpoint: reg.URL}})
	// The bad peer turns corrupt once it holds the image (its own pull
	// reads chunks back through the same store).
	var corrupt atomic.Bool
	bad := c.addPeer(func(s peer.Store) peer.Store {
		return switchedStore{Store: s, bad: byzantine.CorruptReads(s), on: &corrupt}
	})
	pullAll(t, bad, "registry.test", "team/app", "v1")
	corrupt.Store(true)
	good := c.addPeer(nil)
	pullAll(t, good, "registry.test", "team/app", "v1") // checks every digest
	if got := metric(t, good, "p2pd_peer_chunks_rejected_total", ""); got == 0 {
		t.Errorf("no chunk rejected: the corrupt peer was never used")
	}
}

// switchedStore reads through bad once on is set.
type switchedStore struct {
	peer.Store
	bad peer.Store
	on  *atomic.Bool
}

func (s switchedStore) ReadChunk(ctx context.Context, d chunker.Digest, dst []byte) ([]byte, error) {
	if s.on.Load() {
		return s.bad.ReadChunk(ctx, d, dst)
	}
	return s.Store.ReadChunk(ctx, d, dst)
}

func TestConfigValidate(t *testing.T) {
	for _, ok := range []string{"", "off", "127.0.0.1:7403", "localhost:0", "[::1]:7403"} {
		if err := (mirror.Config{Listen: ok}).Validate(); err != nil {
			t.Errorf("listen %q: %v", ok, err)
		}
	}
	for _, bad := range []string{"0.0.0.0:7403", "10.0.0.1:7403", "7403", ":7403"} {
		if err := (mirror.Config{Listen: bad}).Validate(); !errors.Is(err, mirror.ErrBadConfig) {
			t.Errorf("listen %q: %v, want ErrBadConfig", bad, err)
		}
	}
	if _, err := mirror.New(mirror.Config{}, mirror.Deps{}); !errors.Is(err, mirror.ErrBadConfig) {
		t.Errorf("New without Origin and Blobs: %v", err)
	}
}
