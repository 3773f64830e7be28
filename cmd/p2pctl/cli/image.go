package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/p2pd/p2pd/internal/auth"
	"github.com/p2pd/p2pd/internal/units"
	"github.com/p2pd/p2pd/internal/wire/ctlwire"
	"github.com/p2pd/p2pd/internal/wire/originwire"
	"github.com/p2pd/p2pd/peer/control/controlclient"
)

func newImageCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Container images: load them into the origin and the peers ahead of a rollout",
		Long: `image works with the container images that p2pd peers serve through their OCI
registry mirrors (see docs/containers.md).`,
	}
	cmd.AddCommand(newImagePreheatCmd(g))
	return cmd
}

// preheatPeer is one peer's part of a preheat.
type preheatPeer struct {
	Peer             string `json:"peer"`
	Blobs            int    `json:"blobs"`
	Bytes            int64  `json:"bytes"`
	BytesFromPeers   int64  `json:"bytes_from_peers"`
	BytesFromOrigins int64  `json:"bytes_from_origins"`
	Error            string `json:"error,omitempty"`
}

type preheatResult struct {
	*originwire.Preheat
	Peers []preheatPeer `json:"peers,omitempty"`
}

// maxPreheatPeers bounds the peers told to prefetch at once.
const maxPreheatPeers = 8

func newImagePreheatCmd(g *globals) *cobra.Command {
	var (
		peers string
	)
	cmd := &cobra.Command{
		Use:   "preheat REF",
		Short: "Load an image's layers into the origin, and optionally have peers prefetch them",
		Long: `preheat asks the origin (--origin) to fetch every blob of the image REF
([registry/]repository[:tag|@digest]; for a multi-platform index, every
platform's config and layers) from its upstream registry, verify it, store it
and seed it. A registry name must be one the origin has configured (its
upstream.registries); without one, the origin's default registry is used.

With --peers, each of the listed peers' control APIs (comma-separated
host:port or unix:/path; "local" is --peer) then pulls every blob through
the swarm, so that later pulls through those peers' mirrors are local. At most
8 peers pull at once. The exit code is 5 if the image is unknown, 1 if any
peer failed.

Preheat signs its request with the push token when the cluster is closed
(--push-token, $P2PD_PUSH_TOKEN, the config's push_token, or --credentials).`,
		Example: `  p2pctl image preheat registry.example.com/team/app:v42
  p2pctl image preheat --peers 10.0.0.5:7402,10.0.0.6:7402 docker.io/library/redis:7
  p2pctl image preheat --json --peers local team/app@sha256:4f2a…`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			oc, err := g.originClient(auth.ScopePush)
			if err != nil {
				return err
			}
			defer oc.CloseIdleConnections()
			var addrs []string
			for _, p := range strings.Split(peers, ",") {
				switch p = strings.TrimSpace(p); p {
				case "":
				case "local":
					addrs = append(addrs, g.cfg.Peer)
				default:
					addrs = append(addrs, p)
				}
			}
			ctx := cmd.Context()
			res := preheatResult{}
			if res.Preheat, err = oc.Preheat(ctx, args[0]); err != nil {
				return fmt.Errorf("preheat %s: %w", args[0], err)
			}
			if !g.json {
				var size int64
				for _, b := range res.Blobs {
					size += b.Size
				}
				fmt.Fprintf(g.stdout, "%s (%s): %d manifests, %d blobs, %s at the origin\n",
					res.Ref, res.Digest, len(res.Manifests), len(res.Blobs), units.FormatSize(size))
			}
			res.Peers = prefetch(ctx, addrs, res.Blobs)
			var failed error
			for _, p := range res.Peers {
				if p.Error != "" {
					failed = errors.Join(failed, fmt.Errorf("peer %s: %s", p.Peer, p.Error))
				}
				if !g.json {
					status := "ok"
					if p.Error != "" {
						status = "FAILED: " + p.Error
					}
					fmt.Fprintf(g.stdout, "peer %s: %d blobs, %s (peers %s, origin %s): %s\n", p.Peer, p.Blobs,
						units.FormatSize(p.Bytes), units.FormatSize(p.BytesFromPeers), units.FormatSize(p.BytesFromOrigins), status)
				}
			}
			if g.json {
				if err := g.printJSON(res); err != nil {
					return err
				}
			}
			return failed
		},
	}
	cmd.Flags().StringVar(&peers, "peers", "", `peers to prefetch the image: comma-separated control addresses, "local" for --peer`)
	return cmd
}

// prefetch has each peer at addrs pull every blob, at most maxPreheatPeers
// peers at a time.
func prefetch(ctx context.Context, addrs []string, blobs []originwire.BlobInfo) []preheatPeer {
	out := make([]preheatPeer, len(addrs))
	sem := make(chan struct{}, maxPreheatPeers)
	var wg sync.WaitGroup
	for i, addr := range addrs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i] = prefetchOne(ctx, addr, blobs)
		})
	}
	wg.Wait()
	return out
}

func prefetchOne(ctx context.Context, addr string, blobs []originwire.BlobInfo) preheatPeer {
	p := preheatPeer{Peer: addr}
	c, err := controlclient.New(addr)
	if err != nil {
		p.Error = err.Error()
		return p
	}
	defer c.Close()
	for _, b := range blobs {
		done, err := c.Pull(ctx, b.Digest, func(ctlwire.Progress) {})
		if err != nil {
			p.Error = fmt.Sprintf("pull %s: %v", b.Digest, err)
			return p
		}
		p.Blobs++
		p.Bytes += done.Size
		p.BytesFromPeers += done.BytesFromPeers
		p.BytesFromOrigins += done.BytesFromOrigins
	}
	return p
}
