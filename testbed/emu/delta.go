package emu

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/peer"
	"github.com/p2pd/p2pd/peer/store"
	"github.com/p2pd/p2pd/testbed/result"
	"github.com/p2pd/p2pd/testbed/scenario"
)

// storeSubdir is where internal/daemon keeps a node's chunk store, under
// its data directory.
const storeSubdir = "store"

// setupBase prepares a delta run (scenario blob.base): it measures what
// version 2 changed, and writes version 1's chunks, pinned, into a store
// that every peer's store starts as a copy of.
func (c *cluster) setupBase(ctx context.Context) error {
	d, err := c.s.Delta(ctx)
	if err != nil {
		return fmt.Errorf("emu: %w", err)
	}
	c.delta = &result.Delta{ChangedBytes: d.ChangedBytes, ChangedChunkBytes: d.ChangedChunkBytes, Held: d.Held}
	dir := filepath.Join(c.dir, "base-store")
	st, err := store.Open(store.DefaultConfig(dir))
	if err != nil {
		return fmt.Errorf("emu: version 1 store: %w", err)
	}
	m, err := c.s.Cut(ctx, 1, func(k chunker.Chunk, b []byte) error { return st.Put(ctx, k.Digest, b) })
	if err == nil {
		err = st.Pin(ctx, m)
	}
	if err = errors.Join(err, st.Close()); err != nil {
		return fmt.Errorf("emu: version 1 store: %w", err)
	}
	c.baseStore = dir
	return nil
}

// preload gives a delta run's peer, on its first start, a store holding
// version 1: a copy of the base store made of hard links (chunk files are
// immutable once written: the store replaces them, never rewrites them),
// without its lock file.
func (c *cluster) preload(dataDir string) error {
	if c.baseStore == "" {
		return nil
	}
	dst := filepath.Join(dataDir, storeSubdir)
	if _, err := os.Stat(dst); err == nil {
		return nil // a peer starting again keeps its store
	}
	err := filepath.WalkDir(c.baseStore, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(c.baseStore, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		switch {
		case e.IsDir():
			return os.MkdirAll(to, 0o750)
		case e.Type().IsRegular() && e.Name() != "LOCK":
			return os.Link(path, to)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("emu: preload version 1: %w", err)
	}
	return nil
}

// Per-process file descriptors, for FDsNeeded: a peer's listeners, store
// lock, tracker and control connections (both ends of each in the
// process), and a few more; and the run's own.
const (
	fdsPerPeer = 8
	fdsBase    = 200
)

// FDsNeeded estimates the file descriptors an emulated run of s holds at
// its peak: every connection between two in-process nodes costs two, and
// each peer dials up to its MaxConns.
func FDsNeeded(s scenario.Scenario) int {
	conns := cmp.Or(s.Conns.Max, peer.DefaultMaxConns)
	return fdsBase + s.NumPeers()*(fdsPerPeer+2*conns) + s.Origins.Count*fdsPerPeer
}
