package peer_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/p2pd/p2pd/chunker/chunkertest"
	"github.com/p2pd/p2pd/peer"
	"github.com/p2pd/p2pd/peer/peertest"
	"github.com/p2pd/p2pd/peer/store"
)

// smallDisk mounts an 8 MiB tmpfs on dir for the test (root only) and
// fills all but about free bytes of it with a foreign file, whose removal
// frees the space again.
func smallDisk(t *testing.T, dir string, free int64) (filler string) {
	t.Helper()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=8m"); err != nil {
		t.Skipf("cannot mount a tmpfs to fill (needs root): %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
			unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	filler = filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 8<<20-free), 0o600); err != nil {
		t.Fatal(err)
	}
	return filler
}

// A peer whose disk fills mid-pull: the pull fails with a clear error
// (store.ErrNoSpace), no partial chunk is left, the peer keeps serving
// the chunks it stored, and once space is freed the same pull completes.
func TestDiskFull(t *testing.T) {
	tr := startTracker(t)
	c := peertest.NewCluster(t, tr, peertest.ClusterOptions{})
	const size = 6 << 20
	data := chunkertest.Bytes(11, size)
	m := peertest.SeedBlob(t, c.Origin, bytes.NewReader(data), peertest.SmallChunks)

	p := peertest.NewNode(t, "full", tr, peertest.TestConfig())
	filler := smallDisk(t, p.Dir, 3<<20)
	p.Start()
	t.Cleanup(p.Stop)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err := p.Engine.Pull(ctx, m.Digest, peer.PullOptions{})
	if !errors.Is(err, store.ErrNoSpace) || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("pull on a full disk: %v, want store.ErrNoSpace", err)
	}
	t.Logf("pull on a full disk: %v", err)
	// Only whole, verified chunks, and nothing half-written.
	var held []int
	for i, ch := range m.Chunks {
		if p.Store.Has(ch.Digest) {
			held = append(held, i)
		}
	}
	if len(held) == 0 || len(held) == len(m.Chunks) {
		t.Fatalf("%d of %d chunks held; the disk should have filled part way", len(held), len(m.Chunks))
	}
	rep, err := p.Store.Verify(ctx)
	if err != nil || rep.Dropped != 0 || rep.Checked != len(held) {
		t.Fatalf("store check after the failure: %+v, %v; want %d whole chunks", rep, err, len(held))
	}
	if tmp, _ := os.ReadDir(filepath.Join(p.Dir, "tmp")); len(tmp) != 0 {
		t.Fatalf("%d files left in the store's tmp/", len(tmp))
	}

	// It still serves what it has: with the origin gone, another peer
	// gets those chunks from it.
	c.Origin.Stop()
	q := peertest.StartNode(t, "other", tr, peertest.TestConfig())
	qctx, qcancel := context.WithCancel(ctx)
	qerr := make(chan error, 1)
	go func() { _, err := q.Engine.Pull(qctx, m.Digest, peer.PullOptions{}); qerr <- err }()
	peertest.Eventually(t, 30*time.Second, func() error {
		for _, i := range held {
			if !q.Store.Has(m.Chunks[i].Digest) {
				return errors.New("the other peer lacks chunks the full one holds")
			}
		}
		return nil
	})
	qcancel()
	<-qerr

	// Space freed: the pull completes.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	c.Origin.Start()
	if _, err := p.Engine.Pull(ctx, m.Digest, peer.PullOptions{}); err != nil {
		t.Fatalf("pull once space is freed: %v", err)
	}
	verifyCopy(t, p, m, data)
}
