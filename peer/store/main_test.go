package store

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/p2pd/p2pd/chunker"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// withHooks installs test hooks.
func withHooks(h hooks) Option { return func(o *options) { o.hooks = h } }

// withTouchInterval sets how stale a chunk's mtime may get before a read
// refreshes it.
func withTouchInterval(d time.Duration) Option {
	return func(o *options) { o.touchInterval = d }
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

// openStore opens a store that is closed when the test ends.
func openStore(t testing.TB, cfg Config, opts ...Option) *Store {
	t.Helper()
	s, err := Open(cfg, append([]Option{WithLogger(testLogger(t))}, opts...)...)
	if err != nil {
		t.Fatalf("Open(%+v): %v", cfg, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// chunkData returns size deterministic pseudo-random bytes.
func chunkData(seed uint64, size int) []byte {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	b := make([]byte, size)
	rand.NewChaCha8(key).Read(b)
	return b
}

// mustPut stores data and returns its digest.
func mustPut(t testing.TB, s *Store, data []byte) chunker.Digest {
	t.Helper()
	d := chunker.Sum(data)
	if err := s.Put(context.Background(), d, data); err != nil {
		t.Fatalf("Put(%s): %v", d, err)
	}
	return d
}

// testManifest returns a valid manifest for the blob made of chunks. Every
// chunk but the last must be at least 64 bytes.
func testManifest(t testing.TB, chunks ...[]byte) *chunker.Manifest {
	t.Helper()
	m := &chunker.Manifest{
		Version: chunker.ManifestVersion,
		MinSize: 64,
		AvgSize: 1024,
		MaxSize: chunker.MaxChunkSizeLimit,
	}
	var blob []byte
	for _, c := range chunks {
		m.Chunks = append(m.Chunks, chunker.Chunk{Digest: chunker.Sum(c), Size: uint32(len(c))})
		blob = append(blob, c...)
	}
	m.Size = int64(len(blob))
	m.Digest = chunker.Sum(blob)
	if err := m.Validate(); err != nil {
		t.Fatalf("test manifest: %v", err)
	}
	return m
}

func manifestID(t testing.TB, m *chunker.Manifest) chunker.Digest {
	t.Helper()
	id, err := m.ID()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// listDir returns the names in dir (nil if it does not exist).
func listDir(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// chunkFiles walks chunks/ and returns every file path in it.
func chunkFiles(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(dir, chunksDir), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(time.Millisecond)
	}
}
