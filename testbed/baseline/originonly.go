package baseline

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/chunker/chunkertest"
	"github.com/p2pd/p2pd/origin"
	"github.com/p2pd/p2pd/origin/originclient"
	"github.com/p2pd/p2pd/peer/store"
	"github.com/p2pd/p2pd/testbed/result"
	"github.com/p2pd/p2pd/testbed/scenario"
)

// OriginOnly runs s with no exchange between peers: every honest peer,
// at its join time, downloads the whole blob over HTTP from an origin
// (peer i from origin i mod s.Origins.Count), hashing it as it arrives.
//
// The origin is the real one: an origin.Server over a peer/store.Store,
// the blob pushed to it (through an unshaped loopback listener, before
// the run) with originclient, and served on one shaped listener per
// scenario origin, whose accepted connections all share that origin's
// link. Each peer's HTTP client dials through its own link. A download is
// one GET of the whole blob (no retries): a peer whose GET fails, or
// whose bytes do not hash to the blob's digest, fails.
//
// Replication counts, for each piece of pieceLength bytes, the peers
// that have received all of it.
func OriginOnly(ctx context.Context, s scenario.Scenario, o Options) (*result.Result, error) {
	return start(ctx, s, o, originOnly)
}

func originOnly(ctx context.Context, s scenario.Scenario, o Options, tmp string) (res *result.Result, err error) {
	st, err := store.Open(store.DefaultConfig(filepath.Join(tmp, "origin")))
	if err != nil {
		return nil, fmt.Errorf("baseline: origin store: %w", err)
	}
	defer func() { err = errors.Join(err, st.Close()) }()
	srv, err := origin.New(origin.Config{Chunker: s.Blob.Chunker}, origin.Deps{Store: st, Logger: o.Logger.With("node", "origin")})
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}

	// The servers outlive the run's context until the end of this call.
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	var servers sync.WaitGroup
	defer func() { stop(); servers.Wait() }()
	serve := func(h host) (string, error) {
		ln, err := h.listen()
		if err != nil {
			return "", fmt.Errorf("baseline: origin: %w", err)
		}
		servers.Go(func() {
			if err := srv.Serve(sctx, ln); err != nil {
				o.Logger.Warn("baseline origin", "err", err)
			}
		})
		return "http://" + ln.Addr().String(), nil
	}

	setup, err := serve(host{})
	if err != nil {
		return nil, err
	}
	blob, err := push(ctx, s, setup)
	if err != nil {
		return nil, err
	}
	var egress atomic.Int64
	urls := make([]string, s.Origins.Count)
	for i := range urls {
		if urls[i], err = serve(host{link: s.OriginLink(i), out: &egress}); err != nil {
			return nil, err
		}
	}

	c := newCrowd(s, o)
	have := make(map[*member]*atomic.Int64, len(c.members))
	for _, m := range c.members {
		have[m] = new(atomic.Int64)
	}
	size, pl := int64(s.Blob.Size), pieceLength(s)
	return c.run(ctx, baseline{
		mode: ModeOriginOnly,
		fetch: func(ctx context.Context, m *member) (time.Time, error) {
			return download(ctx, urls[m.spec.Index%len(urls)], blob, size, m, have[m])
		},
		originEgress: egress.Load,
		holders: func(counts []int) {
			for _, n := range have {
				got := n.Load()
				for i := range counts {
					if end := min(int64(i+1)*pl, size); got < end {
						break
					}
					counts[i]++
				}
			}
		},
	}, o.Progress), nil
}

// push stores the scenario's blob in the origin at url and returns its
// digest, checked against the generator's.
func push(ctx context.Context, s scenario.Scenario, url string) (chunker.Digest, error) {
	want, err := writeBlob(s, io.Discard)
	if err != nil {
		return want, err
	}
	oc, err := originclient.New(url)
	if err != nil {
		return want, err
	}
	defer oc.CloseIdleConnections()
	size := int64(s.Blob.Size)
	if _, err := oc.Push(ctx, chunkertest.NewStream(s.Seed, size), originclient.PushOptions{Size: size, ExpectedDigest: &want}); err != nil {
		return want, fmt.Errorf("baseline: push to the origin: %w", err)
	}
	return want, nil
}

// download fetches blob from the origin at url through m's link, counting
// in have the bytes of the blob received so far, and returns when it
// has all of them and they hash to blob.
func download(ctx context.Context, url string, blob chunker.Digest, size int64, m *member, have *atomic.Int64) (time.Time, error) {
	h := host{link: m.link, in: to(&m.fromOrigins)}
	tr := &http.Transport{
		DialContext:        func(ctx context.Context, _, addr string) (net.Conn, error) { return h.dial(ctx, addr) },
		DisableCompression: true,
	}
	defer tr.CloseIdleConnections()
	oc, err := originclient.New(url, originclient.WithHTTPClient(&http.Client{Transport: tr}))
	if err != nil {
		return time.Time{}, err
	}
	body, err := oc.Fetch(ctx, blob, 0, -1)
	if err != nil {
		return time.Time{}, err
	}
	defer body.Close()
	sum := sha256.New()
	n, err := io.Copy(io.MultiWriter(sum, progressWriter{have}), body)
	done := time.Now()
	switch {
	case err != nil:
		return done, err
	case n != size:
		return done, fmt.Errorf("got %d bytes of %d", n, size)
	case chunker.Digest(sum.Sum(nil)) != blob:
		return done, fmt.Errorf("the bytes received hash to %s, not %s", chunker.Digest(sum.Sum(nil)), blob)
	}
	return done, nil
}

// progressWriter counts the bytes written to it.
type progressWriter struct{ n *atomic.Int64 }

func (w progressWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	return len(p), nil
}
