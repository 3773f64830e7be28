// Package trackerclient is the Go client of the tracker's HTTP/JSON API
// (package trackerwire), and the Announcer that peers and origins run to
// keep their records alive on the tracker.
package trackerclient

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
	"time"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/httpx"
	"github.com/p2pd/p2pd/internal/wire/trackerwire"
)

// Errors; match them with errors.Is. Errors from the tracker are an
// *APIError, which matches the sentinel for its status code and carries
// the tracker's message.
var (
	// ErrBadRequest: the tracker rejected the request (400), or the
	// client refused to send an invalid one.
	ErrBadRequest = errors.New("trackerclient: bad request")
	// ErrNotFound: no such swarm (404).
	ErrNotFound = errors.New("trackerclient: not found")
	// ErrUnauthorized: the tracker needs a signed request, and this one's
	// token is missing, wrong, stale or replayed (401), or its scope may
	// not do this (403).
	ErrUnauthorized = errors.New("trackerclient: unauthorized")
	// ErrConflict: the announce contradicts the swarm (409).
	ErrConflict = errors.New("trackerclient: conflict")
	// ErrServer: any other error status.
	ErrServer = errors.New("trackerclient: tracker error")
	// ErrResponse: the response could not be read or decoded, or was too
	// large.
	ErrResponse = errors.New("trackerclient: bad response")
)

// APIError is an error answer of the tracker. Its Kind is the sentinel
// for its status code.
type APIError = httpx.APIError

// errorKind maps an error answer of the tracker to its sentinel.
func errorKind(status int, _ string) error {
	switch status {
	case http.StatusBadRequest:
		return ErrBadRequest
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusConflict:
		return ErrConflict
	case http.StatusUnauthorized, http.StatusForbidden:
		return ErrUnauthorized
	}
	return ErrServer
}

// Defaults.
const (
	DefaultTimeout          = 30 * time.Second
	DefaultMaxResponseBytes = 64 << 20
)

// Client talks to one tracker. It is safe for concurrent use.
type Client struct {
	base      *url.URL
	hc        *http.Client
	userAgent string
	maxResp   int64
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client (default: one with DefaultTimeout
// and its own connection pool).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// WithMaxResponseBytes bounds the response bodies read (default
// DefaultMaxResponseBytes).
func WithMaxResponseBytes(n int64) Option { return func(c *Client) { c.maxResp = n } }

// New returns a client for the tracker at baseURL ("http://host:port",
// possibly with a path prefix).
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("trackerclient: base URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("trackerclient: base URL %q: want http(s)://host[:port][/prefix]", baseURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawQuery, u.Fragment = "", ""
	c := &Client{base: u, userAgent: "p2pd-trackerclient", maxResp: DefaultMaxResponseBytes}
	for _, o := range opts {
		o(c)
	}
	if c.hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		c.hc = &http.Client{Timeout: DefaultTimeout, Transport: tr}
	}
	if c.maxResp <= 0 {
		c.maxResp = DefaultMaxResponseBytes
	}
	return c, nil
}

// CloseIdleConnections closes the idle connections of the HTTP client.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// Announce sends req, after validating it, and returns the tracker's
// answer.
func (c *Client) Announce(ctx context.Context, req *trackerwire.AnnounceRequest) (*trackerwire.AnnounceResponse, error) {
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	var resp trackerwire.AnnounceResponse
	if err := c.do(ctx, http.MethodPost, trackerwire.PathAnnounce, body, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// Swarm returns the status of blob's swarm, or an error matching
// ErrNotFound.
func (c *Client) Swarm(ctx context.Context, blob chunker.Digest) (*trackerwire.SwarmStatus, error) {
	var st trackerwire.SwarmStatus
	if err := c.do(ctx, http.MethodGet, trackerwire.SwarmPath(blob), nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// SwarmReplication is Swarm with SwarmStatus.Replication filled in: how
// many peers hold each chunk.
func (c *Client) SwarmReplication(ctx context.Context, blob chunker.Digest) (*trackerwire.SwarmStatus, error) {
	var st trackerwire.SwarmStatus
	if err := c.do(ctx, http.MethodGet, trackerwire.SwarmPath(blob)+"?"+trackerwire.SwarmChunksQuery, nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Swarms lists the tracker's swarms.
func (c *Client) Swarms(ctx context.Context) ([]trackerwire.SwarmSummary, error) {
	var list trackerwire.SwarmList
	if err := c.do(ctx, http.MethodGet, trackerwire.PathSwarms, nil, &list); err != nil {
		return nil, err
	}
	return list.Swarms, nil
}

// Health checks that the tracker answers.
func (c *Client) Health(ctx context.Context) error {
	var h trackerwire.Health
	if err := c.do(ctx, http.MethodGet, trackerwire.PathHealth, nil, &h); err != nil {
		return err
	}
	if h.Status != "ok" {
		return fmt.Errorf("%w: health status %q", ErrResponse, h.Status)
	}
	return nil
}

// do sends a request and decodes a 200 answer into out.
func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	u := *c.base
	if p, q, ok := strings.Cut(path, "?"); ok {
		u.Path += p
		u.RawQuery = q
	} else {
		u.Path += path
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return fmt.Errorf("trackerclient: %s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("trackerclient: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()

	if resp.StatusCode != http.StatusOK {
		return httpx.DecodeError(resp, "tracker", errorKind)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, c.maxResp+1))
	if err != nil {
		return fmt.Errorf("%w: %s %s: reading body: %w", ErrResponse, method, path, err)
	}
	if int64(len(b)) > c.maxResp {
		return fmt.Errorf("%w: %s %s: body over %d bytes", ErrResponse, method, path, c.maxResp)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%w: %s %s: %w", ErrResponse, method, path, err)
	}
	return nil
}
