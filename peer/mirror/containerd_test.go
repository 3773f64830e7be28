package mirror_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/p2pd/p2pd/internal/daemon"
	"github.com/p2pd/p2pd/internal/registrytest"
	"github.com/p2pd/p2pd/origin/upstream"
)

// containerdMissing says why containerd cannot run here, or "".
func containerdMissing() string {
	if os.Geteuid() != 0 {
		return "containerd needs root, and the test runs as uid " + fmt.Sprint(os.Geteuid())
	}
	for _, bin := range []string{"containerd", "ctr", "runc"} {
		if _, err := exec.LookPath(bin); err != nil {
			return bin + " is not installed (scripts/test-deps.sh installs the containerd and runc Debian packages as root)"
		}
	}
	return ""
}

// helloImage builds an image index (one platform, this machine's) whose
// first layer holds a static binary /hello and two more random layers.
func helloImage(t *testing.T) v1.ImageIndex {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "hello")
	cmd := exec.Command("go", "build", "-o", bin, "./testdata/hello")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the test binary: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "hello", Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	tarBytes := buf.Bytes()
	helloLayer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(tarBytes)), nil })
	if err != nil {
		t.Fatal(err)
	}
	layers := []v1.Layer{helloLayer}
	for range 2 {
		l, err := random.Layer(1<<20, "application/vnd.docker.image.rootfs.diff.tar.gzip")
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Cmd = []string{"/hello"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: img,
		Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}})
}

// containerd is a containerd daemon of the test's own, with its own root,
// state and socket, and a hosts directory that sends registry.test to a
// mirror.
type containerd struct {
	sock, hosts string
}

func startContainerd(t *testing.T, mirrorAddr string) *containerd {
	t.Helper()
	dir, err := os.MkdirTemp("", "p2pd-ctrd-") // short: the socket path has a length limit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c := &containerd{sock: filepath.Join(dir, "c.sock"), hosts: filepath.Join(dir, "hosts")}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.sock)
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// The mirror, as docs/containers.md configures it; the server is
	// unreachable, so a pull that bypassed the mirror would fail.
	hostsToml := fmt.Sprintf(`server = "https://registry.test"

[host."http://%s"]
  capabilities = ["pull", "resolve"]
`, mirrorAddr)
	if err := os.MkdirAll(filepath.Join(c.hosts, "registry.test"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.hosts, "registry.test", "hosts.toml"), []byte(hostsToml), 0o600); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	cmd := exec.Command("containerd", "--config", filepath.Join(dir, "config.toml"))
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("containerd log:\n%s", log.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		if err := exec.CommandContext(ctx, "ctr", "-a", c.sock, "version").Run(); err == nil {
			return c
		}
		select {
		case <-ctx.Done():
			t.Fatalf("containerd did not come up in 30s")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *containerd) ctr(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ctr", append([]string{"-a", c.sock, "-n", "p2pd"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ctr %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestContainerdPullThroughMirror: containerd's own client, `ctr image
// pull` with a hosts.toml mirror, pulls an image through a peer's mirror;
// every layer's digest is in its content store, and the image runs. A
// second containerd pulls through a second peer, which takes >= 90% of the
// layer bytes from peers.
func TestContainerdPullThroughMirror(t *testing.T) {
	if why := containerdMissing(); why != "" {
		t.Skip("skipping: " + why + "; TestMirrorPullThroughSwarm covers the same path with go-containerregistry as the client")
	}
	reg := registrytest.Start(t, registrytest.Options{})
	idx := helloImage(t)
	registrytest.Push(t, reg.Host, "team/hello", "v1", idx, "", "")
	c := newCluster(t, []upstream.Registry{{Name: "registry.test", Endpoint: reg.URL}})
	a, b := c.addPeer(nil), c.addPeer(nil)
	digests, sizes := registrytest.Blobs(t, idx)
	const image = "registry.test/team/hello:v1"

	pull := func(p *daemon.Node) *containerd {
		cd := startContainerd(t, p.Addrs["mirror"])
		cd.ctr(t, "image", "pull", "--hosts-dir", cd.hosts, "--snapshotter", "native", image)
		have := cd.ctr(t, "content", "ls", "-q")
		for _, d := range digests {
			if !strings.Contains(have, d) {
				t.Errorf("containerd's content store lacks blob %s after the pull:\n%s", d, have)
			}
		}
		return cd
	}
	cd := pull(a)
	out := cd.ctr(t, "run", "--rm", "--snapshotter", "native", image, "hello-"+fmt.Sprint(time.Now().UnixNano()))
	if !strings.Contains(out, "hello from a p2pd layer") {
		t.Errorf("the container printed %q", out)
	}

	c.waitComplete(t, idx, 1)
	pull(b)
	var want int64
	for _, s := range sizes {
		want += s
	}
	fromPeers := metric(t, b, "p2pd_mirror_blob_bytes_fetched_total", `source="peers"`)
	fromOrigins := metric(t, b, "p2pd_mirror_blob_bytes_fetched_total", `source="origins"`)
	t.Logf("second peer: %.0f bytes from peers, %.0f from origins, image blobs %d", fromPeers, fromOrigins, want)
	if fromPeers+fromOrigins < float64(want) || fromPeers < 0.9*(fromPeers+fromOrigins) {
		t.Errorf("second peer took %.0f of %.0f blob bytes from peers, want >= 90%%", fromPeers, fromPeers+fromOrigins)
	}
}
