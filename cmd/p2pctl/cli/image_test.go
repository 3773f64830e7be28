package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/registrytest"
	"github.com/p2pd/p2pd/origin/upstream"
	"github.com/p2pd/p2pd/testbed"
	"github.com/p2pd/p2pd/tracker"
)

// TestImagePreheat preheats an image from a real registry into the origin
// and two peers with p2pctl, then checks that each peer's mirror serves its
// layers from its own store; an unknown tag exits with code 5.
func TestImagePreheat(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	idx := registrytest.Index(t, 2, 1<<20)
	registrytest.Push(t, reg.Host, "team/app", "v1", idx, "", "")
	c := testbed.NewCluster(t, testbed.Options{
		Peers:    2,
		Tracker:  tracker.Config{AnnounceInterval: time.Second},
		Upstream: upstream.Config{Registries: []upstream.Registry{{Name: "registry.test", Endpoint: reg.URL}}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	peers := c.Peers[0].Addrs["control"] + "," + c.Peers[1].Addrs["control"]
	var stderr bytes.Buffer
	code, out := runTo(ctx, nil, &stderr, "--origin", c.Origin.URL("http"), "--credentials", c.CredentialsDir, "--json",
		"image", "preheat", "--peers", peers, "registry.test/team/app:v1")
	if code != ExitOK {
		t.Fatalf("preheat: exit %d\n%s\n%s", code, out, stderr.String())
	}
	var res struct {
		Manifests []string
		Blobs     []struct{ Digest string }
		Peers     []struct {
			Peer  string
			Blobs int
			Error string
		}
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("preheat --json: %v\n%s", err, out)
	}
	digests, _ := registrytest.Blobs(t, idx)
	if len(res.Manifests) != 1+len(registrytest.Platforms) || len(res.Blobs) != len(digests) {
		t.Errorf("preheat: %d manifests, %d blobs; want %d and %d", len(res.Manifests), len(res.Blobs), 1+len(registrytest.Platforms), len(digests))
	}
	for _, p := range res.Peers {
		if p.Error != "" || p.Blobs != len(digests) {
			t.Errorf("peer %s: %d blobs, error %q", p.Peer, p.Blobs, p.Error)
		}
	}
	// Every blob is now complete on both peers.
	for i, cc := range c.Controls {
		have := map[chunker.Digest]bool{}
		blobs, err := cc.Blobs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range blobs {
			have[b.Digest] = b.Complete
		}
		for _, d := range digests {
			pd, _ := chunker.ParseDigest(d)
			if !have[pd] {
				t.Errorf("peer %d lacks blob %s after the preheat", i, d)
			}
		}
		// Its mirror serves them without a pull.
		resp, err := http.Get("http://" + c.Peers[i].Addrs["mirror"] + "/v2/team/app/blobs/" + digests[1] + "?ns=registry.test")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("peer %d mirror: %d", i, resp.StatusCode)
		}
	}

	code, _ = runTo(ctx, nil, &stderr, "--origin", c.Origin.URL("http"), "--credentials", c.CredentialsDir, "image", "preheat", "registry.test/team/app:nosuchtag")
	if code != ExitNotFound {
		t.Errorf("preheat of an unknown tag: exit %d, want %d", code, ExitNotFound)
	}
}
