package upstream_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/p2pd/p2pd/internal/registrytest"
	"github.com/p2pd/p2pd/origin/upstream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newClient(t *testing.T, cfg upstream.Config) *upstream.Client {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	c, err := upstream.New(cfg, upstream.Deps{Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestManifestCache: a tag is served from the cache until its TTL runs
// out, then resolved again; a failure is never cached.
func TestManifestCache(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	c := newClient(t, upstream.Config{ManifestTTL: 300 * time.Millisecond,
		Registries: []upstream.Registry{{Name: "registry.test", Endpoint: reg.URL}}})
	ctx := context.Background()

	if _, err := c.Manifest(ctx, "registry.test", "team/app", "v1"); !errors.Is(err, upstream.ErrNotFound) {
		t.Fatalf("before the push: %v, want ErrNotFound", err)
	}
	idx1 := registrytest.Index(t, 1, 1024)
	registrytest.Push(t, reg.Host, "team/app", "v1", idx1, "", "")
	m1, err := c.Manifest(ctx, "", "team/app", "v1") // the default registry; the 404 was not cached
	fetched := time.Now()
	if err != nil {
		t.Fatalf("after the push: %v", err)
	}
	d1, _ := idx1.Digest()
	if m1.Digest != d1.String() {
		t.Fatalf("digest %s, want %s", m1.Digest, d1)
	}
	// Retag: the cached manifest is served until the TTL runs out.
	idx2 := registrytest.Index(t, 1, 1024)
	registrytest.Push(t, reg.Host, "team/app", "v1", idx2, "", "")
	d2, _ := idx2.Digest()
	pushed := time.Now()
	for {
		m, err := c.Manifest(ctx, "registry.test", "team/app", "v1")
		if err != nil {
			t.Fatal(err)
		}
		if m.Digest == d2.String() {
			break
		}
		if time.Since(pushed) > 10*time.Second {
			t.Fatalf("still %s 10s after the retag; the TTL is 300ms", m.Digest)
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	if time.Since(fetched) < 300*time.Millisecond {
		t.Errorf("the retag was seen %v after the tag was cached, before the TTL of 300ms ran out", time.Since(fetched))
	}
	// By digest: the old index still resolves, and is checked.
	if m, err := c.Manifest(ctx, "registry.test", "team/app", d1.String()); err != nil || m.Digest != d1.String() {
		t.Errorf("by digest: %v %v", m, err)
	}
	// A repository prefix maps "app" to "team/app" upstream.
	pc := newClient(t, upstream.Config{Registries: []upstream.Registry{{Name: "r", Endpoint: reg.URL, RepositoryPrefix: "team/"}}})
	if m, err := pc.Manifest(ctx, "r", "app", d1.String()); err != nil || m.Digest != d1.String() {
		t.Errorf("through the repository prefix: %v %v", m, err)
	}
	// A blob streams.
	digests, sizes := registrytest.Blobs(t, idx2)
	rc, _, err := c.Blob(ctx, "registry.test", "team/app", digests[1])
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, rc)
	rc.Close()
	if err != nil || n != sizes[1] {
		t.Errorf("blob: %d bytes, %v; want %d", n, err, sizes[1])
	}
}

func TestConfigValidate(t *testing.T) {
	for _, bad := range []upstream.Config{
		{Registries: []upstream.Registry{{Name: ""}}},
		{Registries: []upstream.Registry{{Name: "a"}, {Name: "a"}}},
		{Registries: []upstream.Registry{{Name: "a", Endpoint: "ftp://x"}}},
		{Registries: []upstream.Registry{{Name: "a", Endpoint: "http://x/path"}}},
		{Registries: []upstream.Registry{{Name: "a"}}, Default: "b"},
		{ManifestTTL: -1},
	} {
		if err := bad.Validate(); !errors.Is(err, upstream.ErrBadConfig) {
			t.Errorf("Validate(%+v) = %v, want ErrBadConfig", bad, err)
		}
	}
	ok := upstream.Config{Registries: []upstream.Registry{{Name: "docker.io"}, {Name: "r.test:5000", Endpoint: "http://127.0.0.1:5000"}}}
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	if d := ok.WithDefaults().Default; d != "docker.io" {
		t.Errorf("default registry %q, want the first", d)
	}
	c := newClient(t, ok)
	if _, err := c.Manifest(context.Background(), "nosuch.test", "app", "v1"); !errors.Is(err, upstream.ErrUnknownRegistry) {
		t.Errorf("unknown registry: %v", err)
	}
	if _, _, err := c.Blob(context.Background(), "r.test:5000", "app", "sha256:xyz"); !errors.Is(err, upstream.ErrBadReference) {
		t.Errorf("bad digest: %v", err)
	}
}

func FuzzDecodeTags(f *testing.F) {
	f.Add([]byte(`{"name":"team/app","tags":["v1","latest","1.0_rc-2"]}`))
	f.Add([]byte(`{"tags":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tags, err := upstream.DecodeTags(b)
		if err != nil {
			return
		}
		if tags == nil {
			t.Fatal("nil tags without an error")
		}
		for _, tag := range tags {
			if tag == "" || len(tag) > 128 || strings.ContainsAny(tag, "/:@ ") {
				t.Fatalf("DecodeTags accepted %q", tag)
			}
		}
	})
}
