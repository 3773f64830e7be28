// Package originclient is the Go client of the origin's HTTP API (package
// originwire): push a blob as a stream, list and inspect stored blobs,
// fetch their manifests and bytes, delete them.
package originclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/httpx"
	"github.com/p2pd/p2pd/internal/wire/originwire"
)

// Errors; match them with errors.Is. Errors from the origin are an
// *APIError, which matches the sentinels for its status and code and
// carries the origin's message.
var (
	// ErrBadRequest: the origin rejected the request (400, or 416 for a
	// range outside the blob). ErrDigestMismatch errors match it too.
	ErrBadRequest = errors.New("originclient: bad request")
	// ErrDigestMismatch: the pushed blob does not hash to the expected
	// digest (400 DIGEST_MISMATCH); the origin kept nothing of it.
	ErrDigestMismatch = errors.New("originclient: digest mismatch")
	// ErrUnauthorized: the request's token is missing or wrong (401), or
	// its scope may not do this (403).
	ErrUnauthorized = errors.New("originclient: unauthorized")
	// ErrNotFound: no such blob (404).
	ErrNotFound = errors.New("originclient: not found")
	// ErrTooLarge: the blob is over the origin's size limit (413).
	ErrTooLarge = errors.New("originclient: blob too large")
	// ErrServer: any other error status.
	ErrServer = errors.New("originclient: origin error")
	// ErrResponse: the response could not be read or decoded, was too
	// large, or contradicts the request.
	ErrResponse = errors.New("originclient: bad response")
)

// APIError is an error answer of the origin. Its Kind is the sentinel
// for its status and code.
type APIError = httpx.APIError

// digestMismatch is the Kind of a DIGEST_MISMATCH answer, which matches
// both ErrDigestMismatch and ErrBadRequest.
var digestMismatch = errors.Join(ErrDigestMismatch, ErrBadRequest)

// errorKind maps an error answer of the origin to its sentinel.
func errorKind(status int, code string) error {
	switch status {
	case http.StatusBadRequest:
		if code == originwire.CodeDigestMismatch {
			return digestMismatch
		}
		return ErrBadRequest
	case http.StatusRequestedRangeNotSatisfiable:
		return ErrBadRequest
	case http.StatusUnauthorized, http.StatusForbidden:
		return ErrUnauthorized
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusRequestEntityTooLarge:
		return ErrTooLarge
	}
	return ErrServer
}

// Defaults and limits.
const (
	// DefaultTimeout bounds the calls other than Push and Fetch, whose
	// duration depends on the blob's size: bound those with their context.
	DefaultTimeout = 30 * time.Second
	// maxJSONBytes bounds a JSON response (a list of many blobs).
	maxJSONBytes = 64 << 20
)

