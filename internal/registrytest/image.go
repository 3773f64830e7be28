package registrytest

import (
	"fmt"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Platforms of the test images' indexes.
var Platforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}

// Index builds a multi-platform image index: for each of Platforms, an
// image of n random tar layers (gzipped) of about size bytes each, whose
// config names the platform, so that a runtime can unpack it.
func Index(t testing.TB, n int, size int64) v1.ImageIndex {
	t.Helper()
	idx := v1.ImageIndex(empty.Index)
	for _, p := range Platforms {
		img, err := random.Image(size, int64(n))
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = p.OS, p.Architecture
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	return idx
}

// Push pushes idx to host (a "127.0.0.1:port" registry) as repo:tag, with
// basic auth if username is set.
func Push(t testing.TB, host, repo, tag string, idx v1.ImageIndex, username, password string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(fmt.Sprintf("%s/%s:%s", host, repo, tag), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	auth := authn.Anonymous
	if username != "" {
		auth = authn.FromConfig(authn.AuthConfig{Username: username, Password: password})
	}
	if err := remote.WriteIndex(ref, idx, remote.WithAuth(auth)); err != nil {
		t.Fatalf("registrytest: pushing %s: %v", ref, err)
	}
	return ref
}

// Blobs returns the digests and sizes of every config and layer of idx,
// each once, in order.
func Blobs(t testing.TB, idx v1.ImageIndex) (digests []string, sizes []int64) {
	t.Helper()
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	add := func(d v1.Hash, size int64) {
		if !seen[d.String()] {
			seen[d.String()] = true
			digests, sizes = append(digests, d.String()), append(sizes, size)
		}
	}
	for _, desc := range im.Manifests {
		img, err := idx.Image(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		add(m.Config.Digest, m.Config.Size)
		for _, l := range m.Layers {
			add(l.Digest, l.Size)
		}
	}
	return digests, sizes
}
