package mirror_test

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/chunker/chunkertest"
	"github.com/p2pd/p2pd/internal/daemon"
	"github.com/p2pd/p2pd/internal/registrytest"
	"github.com/p2pd/p2pd/internal/units"
	"github.com/p2pd/p2pd/internal/wire/ctlwire"
	"github.com/p2pd/p2pd/origin"
	"github.com/p2pd/p2pd/origin/upstream"
	"github.com/p2pd/p2pd/peer/control/controlclient"
)

var (
	benchSize   = flag.String("mirror.size", "64MiB", "BenchmarkMirrorVsPull: image size")
	benchLayers = flag.Int("mirror.layers", 8, "BenchmarkMirrorVsPull: layers")
)

// genLayer is an uncompressed layer of pseudo-random bytes, streamed, so
// that a 1 GiB image is never held in memory.
type genLayer struct {
	seed   uint64
	size   int64
	digest v1.Hash
}

func newGenLayer(b testing.TB, seed uint64, size int64) *genLayer {
	h := sha256.New()
	if _, err := io.Copy(h, chunkertest.NewStream(seed, size)); err != nil {
		b.Fatal(err)
	}
	return &genLayer{seed: seed, size: size, digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}}
}

func (l *genLayer) Digest() (v1.Hash, error) { return l.digest, nil }
func (l *genLayer) DiffID() (v1.Hash, error) { return l.digest, nil }
func (l *genLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(chunkertest.NewStream(l.seed, l.size)), nil
}
func (l *genLayer) Uncompressed() (io.ReadCloser, error) { return l.Compressed() }
func (l *genLayer) Size() (int64, error)                 { return l.size, nil }
func (l *genLayer) MediaType() (types.MediaType, error)  { return types.OCIUncompressedLayer, nil }

// BenchmarkMirrorVsPull measures, on a node whose peers hold the image,
// a pull of every blob of a multi-layer image through the node's registry
// mirror by an HTTP client that hashes what it reads (as containerd does),
// against `p2pctl pull` (the control API's Pull) of the same blobs on
// another fresh node, and against that pull plus reading the blobs back
// and hashing them (what `p2pctl pull -o` adds, but the file); the runs
// never overlap, alternate their order, and each pulls from the origin and
// the one peer that holds the image. Layers go one at a time in all. It
// reports the rates and the ratios (mirror/pull, mirror/pull+read).
//
//	go test -run '^$' -bench MirrorVsPull -benchtime 3x ./peer/mirror -mirror.size 1GiB
func BenchmarkMirrorVsPull(b *testing.B) {
	size, err := units.ParseSize(*benchSize)
	if err != nil {
		b.Fatal(err)
	}
	n := int64(*benchLayers)
	layers := make([]v1.Layer, n)
	for i := range layers {
		layers[i] = newGenLayer(b, uint64(i+1), size/n)
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		b.Fatal(err)
	}
	idx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: img,
		Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}})
	reg := registrytest.Start(b, registrytest.Options{})
	registrytest.Push(b, reg.Host, "bench/app", "v1", idx, "", "")
	digests, sizes := registrytest.Blobs(b, idx)
	var total int64
	for _, s := range sizes {
		total += s
	}

	c := newClusterWith(b, []upstream.Registry{{Name: "registry.test", Endpoint: reg.URL}}, origin.Config{}) // default chunk sizes
	holder := c.addPeer(nil)
	mirrorGet(b, holder, digests) // the origin ingests, the holder pulls
	c.waitComplete(b, idx, 1)

	var tMirror, tPull, tRead time.Duration
	var ratios []float64 // per run: pull time / mirror time
	b.SetBytes(total)
	b.ResetTimer()
	for i := range b.N {
		var runMirror, runPull time.Duration
		mirrorRun := func() {
			p := c.addPeer(nil)
			start := time.Now()
			mirrorGet(b, p, digests)
			runMirror = time.Since(start)
			tMirror += runMirror
			c.removePeer(p)
		}
		pullRun := func() {
			p := c.addPeer(nil)
			cc, err := controlclient.New(p.Addrs["control"])
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			for _, s := range digests {
				d, _ := chunker.ParseDigest(s)
				if _, err := cc.Pull(b.Context(), d, func(ctlwire.Progress) {}); err != nil {
					b.Fatal(err)
				}
			}
			runPull = time.Since(start)
			tPull += runPull
			// What `p2pctl pull -o` adds: read the blobs back and hash them.
			start = time.Now()
			for _, s := range digests {
				d, _ := chunker.ParseDigest(s)
				rc, _, err := cc.Open(b.Context(), d)
				if err != nil {
					b.Fatal(err)
				}
				h := sha256.New()
				_, err = io.Copy(h, rc)
				rc.Close()
				if err != nil || "sha256:"+hex.EncodeToString(h.Sum(nil)) != s {
					b.Fatalf("reading %s back: %v", s, err)
				}
			}
			tRead += time.Since(start)
			cc.Close()
			c.removePeer(p)
		}
		first := "mirror"
		if i%2 == 0 { // alternate the order: the machine's load drifts
			mirrorRun()
			pullRun()
		} else {
			first = "pull"
			pullRun()
			mirrorRun()
		}
		ratios = append(ratios, runPull.Seconds()/runMirror.Seconds())
		b.Logf("run %d (%s first): mirror %.2fs, pull %.2fs: %.2fx", i, first, runMirror.Seconds(), runPull.Seconds(), ratios[i])
	}
	b.StopTimer()
	mb := func(d time.Duration) float64 { return float64(total) * float64(b.N) / d.Seconds() / 1e6 }
	b.ReportMetric(mb(tMirror), "mirror-MB/s")
	b.ReportMetric(mb(tPull), "pull-MB/s")
	b.ReportMetric(tPull.Seconds()/tMirror.Seconds(), "mirror/pull")
	b.ReportMetric((tPull+tRead).Seconds()/tMirror.Seconds(), "mirror/pull+read")
	slices.Sort(ratios)
	med := ratios[len(ratios)/2]
	if len(ratios)%2 == 0 {
		med = (ratios[len(ratios)/2-1] + med) / 2
	}
	b.ReportMetric(med, "median-mirror/pull")
	per := func(d time.Duration) float64 { return d.Seconds() / float64(b.N) }
	b.Logf("%s in %d layers, %d runs: mirror %.2fs, p2pctl pull %.2fs (+%.2fs reading back) per run: mirror at %.2fx the pull's speed, %.2fx pull+read",
		units.FormatSize(total), n, b.N, per(tMirror), per(tPull), per(tRead), tPull.Seconds()/tMirror.Seconds(), (tPull+tRead).Seconds()/tMirror.Seconds())
}

// mirrorGet fetches every blob through p's mirror, one at a time, hashing
// each and checking its digest.
func mirrorGet(b testing.TB, p *daemon.Node, digests []string) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	for _, d := range digests {
		resp, err := hc.Get(fmt.Sprintf("http://%s/v2/bench/app/blobs/%s?ns=registry.test", p.Addrs["mirror"], d))
		if err != nil {
			b.Fatal(err)
		}
		h := sha256.New()
		_, err = io.Copy(h, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("GET blob %s: %d %v", d, resp.StatusCode, err)
		}
		if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != d {
			b.Fatalf("blob %s read back as %s", d, got)
		}
	}
}

// removePeer stops p and deletes its data.
func (c *cluster) removePeer(p *daemon.Node) {
	c.close(p)
	for i, q := range c.peers {
		if q == p {
			_ = os.RemoveAll(c.peerDirs[i])
		}
	}
}
