package testbed_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/chunker/chunkertest"
	"github.com/p2pd/p2pd/internal/auth"
	"github.com/p2pd/p2pd/origin"
	"github.com/p2pd/p2pd/origin/originclient"
	"github.com/p2pd/p2pd/peer/control/controlclient"
	"github.com/p2pd/p2pd/testbed"
	"github.com/p2pd/p2pd/tracker"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testbed.IgnoredGoroutines()...)
}

// small chunks so that a few MiB make many chunks to trade.
var smallChunks = chunker.Config{MinSize: 16 << 10, AvgSize: 64 << 10, MaxSize: 256 << 10}

func fastOptions(peers int) testbed.Options {
	return testbed.Options{
		Peers:   peers,
		Tracker: tracker.Config{AnnounceInterval: time.Second},
		Origin:  origin.Config{Chunker: smallChunks},
	}
}

// TestFanOut20: 20 peers pull one blob through the full stack; every copy
// verifies and the origin uploads at most twice the blob.
func TestFanOut20(t *testing.T) {
	c := testbed.NewCluster(t, fastOptions(20))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	f, err := testbed.RunFanOut(ctx, c.Cluster, 8<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	f.Print(&buf)
	t.Log("\n" + buf.String())
	if err := f.Err(); err != nil {
		t.Fatal(err)
	}
	var fromOrigins int64
	for _, r := range f.Peers {
		fromOrigins += r.BytesFromOrigins
	}
	if fromOrigins > 2*f.Size {
		t.Fatalf("peers fetched %d bytes from the origin, more than twice the %d-byte blob", fromOrigins, f.Size)
	}
}

func TestBadInput(t *testing.T) {
	c := testbed.NewCluster(t, fastOptions(1))
	ctx := context.Background()

	t.Run("unknown digest", func(t *testing.T) {
		unknown := chunker.Sum([]byte("nobody has this"))
		_, err := c.Controls[0].Pull(ctx, unknown, nil)
		if !errors.Is(err, controlclient.ErrNotFound) || !strings.Contains(err.Error(), "not found") {
			t.Fatalf("pull of an unknown digest: %v", err)
		}
	})
	t.Run("push with the wrong expected digest keeps nothing", func(t *testing.T) {
		data := chunkertest.Bytes(7, 1<<20)
		wrong := chunker.Sum([]byte("something else"))
		_, err := c.OriginClient.Push(ctx, bytes.NewReader(data), originclient.PushOptions{ExpectedDigest: &wrong, Size: int64(len(data))})
		if !errors.Is(err, originclient.ErrDigestMismatch) {
			t.Fatalf("push: %v", err)
		}
		if _, err := c.OriginClient.Stat(ctx, chunker.Sum(data)); !errors.Is(err, originclient.ErrNotFound) {
			t.Fatalf("the origin kept the rejected blob: %v", err)
		}
	})
	t.Run("garbage announce gets 400", func(t *testing.T) {
		member := c.Client(auth.ScopeAnnounce) // garbage from a member
		defer member.CloseIdleConnections()
		for _, body := range []string{"", "{", `{"blob":"sha256:zz"}`, strings.Repeat("x", 2<<20)} {
			resp, err := member.Post(c.Tracker.URL("http")+"/v1/announce", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("announce %q...: status %d", body[:min(len(body), 20)], resp.StatusCode)
			}
		}
		if _, err := c.TrackerClient.Swarms(ctx); err != nil {
			t.Fatalf("tracker unhealthy after garbage: %v", err)
		}
		http.DefaultClient.CloseIdleConnections()
	})
}