// Client talks to one origin. It is safe for concurrent use.
type Client struct {
	base      *url.URL
	hc        *http.Client
	userAgent string
	timeout   time.Duration
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client (default: one with its own
// connection pool and no overall timeout, since a push may take hours).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// WithTimeout bounds each call other than Push and Fetch (default
// DefaultTimeout; 0 or less means none beyond the context's).
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// New returns a client for the origin at baseURL ("http://host:port",
// possibly with a path prefix).
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("originclient: base URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("originclient: base URL %q: want http(s)://host[:port][/prefix]", baseURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	u.RawQuery, u.Fragment = "", ""
	c := &Client{base: u, userAgent: "p2pd-originclient", timeout: DefaultTimeout}
	for _, o := range opts {
		o(c)
	}
	if c.hc == nil {
		// DefaultTransport waits up to a second for "100 Continue", so a
		// push the origin refuses (no token, too large) sends no body.
		c.hc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	return c, nil
}

// CloseIdleConnections closes the idle connections of the HTTP client.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// PushOptions qualify a push.
type PushOptions struct {
	// ExpectedDigest, if set, is the digest the blob must hash to. The
	// origin refuses a blob that does not, and keeps nothing of it.
	ExpectedDigest *chunker.Digest
	// Size is the blob's length if known, sent as Content-Length: the
	// body must then be exactly that long, and an origin with a size
	// limit refuses a larger blob before it is sent. 0 or -1 means
	// unknown: the body is sent chunked, to its end.
	Size int64
}

// PushResult is the origin's answer to a successful push.
type PushResult struct {
	originwire.BlobInfo
	// Created is false if the origin had the blob already (200 rather
	// than 201).
	Created bool
}

// Push streams r to the origin, which chunks, stores and seeds it. r is
// read to its end (or until the push fails), never buffered whole. When
// Push returns, the client no longer reads r (unless ctx ended while a
// Read of r was blocked: that Read is left to return in the background).
func (c *Client) Push(ctx context.Context, r io.Reader, opts PushOptions) (*PushResult, error) {
	const method = http.MethodPut
	u := c.url(originwire.PathBlobs)
	if opts.ExpectedDigest != nil {
		u.RawQuery = url.Values{originwire.QueryDigest: {opts.ExpectedDigest.String()}}.Encode()
	}
	body := &guardedReader{r: r, sem: make(chan struct{}, 1)}
	defer body.stop(ctx)
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("originclient: push: %w", err)
	}
	if opts.Size > 0 {
		req.ContentLength = opts.Size
	}
	req.Header.Set("Content-Type", originwire.DataMediaType)
	req.Header.Set("Expect", "100-continue")
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return nil, apiError(resp)
	}
	res := &PushResult{Created: resp.StatusCode == http.StatusCreated}
	if err := decodeJSON(resp, &res.BlobInfo); err != nil {
		return nil, err
	}
	if opts.ExpectedDigest != nil && res.Digest != *opts.ExpectedDigest {
		return nil, fmt.Errorf("%w: origin stored %s, expected %s", ErrResponse, res.Digest, *opts.ExpectedDigest)
	}
	return res, nil
}

// Stat returns the summary of stored blob d, or an error matching
// ErrNotFound.
func (c *Client) Stat(ctx context.Context, d chunker.Digest) (*originwire.BlobInfo, error) {
	var info originwire.BlobInfo
	if err := c.getJSON(ctx, originwire.BlobPath(d), &info); err != nil {
		return nil, err
	}
	if info.Digest != d {
		return nil, fmt.Errorf("%w: asked for %s, got %s", ErrResponse, d, info.Digest)
	}
	return &info, nil
}

// List returns the stored blobs, sorted by digest.
func (c *Client) List(ctx context.Context) ([]originwire.BlobInfo, error) {
	var list originwire.BlobList
	if err := c.getJSON(ctx, originwire.PathBlobs, &list); err != nil {
		return nil, err
	}
	return list.Blobs, nil
}

// Manifest returns the manifest of stored blob d, decoded and validated
// (chunker.DecodeManifest) and checked to describe d.
func (c *Client) Manifest(ctx context.Context, d chunker.Digest) (*chunker.Manifest, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	path := originwire.ManifestPath(d)
	req, err := c.newRequest(ctx, http.MethodGet, path)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", originwire.ManifestMediaType)
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, apiError(resp)
	}
	b, err := readLimited(resp, chunker.MaxManifestBytes)
	if err != nil {
		return nil, err
	}
	m, err := chunker.DecodeManifest(b)
	if err != nil {
		return nil, fmt.Errorf("%w: GET %s: %w", ErrResponse, path, err)
	}
	if m.Digest != d {
		return nil, fmt.Errorf("%w: GET %s: manifest describes blob %s", ErrResponse, path, m.Digest)
	}
	if h := resp.Header.Get(originwire.HeaderManifestDigest); h != "" {
		if id := chunker.Sum(b); h != id.String() {
			return nil, fmt.Errorf("%w: GET %s: manifest hashes to %s, origin says %s", ErrResponse, path, id, h)
		}
	}
	return m, nil
}

