package store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/fsutil"
)

// fullDisk makes the filesystem under a store run out of space on demand.
type fullDisk struct {
	fill, free func(t *testing.T)
	opts       []Option
}

// tmpfsDisk mounts a 2 MiB tmpfs on root. Filling it writes a foreign file
// until the kernel says ENOSPC; freeing it deletes that file.
func tmpfsDisk(t *testing.T, root string) (*fullDisk, error) {
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, "size=2m"); err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		if err := unix.Unmount(root, 0); err != nil {
			t.Errorf("unmount %s: %v", root, err)
			unix.Unmount(root, unix.MNT_DETACH)
		}
	})
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Fatalf("%s is not a tmpfs after mounting: type %#x, %v", root, st.Type, err)
	}
	filler := filepath.Join(root, "filler")
	return &fullDisk{
		fill: func(t *testing.T) {
			f, err := os.Create(filler)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			buf := make([]byte, 64<<10)
			for written := 0; ; written += len(buf) {
				if _, err := f.Write(buf); err != nil {
					if !errors.Is(err, syscall.ENOSPC) {
						t.Fatalf("filling tmpfs: %v", err)
					}
					return
				}
				if written > 4<<20 {
					t.Fatal("a 2 MiB tmpfs took 4 MiB without ENOSPC")
				}
			}
		},
		free: func(t *testing.T) {
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
		},
	}, nil
}

// devFullDisk makes the store's temp files write to /dev/full, where every
// write fails with a real ENOSPC from the kernel. The hook still creates the
// temp file at the store's chosen path, so cleanup of it can be checked.
func devFullDisk() *fullDisk {
	var full atomic.Bool
	openTemp := func(path string) (*os.File, error) {
		if !full.Load() {
			return fsutil.OpenExclusive(path)
		}
		f, err := fsutil.OpenExclusive(path)
		if err != nil {
			return nil, err
		}
		f.Close()
		return os.OpenFile("/dev/full", os.O_WRONLY, 0)
	}
	return &fullDisk{
		fill: func(*testing.T) { full.Store(true) },
		free: func(*testing.T) { full.Store(false) },
		opts: []Option{withHooks(hooks{openTemp: openTemp})},
	}
}

func TestNoSpace(t *testing.T) {
	tests := []struct {
		name string
		disk func(t *testing.T, root string) *fullDisk
	}{
		{"tmpfs", func(t *testing.T, root string) *fullDisk {
			d, err := tmpfsDisk(t, root)
			if err != nil {
				// Not root, or no CAP_SYS_ADMIN in this container.
				t.Logf("cannot mount tmpfs (%v), using /dev/full instead", err)
				return devFullDisk()
			}
			return d
		}},
		{"dev-full", func(*testing.T, string) *fullDisk { return devFullDisk() }},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			disk := tt.disk(t, root)
			cfg := DefaultConfig(filepath.Join(root, "store"))
			s := openStore(t, cfg, disk.opts...)
			a, b := chunkData(1, 64<<10), chunkData(2, 64<<10)
			mustPut(t, s, a)
			mustPut(t, s, b)
			mAB := testManifest(t, a, b)
			if err := s.Pin(ctx, mAB); err != nil {
				t.Fatal(err)
			}

			disk.fill(t)
			c := chunkData(3, 256<<10)
			dc := chunker.Sum(c)
			err := s.Put(ctx, dc, c)
			if !errors.Is(err, ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) || errors.Is(err, ErrCapacity) {
				t.Fatalf("Put on a full disk = %v, want ErrNoSpace wrapping ENOSPC", err)
			}
			if !strings.Contains(err.Error(), s.Dir()) {
				t.Errorf("error %q does not name the store directory %s", err, s.Dir())
			}
			t.Logf("Put on a full disk: %v", err)
			if s.Has(dc) || s.Len() != 2 || s.Usage() != int64(len(a)+len(b)) {
				t.Errorf("after failed Put: Has %v, Len %d, Usage %d", s.Has(dc), s.Len(), s.Usage())
			}
			if _, err := os.Stat(s.chunkPath(dc)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("partial chunk file visible: %v", err)
			}
			if tmp := listDir(t, filepath.Join(s.Dir(), tmpDir)); len(tmp) != 0 {
				t.Errorf("temp files left behind: %v", tmp)
			}
			mC := testManifest(t, c)
			if err := s.Pin(ctx, mC); !errors.Is(err, ErrNoSpace) {
				t.Errorf("Pin on a full disk = %v, want ErrNoSpace", err)
			}
			if got := s.Manifests(); len(got) != 1 {
				t.Errorf("Manifests = %v, want only the one pinned before", got)
			}

			// Existing data is still served.
			for _, want := range [][]byte{a, b} {
				if got, err := s.Get(ctx, chunker.Sum(want)); err != nil || !bytes.Equal(got, want) {
					t.Errorf("Get on a full disk: %v", err)
				}
			}
			r := openBlob(t, s, mAB)
			if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, append(a[:len(a):len(a)], b...)) {
				t.Errorf("blob read on a full disk: %v", err)
			}

			// And the store recovers once space is freed.
			disk.free(t)
			if err := s.Put(ctx, dc, c); err != nil {
				t.Fatalf("Put after freeing space: %v", err)
			}
			if err := s.Pin(ctx, mC); err != nil {
				t.Fatalf("Pin after freeing space: %v", err)
			}
			if got, err := s.Get(ctx, dc); err != nil || !bytes.Equal(got, c) {
				t.Fatalf("Get after recovery: %v", err)
			}
			if rep, err := s.Verify(ctx); err != nil || rep.Dropped != 0 || rep.Checked != 3 {
				t.Errorf("Verify = %+v, %v; want 3 checked, none dropped", rep, err)
			}
		})
	}
}
