package origin

import (
	"context"
	"crypto/sha256"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/chunker/chunkertest"
	"github.com/p2pd/p2pd/origin/originclient"
)

// TestLargeStreamedPush pushes 256 MiB through the client and the server
// and reads it back, with default chunk sizes, and checks that neither
// direction allocates anything near the blob's size.
func TestLargeStreamedPush(t *testing.T) {
	const size = 256 << 20
	const allocLimit = size / 4 // the chunker's buffers are ~6 × 4 MiB
	if testing.Short() {
		t.Skip("pushes and reads back 256 MiB (a few seconds under -race)")
	}
	e := newEnv(t, Config{})
	ctx := context.Background()
	// The stream is hashed as it is pushed: generating it twice is
	// what costs most under -race.
	h := sha256.New()

	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.TotalAlloc
	start := time.Now()
	res, err := e.client.Push(ctx, io.TeeReader(chunkertest.NewStream(5, size), h), originclient.PushOptions{Size: size})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	runtime.ReadMemStats(&ms)
	pushAlloc := ms.TotalAlloc - before
	var want chunker.Digest
	h.Sum(want[:0])
	if res.Digest != want || res.Size != size || !res.Created {
		t.Fatalf("push result %+v", res)
	}
	t.Logf("pushed %d MiB in %d chunks in %v (%.0f MiB/s); allocated %d MiB meanwhile",
		size>>20, res.Chunks, took.Round(time.Millisecond), float64(size>>20)/took.Seconds(), pushAlloc>>20)
	if pushAlloc > allocLimit {
		t.Errorf("the push allocated %d MiB for a %d MiB blob: it is buffered", pushAlloc>>20, size>>20)
	}

	runtime.GC()
	runtime.ReadMemStats(&ms)
	before = ms.TotalAlloc
	start = time.Now()
	rc, err := e.client.Fetch(ctx, res.Digest, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	h.Reset()
	n, err := io.Copy(h, rc)
	rc.Close()
	if err != nil || n != size {
		t.Fatalf("read back %d bytes: %v", n, err)
	}
	took = time.Since(start)
	runtime.ReadMemStats(&ms)
	fetchAlloc := ms.TotalAlloc - before
	var got chunker.Digest
	h.Sum(got[:0])
	if got != want {
		t.Fatalf("read back digest %s, want %s", got, want)
	}
	t.Logf("read back in %v (%.0f MiB/s); allocated %d MiB meanwhile",
		took.Round(time.Millisecond), float64(size>>20)/took.Seconds(), fetchAlloc>>20)
	if fetchAlloc > allocLimit {
		t.Errorf("the read back allocated %d MiB for a %d MiB blob", fetchAlloc>>20, size>>20)
	}
}
