package store

import (
	"crypto/rand"
	"path/filepath"
	"strings"
	"testing"

	"github.com/p2pd/p2pd/chunker"
)

// TestPathsStayInside: the files the store writes for a digest, which
// comes from the network (a peer's Data frame, a manifest, an announce),
// are always inside its directory, whatever the digest; and a digest that
// tries to name a path does not parse.
func TestPathsStayInside(t *testing.T) {
	s := &Store{dir: filepath.Join(t.TempDir(), "store")}
	for i := range 1000 {
		var d chunker.Digest
		rand.Read(d[:])
		if i == 0 {
			d = chunker.Digest{} // all zeros
		}
		for _, p := range []string{s.chunkPath(d), s.manifestPath(d), s.pinPath(d)} {
			rel, err := filepath.Rel(s.dir, p)
			if err != nil || strings.HasPrefix(rel, "..") || filepath.IsAbs(rel) || filepath.Base(p) != d.Hex() {
				t.Fatalf("digest %s: path %s is not a file named by it inside %s", d, p, s.dir)
			}
		}
	}
	for _, bad := range []string{
		"sha256:../../../../etc/passwd",
		"sha256:" + strings.Repeat("../", 21) + "a",
		"sha256:" + strings.Repeat("a", 62) + "/.",
		"sha256:" + strings.Repeat("A", 64),
		"../sha256:" + strings.Repeat("a", 64),
	} {
		if _, err := chunker.ParseDigest(bad); err == nil {
			t.Errorf("ParseDigest(%q) accepted it", bad)
		}
	}
}
