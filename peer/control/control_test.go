package control_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/wire/ctlwire"
	"github.com/p2pd/p2pd/peer/control"
	"github.com/p2pd/p2pd/peer/control/controlclient"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// memEngine holds blobs in memory; it stands in for the peer engine, which
// has its own end-to-end tests.
type memEngine struct {
	mu    sync.Mutex
	blobs map[chunker.Digest][]byte
	avail map[chunker.Digest][]byte // what a pull can fetch
}

func (e *memEngine) Info() ctlwire.NodeInfo {
	return ctlwire.NodeInfo{PeerID: "12D3KooWtest", Role: "peer"}
}

func (e *memEngine) Pull(ctx context.Context, d chunker.Digest, progress func(ctlwire.Progress)) (ctlwire.Blob, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	b, ok := e.avail[d]
	if !ok {
		return ctlwire.Blob{}, fmt.Errorf("blob %s: %w", d, control.ErrNotFound)
	}
	progress(ctlwire.Progress{Have: 0, Total: 1, Size: int64(len(b))})
	e.blobs[d] = b
	return ctlwire.Blob{Digest: d, Size: int64(len(b)), Complete: true}, nil
}

func (e *memEngine) Blobs() []ctlwire.Blob {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []ctlwire.Blob
	for d, b := range e.blobs {
		out = append(out, ctlwire.Blob{Digest: d, Size: int64(len(b)), Complete: true})
	}
	return out
}

func (e *memEngine) Remove(ctx context.Context, d chunker.Digest) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.blobs[d]; !ok {
		return fmt.Errorf("blob %s: %w", d, control.ErrNotFound)
	}
	delete(e.blobs, d)
	return nil
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

func (e *memEngine) Open(ctx context.Context, d chunker.Digest) (io.ReadSeekCloser, int64, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	b, ok := e.blobs[d]
	if !ok {
		return nil, 0, fmt.Errorf("blob %s: %w", d, control.ErrNotFound)
	}
	return nopCloser{bytes.NewReader(b)}, int64(len(b)), nil
}

func TestControlAPI(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "unix:" + filepath.Join(t.TempDir(), "c.sock")} {
		t.Run(addr, func(t *testing.T) {
			data := []byte("the quick brown fox")
			d := chunker.Sum(data)
			eng := &memEngine{blobs: map[chunker.Digest][]byte{}, avail: map[chunker.Digest][]byte{d: data}}
			ln, err := control.Listen(addr)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- control.New(eng, nil, nil).Serve(ctx, ln) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Error(err)
				}
			}()
			target := addr
			if ln.Addr().Network() == "tcp" {
				target = ln.Addr().String()
			}
			c, err := controlclient.New(target)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()

			if n, err := c.Node(ctx); err != nil || n.PeerID != "12D3KooWtest" {
				t.Fatalf("Node = %+v, %v", n, err)
			}
			var updates int
			blob, err := c.Pull(ctx, d, func(ctlwire.Progress) { updates++ })
			if err != nil || blob.Digest != d || updates != 1 {
				t.Fatalf("Pull = %+v, %v after %d updates", blob, err, updates)
			}
			rc, size, err := c.Open(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(rc)
			rc.Close()
			if !bytes.Equal(got, data) || size != int64(len(data)) {
				t.Fatalf("Open: %q (%d bytes)", got, size)
			}
			if bl, err := c.Blobs(ctx); err != nil || len(bl) != 1 {
				t.Fatalf("Blobs = %v, %v", bl, err)
			}
			unknown := chunker.Sum([]byte("nope"))
			if _, err := c.Pull(ctx, unknown, nil); !errors.Is(err, controlclient.ErrNotFound) {
				t.Fatalf("Pull of unknown digest: %v", err)
			}
			if _, _, err := c.Open(ctx, unknown); !errors.Is(err, controlclient.ErrNotFound) {
				t.Fatalf("Open of unknown digest: %v", err)
			}
			if err := c.Remove(ctx, d); err != nil {
				t.Fatal(err)
			}
			if err := c.Remove(ctx, d); !errors.Is(err, controlclient.ErrNotFound) {
				t.Fatalf("second Remove: %v", err)
			}
		})
	}
}

func TestListenRefusesRemote(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "192.0.2.1:7402", ":7402"} {
		if ln, err := control.Listen(addr); err == nil {
			ln.Close()
			t.Errorf("Listen(%q) accepted a non-loopback address", addr)
		}
	}
}
