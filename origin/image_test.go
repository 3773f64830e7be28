package origin_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/p2pd/p2pd/origin"
	"github.com/p2pd/p2pd/origin/upstream"
)

func TestSplitImageRef(t *testing.T) {
	for _, tc := range []struct{ ref, registry, repo, ref2 string }{
		{"redis", "", "redis", "latest"},
		{"library/redis:7", "", "library/redis", "7"},
		{"docker.io/library/redis:7", "docker.io", "library/redis", "7"},
		{"registry.test:5000/team/app", "registry.test:5000", "team/app", "latest"},
		{"localhost/app:v1", "localhost", "app", "v1"},
		{"registry.test/team/app@sha256:" + strings.Repeat("a", 64), "registry.test", "team/app", "sha256:" + strings.Repeat("a", 64)},
	} {
		reg, repo, ref, err := origin.SplitImageRef(tc.ref)
		if err != nil || reg != tc.registry || repo != tc.repo || ref != tc.ref2 {
			t.Errorf("SplitImageRef(%q) = %q %q %q %v; want %q %q %q", tc.ref, reg, repo, ref, err, tc.registry, tc.repo, tc.ref2)
		}
	}
	for _, bad := range []string{"", "registry.test/", "app:", "app@", strings.Repeat("a", 2000)} {
		if _, _, _, err := origin.SplitImageRef(bad); !errors.Is(err, upstream.ErrBadReference) {
			t.Errorf("SplitImageRef(%q): %v, want ErrBadReference", bad, err)
		}
	}
}

func TestParseImageManifest(t *testing.T) {
	d := func(c string) string { return "sha256:" + strings.Repeat(c, 64) }
	children, blobs, err := origin.ParseImageManifest([]byte(`{"manifests":[{"digest":"` + d("a") + `"},{"digest":"` + d("b") + `"}]}`))
	if err != nil || len(children) != 2 || len(blobs) != 0 {
		t.Errorf("index: %v %v %v", children, blobs, err)
	}
	children, blobs, err = origin.ParseImageManifest([]byte(`{"config":{"digest":"` + d("c") + `"},"layers":[{"digest":"` + d("d") + `"}]}`))
	if err != nil || len(children) != 0 || len(blobs) != 2 || blobs[0].String() != d("c") {
		t.Errorf("image: %v %v %v", children, blobs, err)
	}
	for _, bad := range []string{`{`, `{"layers":[{"digest":"sha512:00"}]}`, `{"manifests":[{"digest":"x"}]}`,
		`{"layers":[` + strings.Repeat(`{"digest":"`+d("e")+`"},`, 1100) + `{}]}`} {
		if _, _, err := origin.ParseImageManifest([]byte(bad)); err == nil {
			t.Errorf("ParseImageManifest(%.40q...) accepted it", bad)
		}
	}
}

func FuzzParseImageManifest(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"digest":"sha256:` + strings.Repeat("a", 64) + `"}]}`))
	f.Add([]byte(`{"config":{"digest":"sha256:` + strings.Repeat("b", 64) + `"},"layers":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		children, blobs, err := origin.ParseImageManifest(b)
		if err != nil {
			return
		}
		for _, c := range children {
			if !upstream.IsDigest(c) {
				t.Fatalf("child %q is not a digest", c)
			}
		}
		if len(children) > 64 || len(blobs) > 1025 {
			t.Fatalf("%d children, %d blobs: over the limits", len(children), len(blobs))
		}
	})
}

func FuzzSplitImageRef(f *testing.F) {
	f.Add("registry.test:5000/team/app:v1")
	f.Add("redis@sha256:" + strings.Repeat("0", 64))
	f.Fuzz(func(t *testing.T, ref string) {
		reg, repo, tag, err := origin.SplitImageRef(ref)
		if err != nil {
			return
		}
		if repo == "" || tag == "" || strings.Contains(reg, "/") {
			t.Fatalf("SplitImageRef(%q) = %q %q %q", ref, reg, repo, tag)
		}
	})
}