// Fetch returns n bytes of stored blob d from offset off (n < 0: to the
// end). The caller must close the reader; ctx governs the whole read.
// A range outside the blob is an error matching ErrBadRequest.
func (c *Client) Fetch(ctx context.Context, d chunker.Digest, off, n int64) (io.ReadCloser, error) {
	if off < 0 {
		return nil, fmt.Errorf("%w: negative offset %d", ErrBadRequest, off)
	}
	if n == 0 {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	path := originwire.DataPath(d)
	req, err := c.newRequest(ctx, http.MethodGet, path)
	if err != nil {
		return nil, err
	}
	ranged := off > 0 || n > 0
	switch {
	case n > 0:
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+n-1))
	case off > 0:
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
	}
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	want := http.StatusOK
	if ranged {
		want = http.StatusPartialContent
	}
	if resp.StatusCode != want {
		defer resp.Body.Close()
		if resp.StatusCode < 300 {
			return nil, fmt.Errorf("%w: GET %s: status %d, want %d", ErrResponse, path, resp.StatusCode, want)
		}
		return nil, apiError(resp)
	}
	return resp.Body, nil
}

// Delete removes stored blob d from the origin (its chunks stay in the
// origin's store as evictable cache). It needs the push token.
func (c *Client) Delete(ctx context.Context, d chunker.Digest) error {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	req, err := c.newRequest(ctx, http.MethodDelete, originwire.BlobPath(d))
	if err != nil {
		return err
	}
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
		return apiError(resp)
	}
	return nil
}

// Health checks that the origin answers.
func (c *Client) Health(ctx context.Context) error {
	var h originwire.Health
	if err := c.getJSON(ctx, originwire.PathHealth, &h); err != nil {
		return err
	}
	if h.Status != "ok" {
		return fmt.Errorf("%w: health status %q", ErrResponse, h.Status)
	}
	return nil
}

func (c *Client) url(path string) *url.URL {
	u := *c.base
	u.Path += path
	return &u
}

func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.timeout > 0 {
		return context.WithTimeout(ctx, c.timeout)
	}
	return ctx, func() {}
}

func (c *Client) newRequest(ctx context.Context, method, path string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.url(path).String(), nil)
	if err != nil {
		return nil, fmt.Errorf("originclient: %s %s: %w", method, path, err)
	}
	return req, nil
}

// send adds the common headers and sends req.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/json")
	}
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("originclient: %s %s: %w", req.Method, req.URL.Path, err)
	}
	return resp, nil
}

// getJSON sends a GET and decodes a 200 answer into out.
func (c *Client) getJSON(ctx context.Context, path string, out any) error {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	req, err := c.newRequest(ctx, http.MethodGet, path)
	if err != nil {
		return err
	}
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return apiError(resp)
	}
	return decodeJSON(resp, out)
}

func readLimited(resp *http.Response, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s: reading body: %w", ErrResponse, resp.Request.Method, resp.Request.URL.Path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: %s %s: body over %d bytes", ErrResponse, resp.Request.Method, resp.Request.URL.Path, limit)
	}
	return b, nil
}

func decodeJSON(resp *http.Response, out any) error {
	b, err := readLimited(resp, maxJSONBytes)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%w: %s %s: %w", ErrResponse, resp.Request.Method, resp.Request.URL.Path, err)
	}
	return nil
}

// apiError reads an error answer.
func apiError(resp *http.Response) error {
	return httpx.DecodeError(resp, "origin", errorKind)
}

// errPushDone is what the transport reads from a push body after Push
// returned, should it still try.
var errPushDone = errors.New("originclient: push is over")

// guardedReader hands a push body to the transport, which may go on
// reading it after the response arrived (an early error answer). stop
// ends that, so that the caller's reader is not read after Push returns.
type guardedReader struct {
	r       io.Reader
	sem     chan struct{} // held during a Read
	stopped atomic.Bool
}

func (g *guardedReader) Read(p []byte) (int, error) {
	g.sem <- struct{}{}
	defer func() { <-g.sem }()
	if g.stopped.Load() {
		return 0, errPushDone
	}
	return g.r.Read(p)
}

// stop makes later Reads fail and waits for one in progress, unless ctx
// ends first.
func (g *guardedReader) stop(ctx context.Context) {
	g.stopped.Store(true)
	select {
	case g.sem <- struct{}{}:
		<-g.sem
	case <-ctx.Done():
	}
}
