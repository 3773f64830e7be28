package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestPeerResumesAfterKill9: a peer killed with SIGKILL mid-pull, on a
// disk where one chunk file was then found torn (half written, as a power
// cut after the rename can leave it), is restarted on the same data dir.
// It resumes: the chunks it had verified are not fetched again, the torn
// one is detected and fetched again, and the copy is right.
func TestPeerResumesAfterKill9(t *testing.T) {
	c := newCluster(t)
	p := c.startPull(t, c.control(t))
	p.waitInFlight(t, c.chunks)
	if err := c.peer.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-c.peer.done
	if _, err := p.wait(t); err == nil {
		t.Fatal("the pull succeeded although the peer was killed mid-transfer")
	}

	// Tear one chunk file; count the bytes of the others.
	var (
		torn    string
		kept    int64
		keptN   int
		storeCh = filepath.Join(c.dir, "peer", "store", "chunks")
	)
	err := filepath.WalkDir(storeCh, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if torn == "" {
			torn = path
			return os.Truncate(path, fi.Size()/2)
		}
		kept += fi.Size()
		keptN++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if torn == "" || keptN == 0 || keptN >= c.chunks-1 {
		t.Fatalf("the killed peer held %d chunks besides the torn one, of %d; want some but not all", keptN, c.chunks)
	}

	c.peer = startRole(t, c.dir, "peer (restarted)", "peer", c.peerCfg)
	cc := c.control(t)
	b, err := c.startPull(t, cc).wait(t)
	if err != nil {
		t.Fatalf("pull after the restart: %v", err)
	}
	c.checkCopy(t, cc)
	fetched := b.BytesFromPeers + b.BytesFromOrigins
	t.Logf("held %d intact chunks (%d bytes) and one torn; fetched %d bytes after the restart, %d missing",
		keptN, kept, fetched, blobSize-kept)
	if fetched > blobSize-kept {
		t.Errorf("fetched %d bytes after the restart, but only %d were missing: verified chunks were fetched again", fetched, blobSize-kept)
	}
	c.stopAll(t)
	checkStore(t, filepath.Join(c.dir, "peer", "store")) // the torn chunk is whole again
}
