package originclient

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/wire/originwire"
)

// ImageManifest is a container image manifest (or index) the origin
// fetched from an upstream registry.
type ImageManifest struct {
	MediaType string
	// Digest is "sha256:<hex>" of Body, checked by the client.
	Digest string
	Body   []byte
}

// imageRequest sends a request to an image route with query q. The
// caller closes the body of a 200 answer; other answers are returned as
// errors.
func (c *Client) imageRequest(ctx context.Context, method, path string, q url.Values) (*http.Response, error) {
	u := c.url(path)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("originclient: %s %s: %w", method, path, err)
	}
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, apiError(resp)
	}
	return resp, nil
}

// ImageManifest returns the manifest ref (a tag or a digest) of repo in
// upstream registry (empty: the origin's default), through the origin and
// its cache. Errors are APIErrors whose Code is one of originwire's image
// codes (MANIFEST_UNKNOWN, REGISTRY_UNKNOWN, UPSTREAM_DENIED, ...).
func (c *Client) ImageManifest(ctx context.Context, registry, repo, ref string) (*ImageManifest, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	resp, err := c.imageRequest(ctx, http.MethodGet, originwire.PathImageManifest, url.Values{
		originwire.QueryRegistry: {registry}, originwire.QueryRepo: {repo}, originwire.QueryRef: {ref}})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := readLimited(resp, originwire.MaxImageManifestSize)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	m := &ImageManifest{MediaType: resp.Header.Get("Content-Type"), Digest: "sha256:" + hex.EncodeToString(sum[:]), Body: b}
	if h := resp.Header.Get(originwire.HeaderImageDigest); h != m.Digest {
		return nil, fmt.Errorf("%w: manifest %s/%s:%s hashes to %s, the origin says %q", ErrResponse, registry, repo, ref, m.Digest, h)
	}
	return m, nil
}

// ImageTags returns a page of the tags of repo in upstream registry: at
// most n (n <= 0: as many as the upstream sends at once), those after
// last (if not empty), in the upstream's (lexical) order.
func (c *Client) ImageTags(ctx context.Context, registry, repo string, n int, last string) (*originwire.ImageTags, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	q := url.Values{originwire.QueryRegistry: {registry}, originwire.QueryRepo: {repo}}
	if n > 0 {
		q.Set(originwire.QueryN, strconv.Itoa(n))
	}
	if last != "" {
		q.Set(originwire.QueryLast, last)
	}
	resp, err := c.imageRequest(ctx, http.MethodGet, originwire.PathImageTags, q)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var tags originwire.ImageTags
	if err := decodeJSON(resp, &tags); err != nil {
		return nil, err
	}
	if n > 0 && len(tags.Tags) > n {
		return nil, fmt.Errorf("%w: asked for %d tags, got %d", ErrResponse, n, len(tags.Tags))
	}
	return &tags, nil
}

// ImageBlob makes the origin store and seed blob d (a layer or config) of
// repo in upstream registry, fetching it from upstream unless it has it.
// It may take as long as the download: bound it with ctx.
func (c *Client) ImageBlob(ctx context.Context, registry, repo string, d chunker.Digest) (*originwire.BlobInfo, error) {
	resp, err := c.imageRequest(ctx, http.MethodPost, originwire.PathImageBlob, url.Values{
		originwire.QueryRegistry: {registry}, originwire.QueryRepo: {repo}, originwire.QueryDigest: {d.String()}})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var info originwire.BlobInfo
	if err := decodeJSON(resp, &info); err != nil {
		return nil, err
	}
	if info.Digest != d {
		return nil, fmt.Errorf("%w: asked for %s, got %s", ErrResponse, d, info.Digest)
	}
	return &info, nil
}

// Preheat makes the origin fetch every blob of image ref
// ("[registry/]repo[:tag|@digest]"; for an index, of every platform) from
// upstream, store and seed it. It needs the push token if the origin has
// one, and may take as long as the downloads: bound it with ctx.
func (c *Client) Preheat(ctx context.Context, ref string) (*originwire.Preheat, error) {
	resp, err := c.imageRequest(ctx, http.MethodPost, originwire.PathImagePreheat, url.Values{originwire.QueryRef: {ref}})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var p originwire.Preheat
	if err := decodeJSON(resp, &p); err != nil {
		return nil, err
	}
	return &p, nil
}
