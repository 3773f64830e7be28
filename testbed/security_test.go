package testbed_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	lpeer "github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/chunker/chunkertest"
	"github.com/p2pd/p2pd/internal/auth"
	"github.com/p2pd/p2pd/internal/daemon"
	"github.com/p2pd/p2pd/internal/httpx/httpxtest"
	"github.com/p2pd/p2pd/internal/wire/trackerwire"
	"github.com/p2pd/p2pd/origin/originclient"
	"github.com/p2pd/p2pd/peer"
	"github.com/p2pd/p2pd/peer/control/controlclient"
	"github.com/p2pd/p2pd/testbed"
	"github.com/p2pd/p2pd/tracker/trackerclient"
)

// TestClosedSwarm runs a closed cluster (p2pd dev's credentials: a
// private network key and the three tokens) and three outsiders against
// it: one that knows a valid digest, one with a member's stolen peer
// identity but no cluster key, and one replaying a member's announce. None
// gets a chunk, a peer list or a manifest, while a member pulls the blob.
func TestClosedSwarm(t *testing.T) {
	c := testbed.NewCluster(t, fastOptions(1))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	data := chunkertest.Bytes(7, 2<<20)
	res, err := c.OriginClient.Push(ctx, bytes.NewReader(data), originclient.PushOptions{Size: int64(len(data))})
	if err != nil {
		t.Fatal(err)
	}
	d := res.Digest
	// The member pulls it: the closed swarm works for those in it.
	if b, err := c.Controls[0].Pull(ctx, d, nil); err != nil || !b.Complete {
		t.Fatalf("member pull: %+v, %v", b, err)
	}
	origin, err := lpeer.AddrInfoFromString(c.Origin.Addrs["p2p"])
	if err != nil {
		t.Fatal(err)
	}
	member, err := lpeer.AddrInfoFromString(c.Peers[0].Addrs["p2p"])
	if err != nil {
		t.Fatal(err)
	}
	plain := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	t.Cleanup(plain.CloseIdleConnections)

	t.Run("knows a digest", func(t *testing.T) {
		tc, _ := trackerclient.New(c.Tracker.URL("http"), trackerclient.WithHTTPClient(plain))
		if _, err := tc.Swarm(ctx, d); !errors.Is(err, trackerclient.ErrUnauthorized) {
			t.Errorf("tracker swarm: %v", err)
		}
		req := &trackerwire.AnnounceRequest{Blob: d, PeerID: "12D3KooWOutsider", Addrs: []string{"/ip4/127.0.0.1/tcp/1"},
			Role: trackerwire.RolePeer, NumChunks: uint32(res.Chunks), Bitfield: trackerwire.NewBitfield(uint32(res.Chunks))}
		if resp, err := tc.Announce(ctx, req); !errors.Is(err, trackerclient.ErrUnauthorized) {
			t.Errorf("announce: %+v, %v", resp, err)
		}
		oc, _ := originclient.New(c.Origin.URL("http"), originclient.WithHTTPClient(plain))
		if _, err := oc.Manifest(ctx, d); !errors.Is(err, originclient.ErrUnauthorized) {
			t.Errorf("origin manifest: %v", err)
		}
		if _, err := oc.Fetch(ctx, d, 0, -1); !errors.Is(err, originclient.ErrUnauthorized) {
			t.Errorf("origin data: %v", err)
		}
		// Its own peer, on the cluster's tracker, without credentials.
		outsiderPull(ctx, t, c, d, t.TempDir())
		// Straight to the origin's and the member's peer ports.
		key, _, _ := crypto.GenerateEd25519Key(rand.Reader)
		dialFails(ctx, t, key, nil, origin, member)
	})

	t.Run("stolen peer ID", func(t *testing.T) {
		stolen, err := os.ReadFile(filepath.Join(c.DataDir, "peer-0", "store", peer.DefaultIdentityFileName))
		if err != nil {
			t.Fatal(err)
		}
		key, err := crypto.UnmarshalPrivateKey(stolen)
		if err != nil {
			t.Fatal(err)
		}
		if id, _ := lpeer.IDFromPrivateKey(key); id != member.ID {
			t.Fatalf("stole %s, the member is %s", id, member.ID)
		}
		dialFails(ctx, t, key, nil, origin)
		// With the wrong network key as well.
		wrong, _ := auth.GeneratePSK()
		dialFails(ctx, t, key, wrong, origin)
		// A whole peer with the stolen identity.
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "store"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "store", peer.DefaultIdentityFileName), stolen, 0o600); err != nil {
			t.Fatal(err)
		}
		outsiderPull(ctx, t, c, d, dir)
	})

	t.Run("replays an announce", func(t *testing.T) {
		// A member's announce, as it went over the wire.
		rec := &httpxtest.Recorder{Base: plain.Transport}
		cr := c.Credentials
		mc, _ := trackerclient.New(c.Tracker.URL("http"), trackerclient.WithHTTPClient(auth.Client(rec, auth.ScopeAnnounce, cr.Keys.Announce, 0)))
		req := &trackerwire.AnnounceRequest{Blob: d, PeerID: member.ID.String(), Addrs: []string{c.Peers[0].Addrs["p2p"]},
			Role: trackerwire.RolePeer, NumChunks: uint32(res.Chunks), Bitfield: trackerwire.NewBitfield(uint32(res.Chunks))}
		if resp, err := mc.Announce(ctx, req); err != nil || len(resp.Peers) == 0 {
			t.Fatalf("the member's announce: %+v, %v", resp, err)
		}
		captured, body := rec.Last()
		replay := func(header string) (int, string) {
			r, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.Tracker.URL("http")+trackerwire.PathAnnounce, bytes.NewReader(body))
			r.Header.Set("Authorization", header)
			resp, err := plain.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		code, msg := replay(captured)
		if code != http.StatusUnauthorized || strings.Contains(msg, "12D3") || !strings.Contains(msg, "already received") {
			t.Fatalf("replayed announce: %d %s", code, msg)
		}
		// The same announce signed ten minutes ago (captured then) is too old.
		old, err := auth.Sign(auth.ScopeAnnounce, cr.Keys.Announce, http.MethodPost, trackerwire.PathAnnounce,
			auth.BodyHash(body), time.Now().Add(-10*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		code, msg = replay(old)
		if code != http.StatusUnauthorized || strings.Contains(msg, "12D3") || !strings.Contains(msg, "off the server's clock") {
			t.Fatalf("old announce: %d %s", code, msg)
		}
	})

	// The positive control for the dial checks: with the network key, a
	// new identity connects.
	t.Run("member key connects", func(t *testing.T) {
		key, _, _ := crypto.GenerateEd25519Key(rand.Reader)
		h, err := peer.NewHost(peer.Config{PSK: c.Credentials.PSK}, key, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		if err := h.Connect(ctx, *origin); err != nil {
			t.Fatalf("a host with the cluster key could not connect: %v", err)
		}
	})
}

// dialFails checks that a libp2p host with key and psk (nil: none) cannot
// connect to any of targets.
func dialFails(ctx context.Context, t *testing.T, key crypto.PrivKey, psk []byte, targets ...*lpeer.AddrInfo) {
	t.Helper()
	h, err := peer.NewHost(peer.Config{PSK: psk}, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, a := range targets {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		start := time.Now()
		err := h.Connect(dctx, *a)
		cancel()
		t.Logf("dial %s: %v after %v", a.ID, err, time.Since(start))
		if err == nil {
			t.Errorf("an outsider (psk %v) connected to %s", psk != nil, a.ID)
		}
	}
}

// outsiderPull runs a peer without credentials in dir, on the cluster's
// tracker, and checks that its pull of d fails with no chunk stored.
func outsiderPull(ctx context.Context, t *testing.T, c *testbed.Cluster, d chunker.Digest, dir string) {
	t.Helper()
	cfg := fastOptions(1).Peer
	cfg.ManifestTimeout = 3 * time.Second
	n, err := daemon.RunPeer(ctx, daemon.PeerConfig{
		NodeConfig: daemon.NodeConfig{DataDir: dir, Tracker: c.Tracker.URL("http"), Peer: cfg},
		Control:    "127.0.0.1:0",
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(context.WithoutCancel(ctx))
	cc, err := controlclient.New(n.Addrs["control"])
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if b, err := cc.Pull(ctx, d, nil); err == nil {
		t.Fatalf("an outsider pulled the blob: %+v", b)
	}
	chunks := 0
	filepath.WalkDir(filepath.Join(dir, "store", "chunks"), func(_ string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			chunks++
		}
		return nil
	})
	if chunks != 0 {
		t.Fatalf("the outsider stored %d chunks", chunks)
	}
}

// TestTLSCluster runs a cluster whose tracker and origin serve TLS with a
// certificate from p2pd init's CA: the nodes and clients that trust the CA
// work over https, a client that does not cannot connect.
func TestTLSCluster(t *testing.T) {
	sec, err := auth.Generate(t.TempDir(), auth.GenerateOptions{Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	o := fastOptions(1)
	o.Security = sec
	c := testbed.NewCluster(t, o)
	for _, n := range []*daemon.Node{c.Tracker, c.Origin} {
		if !strings.HasPrefix(n.URL("http"), "https://") {
			t.Fatalf("%s serves %s", n.Role, n.URL("http"))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	data := chunkertest.Bytes(8, 1<<20)
	res, err := c.OriginClient.Push(ctx, bytes.NewReader(data), originclient.PushOptions{Size: int64(len(data))})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := c.Controls[0].Pull(ctx, res.Digest, nil); err != nil || !b.Complete {
		t.Fatalf("pull over a TLS tracker: %+v, %v", b, err)
	}
	untrusting := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	defer untrusting.CloseIdleConnections()
	if resp, err := untrusting.Get(c.Tracker.URL("http") + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatal("a client without the cluster CA connected to the tracker")
	}
}
